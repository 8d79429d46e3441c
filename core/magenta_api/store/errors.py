"""Store errors; both are 503s for the API (the model cannot be served right now)."""

from ..errors import Unavailable


class CheckpointUnavailable(Unavailable):
    """The checkpoint is not here and cannot be fetched now (offline, 404, network down)."""

    code = "checkpoint_unavailable"

    def __init__(self, reason, hint=None, model_id=None):
        details = {k: v for k, v in (("model", model_id), ("hint", hint)) if v}
        message = reason + (f" (hint: {hint})" if hint else "")
        super().__init__(message, details)
        self.reason = reason
        self.hint = hint
        self.model_id = model_id


class CheckpointError(Unavailable):
    """The checkpoint is here but wrong: corrupt, hash/size mismatch, unsafe archive, unreadable format."""

    code = "checkpoint_error"

    def __init__(self, message, model_id=None):
        super().__init__(message, {"model": model_id} if model_id else None)
        self.model_id = model_id
