"""Replicas on 127.0.0.1, all real processes: one Redis, two API processes (`magenta-api serve`, gunicorn)
and a `magenta-api worker`. The cache, the rate limit, the keys and the jobs are shared; a job outlives an
API restart; a worker killed mid-job (SIGKILL) ends as retried or failed, visible from either API."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests
import slow_plugin
from conftest import free_port
from redis_support import redis_server  # noqa: F401  (fixture)

from magenta_api.auth import KeyStore

BIN = Path(sys.executable).parent
TESTS = Path(__file__).resolve().parent


class Cluster:
    def __init__(self, tmp: Path, redis_url: str):
        self.tmp = tmp
        self.keys = KeyStore(tmp / "keys.json")
        self.key = self.keys.add("main")
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(slow_plugin.install(tmp / "site")), str(TESTS)]),
            "MAGENTA_API_LOAD_PLUGINS": "slow",
            "REDIS_URL": redis_url,
            "CACHE_URL": redis_url,
            "API_KEYS_FILE": str(self.keys.path),
            "RATE_LIMIT": "10000/minute",
            "JOB_RETRIES": "1",
            "JOB_HEARTBEAT_GRACE": "2",
            "JOB_TTL": "600",
            "LOG_LEVEL": "INFO",
        }
        self.procs: list[subprocess.Popen] = []
        self.apis = [self.start_api(name) for name in ("a", "b")]
        self.worker = self.start_worker()

    def _spawn(self, name: str, argv: list, **env) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115  (written by the process until it ends)
        proc = subprocess.Popen(
            argv, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def start_api(self, name: str) -> str:
        port = free_port()
        work = self.tmp / name
        self._spawn(
            name,
            [str(BIN / "magenta-api"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            MODEL_DIR=str(work / "models"),
            CACHE_DIR=str(work / "cache"),
        )
        base = f"http://127.0.0.1:{port}"
        wait(lambda: requests.get(f"{base}/healthz", timeout=2).ok, 90, f"API {name} on {port}")
        return base

    def start_worker(self) -> subprocess.Popen:
        proc = self._spawn("worker", [str(BIN / "magenta-api"), "worker"], MODEL_DIR=str(self.tmp / "w" / "models"))
        wait(lambda: worker_count(self.env["REDIS_URL"]) >= 1, 60, "the worker")
        return proc

    def horse(self) -> int:
        """The pid of the worker's work horse (the forked child running the job)."""
        pid = self.worker.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        assert children, "the worker has no work horse"
        return int(children[0])

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def worker_count(url: str) -> int:
    from rq import Worker

    return len(Worker.all(connection=redis.Redis.from_url(url)))


def wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, redis_server):
    url = redis_server.url(3)
    redis.Redis.from_url(url).flushdb()
    c = Cluster(tmp_path_factory.mktemp("replicas"), url)
    yield c
    c.stop()


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def job_state(base, key, job_id):
    return requests.get(f"{base}/v1/jobs/{job_id}", headers=auth(key), timeout=10).json()


def test_a_seeded_request_served_by_one_api_is_a_hit_on_the_other(cluster):
    a, b = cluster.apis
    body = {"model": "slow", "seed": 5, "num_outputs": 2}
    first = requests.post(f"{a}/v1/generate", json=body, headers=auth(cluster.key), timeout=30)
    assert first.status_code == 200 and first.headers["X-Cache"] == "MISS"
    second = requests.post(f"{b}/v1/generate", json=body, headers=auth(cluster.key), timeout=30)
    assert second.headers["X-Cache"] == "HIT" and second.content == first.content
    ready = requests.get(f"{b}/readyz", timeout=10).json()  # open: no key
    assert ready["cache"]["backend"] == "redis" and ready["cache"]["state"] == "ok"


def test_keys_on_every_replica_and_revocation(cluster):
    temp = cluster.keys.add("temp")
    for base in cluster.apis:
        assert requests.get(f"{base}/v1/models", timeout=10).status_code == 401
        wrong = requests.get(f"{base}/v1/models", headers=auth(temp + "x"), timeout=10)
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
        assert requests.get(f"{base}/v1/models", headers={"X-API-Key": temp}, timeout=10).status_code == 200
        assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
    revoked = subprocess.run(
        [str(BIN / "magenta-api"), "keys", "revoke", "temp"], env=cluster.env, capture_output=True, timeout=60
    )
    assert revoked.returncode == 0, revoked.stderr
    for base in cluster.apis:
        assert requests.get(f"{base}/v1/models", headers={"X-API-Key": temp}, timeout=10).status_code == 401


def test_the_rate_limit_is_shared_by_the_replicas(cluster):
    key = cluster.keys.add("metered", rate_limit="4/minute")
    a, b = cluster.apis
    codes = [requests.get(f"{base}/v1/models", headers=auth(key), timeout=10).status_code for base in (a, b, a, b)]
    assert codes == [200, 200, 200, 200]
    for base in (a, b):  # the n+1-th request to either
        over = requests.get(f"{base}/v1/models", headers=auth(key), timeout=10)
        assert over.status_code == 429 and int(over.headers["Retry-After"]) > 0
        assert over.headers["RateLimit-Remaining"] == "0" and over.json()["error"]["code"] == "too_many_requests"


