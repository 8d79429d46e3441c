"""The gunicorn worker ``magenta-api serve`` runs: gthread, with the errors gunicorn answers by itself (a
request line or header over its limits: 414, 431; a malformed request: 400) in the service's JSON error
shape with a request id, instead of gunicorn's HTML page."""

import json
import uuid

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``util.write_error`` with the body every error of the service has."""
    request_id = uuid.uuid4().hex
    error = {
        "code": reason.lower().replace(" ", "_"),
        "message": mesg or reason,
        "details": {},
        "request_id": request_id,
    }
    body = json.dumps({"error": error}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Request-ID: {request_id}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin1") + body)


class JsonErrorsWorker(ThreadWorker):
    def init_process(self):
        util.write_error = write_json_error  # this worker process only; gunicorn calls it for its own errors
        super().init_process()
