"""Server-Sent Events from POST /v1/generate: notes arrive while the model still works, the final event
is the non-streamed body, a client that leaves stops the generation; refusals keep their status."""

import json
import time

import pytest
import stream_plugin

from magenta_api.testing import make_app


@pytest.fixture
def client(tmp_path):
    stream_plugin.RUNS.clear()
    return make_app(tmp_path, plugins=[stream_plugin], models=stream_plugin.MODELS).test_client()


def events(resp):
    """(event, data) pairs as they arrive, comments skipped."""
    buffer = b""
    for chunk in resp.response:
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            lines = [ln for ln in block.decode().split("\n") if ln and not ln.startswith(":")]
            if lines:
                fields = dict(ln.split(": ", 1) for ln in lines)
                yield fields["event"], fields["data"]


BODY = {"model": "slow", "seed": 4, "length": 12, "delay": 0.05}


def test_notes_arrive_before_the_generation_finishes_and_the_result_is_the_plain_body(client):
    resp = client.post("/v1/generate", json=BODY, headers={"Accept": "text/event-stream"}, buffered=False)
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    stream = events(resp)
    kind, data = next(stream)
    assert kind == "start" and json.loads(data) == {"model": "slow", "mode": "sample", "seed": 4, "n": 1}
    kind, data = next(stream)
    run = stream_plugin.RUNS[-1]
    assert kind == "notes" and not run["finished"] and run["steps"] < 12  # the first note, mid-generation
    first = json.loads(data)
    assert first["output"] == 0 and first["step"] == 0 and len(first["notes"]) == 1
    rest = list(stream)
    resp.close()
    assert [k for k, _ in rest] == ["notes"] * 11 + ["result"]
    streamed_notes = [first["notes"][0]] + [json.loads(d)["notes"][0] for k, d in rest if k == "notes"]
    plain = client.post("/v1/generate", json=BODY)
    assert rest[-1][1].encode() == plain.data  # the same bytes as the non-streamed JSON body
    assert streamed_notes == json.loads(plain.data)["sequences"][0]["notes"]


def test_stream_true_in_the_body_and_a_cache_hit_streams_the_result_at_once(client):
    resp = client.post("/v1/generate", json={**BODY, "stream": True}, buffered=False)
    got = list(events(resp))
    assert got[0][0] == "start" and got[-1][0] == "result"
    again = list(events(client.post("/v1/generate", json={**BODY, "stream": True}, buffered=False)))
    assert [k for k, _ in again] == ["start", "result"] and again[-1][1] == got[-1][1]  # cached: no notes
    assert len(stream_plugin.RUNS) == 1


def test_a_client_that_leaves_stops_the_generation(client):
    resp = client.post(
        "/v1/generate", json={**BODY, "length": 400, "delay": 0.02, "seed": 9}, headers={"Accept": "text/event-stream"},
        buffered=False,
    )  # fmt: skip
    stream = events(resp)
    assert next(stream)[0] == "start" and next(stream)[0] == "notes"
    resp.close()  # the connection drops: the response is closed
    run = stream_plugin.RUNS[-1]
    assert run["ended"].wait(5)
    assert not run["finished"] and run["steps"] < 400  # stopped at its next step, the worker is free
    time.sleep(0.1)
    assert run["steps"] == stream_plugin.RUNS[-1]["steps"]


def test_refusals_keep_their_status_and_errors_during_the_stream_are_events(client):
    resp = client.post("/v1/generate", json={"model": "nope", "stream": True})
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "unknown_model"
    resp = client.post("/v1/generate", json={**BODY, "length": 1000}, headers={"Accept": "text/event-stream"})
    assert resp.status_code == 422 and resp.get_json()["error"]["code"] == "over_limit"
    resp = client.post("/v1/generate", json={**BODY, "stream": True, "format": "midi"})
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "stream_format"
    got = list(events(client.post("/v1/generate", json={**BODY, "stream": True, "fail_at": 3}, buffered=False)))
    assert [k for k, _ in got] == ["start", "notes", "notes", "notes", "error"]  # after the start: an event
    error = json.loads(got[-1][1])["error"]
    assert error["code"] == "test_refusal" and error["details"] == {"step": 3} and error["request_id"]
    got = list(events(client.post("/v1/generate", json={**BODY, "stream": True, "explode_at": 1}, buffered=False)))
    error = json.loads(got[-1][1])["error"]
    assert error["code"] == "internal_error" and "secret" not in got[-1][1]


