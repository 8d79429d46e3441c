"""``magenta-api`` command line: serve, models, plugins, fetch, forget, generate, train.

Errors a user can cause are printed as one message (with the command that fixes the state, when there
is one) and an exit code from :data:`EXIT_CODES`; only a bug shows a traceback. Only the commands that
need them (fetch, forget, generate, serve) create MODEL_DIR and CACHE_DIR.
"""

import argparse
import io
import json
import os
import sys
import zipfile
from pathlib import Path

from .config import Settings
from .errors import (
    AudioUnavailable,
    FamilyUnavailable,
    InvalidRequest,
    MagentaApiError,
    ModelBroken,
    NotAcceptable,
    Overloaded,
    TooLarge,
    UnknownModel,
    Unprocessable,
)
from .jobs import JobsUnavailable
from .logs import setup_logging
from .models_file import ModelsFileError
from .store import CheckpointError

# Exit codes by error class (a subclass takes its nearest listed base's code); 1 is left to bugs.
EXIT_CODES = {
    InvalidRequest: 2,  # the command line or request is malformed
    UnknownModel: 2,
    TooLarge: 2,
    NotAcceptable: 2,
    ModelsFileError: 2,  # a models.yaml cannot be used
    Unprocessable: 3,  # the model cannot do what was asked
    FamilyUnavailable: 4,  # the model cannot be served here now
    ModelBroken: 4,
    CheckpointError: 4,
    JobsUnavailable: 4,  # the job queue's Redis does not answer
    Overloaded: 4,  # the model's queue is full: try again
    AudioUnavailable: 4,  # no synthesizer or SoundFont for audio output
}


def exit_code_of(exc: MagentaApiError) -> int:
    return next((EXIT_CODES[k] for k in type(exc).__mro__ if k in EXIT_CODES), 1)


def report(exc: MagentaApiError, prefix: str = "error") -> None:
    """One readable message on stderr: what went wrong, its code, and the fix when there is one."""
    print(f"{prefix}: {exc.message} [{exc.code}]", file=sys.stderr)
    extra = {k: v for k, v in exc.details.items() if k != "fix"}
    if extra:
        print(json.dumps(extra, indent=2), file=sys.stderr)
    if exc.details.get("fix"):
        print(f"fix: {exc.details['fix']}", file=sys.stderr)


def _service(settings: Settings):
    from .service import Service

    return Service.from_settings(settings)


def cmd_serve(args, settings: Settings) -> int:
    host = args.host or settings.host
    port = args.port or settings.port
    if args.dev:
        from .app import create_app

        if settings.metrics_port:
            from . import metrics

            metrics.serve_on_port(settings.metrics_port, host)
        create_app(settings).run(host=host, port=port, debug=False, threaded=True)
        return 0
    # magenta_api.gunicorn_conf: preloaded models shared by the workers, BLAS threads sized from workers x
    # threads, metrics summed over the workers, the gthread worker with JSON errors
    os.environ.update(WEB_CONCURRENCY=str(args.workers), THREADS=str(args.threads))
    if args.no_preload:
        os.environ["PRELOAD"] = "off"
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:magenta_api.gunicorn_conf",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(args.workers),
        "--threads",
        str(args.threads),
        "--timeout",
        str(args.timeout),
        "--access-logfile",
        "-",
    ]
    os.execvp(argv[0], argv)
    return 0  # not reached


def cmd_models(args, settings: Settings) -> int:
    models = _service(settings).models()
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    print(f"{'ID':34} {'FAMILY':12} {'STATE':12} {'SIZE':>12}  MODES")
    for m in models:
        ck = m.get("checkpoint") or {}
        size = ck.get("size")
        print(
            f"{m['id']:34} {m['family']:12} {m['state']!s:12} {size if size is not None else '-':>12}  "
            f"{','.join(m['capabilities']) or '(family unavailable)'}"
        )
    return 0


def cmd_plugins(args, settings: Settings) -> int:
    for info in _service(settings).plugins():
        status = f"ERROR {info['error']}" if info["error"] else "ok"
        print(f"{info['name']:16} {info['version'] or '-':10} {','.join(info['hooks']):40} {status}")
    return 0


def _each_model(args, service, action) -> int:
    """Run ``action(model_id)`` for each named model (or every one with --all), reporting each error
    and carrying on; the worst exit code."""
    ids = [m["id"] for m in service.models()] if getattr(args, "all", False) else args.models
    if not ids:
        print("name a model or pass --all", file=sys.stderr)
        return 2
    worst = 0
    for model_id in ids:
        try:
            action(model_id)
        except MagentaApiError as exc:  # report and carry on with the others
            report(exc, prefix=model_id)
            worst = max(worst, exit_code_of(exc))
    return worst


def cmd_fetch(args, settings: Settings) -> int:
    service = _service(settings)

    def fetch(model_id):
        status = service.prepare(model_id, progress=not args.quiet, repin=args.repin)
        if status is None:
            print(f"{model_id}: no checkpoint needed")
            return
        print(f"{model_id}: {status['state']} at {status['path']} ({status['size']} bytes, sha256 {status['sha256']})")
        if args.repin:
            print(f"{model_id}: pinned sha256 {status['sha256']}")

    return _each_model(args, service, fetch)


