"""Rate limits (Flask-Limiter): per key and per IP, shared through a real Redis, 429 with Retry-After and
RateLimit headers, probes never limited, nothing limited by default."""

import toy_plugin
from conftest import free_port
from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)

from magenta_api.auth import KeyStore
from magenta_api.config import Settings
from magenta_api.testing import make_app

BODY = {"model": "toy-a", "seed": 3}


def app(tmp_path, **settings):
    return make_app(tmp_path, plugins=[toy_plugin], models=dict(toy_plugin.TOY_MODELS), **settings).test_client()


def test_no_limit_by_default(client):
    for _ in range(30):
        resp = client.get("/v1/models")
        assert resp.status_code == 200
    assert "RateLimit-Limit" not in resp.headers and "X-RateLimit-Limit" not in resp.headers
    assert Settings.from_env({"RATE_LIMIT": "60/minute;1000/day"}).rate_limit == "60/minute;1000/day"


def test_per_ip_limit_in_memory_then_429_with_headers(tmp_path):
    client = app(tmp_path, rate_limit="3/minute;100/day")
    answers = [client.get("/v1/models") for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert answers[0].headers["RateLimit-Limit"] == "3" and answers[0].headers["RateLimit-Remaining"] == "2"
    assert answers[2].headers["RateLimit-Remaining"] == "0"
    assert 0 < int(answers[0].headers["RateLimit-Reset"]) <= 60
    assert answers[0].headers["RateLimit-Policy"] == "3;w=60"
    over = client.post("/v1/generate", json=BODY)  # one budget for every route
    assert over.status_code == 429
    assert 0 < int(over.headers["Retry-After"]) <= 60
    assert over.headers["X-RateLimit-Limit"] == "3" and over.headers["X-RateLimit-Remaining"] == "0"
    err = over.get_json()["error"]
    assert err["code"] == "too_many_requests" and "3 per 1 minute" in err["message"] and err["request_id"]
    for _ in range(5):  # probes are never limited
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code in (200, 503)
    other_ip = client.get("/v1/models", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert other_ip.status_code == 200  # per IP


def test_per_key_limits_and_the_default_for_keys_without_one(tmp_path):
    keys = KeyStore(tmp_path / "keys.json")
    small = keys.add("small", rate_limit="2/minute")
    plain = keys.add("plain")
    client = app(tmp_path, api_keys_file=keys.path, rate_limit="4/minute")
    codes = [client.get("/v1/models", headers={"X-API-Key": small}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    codes = [client.get("/v1/models", headers={"X-API-Key": plain}).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 200, 429]  # its own budget, same IP


def test_keys_without_any_limit_are_not_limited(tmp_path):
    keys = KeyStore(tmp_path / "keys.json")
    key = keys.add("free")
    client = app(tmp_path, api_keys_file=keys.path)
    for _ in range(10):
        resp = client.get("/v1/models", headers={"X-API-Key": key})
        assert resp.status_code == 200
    assert "RateLimit-Limit" not in resp.headers


def test_limit_shared_by_replicas_through_redis(tmp_path, redis_url):
    replicas = [app(tmp_path / n, rate_limit="5/minute", redis_url=redis_url) for n in ("a", "b")]
    codes = [replicas[i % 2].get("/v1/models").status_code for i in range(6)]
    assert codes == [200] * 5 + [429]
    assert replicas[0].get("/v1/models").status_code == 429


def test_redis_down_falls_back_to_memory_and_serves(tmp_path):
    client = app(tmp_path, rate_limit="2/minute", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    codes = [client.get("/v1/models").status_code for _ in range(3)]
    assert codes[:2] == [200, 200] and codes[2] == 429  # counted in memory while Redis is away
