"""Async jobs for long work, on RQ (Redis Queue): ``POST /v1/jobs`` queues a ``/v1/generate`` body, a
``magenta-api worker`` runs it, ``GET /v1/jobs/<id>`` tells its state and gives the result.

Everything lives in Redis (``REDIS_URL``), so a job outlives the API process that took it, and any
replica answers for any job. A body is checked when it is submitted (a bad one is the 400/404/422 that
``/v1/generate`` would answer, and nothing is queued); the worker runs ``Service.generate`` on it, so its
result is the same body, content type and ``X-Seed`` that ``/v1/generate`` gives, cached the same way.

States: ``queued`` → ``running`` → ``succeeded`` | ``failed`` | ``canceled``. A domain error (422, 503, …)
ends the job ``failed`` with that error and its HTTP status, and is not retried. A work horse that dies
(SIGKILL, out of memory) is seen at once by its worker; a whole worker that dies stops sending
heartbeats, and its job is declared abandoned ``JOB_HEARTBEAT_GRACE`` seconds after the last one (by any
worker's maintenance, or by the next ``GET`` of the job). Either way the job runs again while it has
retries left (``JOB_RETRIES``), then ends ``failed`` with ``worker_lost``: never lost without word.
Results and errors expire ``JOB_TTL`` seconds after the job ends. Jobs belong to the API key that
submitted them: another key sees a 404.

This module knows no HTTP; the routes in :mod:`.api` call :class:`JobQueue`.
"""

import dataclasses
import importlib
import json
import logging
import os
import socket
from datetime import datetime, timezone
from typing import Any

import redis
from rq import Queue, Retry, Worker
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus, get_current_job
from rq.registry import StartedJobRegistry

from .config import Settings
from .errors import MagentaApiError, UnknownModel
from .logs import request_id_var
from .request_builder import build_request

log = logging.getLogger(__name__)

QUEUE_NAME = "magenta-api"
JOB_TIMEOUT_S = 3600  # a first checkpoint download plus the generation (itself bounded by GENERATE_SECONDS)
REDIS_TIMEOUT_S = 5.0
RUNS_KEY = "magenta-api:job-runs:{}"  # how many runs of a job have started

# Stages a running job reports, with the share of the work done when each begins.
STAGES = {"queued": 0.0, "validating": 0.02, "loading": 0.05, "generating": 0.15, "done": 1.0}


class JobsUnavailable(MagentaApiError):
    """Jobs cannot be taken or read now: no REDIS_URL, or Redis does not answer (503)."""

    code = "jobs_unavailable"


# The error class (so the HTTP status) of each way RQ can fail a job.
FAILURE_CLASSES = {
    "worker_lost": f"{__name__}:JobsUnavailable",
    "time_limit_exceeded": "magenta_api.errors:TimeLimitExceeded",
    "internal_error": "magenta_api.errors:MagentaApiError",
}


class UnknownJob(UnknownModel):
    """No such job (never was, expired after JOB_TTL, or another key's): 404 like an unknown model."""

    code = "unknown_job"


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")


def error_class(path: str | None) -> type[MagentaApiError]:
    """The error class a job recorded (``module:QualName``), to give it its HTTP status again."""
    try:
        module, _, name = (path or "").partition(":")
        cls = getattr(importlib.import_module(module), name)
        if isinstance(cls, type) and issubclass(cls, MagentaApiError):
            return cls
    except (ImportError, AttributeError, ValueError):
        pass
    return MagentaApiError


@dataclasses.dataclass
class JobResult:
    """What ``GET /v1/jobs/<id>/result`` answers: the generate body, or the job's state when it is not done."""

    done: bool
    body: bytes = b""
    content_type: str = "application/json"
    filename: str | None = None
    seed: Any = None
    cache: str | None = None
    error: MagentaApiError | None = None


