"""The domain errors every layer raises. None of them knows HTTP: the web layer maps each class to a
status in one table (``app.STATUS``) and the CLI maps them to exit codes (``cli.EXIT_CODES``).

Each error carries a stable machine-readable ``code``, a message for people and a ``details`` dict
(``field`` as a JSON pointer into the request, ``fix`` as a command that repairs the state, ...).
Plugins raise :class:`Unprocessable` for a valid request their model cannot do, and
:class:`InvalidRequest` for a value that is malformed.
"""


class MagentaApiError(Exception):
    """Base of every error the service reports to a client as ``{code, message, details}``."""

    code = "error"

    def __init__(self, message: str, details: dict | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = dict(details or {})
        if code:
            self.code = code

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "details": self.details}


class InvalidRequest(MagentaApiError):
    """The request is malformed: bad JSON, a schema violation, an unknown field, an unreadable value."""

    code = "bad_request"


class TooLarge(MagentaApiError):
    """The request is over a size the service accepts before reading it: body bytes, JSON nesting."""

    code = "payload_too_large"


class NotAcceptable(MagentaApiError):
    """The client accepts no format the service can render."""

    code = "not_acceptable"


class Unprocessable(MagentaApiError):
    """A well-formed request the model cannot do: unsupported mode, unusable primer, over a limit."""

    code = "unprocessable"


class UnknownModel(MagentaApiError):
    """No model of that id is declared (or none was named and there is no default)."""

    code = "unknown_model"


class FamilyUnavailable(MagentaApiError):
    """The model is declared but no loaded plugin provides its family (the plugin failed or is missing)."""

    code = "family_unavailable"


class TimeLimitExceeded(Unprocessable):
    """The generation ran past its time limit (the model's ``limits.seconds``) and was stopped."""

    code = "time_limit_exceeded"


class ModelBroken(MagentaApiError):
    """The checkpoint was read but the family cannot build a model from it (wrong shapes or hparams)."""

    code = "model_invalid"


class AudioUnavailable(MagentaApiError):
    """Audio was asked for, but the synthesizer or its SoundFont cannot be used on this machine."""

    code = "audio_unavailable"


class Overloaded(MagentaApiError):
    """The model's queue is full, or a request waited in it past its deadline: try again later
    (:mod:`magenta_api.batching`)."""

    code = "overloaded"


class GenerationCancelled(Unprocessable):
    """A streamed generation whose client went away, stopped at its next step (nobody reads the answer)."""

    code = "cancelled"
