"""What the checkpoint store raises: the checkpoint is either not obtainable now, or obtainable but wrong.

Both carry the model id and a ``fix`` (the command, or for an offline machine the steps, that repair
that exact state) when the store knows them, so that every caller (the web layer, the CLI) can tell the
user what to do without re-wrapping the error. ``details.retry_after`` says in how many seconds the
state may have changed (the web layer sends it as ``Retry-After``).
"""

from ..errors import MagentaApiError


class CheckpointError(MagentaApiError):
    """Base of the store's errors."""

    code = "checkpoint_error"

    def __init__(self, message: str, model_id: str | None = None, fix: str | None = None, extra: dict | None = None):
        details = {k: v for k, v in (("model", model_id), ("fix", fix)) if v}
        details.update(extra or {})
        super().__init__(message, details)
        self.model_id = model_id
        self.fix = fix

    def for_model(self, model_id: str, fix: str | None = None) -> "CheckpointError":
        """The same error, naming the model it concerns (readers do not know model ids)."""
        self.model_id = self.model_id or model_id
        self.fix = self.fix or fix
        self.details.update({k: v for k, v in (("model", self.model_id), ("fix", self.fix)) if v})
        return self


class CheckpointUnavailable(CheckpointError):
    """The checkpoint is not here and cannot be fetched now (offline, HTTP 404, network down)."""

    code = "checkpoint_unavailable"


class CheckpointDownloading(CheckpointUnavailable):
    """The checkpoint is being fetched (by this process or another): ``details`` has ``bytes_done``,
    ``size``, ``phase`` (downloading, extracting, converting) and ``retry_after``."""

    code = "downloading"


class CheckpointInvalid(CheckpointError):
    """The checkpoint is here but wrong: corrupt, hash or size mismatch, unsafe archive, unreadable
    format, or declared with an unusable URL or format."""

    code = "checkpoint_invalid"


class ChecksumMismatch(CheckpointInvalid):
    """The bytes are not the ones expected: their sha256 or size differs from the declared or pinned one."""


class SourceMissing(CheckpointUnavailable):
    """The source answered that the file does not exist (HTTP 404, no such local file): an optional
    part of a checkpoint (a Magenta.js ``config.json``, a V2 ``.index``) may be absent."""