class JobQueue:
    """The API side: submit, describe, result and cancel jobs on ``REDIS_URL``'s queue."""

    def __init__(self, settings: Settings, service):
        if not settings.redis_url:
            raise JobsUnavailable("async jobs need Redis: set REDIS_URL and run `magenta-api worker`", {})
        self.settings, self.service = settings, service
        self.connection = redis.Redis.from_url(
            settings.redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self.queue = Queue(QUEUE_NAME, connection=self.connection)

    def _redis(self, call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except redis.RedisError as exc:
            raise JobsUnavailable(f"the job queue's Redis does not answer: {exc}", {"retry_after": 5}) from exc

    # -- submitting -------------------------------------------------------------------------------
    def submit(self, payload, default_format: str, owner: str | None) -> dict:
        """Check the body as /v1/generate would, then queue it; the new job's description."""
        built = build_request(payload, self.service.registry, default_format)
        ttl = self.settings.job_ttl_s
        retries = self.settings.job_retries
        job = self._redis(
            self.queue.enqueue,
            execute,
            payload,
            default_format,
            job_timeout=JOB_TIMEOUT_S,
            result_ttl=ttl,
            failure_ttl=ttl,
            ttl=ttl,
            retry=Retry(max=retries) if retries > 0 else None,
            description=f"generate {built.spec.id}",
            meta={
                "owner": owner,
                "model": built.spec.id,
                "stage": "queued",
                "request_id": request_id_var.get(),
                "retries": retries,
            },
        )
        log.info("job %s queued: model %s", job.id, built.spec.id)
        return self._describe(job)

    # -- reading ----------------------------------------------------------------------------------
    def _fetch(self, job_id: str, owner: str | None) -> Job:
        try:
            job = self._redis(Job.fetch, job_id, connection=self.connection)
        except NoSuchJobError:
            job = None
        if job is None or job.meta.get("owner") != owner or job.func_name != f"{__name__}.execute":
            raise UnknownJob(f"no job {job_id!r} (jobs expire JOB_TTL seconds after they end)", {"job": job_id})
        if job.get_status(refresh=False) == JobStatus.STARTED:  # is its worker still alive?
            self._redis(StartedJobRegistry(queue=self.queue).cleanup)
            job = self._redis(Job.fetch, job_id, connection=self.connection)
        return job

    def describe(self, job_id: str, owner: str | None) -> dict:
        return self._describe(self._fetch(job_id, owner))

    def _describe(self, job: Job) -> dict:
        status = job.get_status(refresh=False)
        meta = job.meta
        outcome = job.return_value() if status == JobStatus.FINISHED else None
        info: dict[str, Any] = {
            "id": job.id,
            "state": _state(status, outcome),
            "model": meta.get("model"),
            "progress": {"stage": meta.get("stage", "queued"), "fraction": STAGES.get(meta.get("stage") or "", 0.0)},
            "attempts": int(self._redis(self.connection.get, RUNS_KEY.format(job.id)) or 0),  # runs started
            "created_at": _iso(job.created_at),
            "started_at": _iso(job.started_at),
            "ended_at": _iso(job.ended_at),
            "location": f"/v1/jobs/{job.id}",
        }
        if meta.get("cancel_requested") and status == JobStatus.STARTED:
            info["state"] = "canceling"
        if info["attempts"] > 1 or (status == JobStatus.QUEUED and info["attempts"]):
            info["retried"] = True  # a run was lost and the job was queued again
        if status == JobStatus.FAILED:
            code, reason = _failure(job)
            messages = {
                "worker_lost": f"the job's worker died before it finished ({reason}), after {info['attempts']} run(s)",
                "time_limit_exceeded": f"the job ran past its time limit of {JOB_TIMEOUT_S} s",
                "internal_error": "the job failed with an internal error; quote the job id when reporting it",
            }
            info["error"] = {"code": code, "message": messages[code], "details": {"job": job.id, "reason": reason}}
            info["_error_class"] = FAILURE_CLASSES[code]
        if isinstance(outcome, dict):
            if outcome.get("error"):
                info["error"] = outcome["error"]
                info["_error_class"] = outcome.get("error_class")
            else:
                info.update(
                    content_type=outcome["content_type"],
                    seed=outcome["seed"],
                    cache=outcome.get("cache"),
                    result_url=f"/v1/jobs/{job.id}/result",
                )
                if outcome["content_type"] == "application/json":
                    info["result"] = json.loads(outcome["body"])
        if info["state"] in ("succeeded", "failed", "canceled"):
            info["expires_in"] = self._redis(self.connection.ttl, job.key)
        return info

    def result(self, job_id: str, owner: str | None) -> tuple[JobResult, dict]:
        """(the result, the job's description): the generate body once succeeded, the error once failed."""
        job = self._fetch(job_id, owner)
        info = self._describe(job)
        if info["state"] == "succeeded":
            outcome = job.return_value()
            assert isinstance(outcome, dict)
            return JobResult(
                True,
                outcome["body"],
                outcome["content_type"],
                outcome.get("filename"),
                outcome["seed"],
                outcome.get("cache"),
            ), info
        if info["state"] == "failed":
            err = info["error"]
            cls = error_class(info.get("_error_class"))
            return JobResult(True, error=cls(err["message"], err["details"], err["code"])), info
        return JobResult(False), info

    # -- canceling --------------------------------------------------------------------------------
    def cancel(self, job_id: str, owner: str | None) -> dict:
        """Cancel a queued job, stop a running one (its work horse is killed; never retried), or delete
        an ended one with its result. The job's description after that."""
        job = self._fetch(job_id, owner)
        status = job.get_status(refresh=False)
        if status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED, JobStatus.CREATED):
            self._redis(job.cancel)
            self._redis(self.connection.expire, job.key, self.settings.job_ttl_s)
        elif status == JobStatus.STARTED:
            job.meta["cancel_requested"] = True
            self._redis(job.save_meta)
            try:
                self._redis(send_stop_job_command, self.connection, job.id)
            except InvalidJobOperation:  # it ended meanwhile
                pass
        else:
            info = self._describe(job)
            self._redis(job.delete)
            return {**info, "state": "deleted"}
        return self._describe(self._redis(Job.fetch, job.id, connection=self.connection))


def _state(status: JobStatus, outcome) -> str:
    if status == JobStatus.FINISHED:
        return "failed" if isinstance(outcome, dict) and outcome.get("error") else "succeeded"
    if status == JobStatus.STARTED:
        return "running"
    if status in (JobStatus.FAILED,):
        return "failed"
    if status in (JobStatus.CANCELED, JobStatus.STOPPED):
        return "canceled"
    return "queued"


def _failure(job: Job) -> tuple[str, str]:
    """(code, reason) of a job RQ marked failed: its worker died (a killed work horse, or a worker whose
    heartbeats stopped), it ran past JOB_TIMEOUT_S, or our code raised (the traceback is in the worker's log)."""
    text = (job.exc_info or "").strip()
    last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "no reason recorded")
    if "Work-horse terminated" in text or "AbandonedJobError" in text:
        return "worker_lost", last[:300]
    if "JobTimeoutException" in text:
        return "time_limit_exceeded", last[:300]
    return "internal_error", last.split(":")[0][:100]


