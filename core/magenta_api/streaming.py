"""Streaming over HTTP: Server-Sent Events from ``POST /v1/generate`` and live generation on the
``/v1/live`` WebSocket.

**SSE** (``Accept: text/event-stream`` or ``"stream": true``): the generation runs in a thread of its
own and reports its music through :mod:`.progress`; the response relays each report as an event
(``start``, then ``notes`` or ``bar``, then ``result`` with exactly the bytes of the non-streamed JSON
body, or ``error`` with the usual error shape). A request the service refuses before generating is
answered with its ordinary status and JSON error. While nothing happens a comment line goes out every
:data:`HEARTBEAT_S`; a write that finds the client gone ends the response, which sets the stop event,
and the generation stops at its next step (:func:`.progress.cancel_when`), freeing the worker.

**WebSocket** (``/v1/live?model=ID``, Flask-Sock on simple-websocket): one model per connection. The
client sends JSON messages: ``notes`` (played notes, appended to the running performance), ``primer``
(replace it), ``continue`` (a continuation of the performance so far, within ``budget_ms``), ``reset``
and ``close``. A message the protocol does not allow closes the connection with a code and a reason
(:data:`CLOSE`); a continuation the model cannot make is an ``error`` message and the connection stays.
"""

import contextvars
import json
import logging
import math
import queue
import threading
import time

from flask import Blueprint, Response, current_app, g, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from . import progress
from .errors import GenerationCancelled, InvalidRequest, MagentaApiError, UnknownModel
from .music import parse_sequence
from .request_builder import parse_json

logger = logging.getLogger(__name__)

bp = Blueprint("streaming", __name__)
sock = Sock()

EVENT_STREAM = "text/event-stream"
HEARTBEAT_S = 0.5

# -- Server-Sent Events ---------------------------------------------------------------------------


def wants_stream(payload) -> bool:
    """``"stream": true`` in the body, or ``text/event-stream`` named in Accept."""
    if isinstance(payload, dict) and payload.get("stream") is True:
        return True
    return any(value == EVENT_STREAM for value, _q in request.accept_mimetypes)


def _sse(event: str, data: str) -> bytes:
    return f"event: {event}\ndata: {data}\n\n".encode()


def stream_generate(service, payload) -> Response:
    """Run the generation in a thread and answer with its events (see the module doc)."""
    if isinstance(payload, dict) and payload.get("format") not in (None, "json"):
        raise InvalidRequest(
            "a streamed generation answers JSON events; drop format or stream",
            {"field": "/format"},
            code="stream_format",
        )
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    request_id = g.get("request_id", "-")

    def listener(kind: str, data: dict) -> None:
        if stop.is_set():
            raise GenerationCancelled("the client went away; the generation was stopped", {})
        events.put((kind, data))

    def work() -> None:
        try:
            with progress.cancel_when(stop):
                rendered = service.generate(payload, "json", listener=listener)
            events.put(("result", rendered))
        except GenerationCancelled as exc:
            logger.info("stage=generate stopped: the client went away")
            events.put(("failed", exc))
        except MagentaApiError as exc:
            events.put(("failed", exc))
        except Exception as exc:  # a bug: logged with its traceback, reported as internal_error
            logger.exception("streamed generation failed")
            events.put(("failed", exc))
        finally:
            events.put(None)

    thread = threading.Thread(target=contextvars.copy_context().run, args=(work,), name="sse-generate", daemon=True)
    thread.start()
    first = events.get()
    if first is not None and first[0] == "failed":  # refused before it started: an ordinary error answer
        raise first[1]

    def body():
        item = first
        try:
            while item is not None:
                kind, data = item
                if kind == "result":
                    yield _sse("result", data.body.decode())
                elif kind == "failed":
                    exc = data
                    if not isinstance(exc, MagentaApiError):
                        exc = MagentaApiError(
                            "internal error; quote the request id when reporting it", code="internal_error"
                        )
                    error = {"error": {**exc.to_dict(), "request_id": request_id}}
                    yield _sse("error", json.dumps(error))
                else:
                    yield _sse(kind, json.dumps(data))
                while True:
                    try:
                        item = events.get(timeout=HEARTBEAT_S)
                        break
                    except queue.Empty:
                        yield b": working\n\n"  # finds a closed connection, which ends this response
        finally:
            stop.set()  # the client went away or the stream ended: the generation stops at its next step

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(body(), status=200, mimetype=EVENT_STREAM, headers=headers)


