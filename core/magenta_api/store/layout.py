"""Where a model's files live under MODEL_DIR/<model id>/ (one place, so store and status agree).

.lock            cross-process lock held while fetching or converting
.staging/        downloads in progress (``*.part``, resumable); renamed to src/ when verified
.progress.json   bytes done / size of the fetch in progress (read by status())
src/             the verified checkpoint as published (tar extracted)
fetched.json     written last: sha256, size, format, url -> the model is "ready"
native.safetensors  NumPy-ready copy, memory-mapped on later loads
"""

import pathlib
import re

from .errors import CheckpointInvalid

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Layout:
    def __init__(self, model_dir, model_id):
        if not _SAFE_ID.match(model_id) or ".." in model_id:
            raise CheckpointInvalid(f"model id {model_id!r} cannot be used as a folder name")
        self.root = pathlib.Path(model_dir) / model_id
        self.lock = self.root / ".lock"
        self.staging = self.root / ".staging"
        self.progress = self.root / ".progress.json"
        self.src = self.root / "src"
        self.marker = self.root / "fetched.json"
        self.native = self.root / "native.safetensors"