def cmd_forget(args, settings: Settings) -> int:
    service = _service(settings)

    def forget(model_id):
        done = service.forget(model_id)
        if done is None:
            print(f"{model_id}: no checkpoint")
            return
        parts = [f"the pinned sha256 {done['pin']['sha256']}"] if done.get("pin") else []
        if done.get("files"):
            parts.append(f"its files under {settings.model_dir / model_id}")
        forgot = " and ".join(parts) or "nothing (nothing was downloaded or pinned)"
        print(f"{model_id}: forgot {forgot}; `magenta-api fetch {model_id}` downloads and pins it anew")

    return _each_model(args, service, forget)


# What ``generate -o FILE`` writes, by the file's extension: the request's format and the container.
OUTPUTS = {".mid": ("midi", "mid"), ".midi": ("midi", "mid"), ".zip": ("midi", "zip"), ".json": ("json", "json")}
# Audio holds one sequence a file (several: a .zip), a picture stacks them all.
OUTPUTS.update({ext: (ext[1:], "one") for ext in (".wav", ".flac", ".ogg")})
OUTPUTS.update({ext: (ext[1:], ext[1:]) for ext in (".png", ".svg")})
NOT_YET = {".mp3": "MP3 audio"}


def _output_kind(output: str, payload: dict) -> tuple:
    """(request format, container) for ``-o output``, refusing what the extension cannot hold."""
    ext = Path(output).suffix.lower()
    if ext in NOT_YET:
        raise InvalidRequest(
            f"-o {output}: {NOT_YET[ext]} output is not available yet; write .mid, .zip or .json",
            {"field": "-o", "available": sorted(OUTPUTS)},
        )
    if ext not in OUTPUTS:
        raise InvalidRequest(
            f"-o {output}: cannot tell the format from {ext or 'a name without an extension'}; use .mid or .midi "
            "(one MIDI file), .zip (a zip of MIDI files), .json, .wav, .flac, .ogg, .png or .svg",
            {"field": "-o", "available": sorted(OUTPUTS)},
        )
    fmt, container = OUTPUTS[ext]
    asked = payload.get("format")
    if container == "zip" and asked in ("wav", "flac", "ogg"):  # a zip of audio files, one per sequence
        fmt = asked
    if asked is not None and asked != fmt:
        raise InvalidRequest(
            f"-o {output} writes {fmt}, but --params asks for format {asked!r}; drop one of them",
            {"field": "-o"},
        )
    count = payload.get("num_outputs")
    if container in ("mid", "one") and isinstance(count, int) and count > 1:
        zipped = f"-o {Path(output).with_suffix('.zip').name}" + (
            f' --params \'{{"format": "{fmt}"}}\'' if container == "one" else ""
        )
        raise InvalidRequest(
            f"-n {count} makes {count} sequences, and a {ext} file holds one: "
            f"write them to a .zip ({zipped}) or use -n 1",
            {"field": "-o"},
        )
    return fmt, container


def _write_atomically(path: Path, data: bytes) -> None:
    """``data`` at ``path`` in full or not at all (a temporary file renamed into place)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise InvalidRequest(f"cannot write -o {path}: {exc.strerror or exc}", {"field": "-o"}) from exc
    finally:
        tmp.unlink(missing_ok=True)


def _prepare_for_generate(service, model_id: str) -> None:
    """Fetch a model's checkpoint in the foreground, with progress, before generating from it."""
    info = service.model(model_id)
    if info["available"] and info["checkpoint"] and info["state"] != "ready":
        service.prepare(model_id, progress=True)


def cmd_generate(args, settings: Settings) -> int:
    payload: dict = {"model": args.model, "num_outputs": args.num_outputs}
    for key in ("mode", "temperature", "length", "qpm", "seed"):
        value = getattr(args, key)
        if value is not None:
            payload[key] = value
    if args.params:
        try:
            extra = json.loads(args.params)
        except ValueError as exc:
            raise InvalidRequest(f"--params is not a JSON object: {exc}", {"field": "--params"}) from exc
        if not isinstance(extra, dict):
            raise InvalidRequest("--params is not a JSON object", {"field": "--params"})
        payload.update(extra)
    fmt, container = _output_kind(args.output, payload) if args.output else ("json", None)
    service = _service(settings)
    _prepare_for_generate(service, args.model)
    rendered = service.generate(payload, default_format=fmt)
    body = rendered.body
    if args.output is None:
        if rendered.content_type.startswith("application/json"):
            sys.stdout.write(body.decode() + "\n")
        else:
            sys.stdout.buffer.write(body)
        return 0
    if container in ("mid", "one") and rendered.content_type == "application/zip":
        raise InvalidRequest(
            f"mode {payload.get('mode') or 'default'} gave several sequences, and a "
            f"{Path(args.output).suffix} file holds one: "
            f"write them to a .zip (-o {Path(args.output).with_suffix('.zip').name})",
            {"field": "-o"},
        )
    if container == "zip" and rendered.content_type != "application/zip":  # one sequence, in the zip asked for
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(zipfile.ZipInfo(rendered.filename or "1.mid", date_time=(2020, 1, 1, 0, 0, 0)), body)
        body = buf.getvalue()
    _write_atomically(Path(args.output), body)
    print(f"wrote {args.output} ({len(body)} bytes, seed {rendered.seed})", file=sys.stderr)
    return 0