# -- WebSocket: live generation -------------------------------------------------------------------

# Close codes (RFC 6455 and the private range) and what each means here.
CLOSE = {
    "normal": 1000,  # the client said close
    "unsupported": 1003,  # a binary message
    "invalid": 1007,  # malformed JSON or a message of the wrong shape
    "policy": 1008,  # over a per-connection limit, or idle too long
    "internal": 1011,  # a bug (details only in the log)
    "unknown_model": 4404,
    "cannot_continue": 4422,
}
LIMITS = {
    "max_message_bytes": 64 * 1024,
    "max_performance_notes": 512,  # older notes drop out of the running performance
    "max_replies": 500,
    "idle_seconds": 120,
    "default_budget_ms": 2000,
    "max_budget_ms": 30000,
    "default_length": 32,
}
MESSAGE_TYPES = ("notes", "primer", "continue", "reset", "close")
RECEIVE_POLL_S = 1.0


class ProtocolError(Exception):
    """A message the live protocol does not allow: the connection closes with ``code`` and the reason."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _close(ws, code: str, reason: str) -> None:
    data = reason.encode()[:123].decode(errors="ignore")  # a close frame's reason holds 123 bytes
    try:
        ws.close(CLOSE[code], data)
    except Exception:  # the client is already gone
        pass


def _start(note: dict) -> float:
    return float(note.get("startTime", 0.0))


class LiveSession:
    """One connection: one model and the performance played so far."""

    def __init__(self, ws, service, model_id: str | None):
        self.ws = ws
        self.service = service
        model_id = model_id or service.default_model
        try:
            self.model = service.model(model_id)
        except UnknownModel as exc:
            raise ProtocolError("unknown_model", exc.message) from exc
        if "continue" not in self.model["capabilities"]:
            raise ProtocolError(
                "cannot_continue", f"model {self.model['id']!r} cannot continue a phrase; pick an RNN model"
            )
        self.notes: list = []
        self.qpm = 120.0
        self.replies = 0

    def run(self) -> None:
        self.send({"type": "ready", "model": self.model["id"], "limits": LIMITS, "messages": list(MESSAGE_TYPES)})
        last = time.monotonic()
        while True:
            # short waits: simple-websocket can miss waking a receive when it closes the socket itself (1009)
            raw = self.ws.receive(timeout=RECEIVE_POLL_S)
            if raw is None:
                if not self.ws.connected:
                    return
                if time.monotonic() - last > LIMITS["idle_seconds"]:
                    raise ProtocolError("policy", f"idle for {LIMITS['idle_seconds']} s; reconnect to play again")
                continue
            last = time.monotonic()
            if isinstance(raw, bytes):
                raise ProtocolError("unsupported", "send JSON text messages, not binary ones")
            if self.handle(self.parse(raw)) == "close":
                _close(self.ws, "normal", "bye")
                return

    def send(self, message: dict) -> None:
        self.ws.send(json.dumps(message))

    @staticmethod
    def parse(raw: str) -> dict:
        try:
            message = parse_json(raw.encode())
        except MagentaApiError as exc:
            raise ProtocolError("invalid", exc.message) from exc
        if not isinstance(message, dict) or message.get("type") not in MESSAGE_TYPES:
            kind = message.get("type") if isinstance(message, dict) else None
            raise ProtocolError(
                "invalid", f'unknown message type {kind!r}; send one of {", ".join(MESSAGE_TYPES)} as {{"type": ...}}'
            )
        return message

    def handle(self, message: dict):
        kind = message["type"]
        if kind == "close":
            return "close"
        if kind == "reset":
            self.notes = []
            self.send({"type": "performance", "notes": 0})
        elif kind in ("notes", "primer"):
            self.take_notes(message, replace=kind == "primer")
        else:
            self.reply(message)
        return None

    def take_notes(self, message: dict, replace: bool) -> None:
        value = message.get("primer") if replace else {"notes": message.get("notes")}
        if value is None if replace else not isinstance(message.get("notes"), list):
            field = "primer" if replace else "notes"
            raise ProtocolError(
                "invalid", f"a {message['type']} message needs {field!r} (a list of notes or NoteSequence)"
            )
        try:
            seq = parse_sequence(value, f"/{'primer' if replace else 'notes'}")
        except MagentaApiError as exc:
            raise ProtocolError("invalid", exc.message) from exc
        from google.protobuf import json_format

        notes = [json_format.MessageToDict(n) for n in seq.notes]
        if replace:
            self.notes = []
            if seq.tempos:
                self.qpm = seq.tempos[0].qpm
        self.notes = sorted(self.notes + notes, key=_start)[-LIMITS["max_performance_notes"] :]
        self.send({"type": "performance", "notes": len(self.notes)})

    def performance(self) -> dict:
        end = max((float(n.get("endTime", 0.0)) for n in self.notes), default=0.0)
        return {"notes": self.notes, "totalTime": end, "tempos": [{"qpm": self.qpm}]}

    def reply(self, message: dict) -> None:
        if not self.notes:
            self.send({"type": "error", "code": "empty_performance", "message": "send notes or a primer first"})
            return
        self.replies += 1
        if self.replies > LIMITS["max_replies"]:
            raise ProtocolError("policy", f"over {LIMITS['max_replies']} continuations on one connection; reconnect")
        budget = message.get("budget_ms", LIMITS["default_budget_ms"])
        if not isinstance(budget, (int, float)) or not 1 <= budget <= LIMITS["max_budget_ms"]:
            raise ProtocolError("invalid", f"budget_ms must be a number from 1 to {LIMITS['max_budget_ms']}")
        primer = self.performance()
        payload = {"model": self.model["id"], "mode": "continue", "primer": primer, "json_style": "magentajs"}
        new_steps = message.get("length", LIMITS["default_length"])
        if not isinstance(new_steps, int) or isinstance(new_steps, bool) or new_steps < 1:
            raise ProtocolError("invalid", "length must be a positive integer: the sixteenth-note steps to add")
        # the family's length counts the primer's steps and the one before generation starts, too
        payload["length"] = math.ceil(primer["totalTime"] * self.qpm / 15.0 - 1e-6) + 1 + new_steps
        payload.update({k: message[k] for k in ("temperature", "seed") if k in message})
        started = time.perf_counter()
        over_budget = threading.Event()
        timer = threading.Timer(budget / 1000.0, over_budget.set)
        timer.start()
        try:
            with progress.cancel_when(over_budget):
                rendered = self.service.generate(payload, "json", listener=lambda kind, data: None)
        except GenerationCancelled:
            self.send({"type": "error", "code": "over_budget", "message": f"no continuation within {budget} ms",
                       "budget_ms": budget})  # fmt: skip
            return
        except MagentaApiError as exc:
            self.send({"type": "error", **exc.to_dict()})
            return
        finally:
            timer.cancel()
        body = json.loads(rendered.body)
        generated = [n for n in body["sequences"][0]["notes"] if _start(n) >= primer["totalTime"] - 1e-6]
        if message.get("append", True):
            self.notes = sorted(self.notes + generated, key=_start)[-LIMITS["max_performance_notes"] :]
        self.send(
            {
                "type": "continuation",
                "notes": generated,
                "start_time": primer["totalTime"],
                "seed": body["seed"],
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                "budget_ms": budget,
            }
        )


@sock.route("/v1/live", bp=bp)
def live(ws):
    """Live generation: see the module doc for the messages and close codes."""
    try:
        LiveSession(ws, current_app.extensions["magenta_api"], request.args.get("model")).run()
    except ProtocolError as exc:
        logger.info("live: closing with %s: %s", CLOSE[exc.code], exc.reason)
        _close(ws, exc.code, exc.reason)
    except ConnectionClosed:  # the client closed: nothing to answer
        return
    except Exception:
        logger.exception("live session failed")
        _close(ws, "internal", f"internal error; quote request id {g.get('request_id', '-')}")


def install(app) -> None:
    """Register the streaming routes; the WebSocket server refuses messages over the size limit (1009)."""
    app.config.setdefault("SOCK_SERVER_OPTIONS", {"max_message_size": LIMITS["max_message_bytes"]})
    app.register_blueprint(bp)
