"""Progress of a fetch: a tqdm bar (CLI), periodic log lines, and a small JSON file status() reads."""

import contextlib
import json
import logging
import os
import time

log = logging.getLogger(__name__)


class Progress:
    """Tracks bytes done over possibly several files; cheap to call for every chunk."""

    def __init__(self, model_id, path, total=None, bar=False, log_every=5.0, write_every=0.5, single_file=True):
        self.model_id, self.path, self.total = model_id, path, total
        self.single_file = single_file  # then the file's Content-Length is the total when size is unknown
        self.base = 0  # bytes of files already completed in this fetch
        self.done = 0
        self._last_log = time.monotonic()
        self._last_write = 0.0
        self.log_every, self.write_every = log_every, write_every
        self.bar = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=model_id)

    def file_done(self, size):
        self.base += size

    def __call__(self, file_done, file_total=None):
        """Callback for download(): bytes done in the current file (and that file's size if known)."""
        done = self.base + file_done
        if self.total is None and file_total is not None and self.single_file:
            self.total = file_total
            if self.bar is not None:
                self.bar.total = file_total
                self.bar.refresh()
        if self.bar is not None:
            self.bar.update(done - self.done)
        self.done = done
        now = time.monotonic()
        if now - self._last_write >= self.write_every:
            self._last_write = now
            self._write()
        if now - self._last_log >= self.log_every:
            self._last_log = now
            if self.total:
                log.info(
                    "%s: downloaded %.1f of %.1f MB (%d%%)",
                    self.model_id,
                    done / 1e6,
                    self.total / 1e6,
                    100 * done // max(self.total, 1),
                )
            else:
                log.info("%s: downloaded %.1f MB", self.model_id, done / 1e6)

    def _write(self):
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump({"bytes_done": self.done, "size": self.total, "pid": os.getpid()}, f)
            os.replace(tmp, self.path)
        except OSError:  # progress is best effort
            pass

    def close(self):
        if self.bar is not None:
            self.bar.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
