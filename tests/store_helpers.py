"""Test helpers for the checkpoint store: a real threaded HTTP server on 127.0.0.1 with Range support,
checkpoint files (a published-style tarball, and one whose tensors fail their crc32c), a plugin whose
families run on any checkpoint or refuse it, and a launcher for the real ``magenta-api`` command with it.

Not a conftest (the lead owns tests/conftest.py): tests import ``http_server`` from here as a fixture.
The server serves an in-memory {path: bytes} map, counts GETs per path, and can be told to cut a
connection after N bytes (once), to answer a status code, or to send slowly (for concurrency tests).
"""

import http.server
import io
import os
import pathlib
import re
import subprocess
import sys
import tarfile
import threading
import time

import numpy as np
import pytest
from note_seq.protobuf import music_pb2

from magenta_api import Family, GenerateResult, hookimpl

FIX = pathlib.Path(__file__).parent / "fixtures" / "checkpoints"
TESTS = pathlib.Path(__file__).parent


def v2_tar(prefix_dir="cat-mel_2bar_tiny", padding=0, corrupt=False):
    """A .tar like the published MusicVAE ones: a folder with the V2 checkpoint files (+ an unrelated
    file). ``corrupt``: one byte of the weight ``extra/big`` flipped, so its crc32c fails on read (the
    sha256 of the tarball is still whatever it is: only reading the tensors finds it)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in sorted((FIX / "v2").iterdir()):
            data = f.read_bytes()
            if corrupt and ".data-" in f.name:
                at = 1896 + 100  # inside extra/big (offset 1896, 17920 bytes), not an optimizer slot
                data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
            info = tarfile.TarInfo(f"{prefix_dir}/{f.name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if padding:
            info = tarfile.TarInfo(f"{prefix_dir}/README.txt")
            info.size = padding
            tar.addfile(info, io.BytesIO(os.urandom(padding)))
    return buf.getvalue()


# ---- a plugin for the store's end-to-end tests ---------------------------------------------------------
def _notes(count):
    seq = music_pb2.NoteSequence(ticks_per_quarter=220)
    seq.tempos.add(qpm=120)
    for i in range(count):
        seq.notes.add(pitch=60 + i % 12, velocity=90, start_time=i * 0.125, end_time=(i + 1) * 0.125)
    seq.total_time = count * 0.125
    return seq


class Tensors(Family):
    """Runs on any checkpoint: one note per weight, and the weights' count and sum in the answer."""

    name = "tensors"
    capabilities = ("sample",)
    built = 0  # how many instances were constructed (each one a load)

    def __init__(self, spec, checkpoint):
        super().__init__(spec, checkpoint)
        type(self).built += 1

    def generate(self, request):
        variables = self.checkpoint.variables
        total = float(sum(np.asarray(v, np.float64).sum() for v in variables.values()))
        return GenerateResult([_notes(len(variables))], {"variables": len(variables), "sum": total})


class Strict(Family):
    """Runs only a checkpoint with ``hparams.tensors`` weights, as a family checks its layer sizes."""

    name = "strict"
    capabilities = ("sample",)
    hparams_schema = {"type": "object", "properties": {"tensors": {"type": "integer"}}}
    attempts = 0  # how many times a model was built (or refused)

    def __init__(self, spec, checkpoint):
        type(self).attempts += 1
        want, have = spec.hparams.get("tensors"), len(checkpoint.variables)
        if want != have:
            raise ValueError(f"this checkpoint has {have} weights, a {want}-weight model was declared")
        super().__init__(spec, checkpoint)

    def generate(self, request):
        return GenerateResult([_notes(2)])


@hookimpl
def register_families(register):
    register(Tensors)
    register(Strict)


LAUNCHER = (
    f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
    "import store_helpers\n"
    "from magenta_api import cli, plugins\n"
    "orig = plugins.PluginHost.load_entry_points\n"
    "def load(self, only=None):\n"
    "    orig(self, only); self.register(store_helpers)\n"
    "plugins.PluginHost.load_entry_points = load\n"
    "sys.exit(cli.main(sys.argv[1:]))\n"
)


def run_cli(args, env, cwd=None, timeout=120):
    """The real ``magenta-api`` command in a new process, with this module's families installed."""
    full = {**os.environ, "LOG_LEVEL": "WARNING", **env}
    return subprocess.run(
        [sys.executable, "-c", LAUNCHER, *args], env=full, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


class FileServer:
    def __init__(self):
        self.files = {}
        self.gets = {}
        self.ranges = []  # (path, Range header) of every GET
        self.cut_after = {}  # path -> bytes sent before the connection is dropped (once)
        self.status = {}  # path -> forced HTTP status
        self.delay = 0.0  # seconds to sleep per chunk
        self.chunk = 16384
        self.lock = threading.Lock()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path):
        return self.base + path

    def add(self, path, data):
        self.files[path] = bytes(data)
        return self.url(path)

    def count(self, path):
        return self.gets.get(path, 0)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path
                with server.lock:
                    server.gets[path] = server.gets.get(path, 0) + 1
                    server.ranges.append((path, self.headers.get("Range")))
                    cut = server.cut_after.pop(path, None)
                forced = server.status.get(path)
                if forced or path not in server.files:
                    code = forced or 404
                    body = b"error\n"
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                data = server.files[path]
                start = 0
                m = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
                if m:
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                sent, pos = 0, start
                try:
                    while pos < len(data):
                        piece = data[pos : pos + server.chunk]
                        if cut is not None and sent + len(piece) > cut:
                            self.wfile.write(piece[: cut - sent])
                            self.wfile.flush()
                            self.close_connection = True
                            self.connection.shutdown(2)
                            return
                        self.wfile.write(piece)
                        sent += len(piece)
                        pos += len(piece)
                        if server.delay:
                            time.sleep(server.delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler


@pytest.fixture
def http_server():
    server = FileServer()
    yield server
    server.close()
