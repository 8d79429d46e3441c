"""Dynamic batching (magenta_api.batching): concurrent requests share a pass, each keeps its own random
stream, a full queue answers 503 overloaded with Retry-After, and a request does not wait past its deadline.

The queue tests hold the model's thread on an event so that what is queued is known; the HTTP tests run a
real threaded HTTP server on 127.0.0.1 with the embedded MusicVAE model and real concurrent clients."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from batching_support import Servers, assert_same_answers, embedded_model, post_one_by_one, post_together
from musicvae_support import melody

from magenta_api import metrics
from magenta_api.batching import Batcher, ModelQueue, RowStreams, ServingConfig
from magenta_api.errors import Overloaded, Unprocessable
from magenta_api.family import Family, GenerateRequest, GenerateResult, ModelSpec


def req(mode="a", n=1, seed=0) -> GenerateRequest:
    return GenerateRequest(
        mode=mode,
        num_outputs=n,
        temperature=1.0,
        length=None,
        qpm=120.0,
        seed=seed,
        rng=np.random.default_rng(seed),
    )


class Held(Family):
    """A family whose batches wait for ``gate`` and record what ran together; mode 'bad' fails alone."""

    name = "held"

    def __init__(self):
        super().__init__(ModelSpec(id="held", family="held"), None)
        self.gate = threading.Event()
        self.batches: list = []

    def batch_key(self, request):
        return None if request.mode == "alone" else request.mode[0]

    def generate(self, request):
        self.gate.wait(10)
        self.batches.append([request.seed])
        if request.mode == "bad":
            raise Unprocessable("bad request")
        return GenerateResult([], {"seed": request.seed, "draw": float(request.rng.random())})

    def generate_batch(self, requests):
        self.gate.wait(10)
        self.batches.append([r.seed for r in requests])
        return [
            Unprocessable("bad request")
            if r.mode == "bad"
            else GenerateResult([], {"seed": r.seed, "draw": float(r.rng.random())})
            for r in requests
        ]


def queued(queue: ModelQueue, count: int) -> None:
    """Wait until ``count`` requests wait in the queue (the model's thread holds the one it took)."""
    end = time.monotonic() + 10
    while queue.depth < count:
        assert time.monotonic() < end, "requests did not reach the queue"
        time.sleep(0.005)


def submit_all(queue, requests_):
    pool = ThreadPoolExecutor(8)
    return pool, [pool.submit(queue.submit, r) for r in requests_]


def test_waiting_requests_with_one_key_run_as_one_batch_in_order():
    family = Held()
    queue = ModelQueue("held", family, ServingConfig(max_batch_size=8, max_wait_ms=0, max_queue=16), None)
    pool, first = submit_all(queue, [req(seed=0)])
    time.sleep(0.05)  # the thread took seed 0 and waits on the gate
    more = [req("a", seed=s) for s in (1, 2)] + [req("b", seed=3)] + [req("a", seed=4)]
    futures = [pool.submit(queue.submit, r) for r in more]
    queued(queue, 4)
    family.gate.set()
    results = [f.result(10) for f in first + futures]
    assert [r.extra["seed"] for r in results] == [0, 1, 2, 3, 4]
    assert family.batches == [[0], [1, 2, 4], [3]]  # the oldest first; 'b' does not join an 'a' batch
    # each request drew from its own generator, as it would alone
    assert [r.extra["draw"] for r in results] == [np.random.default_rng(s).random() for s in range(5)]


def test_a_batch_holds_at_most_max_batch_size_rows():
    family = Held()
    queue = ModelQueue("held", family, ServingConfig(max_batch_size=4, max_wait_ms=0, max_queue=16), None)
    pool, futures = submit_all(queue, [req(seed=0)])
    time.sleep(0.05)
    futures += [pool.submit(queue.submit, req(n=2, seed=s)) for s in (1, 2, 3)]
    queued(queue, 3)
    family.gate.set()
    for f in futures:
        f.result(10)
    assert family.batches == [[0], [1, 2], [3]]


def test_requests_arriving_just_after_a_batch_join_those_that_waited_for_it():
    family = Held()
    queue = ModelQueue("held", family, ServingConfig(max_batch_size=8, max_wait_ms=300, max_queue=16), None)
    pool, futures = submit_all(queue, [req("alone", seed=0)])  # taken at once: it batches with nothing
    time.sleep(0.05)
    futures.append(pool.submit(queue.submit, req(seed=1)))  # waits while seed 0 runs
    queued(queue, 1)
    family.gate.set()
    futures[0].result(10)  # the client of the first batch comes back at once
    futures.append(pool.submit(queue.submit, req(seed=2)))
    assert [f.result(10).extra["seed"] for f in futures] == [0, 1, 2]
    assert family.batches == [[0], [1, 2]]


def test_one_requests_error_does_not_fail_the_others():
    family = Held()
    family.gate.set()
    queue = ModelQueue("held", family, ServingConfig(max_wait_ms=50), None)
    _, futures = submit_all(queue, [req("a", seed=1), req("bad", seed=2), req("alone", seed=3)])
    assert futures[0].result(10).extra["seed"] == 1
    with pytest.raises(Unprocessable):
        futures[1].result(10)
    assert futures[2].result(10).extra["seed"] == 3
    with pytest.raises(Unprocessable):  # a request alone raises its own error too
        queue.submit(req("bad", seed=4))


def test_a_full_queue_refuses_at_once_with_a_retry_after():
    family = Held()
    queue = ModelQueue("held", family, ServingConfig(max_batch_size=1, max_wait_ms=0, max_queue=2), None)
    pool, futures = submit_all(queue, [req(seed=0)])
    time.sleep(0.05)
    futures += [pool.submit(queue.submit, req(seed=s)) for s in (1, 2)]
    queued(queue, 2)
    with pytest.raises(Overloaded) as refused:
        queue.submit(req(seed=3))
    assert refused.value.code == "overloaded"
    assert refused.value.details["retry_after"] >= 1 and refused.value.details["queue_depth"] == 2
    family.gate.set()
    assert [f.result(10).extra["seed"] for f in futures] == [0, 1, 2]
    assert queue.submit(req(seed=4)).extra["seed"] == 4  # answers normally right after


def test_a_request_queued_past_its_deadline_is_refused_and_leaves_the_queue():
    family = Held()
    queue = ModelQueue("held", family, ServingConfig(max_batch_size=1, max_wait_ms=0, max_queue_wait_s=0.3), None)
    _, futures = submit_all(queue, [req(seed=0)])
    time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(Overloaded, match="past its deadline"):
        queue.submit(req(seed=1))
    assert time.monotonic() - started < 5
    assert queue.depth == 0
    family.gate.set()
    assert futures[0].result(10).extra["seed"] == 0


def test_a_batch_that_fails_as_a_whole_fails_each_request():
    class Broken(Held):
        def generate_batch(self, requests):
            raise RuntimeError("bug")

    family = Broken()
    family.gate.set()
    queue = ModelQueue("held", family, ServingConfig(max_wait_ms=100), None)
    _, futures = submit_all(queue, [req(seed=1), req(seed=2)])
    for f in futures:
        with pytest.raises(RuntimeError, match="bug"):
            f.result(10)


def test_row_streams_give_each_request_its_own_numbers():
    a, b = np.random.default_rng(1), np.random.default_rng(2)
    drawn = RowStreams([a, b], [1, 3], axis=1).random((4, 4, 5), dtype=np.float32)
    assert drawn.shape == (4, 4, 5)
    assert np.array_equal(drawn[:, :1], np.random.default_rng(1).random((4, 1, 5), dtype=np.float32))
    assert np.array_equal(drawn[:, 1:], np.random.default_rng(2).random((4, 3, 5), dtype=np.float32))
    normal = RowStreams([np.random.default_rng(3)], [2]).standard_normal(2)
    assert np.array_equal(normal, np.random.default_rng(3).standard_normal(2))


def test_serving_config_reads_the_models_yaml_entry_and_batching_off_runs_in_the_thread():
    spec = ModelSpec(id="m", family="held", serving={"max_batch_size": 4, "max_queue": 3})
    assert ServingConfig.of(spec) == ServingConfig(max_batch_size=4, max_wait_ms=2.0, max_queue=3, max_queue_wait_s=30)
    family = Held()
    family.gate.set()
    result = Batcher(enabled=False).run(spec, family, req(seed=7), None)
    assert result.extra["seed"] == 7 and family.batches == [[7]]


# -- through HTTP, with the embedded MusicVAE model -------------------------------------------------------


@pytest.fixture
def serve(tmp_path):
    with Servers(tmp_path) as servers:

        def start(name, batching, serving):
            return servers.start(name, "musicvae", embedded_model("embedded-mel_2bar", serving), batching)

        yield start


PAYLOADS = [
    *({"seed": s, "num_outputs": 1 + s % 3} for s in range(10)),
    {"seed": 11, "num_outputs": 2, "temperature": 0.9},
    {"seed": 12, "length": 16},
    {"seed": 13, "mode": "decode", "z": [[0.1] * 64, [-0.2] * 64]},
    {"seed": 14, "mode": "interpolate", "inputs": [melody(2), melody(2, offset=5)], "num_outputs": 3},
    {"seed": 15, "mode": "similar", "inputs": [melody(2)], "num_outputs": 2},
    {"seed": 16, "mode": "encode", "inputs": [melody(2)]},
    {"seed": 17, "format": "midi"},
    {"seed": 18, "mode": "interpolate", "inputs": [melody(2), melody(1)]},  # 422: one input too short
]


def batches_so_far() -> float:
    return metrics.REGISTRY.get_sample_value("magenta_api_batch_size_count", {"model": "embedded-mel_2bar"}) or 0.0


def test_seeded_requests_give_the_same_bytes_batched_or_not(serve):
    plain = serve("plain", False, {})
    batched = serve("batched", True, {"max_batch_size": 64, "max_wait_ms": 300})
    alone = post_one_by_one(plain.url, "embedded-mel_2bar", PAYLOADS)
    assert [r.status_code for r in alone] == [200] * (len(PAYLOADS) - 1) + [422]
    before = batches_so_far()
    together = post_together(batched.url, "embedded-mel_2bar", PAYLOADS)
    assert_same_answers(PAYLOADS, alone, together)
    ran = batches_so_far() - before
    assert ran < len(PAYLOADS) - 4, f"{ran} passes for {len(PAYLOADS)} concurrent requests: nothing was batched"


def test_a_burst_past_max_queue_gets_503_overloaded_then_the_service_answers(serve):
    server = serve("small-queue", True, {"max_batch_size": 1, "max_wait_ms": 0, "max_queue": 1})
    burst = 24
    barrier = threading.Barrier(burst)

    def post(seed):
        barrier.wait(10)
        body = {"model": "embedded-mel_2bar", "seed": seed, "num_outputs": 64}
        return requests.post(server.url, json=body, timeout=60)

    with ThreadPoolExecutor(burst) as pool:
        answers = list(pool.map(post, range(burst)))
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 503}, statuses
    refused = [r for r in answers if r.status_code == 503]
    assert refused and len(refused) < burst
    for r in refused:
        assert r.json()["error"]["code"] == "overloaded"
        assert int(r.headers["Retry-After"]) >= 1
    after = requests.post(server.url, json={"model": "embedded-mel_2bar", "seed": 1}, timeout=60)
    assert after.status_code == 200
