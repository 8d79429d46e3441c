"""Shared parts of the dynamic-batching HTTP tests: a real threaded HTTP server on 127.0.0.1 over an app,
concurrent clients released together, and the check that batched answers equal the ones given alone."""

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import yaml
from conftest import free_port
from werkzeug.serving import make_server

from magenta_api.testing import make_app

EMBEDDED = Path(__file__).resolve().parents[1] / "plugins" / "magenta_api_embedded"


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


class Servers:
    """The servers a test starts, each over its own app (cache off) in its own folder; closed on exit."""

    def __init__(self, folder: Path):
        self.folder, self.started = folder, []

    def start(self, name: str, entry_point: str, models: dict, batching: bool) -> Server:
        app = make_app(
            self.folder / name, entry_points=[entry_point], models=models, cache_enabled=False, batching=batching
        )
        self.started.append(Server(app))
        return self.started[-1]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for server in self.started:
            server.close()


def embedded_model(model_id: str, serving: dict) -> dict:
    """One model of the embedded plugin's models.yaml, its checkpoint path made absolute, with ``serving``."""
    doc = yaml.safe_load((EMBEDDED / "models.yaml").read_text())
    model = doc["models"][model_id]
    model["checkpoint"]["url"] = str(EMBEDDED / model["checkpoint"]["url"])
    return {model_id: {**model, "serving": serving}}


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
