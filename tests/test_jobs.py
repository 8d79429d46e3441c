"""Async jobs on a real Redis, run in this process by RQ's own SimpleWorker: states, results equal to
/v1/generate's, errors with their status, ownership by key, cancel, expiry, an unreachable Redis."""

import time

import pytest
import redis
import toy_plugin
from conftest import free_port
from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)
from rq import Queue, SimpleWorker

from magenta_api import jobs
from magenta_api.auth import KeyStore
from magenta_api.testing import make_app

BODY = {"model": "toy-a", "seed": 11, "num_outputs": 2}


@pytest.fixture
def jobs_app(tmp_path, redis_url):
    app = make_app(tmp_path, plugins=[toy_plugin], models=dict(toy_plugin.TOY_MODELS), redis_url=redis_url)
    jobs.use_service(app.extensions["magenta_api"])
    yield app
    jobs.use_service(None)


def work(redis_url):
    """Run every queued job in this process (RQ's SimpleWorker, burst mode), as `magenta-api worker` would."""
    connection = redis.Redis.from_url(redis_url)
    SimpleWorker([Queue(jobs.QUEUE_NAME, connection=connection)], connection=connection).work(burst=True)


def test_a_job_answers_what_generate_answers(jobs_app, redis_url):
    client = jobs_app.test_client()
    direct = client.post("/v1/generate", json={**BODY, "seed": 12})
    submitted = client.post("/v1/jobs", json={**BODY, "seed": 12})
    assert submitted.status_code == 202
    job = submitted.get_json()
    assert submitted.headers["Location"] == f"/v1/jobs/{job['id']}" == job["location"]
    assert job["state"] == "queued" and job["progress"] == {"stage": "queued", "fraction": 0.0}
    assert job["model"] == "toy-a" and job["attempts"] == 0
    pending = client.get(f"/v1/jobs/{job['id']}/result")
    assert pending.status_code == 202 and pending.headers["Retry-After"] == "2"
    work(redis_url)
    done = client.get(job["location"]).get_json()
    assert done["state"] == "succeeded" and done["progress"] == {"stage": "done", "fraction": 1.0}
    assert done["attempts"] == 1 and done["seed"] == 12 and done["cache"] == "HIT"  # the cache is shared
    assert done["result"] == direct.get_json()
    assert 0 < done["expires_in"] <= 24 * 3600 and done["started_at"] and done["ended_at"]
    result = client.get(done["result_url"])
    assert result.status_code == 200 and result.data == direct.data and result.headers["X-Seed"] == "12"


def test_midi_result_and_unseeded_job(jobs_app, redis_url):
    client = jobs_app.test_client()
    job = client.post("/v1/jobs", json={"model": "toy-a", "format": "midi"}).get_json()
    work(redis_url)
    done = client.get(job["location"]).get_json()
    assert done["state"] == "succeeded" and done["content_type"] == "audio/midi" and "result" not in done
    assert isinstance(done["seed"], int) and "cache" in done and done["cache"] is None
    midi = client.get(done["result_url"])
    assert midi.data[:4] == b"MThd" and midi.headers["X-Seed"] == str(done["seed"])


def test_bad_bodies_are_refused_at_submit_and_nothing_is_queued(jobs_app, redis_url):
    client = jobs_app.test_client()
    assert client.post("/v1/jobs", json={"model": "nope"}).status_code == 404
    assert client.post("/v1/jobs", json={"model": "toy-a", "bogus": 1}).status_code == 400
    assert client.post("/v1/jobs", json={"model": "toy-b"}).status_code == 422  # continue without primer
    assert client.post("/v1/jobs", data="{", content_type="application/json").status_code == 400
    assert Queue(jobs.QUEUE_NAME, connection=redis.Redis.from_url(redis_url)).count == 0


def test_a_domain_error_in_the_worker_fails_the_job_with_its_status(jobs_app, redis_url, tmp_path):
    client = jobs_app.test_client()
    job = client.post("/v1/jobs", json={"model": "toy-a", "explode": True}).get_json()
    work(redis_url)
    failed = client.get(job["location"]).get_json()
    assert failed["state"] == "failed" and failed["status"] == 500 and failed["error"]["code"] == "internal_error"
    assert "quote the job id" in failed["error"]["message"]
    assert client.get(f"{job['location']}/result").status_code == 500

    models = {"toy-a": dict(toy_plugin.TOY_MODELS["toy-a"])}
    worker_app = make_app(tmp_path / "w", plugins=[toy_plugin], models={**models, "toy-a": {**models["toy-a"]}})
    jobs.use_service(worker_app.extensions["magenta_api"])  # a worker whose models.yaml lost nothing
    job = client.post("/v1/jobs", json={"model": "toy-a", "length": 64}).get_json()
    limited = make_app(
        tmp_path / "w2",
        plugins=[toy_plugin],
        models={"toy-a": {**models["toy-a"], "limits": {"length": 8}}},
    )
    jobs.use_service(limited.extensions["magenta_api"])  # the worker refuses what the API accepted
    work(redis_url)
    failed = client.get(job["location"]).get_json()
    assert failed["state"] == "failed" and failed["status"] == 422 and failed["error"]["code"] == "over_limit"
    result = client.get(f"{job['location']}/result")
    assert result.status_code == 422 and result.get_json()["error"]["code"] == "over_limit"


