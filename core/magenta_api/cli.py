"""``magenta-api`` command line: serve, models, plugins, fetch, generate, train.

Errors a user can cause are printed as one message (with the command that fixes the state, when there
is one) and an exit code from :data:`EXIT_CODES`; only a bug shows a traceback.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from .config import Settings
from .errors import (
    FamilyUnavailable,
    InvalidRequest,
    MagentaApiError,
    ModelBroken,
    NotAcceptable,
    TooLarge,
    UnknownModel,
    Unprocessable,
)
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

        create_app(settings).run(host=host, port=port, debug=False, threaded=True)
        return 0
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
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
        "--worker-class",
        "magenta_api.gunicorn_worker.JsonErrorsWorker",  # gthread; its own 400/414/431 answers in JSON
        "magenta_api.wsgi:app",
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


def cmd_fetch(args, settings: Settings) -> int:
    service = _service(settings)
    ids = [m["id"] for m in service.models()] if args.all else args.models
    if not ids:
        print("name a model or pass --all", file=sys.stderr)
        return 2
    worst = 0
    for model_id in ids:
        try:
            status = service.prepare(model_id, progress=not args.quiet)
        except MagentaApiError as exc:  # report and carry on with the others
            report(exc, prefix=model_id)
            worst = max(worst, exit_code_of(exc))
            continue
        if status is None:
            print(f"{model_id}: no checkpoint needed")
        else:
            print(
                f"{model_id}: {status['state']} at {status['path']} ({status['size']} bytes, sha256 {status['sha256']})"
            )
    return worst


def cmd_generate(args, settings: Settings) -> int:
    service = _service(settings)
    payload = {"model": args.model, "num_outputs": args.num_outputs}
    for key in ("mode", "temperature", "length", "qpm", "seed"):
        value = getattr(args, key)
        if value is not None:
            payload[key] = value
    if args.params:
        try:
            payload.update(json.loads(args.params))
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"--params is not a JSON object: {exc}", {"field": "--params"}) from exc
    want_midi = bool(args.output) and not args.output.endswith(".json")
    rendered = service.generate(payload, default_format="midi" if want_midi else "json")
    if args.output:
        Path(args.output).write_bytes(rendered.body)
        print(f"wrote {args.output} ({len(rendered.body)} bytes, seed {rendered.seed})", file=sys.stderr)
    else:
        sys.stdout.write(rendered.body.decode() + "\n")
    return 0


def cmd_train(args, settings: Settings | None = None) -> int:
    try:
        from magenta_api_training.cli import main as train_main
    except ImportError as exc:
        print(f"training needs the 'train' extra (pip install -e '.[train]'): {exc}", file=sys.stderr)
        return 2
    return train_main(args.rest) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="magenta-api", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the HTTP service (gunicorn; --dev for Flask's server)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--dev", action="store_true", help="Flask's development server, one process")
    p.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    p.add_argument("--threads", type=int, default=4)
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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("generate", help="generate from the command line (JSON to stdout, or -o file.mid)")
    p.add_argument("model")
    p.add_argument("-n", "--num-outputs", type=int, default=1)
    p.add_argument("--seed", type=int)
    p.add_argument("--mode")
    p.add_argument("--temperature", type=float)
    p.add_argument("--length", type=int)
    p.add_argument("--qpm", type=float)
    p.add_argument("--params", help="extra request fields as a JSON object, e.g. '{\"primer\": [60, -2, 62]}'")
    p.add_argument("-o", "--output", help="write here (.mid/.zip: MIDI; .json: JSON)")
    p.set_defaults(func=cmd_generate)

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


if __name__ == "__main__":
    sys.exit(main())