def cmd_train(args, settings: Settings | None = None) -> int:
    try:
        from magenta_api_training.cli import main as train_main
    except ImportError as exc:
        print(f"training needs the 'train' extra (pip install -e '.[train]'): {exc}", file=sys.stderr)
        return 2
    return train_main(args.rest) or 0


def cmd_keys(args, settings: Settings) -> int:
    """API keys in API_KEYS_FILE (or --file): add prints a new key once; list; revoke."""
    from .auth import KeysFileError, KeyStore

    path = args.file or settings.api_keys_file
    if path is None:
        print("error: set API_KEYS_FILE (or pass --file) to name the API keys file", file=sys.stderr)
        return 2
    if args.action != "list" and not args.name:
        print(f"error: keys {args.action} needs a NAME", file=sys.stderr)
        return 2
    keys = KeyStore(Path(path))
    try:
        if args.action == "add":
            key = keys.add(args.name, args.rate_limit)
            print(key)
            print(f"key {args.name!r} added to {path}; it is shown only now", file=sys.stderr)
        elif args.action == "revoke":
            keys.revoke(args.name)
            print(f"key {args.name!r} revoked in {path}", file=sys.stderr)
        elif args.json:
            print(json.dumps(keys.entries(), indent=2))
        else:
            print(f"{'NAME':24} {'PREFIX':10} {'CREATED':22} {'RATE LIMIT':20} REVOKED")
            for e in keys.entries():
                limit, revoked = e["rate_limit"] or "-", e["revoked"] or "-"
                print(f"{e['name']:24} {e['prefix']:10} {e['created']:22} {limit:20} {revoked}")
    except KeysFileError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


def cmd_worker(args, settings: Settings) -> int:
    """Run a job worker on REDIS_URL's queue until stopped (--burst: until the queue is empty)."""
    from .jobs import run_worker

    return run_worker(settings, burst=args.burst)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="magenta-api", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the HTTP service (gunicorn; --dev for Flask's server)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--dev", action="store_true", help="Flask's development server, one process")
    p.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    p.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("THREADS", "16")),
        help="gthread threads per worker: requests in service at once, which dynamic batching merges (default 16)",
    )
    p.add_argument(
        "--no-preload",
        action="store_true",
        help="each worker imports the app and loads models itself (default: the master does, before the fork)",
    )
    p.add_argument("--timeout", type=int, default=300, help="worker timeout (first loads can be slow)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("models", help="list models and checkpoint states")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("plugins", help="list plugins and load errors")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("fetch", help="download and verify checkpoints now (e.g. in a Docker build)")
    p.add_argument("models", nargs="*")
    p.add_argument("--all", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--repin",
        action="store_true",
        help="download again and replace the sha256 pinned in MODEL_DIR/checkpoints.lock once the new file verifies",
    )
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("forget", help="delete a model's downloaded checkpoint and its pinned sha256")
    p.add_argument("models", nargs="*")
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("generate", help="generate from the command line (JSON to stdout, or -o file.mid)")
    p.add_argument("model")
    p.add_argument("-n", "--num-outputs", type=int, default=1)
    p.add_argument("--seed", type=int)
    p.add_argument("--mode")
    p.add_argument("--temperature", type=float)
    p.add_argument("--length", type=int)
    p.add_argument("--qpm", type=float)
    p.add_argument("--params", help="extra request fields as a JSON object, e.g. '{\"primer\": [60, -2, 62]}'")
    p.add_argument(
        "-o", "--output", help="write here, as its extension says: .mid (one sequence), .zip (MIDI files), .json"
    )
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("keys", help="API keys (API_KEYS_FILE): add NAME prints a new key once, list, revoke NAME")
    p.add_argument("action", choices=["add", "list", "revoke"])
    p.add_argument("name", nargs="?", help="the key's name (add, revoke)")
    p.add_argument("--rate-limit", help="this key's own limit, e.g. '600/minute;10000/day' (else RATE_LIMIT)")
    p.add_argument("--file", help="the keys file (default: API_KEYS_FILE)")
    p.add_argument("--json", action="store_true", help="list as JSON")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("worker", help="run a job worker on REDIS_URL's queue (POST /v1/jobs)")
    p.add_argument("--burst", action="store_true", help="stop once the queue is empty")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("train", help="train the embedded models (needs the 'train' extra)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_train)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # everything after `train` belongs to the trainer, --help included
        return cmd_train(argparse.Namespace(rest=argv[1:]))
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    setup_logging(settings.log_level if args.command == "serve" else os.environ.get("LOG_LEVEL", "WARNING"))
    try:
        return args.func(args, settings)
    except MagentaApiError as exc:
        report(exc)
        return exit_code_of(exc)
    except BrokenPipeError:  # `magenta-api models | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