def test_cancel_a_queued_job_and_delete_an_ended_one(jobs_app, redis_url):
    client = jobs_app.test_client()
    job = client.post("/v1/jobs", json=BODY).get_json()
    canceled = client.delete(job["location"]).get_json()
    assert canceled["state"] == "canceled" and 0 < canceled["expires_in"] <= 24 * 3600
    work(redis_url)  # nothing runs it
    assert client.get(job["location"]).get_json()["state"] == "canceled"
    other = client.post("/v1/jobs", json=BODY).get_json()
    work(redis_url)
    assert client.delete(other["location"]).get_json()["state"] == "deleted"
    gone = client.get(other["location"])
    assert gone.status_code == 404 and gone.get_json()["error"]["code"] == "unknown_job"


def test_results_expire_after_job_ttl(tmp_path, redis_url):
    app = make_app(tmp_path, plugins=[toy_plugin], models=dict(toy_plugin.TOY_MODELS), redis_url=redis_url, job_ttl_s=3)
    jobs.use_service(app.extensions["magenta_api"])
    client = app.test_client()
    job = client.post("/v1/jobs", json=BODY).get_json()
    work(redis_url)
    assert 0 < client.get(job["location"]).get_json()["expires_in"] <= 3
    time.sleep(3.2)
    assert client.get(job["location"]).status_code == 404
    jobs.use_service(None)


def test_jobs_belong_to_their_key(tmp_path, redis_url):
    keys = KeyStore(tmp_path / "keys.json")
    alice, bob = keys.add("alice"), keys.add("bob")
    app = make_app(
        tmp_path,
        plugins=[toy_plugin],
        models=dict(toy_plugin.TOY_MODELS),
        redis_url=redis_url,
        api_keys_file=keys.path,
        rate_limit="3/minute",
    )
    client = app.test_client()
    assert client.post("/v1/jobs", json=BODY).status_code == 401
    job = client.post("/v1/jobs", json=BODY, headers={"X-API-Key": alice}).get_json()
    assert client.get(job["location"], headers={"X-API-Key": bob}).status_code == 404
    assert client.delete(job["location"], headers={"X-API-Key": bob}).status_code == 404
    assert client.get(job["location"], headers={"X-API-Key": alice}).status_code == 200
    assert client.get(job["location"], headers={"X-API-Key": alice}).status_code == 200
    assert client.get(job["location"], headers={"X-API-Key": alice}).status_code == 429  # 3/minute, polls count


def test_no_redis_url_no_job_routes_and_redis_down_is_a_503(tmp_path, client):
    assert client.post("/v1/jobs", json=BODY).status_code == 404
    down = make_app(
        tmp_path,
        plugins=[toy_plugin],
        models=dict(toy_plugin.TOY_MODELS),
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    ).test_client()
    resp = down.post("/v1/jobs", json=BODY)
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "jobs_unavailable"
    assert resp.headers["Retry-After"] == "5"
    assert down.get("/v1/jobs/abc").status_code == 503
    with pytest.raises(jobs.JobsUnavailable, match="REDIS_URL"):
        jobs.JobQueue(app_settings(tmp_path), None)


def app_settings(tmp_path):
    from magenta_api.testing import make_settings

    return make_settings(tmp_path)


def test_the_openapi_document_lists_the_job_routes(jobs_app):
    doc = jobs_app.test_client().get("/v1/openapi.json").get_json()
    assert "202" in doc["paths"]["/v1/jobs"]["post"]["responses"]
    assert {"get", "delete"} <= set(doc["paths"]["/v1/jobs/{job_id}"])
    assert "/v1/jobs/{job_id}/result" in doc["paths"]


def test_the_worker_preloads_the_models_that_are_ready(tmp_path):
    models = {**toy_plugin.TOY_MODELS, "broken": {"family": "unbuildable"}, "no-family": {"family": "absent"}}
    app = make_app(tmp_path, plugins=[toy_plugin], models=models)
    service = app.extensions["magenta_api"]
    assert sorted(jobs.preload(service)) == ["toy-a", "toy-b"]  # the unbuildable one is logged, not fatal
    assert service.loader.is_loaded("toy-a") and not service.loader.is_loaded("broken")
