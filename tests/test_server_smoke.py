"""The real service process (gunicorn via `magenta-api serve`), spoken to over HTTP on 127.0.0.1."""

import json
import os

import pytest
import requests
import yaml
from conftest import free_port
from server_support import running_service


@pytest.fixture(scope="module")
def server(tmp_path_factory, plugin_site):
    tmp = tmp_path_factory.mktemp("server")
    dead_port = free_port()
    extra = tmp / "extra.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                "models": {
                    "needs-download": {
                        "family": "weighted",
                        "checkpoint": {"url": f"http://127.0.0.1:{dead_port}/model.tar", "format": "tf-tar"},
                    }
                }
            }
        )
    )
    env = {
        "PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")]),
        "MODEL_DIR": str(tmp / "models"),
        "CACHE_DIR": str(tmp / "cache"),
        "MAGENTA_API_MODELS": str(extra),
        "MAX_BODY_BYTES": "4000",
        "LOG_LEVEL": "INFO",
    }
    with running_service(tmp, env, workers=2) as service:
        yield service.base, service.log


def err(resp, status):
    assert resp.status_code == status, resp.text
    body = resp.json()["error"]
    assert body["request_id"] == resp.headers["X-Request-ID"]
    return body


def test_models_and_generate(server):
    base, _ = server
    models = {m["id"]: m for m in requests.get(f"{base}/v1/models").json()["models"]}
    assert models["markov-melody"]["state"] == "ready"
    assert models["needs-download"]["state"] == "missing"
    payload = {"model": "markov-melody", "seed": 5, "length": 16}
    first = requests.post(f"{base}/v1/generate", json=payload)
    second = requests.post(f"{base}/v1/generate", json=payload)
    assert first.status_code == 200 and first.json()["notes"]
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert first.content == second.content


def test_every_error_status(server):
    base, log = server
    url = f"{base}/v1/generate"
    assert (
        err(requests.post(url, data="{oops", headers={"Content-Type": "application/json"}), 400)["code"]
        == "malformed_json"
    )
    assert (
        err(requests.post(url, json={"model": "markov-melody", "length": "long"}), 400)["details"]["field"] == "/length"
    )
    assert "markov-melody" in err(requests.post(url, json={"model": "nope"}), 404)["details"]["known_models"]
    assert (
        err(requests.post(url, json={"model": "markov-melody", "primer": "x" * 5000}), 413)["code"]
        == "payload_too_large"
    )
    assert (
        err(requests.post(url, json={"model": "markov-melody", "mode": "interpolate"}), 422)["code"]
        == "mode_not_supported"
    )
    unavailable = err(requests.post(url, json={"model": "needs-download", "seed": 1}), 503)
    assert "magenta-api fetch needs-download" in json.dumps(unavailable)
    bug = requests.post(url, json={"model": "faulty-model"}, headers={"X-Request-ID": "trace-me"})
    body = err(bug, 500)
    assert body["request_id"] == "trace-me" and "secret" not in bug.text and "Traceback" not in bug.text
    text = log.read_text()
    assert "[trace-me]" in text and "ZeroDivisionError" in text  # the log keeps what the client must not see


def test_long_urls_and_headers_are_json_errors_with_a_request_id(server):
    base, _ = server
    assert err(requests.get(f"{base}/v1/models?x={'a' * 9000}"), 414)["code"] == "uri_too_long"
    assert err(requests.get(f"{base}/v1/models?x={'a' * 100_000}"), 414)["message"]
    big_header = requests.get(f"{base}/v1/models", headers={"X-Big": "b" * 9000})
    assert err(big_header, 431)["code"] == "request_header_fields_too_large"
    many = requests.get(f"{base}/v1/models", headers={f"X-H{i}": "v" for i in range(150)})
    assert err(many, 431)["code"] == "request_header_fields_too_large"
    assert requests.get(f"{base}/v1/models?x={'a' * 4000}").status_code == 200


def test_stage_lines_are_logged_with_request_id(server):
    base, log = server
    requests.post(f"{base}/v1/generate", json={"model": "markov-melody", "seed": 77}, headers={"X-Request-ID": "r77"})
    lines = [ln for ln in log.read_text().splitlines() if "[r77]" in ln]
    for name in ("validate", "cache", "load", "generate"):
        assert any(f"stage={name}" in ln for ln in lines), name
