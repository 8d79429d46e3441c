"""Test helpers for the checkpoint store: a real threaded HTTP server on 127.0.0.1 with Range support.

Not a conftest (the lead owns tests/conftest.py): tests import ``http_server`` from here as a fixture.
The server serves an in-memory {path: bytes} map, counts GETs per path, and can be told to cut a
connection after N bytes (once), to answer a status code, or to send slowly (for concurrency tests).
"""

import http.server
import re
import threading
import time

import pytest


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