# -- the worker side ------------------------------------------------------------------------------
_service = None  # the worker process's Service, built once before its work horses fork


def use_service(service) -> None:
    """The Service the jobs of this process run on (``run_worker`` builds it; tests pass their own)."""
    global _service
    _service = service


def worker_service():
    """This process's Service; built from the environment on first use, downloading in the foreground
    (a worker has no client waiting for a 503)."""
    if _service is None:
        from .service import Service

        use_service(Service.from_settings(dataclasses.replace(Settings.from_env(), fetch_wait_s=None)))
    return _service


def _stage(job: Job | None, name: str) -> None:
    if job is not None:
        if name == "validating":  # a run begins: count it beside the job, whose hash RQ rewrites on a retry
            with job.connection.pipeline() as pipe:
                pipe.incr(RUNS_KEY.format(job.id))
                pipe.expire(RUNS_KEY.format(job.id), JOB_TIMEOUT_S + int(job.ttl or 0) + int(job.result_ttl or 0))
                pipe.execute()
        job.meta["stage"] = name
        job.save_meta()


def execute(payload, default_format: str) -> dict:
    """The job: ``Service.generate`` on the body, in a work horse. A domain error is the job's answer
    (recorded, not raised, so it is not retried); anything else raises and RQ records the failure."""
    job = get_current_job()
    token = request_id_var.set(f"job-{job.id}" if job else "job")
    try:
        service = worker_service()
        _stage(job, "validating")
        try:
            built = build_request(payload, service.registry, default_format)
            _stage(job, "loading")
            service.loader.load(built.spec, built.family.cls)
            _stage(job, "generating")
            rendered = service.generate(payload, default_format)
        except MagentaApiError as exc:
            _stage(job, "done")
            log.info("job ended with %s: %s", exc.code, exc.message)
            cls = type(exc)
            return {"error": exc.to_dict(), "error_class": f"{cls.__module__}:{cls.__qualname__}"}
        _stage(job, "done")
        return {
            "body": rendered.body,
            "content_type": rendered.content_type,
            "filename": rendered.filename,
            "seed": rendered.seed,
            "cache": rendered.cache,
        }
    finally:
        request_id_var.reset(token)


def preload(service) -> list[str]:
    """Load every model whose checkpoint is on disk, in the worker before it forks: each work horse then
    starts with them loaded (memory-mapped weights are shared). A model that fails to load is logged and
    left to its jobs, which report its error."""
    loaded = []
    for spec in service.registry.models.values():
        entry = service.registry.families.get(spec.family)
        if entry is None or service.loader.status(spec, entry.cls).get("state") != "ready":
            continue
        try:
            service.loader.load(spec, entry.cls)
            loaded.append(spec.id)
        except MagentaApiError as exc:
            log.warning("worker: %s not preloaded: %s", spec.id, exc.message)
    log.info("worker: preloaded %s", ", ".join(loaded) or "no model")
    return loaded


class GenerateWorker(Worker):
    """RQ's forking worker, with the heartbeat grace of ``JOB_HEARTBEAT_GRACE`` instead of RQ's 60 s:
    how long after a whole worker's last heartbeat its job counts as abandoned."""

    heartbeat_grace_s = 60

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return int(super().get_heartbeat_ttl(job, working_time)) - 60 + self.heartbeat_grace_s


def run_worker(settings: Settings, burst: bool = False) -> int:
    """``magenta-api worker``: build the Service (plugins, registry, store) once, then run jobs, each in a
    forked work horse, until SIGTERM (or, with ``burst``, until the queue is empty)."""
    if not settings.redis_url:
        log.error("magenta-api worker needs REDIS_URL")
        print("error: set REDIS_URL to the Redis of the job queue", flush=True)
        return 2
    preload(worker_service())
    connection = redis.Redis.from_url(settings.redis_url)
    grace = max(1, settings.job_heartbeat_grace_s)
    GenerateWorker.heartbeat_grace_s = grace
    worker = GenerateWorker(
        [Queue(QUEUE_NAME, connection=connection)],
        connection=connection,
        name=f"magenta-api-{socket.gethostname()}-{os.getpid()}",
        job_monitoring_interval=min(30, grace),
        maintenance_interval=max(grace, 10),
    )
    worker.work(burst=burst, logging_level=settings.log_level)
    return 0
