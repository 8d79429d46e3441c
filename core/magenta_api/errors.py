"""Errors that map onto HTTP statuses; plugins raise these for bad input."""


class ApiError(Exception):
    """An error the API reports as ``{"error": {code, message, details, request_id}}``."""

    status = 500
    code = "internal_error"

    def __init__(self, message, details=None, code=None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code:
            self.code = code


class BadRequest(ApiError):
    """Malformed JSON or a schema violation (400)."""

    status = 400
    code = "bad_request"


class NotFound(ApiError):
    """Unknown model or route (404)."""

    status = 404
    code = "not_found"


class PayloadTooLarge(ApiError):
    """Request body over the configured limit (413)."""

    status = 413
    code = "payload_too_large"


class Unprocessable(ApiError):
    """A valid request the model cannot do: unsupported mode, unusable primer, over a limit (422)."""

    status = 422
    code = "unprocessable"


class Unavailable(ApiError):
    """The model's checkpoint is not available (offline, not fetched, download failed) (503)."""

    status = 503
    code = "checkpoint_unavailable"
