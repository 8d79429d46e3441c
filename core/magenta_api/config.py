"""Settings from the environment, in one place, so the app, the CLI and the tests agree."""

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_MODELS_FILE = Path(__file__).resolve().parents[2] / "models.yaml"


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _base_models_file() -> Path | None:
    """The deployment's top-level models.yaml: the repository's, else one in the working folder."""
    for candidate in (REPO_MODELS_FILE, Path.cwd() / "models.yaml"):
        if candidate.is_file():
            return candidate
    return None


def blas_threads(cores: int, workers: int, threads: int, batching: bool) -> int:
    """BLAS threads per server worker, so that the threads computing at once times BLAS threads fit the
    cores: with batching each model runs one batch at a time per worker, without it every request thread
    computes. At least 1."""
    computing = 1 if batching else threads
    return max(1, cores // max(1, workers * computing))


@dataclass
class Settings:
    """Everything configurable; :meth:`from_env` reads the documented environment variables."""

    model_dir: Path = Path("models")
    cache_dir: Path = Path("cache")
    cache_enabled: bool = True
    cache_size_limit: int = 1 << 30
    offline: bool = False
    log_level: str = "INFO"
    base_models_file: Path | None = None
    extra_models_files: list = field(default_factory=list)
    load_plugins: list | None = None  # None: every installed plugin
    default_model: str | None = None
    max_body_bytes: int = 2 << 20
    fetch_wait_s: float = 0.0  # FETCH_WAIT_S: a request for a missing checkpoint starts a background download
    keep_source: bool = False  # KEEP_SOURCE: keep the published checkpoint beside its native copy
    generate_seconds: float = 120.0  # GENERATE_SECONDS: time limit of a generation without limits.seconds
    cors_origins: list = field(default_factory=list)  # CORS_ORIGINS: browser origins allowed to call the API
    # Replicas and tenants (all off by default: one machine, no keys, no limits, the disk cache)
    redis_url: str | None = None  # REDIS_URL: rate-limit counters and the job queue
    cache_url: str | None = None  # CACHE_URL=redis://...: the result cache in Redis instead of on disk
    cache_ttl_s: int = 7 * 24 * 3600  # CACHE_TTL: how long Redis keeps a cached result
    api_keys_file: Path | None = None  # API_KEYS_FILE: hashed keys; when set, /v1 needs a key
    rate_limit: str | None = None  # RATE_LIMIT="60/minute;1000/day": per key (or per IP without keys)
    job_ttl_s: int = 24 * 3600  # JOB_TTL: how long a job's result or error is kept
    job_retries: int = 1  # JOB_RETRIES: runs again after a worker dies mid-job
    job_heartbeat_grace_s: int = 60  # JOB_HEARTBEAT_GRACE: a silent worker's job is abandoned after this
    batching: bool = True  # BATCHING=off: no dynamic batching, no queue (each request runs in its thread)
    metrics_port: int | None = None  # METRICS_PORT: /metrics on its own port instead of the API's
    host: str = "127.0.0.1"
    port: int = 5000

    @classmethod
    def from_env(cls, env=None) -> "Settings":
        env = os.environ if env is None else env
        plugins = env.get("MAGENTA_API_LOAD_PLUGINS")
        extra = env.get("MAGENTA_API_MODELS")
        return cls(
            model_dir=Path(env.get("MODEL_DIR", "models")),
            cache_dir=Path(env.get("CACHE_DIR", "cache")),
            cache_enabled=env.get("CACHE", "on").strip().lower() not in {"off", "0", "false", "no"},
            cache_size_limit=int(env.get("CACHE_SIZE_LIMIT", 1 << 30)),
            offline=_flag(env.get("MAGENTA_API_OFFLINE")),
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            base_models_file=_base_models_file(),
            extra_models_files=[Path(p) for p in extra.split(os.pathsep) if p] if extra else [],
            load_plugins=[p.strip() for p in plugins.split(",") if p.strip()] if plugins is not None else None,
            default_model=env.get("MAGENTA_API_DEFAULT_MODEL") or None,
            max_body_bytes=int(env.get("MAX_BODY_BYTES", 2 << 20)),
            generate_seconds=float(env.get("GENERATE_SECONDS", 120)),
            fetch_wait_s=float(env.get("FETCH_WAIT_S", 0)),
            keep_source=_flag(env.get("KEEP_SOURCE")),
            cors_origins=[o.strip() for o in env.get("CORS_ORIGINS", "").split(",") if o.strip()],
            redis_url=env.get("REDIS_URL") or None,
            cache_url=env.get("CACHE_URL") or None,
            cache_ttl_s=int(env.get("CACHE_TTL", 7 * 24 * 3600)),
            api_keys_file=Path(env["API_KEYS_FILE"]) if env.get("API_KEYS_FILE") else None,
            rate_limit=env.get("RATE_LIMIT") or None,
            job_ttl_s=int(env.get("JOB_TTL", 24 * 3600)),
            job_retries=int(env.get("JOB_RETRIES", 1)),
            job_heartbeat_grace_s=int(env.get("JOB_HEARTBEAT_GRACE", 60)),
            batching=env.get("BATCHING", "on").strip().lower() not in {"off", "0", "false", "no"},
            metrics_port=int(env["METRICS_PORT"]) if env.get("METRICS_PORT") else None,
            host=env.get("HOST", "127.0.0.1"),
            port=int(env.get("PORT", "5000")),
        )
