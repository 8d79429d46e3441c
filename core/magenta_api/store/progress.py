"""Progress of a fetch: a tqdm bar per phase (CLI), periodic log lines, and a small JSON file status() reads.

A fetch goes through phases: ``downloading`` (bytes over possibly several files), then ``extracting`` (a
tarball's members) and ``converting`` (reading and checking every tensor, writing the native copy). The
JSON file holds the phase, the download's ``bytes_done`` / ``size``, the phase's own ``phase_done`` /
``phase_total``, the pid and the start time, so other processes can report and estimate it.
"""

import contextlib
import json
import logging
import os
import time

log = logging.getLogger(__name__)

DOWNLOADING, EXTRACTING, CONVERTING = "downloading", "extracting", "converting"


class Progress:
    """Tracks bytes done over possibly several files, then the later phases; cheap to call per chunk."""

    def __init__(self, model_id, path, total=None, bar=False, log_every=5.0, write_every=0.5, single_file=True):
        self.model_id, self.path, self.total = model_id, path, total
        self.single_file = single_file  # then the file's Content-Length is the total when size is unknown
        self.base = 0  # bytes of files already completed in this fetch
        self.done = 0
        self.phase = DOWNLOADING
        self.phase_done = None
        self.phase_total = None
        self.started = time.time()
        self._last_log = time.monotonic()
        self._last_write = 0.0
        self.log_every, self.write_every = log_every, write_every
        self._with_bar = bar
        self.bar = self._new_bar(model_id, total) if bar else None

    @staticmethod
    def _new_bar(desc, total):
        from tqdm import tqdm

        return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc)

    def file_done(self, size):
        self.base += size

    def restart(self):
        """Start over from another URL (a mirror): nothing done, downloading again."""
        self.base = 0
        if self.phase != DOWNLOADING:
            if self.bar is not None:
                self.bar.close()
            self.bar = self._new_bar(self.model_id, self.total) if self._with_bar else None
            self.phase, self.phase_done, self.phase_total = DOWNLOADING, None, None
            self.done = 0

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
        self._tick()

    def begin(self, phase, total=None):
        """Start ``phase`` (``extracting``, ``converting``) of ``total`` bytes; returns its callback
        ``advance(done, total=None)``, which the extractor or reader calls as it goes."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.phase, self.phase_done, self.phase_total = phase, 0, total
        if self._with_bar:
            self.bar = self._new_bar(f"{self.model_id} {phase}", total)
        log.info("%s: %s", self.model_id, phase)
        self._last_write = 0.0
        self._tick()
        return self._advance

    def _advance(self, done, total=None):
        if total is not None and total != self.phase_total:
            self.phase_total = total
            if self.bar is not None:
                self.bar.total = total
                self.bar.refresh()
        if self.bar is not None:
            self.bar.update(done - (self.phase_done or 0))
        self.phase_done = done
        self._tick()

    def _tick(self):
        now = time.monotonic()
        if now - self._last_write >= self.write_every:
            self._last_write = now
            self._write()
        if now - self._last_log >= self.log_every:
            self._last_log = now
            self._log()

    def _log(self):
        if self.phase != DOWNLOADING:
            done, total = self.phase_done or 0, self.phase_total
            if total:
                log.info("%s: %s %.1f of %.1f MB", self.model_id, self.phase, done / 1e6, total / 1e6)
            return
        if self.total:
            log.info(
                "%s: downloaded %.1f of %.1f MB (%d%%)",
                self.model_id,
                self.done / 1e6,
                self.total / 1e6,
                100 * self.done // max(self.total, 1),
            )
        else:
            log.info("%s: downloaded %.1f MB", self.model_id, self.done / 1e6)

    def as_json(self) -> dict:
        return {
            "phase": self.phase,
            "bytes_done": self.done,
            "size": self.total,
            "phase_done": self.phase_done,
            "phase_total": self.phase_total,
            "pid": os.getpid(),
            "started": self.started,
        }

    def _write(self):
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(self.as_json(), f)
            os.replace(tmp, self.path)
        except OSError:  # progress is best effort
            pass

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
