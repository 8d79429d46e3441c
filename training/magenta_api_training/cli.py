"""``magenta-api train ...``: data extraction, training, export and evaluation of the embedded models.

    train data                                   # parse the tune books into training/.cache
    train MODEL ...                              # short for `train train MODEL ...`
    train train MODEL --steps N --seed S --out DIR [--resume] [--smoke] [--max-minutes M]
    train export RUN_DIR --out FILE.safetensors  # re-export a run's checkpoint
    train evaluate [--samples 1000] [--json F] [--models M ...]  # quality metrics of the shipped models
    train ship [--runs DIR] [--evaluation F] [--models M ...]    # copy runs into plugins/magenta_api_embedded

MODEL is one of ``mel_2bar``, ``drums_2bar``, ``basic_rnn``, ``mel_16bar`` or ``all`` (one after another, each
into ``DIR/<model>``).
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from .configs import CONFIGS


def _parser():
    p = argparse.ArgumentParser(prog="magenta-api train", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data", help="extract and cache the melody dataset")
    d.add_argument("--cache", type=Path, default=None)
    d.add_argument("--limit", type=int, default=None)
    t = sub.add_parser("train", help="train a model (resumable)")
    t.add_argument("model", choices=sorted(CONFIGS) + ["all"])
    t.add_argument("--steps", type=int, default=None, help="total steps (default: the model's config)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--out",
        type=Path,
        default=None,
        help="run folder (default training/runs/MODEL; with `all`, the parent of one folder per model)",
    )
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument("--smoke", action="store_true", help="tiny dims and a few tunes: a fast end-to-end check")
    t.add_argument("--max-minutes", type=float, default=None, help="stop (and export) after this long")
    t.add_argument("--cache", type=Path, default=None)
    e = sub.add_parser("export", help="export a run's checkpoint in Magenta's layout (safetensors)")
    e.add_argument("run", type=Path)
    e.add_argument("--out", type=Path, required=True)
    s = sub.add_parser(
        "ship",
        help="copy trained runs into plugins/magenta_api_embedded (weights, models.yaml with sha256, model cards)",
    )
    s.add_argument("--runs", type=Path, default=Path("training/runs"))
    s.add_argument("--evaluation", type=Path, default=None, help="JSON written by `evaluate --json`")
    s.add_argument("--models", nargs="+", choices=sorted(CONFIGS), default=None, help="default: all")
    q = sub.add_parser("evaluate", help="quality metrics of models (bench/quality.py)")
    q.add_argument("--samples", type=int, default=1000)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--json", type=Path, default=None)
    q.add_argument("--models", nargs="+", choices=sorted(CONFIGS), default=None, help="default: all")
    q.add_argument(
        "--runs",
        type=Path,
        default=None,
        help="evaluate RUNS/<model>/<model>.safetensors instead of the shipped weights",
    )
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and (argv[0] in CONFIGS or argv[0] == "all"):
        argv = ["train"] + argv  # `magenta-api train mel_2bar ...` = `... train train mel_2bar ...`
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "data":
        from . import datasets

        cache = args.cache or datasets.DEFAULT_CACHE
        for expand in (False, True):  # as written (2-bar models, basic_rnn); repeats written out (mel_16bar)
            ts = datasets.load_or_extract_tunes(cache, limit=args.limit, expand_repeats=expand)
            what = "tunes with repeats written out" if expand else "tunes"
            print(f"{len(ts)} {what} ({int(ts.valid.sum())} validation) cached in {cache}")
        return 0
    if args.command == "train":
        from .train import train

        names = sorted(CONFIGS) if args.model == "all" else [args.model]
        for name in names:
            if args.out is None:
                out = Path("training/runs") / name
            else:
                out = args.out / name if args.model == "all" else args.out
            summary = train(
                name,
                steps=args.steps,
                seed=args.seed,
                out=out,
                resume=args.resume,
                smoke=args.smoke,
                max_minutes=args.max_minutes,
                cache_dir=args.cache,
            )
            print(
                json.dumps(
                    {
                        "model": name,
                        "steps": summary["steps"],
                        "final": summary["final"],
                        "export": summary.get("export"),
                    }
                )
            )
        return 0
    if args.command == "export":
        from .export import export_model
        from .train import load_trained

        model, cfg, step = load_trained(args.run)
        print(export_model(model, cfg, args.out, global_step=step))
        return 0
    if args.command == "ship":
        from .ship import ship

        for model_id, entry in ship(args.runs, args.evaluation, names=args.models).items():
            print(model_id, entry["checkpoint"]["sha256"], entry["checkpoint"]["size"])
        return 0
    if args.command == "evaluate":
        from .evaluate import main as evaluate_main

        weights = None
        if args.runs:
            weights = {n: args.runs / n / f"{n}.safetensors" for n in CONFIGS}
        return evaluate_main(
            samples=args.samples, seed=args.seed, json_path=args.json, models=args.models, weights=weights
        )
    return 2


if __name__ == "__main__":
    sys.exit(main())
