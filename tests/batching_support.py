"""Shared parts of the dynamic-batching HTTP tests: a real threaded HTTP server on 127.0.0.1 over an app,
concurrent clients released together, and the check that batched answers equal the ones given alone."""

import threading
from concurrent.futures import ThreadPoolExecutor

import requests
from conftest import free_port
from werkzeug.serving import make_server


class Server:
    """A real threaded HTTP server on 127.0.0.1 over an app; ``url`` is its generate route."""

    def __init__(self, app):
        self.port = free_port()
        self.httpd = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}/v1/generate"

    def close(self):
        self.httpd.shutdown()


def post_one_by_one(url: str, model: str, payloads: list) -> list:
    return [requests.post(url, json={"model": model, **p}, timeout=60) for p in payloads]


def post_together(url: str, model: str, payloads: list) -> list:
    """Every payload from its own client thread, all released at once (so that they queue together)."""
    barrier = threading.Barrier(len(payloads))

    def post(payload):
        barrier.wait(10)
        return requests.post(url, json={"model": model, **payload}, timeout=60)

    with ThreadPoolExecutor(len(payloads)) as pool:
        return list(pool.map(post, payloads))


def assert_same_answers(payloads: list, alone: list, together: list) -> None:
    """The same status and content type for each payload; the same bytes for a 200, the same error code
    otherwise."""
    for payload, a, b in zip(payloads, alone, together):
        assert (b.status_code, b.headers["Content-Type"]) == (a.status_code, a.headers["Content-Type"]), payload
        if a.status_code == 200:
            assert b.content == a.content, payload
        else:
            assert b.json()["error"]["code"] == a.json()["error"]["code"]
