"""``w2sjax run CONFIG.toml``: any weak-to-strong sweep described by a TOML file (see the presets)."""

from __future__ import annotations

from w2sjax.commands.figure import execute, override
from w2sjax.experiments import PRECISIONS


def register(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a sweep described by a TOML file",
        description="Run the sweep of CONFIG.toml (keys as in the shipped presets, w2sjax/presets/*.toml; "
        "unknown keys are errors). Writes DIR/results.json, curves.csv, config.toml and PNG figures; run "
        "units already in DIR/runs/ are reused (--fresh to redo).",
    )
    p.add_argument("config", metavar="CONFIG.toml", help="experiment file")
    p.add_argument("--out", metavar="DIR", help="output folder (default results/<name in the file>)")
    p.add_argument("--fresh", action="store_true", help="recompute every run, ignoring DIR/runs/")
    p.add_argument("--quick", action="store_true", help="apply the file's [quick] table")
    p.add_argument("--seeds", type=int, metavar="N", help="use seeds 0..N-1 instead of the file's")
    p.add_argument("--precision", choices=PRECISIONS, help="override the file's precision")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true", help="numbers only: skip the PNG figures")
    p.set_defaults(func=run)


def run(args) -> int:
    from w2sjax.experiments import load_config

    config = override(load_config(args.config, quick=args.quick), args.seeds, args.precision)
    out = args.out or f"results/{config.name}"
    return execute(config, out, args.fresh, not args.no_progress, not args.no_plots)
