"""The real service process (gunicorn): the /v1/live WebSocket with a real client (the websockets
package), and Server-Sent Events over a real HTTP connection."""

import json
import time

import pytest
import requests
from server_support import running_service
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

PHRASE = [
    {"pitch": p, "velocity": 90, "startTime": i * 0.25, "endTime": (i + 1) * 0.25}
    for i, p in enumerate([60, 62, 64, 65])
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    env = {"MODEL_DIR": str(tmp / "m"), "CACHE_DIR": str(tmp / "c"), "LOG_LEVEL": "INFO"}
    with running_service(tmp, env) as service:
        yield service.port, service.log


def live(server, model="embedded-basic_rnn"):
    return connect(f"ws://127.0.0.1:{server[0]}/v1/live?model={model}", open_timeout=10, close_timeout=5)


def closed_with(ws, send):
    ws.send(send)
    with pytest.raises(ConnectionClosed) as info:
        while True:
            ws.recv(timeout=10)
    return info.value.rcvd.code, info.value.rcvd.reason


def test_a_phrase_gets_a_continuation(server):
    with live(server) as ws:
        ready = json.loads(ws.recv(timeout=10))
        assert ready["type"] == "ready" and ready["model"] == "embedded-basic_rnn" and "continue" in ready["messages"]
        ws.send(json.dumps({"type": "continue"}))
        assert json.loads(ws.recv(timeout=10))["code"] == "empty_performance"  # the connection stays
        ws.send(json.dumps({"type": "notes", "notes": PHRASE}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "performance", "notes": 4}
        ws.send(json.dumps({"type": "continue", "length": 16, "seed": 5, "budget_ms": 20000}))
        reply = json.loads(ws.recv(timeout=30))
        assert reply["type"] == "continuation" and reply["seed"] == 5 and reply["notes"]
        assert reply["start_time"] == 1.0 and all(n["startTime"] >= 1.0 for n in reply["notes"])
        assert reply["budget_ms"] == 20000 and reply["latency_ms"] > 0
        ws.send(json.dumps({"type": "continue", "length": 16, "seed": 5, "append": False}))
        again = json.loads(ws.recv(timeout=30))
        assert again["start_time"] > reply["start_time"]  # the first answer joined the running performance
        ws.send(json.dumps({"type": "continue", "temperature": 1000}))
        error = json.loads(ws.recv(timeout=10))
        assert error["type"] == "error" and error["code"] == "schema_violation"
        assert error["details"]["field"] == "/temperature"
        ws.send(json.dumps({"type": "continue", "length": 960, "budget_ms": 1}))
        assert json.loads(ws.recv(timeout=30))["code"] == "over_budget"
        ws.send(json.dumps({"type": "reset"}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "performance", "notes": 0}
        ws.send(json.dumps({"type": "primer", "primer": {"notes": PHRASE[:2], "tempos": [{"qpm": 90}]}}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "performance", "notes": 2}
        assert closed_with(ws, json.dumps({"type": "close"})) == (1000, "bye")


@pytest.mark.parametrize(
    "message, code, words",
    [
        (b"\x00\x01", 1003, "not binary"),
        ("{not json", 1007, "malformed JSON"),
        ('{"type": "dance"}', 1007, "unknown message type 'dance'"),
        ('{"type": "notes", "notes": "C D E"}', 1007, "needs 'notes'"),
        ('{"type": "notes", "notes": [{"pitch": 300, "endTime": 1}]}', 1007, "pitch"),
        ('{"type": "continue", "budget_ms": -1}', 1007, "budget_ms"),
        ("x" * (70 * 1024), 1009, ""),
    ],
)
def test_bad_messages_close_with_a_clear_reason(server, message, code, words):
    with live(server) as ws:
        ws.recv(timeout=10)
        ws.send(json.dumps({"type": "notes", "notes": PHRASE}))
        ws.recv(timeout=10)
        got_code, reason = closed_with(ws, message)
        assert got_code == code and words in reason and "Traceback" not in reason


def test_one_model_per_connection_and_it_must_continue(server):
    with live(server, "no-such-model") as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        assert info.value.rcvd.code == 4404 and "no-such-model" in info.value.rcvd.reason
    with live(server, "embedded-mel_2bar") as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        assert info.value.rcvd.code == 4422 and "cannot continue" in info.value.rcvd.reason


def test_server_sent_events_over_a_real_connection(server):
    body = {"model": "embedded-basic_rnn", "seed": 8, "length": 32}
    url = f"http://127.0.0.1:{server[0]}/v1/generate"
    with requests.post(url, json=body, headers={"Accept": "text/event-stream"}, stream=True, timeout=60) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        lines = [ln for ln in resp.iter_lines(decode_unicode=True) if ln.startswith(("event:", "data:"))]
    kinds = [ln.split(": ", 1)[1] for ln in lines if ln.startswith("event:")]
    assert kinds[0] == "start" and kinds[-1] == "result"
    assert lines[-1].split(": ", 1)[1].encode() == requests.post(url, json=body, timeout=60).content


def test_a_dropped_connection_stops_the_generation_on_the_server(server):
    port, log = server
    body = {"model": "embedded-basic_rnn", "seed": 9, "length": 1024, "temperature": 1.0}
    url = f"http://127.0.0.1:{port}/v1/generate"
    resp = requests.post(url, json={**body, "stream": True}, stream=True, timeout=60)
    lines = resp.iter_lines(decode_unicode=True)
    assert next(lines) == "event: start"
    while next(lines) != "event: notes":
        pass
    request_id = resp.headers["X-Request-ID"]
    resp.close()  # closes the socket, mid-stream
    deadline = time.time() + 20
    while time.time() < deadline:
        text = log.read_text()
        if f"[{request_id}] stage=generate stopped: the client went away" in text:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the generation did not stop:\n{log.read_text()[-2000:]}")
    finished = [ln for ln in text.splitlines() if request_id in ln and "stage=render" in ln]
    assert finished == []  # stopped before it rendered a result nobody reads
