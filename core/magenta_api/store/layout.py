"""Where a model's files live under MODEL_DIR/<model id>/ (one place, so store and status agree).

.lock            cross-process lock held while fetching or converting (by a request's background thread
                 or by ``magenta-api fetch``)
.staging/        downloads in progress (``*.part``, resumable after a network failure)
.progress.json   phase, bytes done / size of the fetch in progress (read by status())
src/             the checkpoint as published (tar extracted); deleted once the native copy is verified,
                 unless the store keeps sources (KEEP_SOURCE=1)
native.safetensors  NumPy-ready copy, memory-mapped by every load
fetched.json     written last, after the checkpoint was read and verified: sha256, size, format, url
                 -> the model is "ready"
failed.json      the last fetch failed: reason, time, attempts, when the next attempt is due
"""

import pathlib
import re

from .errors import CheckpointInvalid

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Layout:
    def __init__(self, model_dir, model_id):
        if not _SAFE_ID.match(model_id) or ".." in model_id:
            raise CheckpointInvalid(
                f"model id {model_id!r} cannot be used as a folder name",
                fix="rename the model in its models.yaml (letters, digits, '.', '_', '-'; a letter or digit first)",
            )
        self.root = pathlib.Path(model_dir) / model_id
        self.lock = self.root / ".lock"
        self.staging = self.root / ".staging"
        self.progress = self.root / ".progress.json"
        self.src = self.root / "src"
        self.marker = self.root / "fetched.json"
        self.native = self.root / "native.safetensors"
        self.failed = self.root / "failed.json"
