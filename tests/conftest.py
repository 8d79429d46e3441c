import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPAT = ROOT.parent / "shared" / "compat"
sys.path.insert(0, str(Path(__file__).parent))

os.environ.setdefault("LOG_LEVEL", "WARNING")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def toy_app(tmp_path):
    import toy_plugin

    from magenta_api.testing import make_app

    return make_app(tmp_path, plugins=[toy_plugin], models=dict(toy_plugin.TOY_MODELS))


@pytest.fixture
def client(toy_app):
    return toy_app.test_client()


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory):
    """The example plugin and two broken plugins, pip-installed into one folder."""
    from plugin_site import BROKEN, EXAMPLE, pip_install

    return pip_install(tmp_path_factory.mktemp("site"), EXAMPLE, *BROKEN)
