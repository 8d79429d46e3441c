"""The real service process for tests: ``magenta-api serve`` (gunicorn) on a free port of 127.0.0.1.

Several test modules speak to the service over real HTTP (metrics across workers, the studio page in
Chromium, the live WebSocket, shared memory, the smoke test). They all start it the same way and wait
for ``/healthz`` the same way, so that is done here once; a server that dies or does not come up fails
the test with the end of its log instead of hanging it."""

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from conftest import free_port

BIN = Path(sys.executable).parent
START_SECONDS = 90


@dataclass
class Service:
    """A running service: its address, its process (the gunicorn master) and its log file."""

    base: str
    port: int
    proc: subprocess.Popen
    log: Path


def wait_until_healthy(base: str, proc: subprocess.Popen, log: Path, seconds: float = START_SECONDS) -> None:
    """Poll ``/healthz`` until it answers 200; fail with the log's tail if the process exits or time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=5).ok:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        assert proc.poll() is None, f"the service exited with {proc.returncode}:\n{tail}"
        assert time.monotonic() < deadline, f"the service did not answer /healthz in {seconds} s:\n{tail}"
        time.sleep(0.3)


@contextlib.contextmanager
def running_service(folder: Path, env: dict, workers: int = 1, port: int | None = None):
    """Start ``magenta-api serve`` with ``env`` added to this process's environment; stop it on exit.

    The log goes to ``folder/server.log``. ``MAGENTA_API_OFFLINE=1`` and ``LOG_LEVEL=WARNING`` are the
    defaults (``env`` overrides them): tests never reach the network."""
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = folder / "server.log"
    full_env = {**os.environ, "MAGENTA_API_OFFLINE": "1", "LOG_LEVEL": "WARNING", **env}
    argv = [str(BIN / "magenta-api"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(base, proc, log_path)
            yield Service(base, port, proc, log_path)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
