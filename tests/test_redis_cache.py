"""The result cache in a real Redis (CACHE_URL=redis://...): shared by services, expiring, best effort."""

import time

import pytest
import redis
import toy_plugin
from conftest import free_port
from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)

from magenta_api.cache import CachedResponse, DiskCache, NullCache
from magenta_api.config import Settings
from magenta_api.redis_cache import KEY_PREFIX, RedisCache
from magenta_api.service import result_cache
from magenta_api.testing import make_app, make_settings

BODY = {"model": "toy-a", "seed": 7, "num_outputs": 2}


def test_set_get_and_expiry(redis_url):
    cache = RedisCache(redis_url, ttl_s=1)
    assert cache.get("k") is None
    cache.set("k", CachedResponse(b"\x00MThd", "audio/midi", "x.mid"))
    cache.set("j", CachedResponse(b"{}", "application/json"))
    assert cache.get("k") == CachedResponse(b"\x00MThd", "audio/midi", "x.mid")
    assert cache.get("j") == CachedResponse(b"{}", "application/json", None)
    ttl = redis.Redis.from_url(redis_url).ttl(KEY_PREFIX + "k")
    assert 0 < ttl <= 1
    time.sleep(1.3)
    assert cache.get("k") is None
    assert cache.health()["state"] == "ok"


def test_two_apps_share_the_cache(tmp_path, redis_url):
    """A seeded request served by one replica is a HIT on the other (each with its own disk)."""
    apps = [
        make_app(
            tmp_path / name,
            plugins=[toy_plugin],
            models=dict(toy_plugin.TOY_MODELS),
            cache_url=redis_url,
            cache_ttl_s=60,
        ).test_client()
        for name in ("a", "b")
    ]
    first = apps[0].post("/v1/generate", json=BODY)
    assert first.status_code == 200 and first.headers["X-Cache"] == "MISS"
    second = apps[1].post("/v1/generate", json=BODY)
    assert second.headers["X-Cache"] == "HIT"
    assert second.data == first.data
    assert not (tmp_path / "a" / "cache").exists() and not (tmp_path / "b" / "cache").exists()
    ready = apps[1].get("/readyz").get_json()
    assert ready["cache"]["backend"] == "redis" and ready["cache"]["state"] == "ok"


def test_redis_down_degrades_but_serves(tmp_path):
    """No Redis listening: the music is made, X-Cache says MISS, /readyz says degraded."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client = make_app(tmp_path, plugins=[toy_plugin], models=dict(toy_plugin.TOY_MODELS), cache_url=dead).test_client()
    resp = client.post("/v1/generate", json=BODY)
    assert resp.status_code == 200 and resp.headers["X-Cache"] == "MISS"
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "degraded" and ready["degraded"] == ["cache"]
    assert ready["cache"]["errors"] >= 2 and "ConnectionError" in ready["cache"]["last_error"]


def test_recovers_when_redis_comes_back(redis_server):
    cache = RedisCache(redis_server.url(1), ttl_s=60)
    broken = RedisCache(f"redis://127.0.0.1:{free_port()}/0", ttl_s=60)
    broken.set("k", CachedResponse(b"x", "application/json"))
    assert broken.health()["state"] == "degraded"
    cache.set("k", CachedResponse(b"x", "application/json"))
    assert cache.health() == {"state": "ok", "backend": "redis", "errors": 0, "last_error": None}


def test_backend_selection(tmp_path):
    assert isinstance(result_cache(make_settings(tmp_path)), DiskCache)  # the default: one machine
    assert isinstance(result_cache(make_settings(tmp_path, cache_enabled=False, cache_url="redis://x")), NullCache)
    assert isinstance(result_cache(make_settings(tmp_path, cache_url="redis://127.0.0.1:1/0")), RedisCache)
    with pytest.raises(ValueError, match="CACHE_URL must be"):
        result_cache(make_settings(tmp_path, cache_url="memcached://x"))
    settings = Settings.from_env({"CACHE_URL": "redis://r:6379/2", "CACHE_TTL": "30"})
    assert (settings.cache_url, settings.cache_ttl_s) == ("redis://r:6379/2", 30)
    assert Settings.from_env({}).cache_url is None
