"""A plugin for the job tests: a family that holds a generation while a file exists, so that a test can
kill a worker mid-job or cancel a running job, then let it finish. Installed into real processes by
:func:`install` (an entry point in a dist-info folder on PYTHONPATH, as pip would leave it)."""

import time
from pathlib import Path

from toy_plugin import Toy

from magenta_api import deadline, hookimpl

MODELS = {
    "slow": {"family": "slow", "hparams": {"low": 50}, "limits": {"num_outputs": 4, "length": 64, "seconds": 300}}
}


class Slow(Toy):
    name = "slow"
    params_schema = {"type": "object", "properties": {"hold": {"type": "string"}}}

    def generate(self, request):
        hold = request.params.get("hold")
        if hold:
            Path(hold + ".running").touch()  # the test waits for this before it kills or cancels
            while Path(hold).exists():
                deadline.check()
                time.sleep(0.05)
        return super().generate(request)


@hookimpl
def register_families(register):
    register(Slow)


@hookimpl
def register_models(register):
    register({"models": MODELS})


def install(site: Path) -> Path:
    """Make ``site`` (put it on PYTHONPATH with tests/) provide this module as the plugin ``slow``."""
    info = site / "slow_plugin-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: slow-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[magenta_api]\nslow = slow_plugin\n")
    return site