def test_a_job_submitted_to_one_api_completes_and_is_read_from_the_other(cluster):
    a, b = cluster.apis
    body = {"model": "slow", "seed": 9}
    submitted = requests.post(f"{a}/v1/jobs", json=body, headers=auth(cluster.key), timeout=30)
    assert submitted.status_code == 202
    job_id = submitted.json()["id"]
    assert submitted.headers["Location"] == f"/v1/jobs/{job_id}"
    done = wait(lambda: (s := job_state(b, cluster.key, job_id))["state"] == "succeeded" and s, 60, "the job")
    direct = requests.post(f"{b}/v1/generate", json=body, headers=auth(cluster.key), timeout=30)
    assert done["result"] == direct.json() and done["attempts"] == 1


def start_held_job(cluster, base, hold: Path) -> str:
    hold.touch()
    running = Path(str(hold) + ".running")
    running.unlink(missing_ok=True)
    resp = requests.post(
        f"{base}/v1/jobs", json={"model": "slow", "hold": str(hold)}, headers=auth(cluster.key), timeout=30
    )
    assert resp.status_code == 202, resp.text
    wait(running.exists, 60, "the job to start")
    return resp.json()["id"]


def test_a_killed_work_horse_is_retried_then_failed(cluster):
    a, b = cluster.apis
    hold = cluster.tmp / "hold-horse"
    job_id = start_held_job(cluster, a, hold)
    running = Path(str(hold) + ".running")
    running.unlink()
    os.kill(cluster.horse(), signal.SIGKILL)
    wait(running.exists, 60, "the retry to start")
    retried = job_state(b, cluster.key, job_id)
    assert retried["state"] == "running" and retried["attempts"] == 2 and retried["retried"] is True
    os.kill(cluster.horse(), signal.SIGKILL)  # no retry left
    failed = wait(lambda: (s := job_state(b, cluster.key, job_id))["state"] == "failed" and s, 30, "failed")
    assert failed["error"]["code"] == "worker_lost" and failed["status"] == 503
    assert "signal 9" in failed["error"]["details"]["reason"] and failed["attempts"] == 2
    result = requests.get(f"{a}/v1/jobs/{job_id}/result", headers=auth(cluster.key), timeout=10)
    assert result.status_code == 503 and result.json()["error"]["code"] == "worker_lost"
    hold.unlink()


def test_a_killed_worker_is_noticed_and_its_job_runs_again(cluster):
    a, b = cluster.apis
    hold = cluster.tmp / "hold-worker"
    job_id = start_held_job(cluster, a, hold)
    horse = cluster.horse()  # RQ gives its work horse a session of its own: kill both, as a node loss would
    os.kill(cluster.worker.pid, signal.SIGKILL)
    os.kill(horse, signal.SIGKILL)
    cluster.worker.wait()
    requeued = wait(
        lambda: (s := job_state(b, cluster.key, job_id))["state"] == "queued" and s, 30, "the job to be abandoned"
    )
    assert requeued["retried"] is True and requeued["attempts"] == 1
    cluster.worker = cluster.start_worker()
    hold.unlink()
    done = wait(lambda: (s := job_state(a, cluster.key, job_id))["state"] == "succeeded" and s, 60, "the rerun")
    assert done["attempts"] == 2 and done["result"]["model"] == "slow"


def test_a_job_outlives_an_api_restart_and_a_running_job_can_be_canceled(cluster):
    a, b = cluster.apis
    hold = cluster.tmp / "hold-restart"
    job_id = start_held_job(cluster, a, hold)
    queued = requests.post(f"{a}/v1/jobs", json={"model": "slow", "seed": 1}, headers=auth(cluster.key), timeout=30)
    queued_id = queued.json()["id"]
    api_a = next(p for p in cluster.procs if p.args[2:4] == ["--host", "127.0.0.1"] and a.endswith(p.args[5]))
    os.killpg(api_a.pid, signal.SIGTERM)
    api_a.wait(30)
    restarted = cluster.start_api("a2")
    assert job_state(restarted, cluster.key, job_id)["state"] == "running"
    canceled = requests.delete(f"{restarted}/v1/jobs/{queued_id}", headers=auth(cluster.key), timeout=10).json()
    assert canceled["state"] == "canceled"
    stopping = requests.delete(f"{b}/v1/jobs/{job_id}", headers=auth(cluster.key), timeout=10).json()
    assert stopping["state"] in ("canceling", "canceled")
    final = wait(lambda: (s := job_state(restarted, cluster.key, job_id))["state"] == "canceled" and s, 30, "cancel")
    assert final["attempts"] == 1 and "retried" not in final  # a stopped job is never retried
    hold.unlink()
    after = requests.post(f"{restarted}/v1/jobs", json={"model": "slow"}, headers=auth(cluster.key), timeout=30)
    done = wait(lambda: job_state(b, cluster.key, after.json()["id"])["state"] == "succeeded", 60, "the next job")
    assert done