def test_melody_rnn_streams_each_note_once_it_is_decided(tmp_path):
    import magenta_api_embedded as emb
    import magenta_api_melody_rnn
    import magenta_api_musicvae

    plugins = [magenta_api_musicvae, magenta_api_melody_rnn, emb]
    client = make_app(tmp_path, offline=True, plugins=plugins).test_client()
    for body in (
        {"model": "embedded-basic_rnn", "seed": 3, "length": 64},
        {"model": "embedded-basic_rnn", "seed": 3, "length": 48, "num_outputs": 2},  # the batched path
    ):
        got = list(events(client.post("/v1/generate", json={**body, "stream": True}, buffered=False)))
        plain = json.loads(client.post("/v1/generate", json=body).data)
        assert got[-1] == ("result", json.dumps(plain)) or json.loads(got[-1][1]) == plain
        for output, sequence in enumerate(plain["sequences"]):
            streamed = [
                n for k, d in got if k == "notes" and (e := json.loads(d))["output"] == output for n in e["notes"]
            ]
            assert len(streamed) >= 3 and streamed == sequence["notes"][: len(streamed)]  # in order, each once
            steps = [json.loads(d)["step"] for k, d in got if k == "notes" and json.loads(d)["output"] == output]
            assert steps == sorted(steps)
    beam = {"model": "embedded-basic_rnn", "seed": 3, "length": 32, "beam_size": 2, "stream": True}
    assert [k for k, _ in events(client.post("/v1/generate", json=beam, buffered=False))] == ["start", "result"]


def test_hierarchical_musicvae_reports_bar_by_bar():
    from musicvae_support import family, request

    from magenta_api import progress
    from magenta_api.testing import run_family

    mel16 = family("hierdec_mel", {"config": "hierdec-mel_16bar"})
    heard = []
    with progress.listen(lambda kind, data: heard.append((kind, data))):
        result = run_family(mel16, request("sample", num_outputs=2, seed=5))
    assert [k for k, _ in heard] == ["bar"] * 32
    assert [(d["output"], d["bar"]) for _, d in heard] == [(o, b) for b in range(16) for o in range(2)]
    for output, seq in enumerate(result.sequences):
        final = [(n.pitch, round(n.start_time, 6)) for n in seq.notes]
        streamed = [(n["pitch"], round(n.get("startTime", 0.0), 6)) for k, d in heard if d["output"] == output
                    for n in d["notes"]]  # fmt: skip
        assert streamed == final and len(final) > 16  # every note once, in its bar, in order
    plain = run_family(mel16, request("sample", num_outputs=2, seed=5))  # nobody listening: the same music
    assert [s.SerializeToString() for s in plain.sequences] == [s.SerializeToString() for s in result.sequences]


@pytest.mark.parametrize("bars", [None, 7])
def test_flat_and_long_form_musicvae_report_bar_by_bar(tmp_path, bars):
    import magenta_api_embedded as emb
    import magenta_api_melody_rnn
    import magenta_api_musicvae

    plugins = [magenta_api_musicvae, magenta_api_melody_rnn, emb]
    client = make_app(tmp_path, offline=True, plugins=plugins).test_client()
    body = {"model": "embedded-mel_2bar", "seed": 6, "num_outputs": 2, **({"bars": bars} if bars else {})}
    got = list(events(client.post("/v1/generate", json={**body, "stream": True}, buffered=False)))
    plain = json.loads(client.post("/v1/generate", json=body).data)
    assert json.loads(got[-1][1]) == plain
    reported = [json.loads(d) for k, d in got if k == "bar"]
    assert sorted((b["output"], b["bar"]) for b in reported) == [(o, b) for o in range(2) for b in range(bars or 2)]
    for output, sequence in enumerate(plain["sequences"]):
        mine = sorted((b for b in reported if b["output"] == output), key=lambda b: b["bar"])
        streamed = [(n["pitch"], round(n.get("startTime", 0.0), 6)) for b in mine for n in b["notes"]]
        final = [(n["pitch"], round(n.get("startTime", 0.0), 6)) for n in sequence["notes"]]
        assert streamed == final and final  # every note once, in its bar, at its place in the piece
