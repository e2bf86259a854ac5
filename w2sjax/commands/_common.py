"""What ``figure``, ``run`` and ``samples`` share: their options and how a study is run and printed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from w2sjax.studies.config import METHODS, PRECISIONS


def add_study_options(p, default_out: str) -> None:
    p.add_argument("--out", metavar="DIR", help=f"output folder (default {default_out})")
    p.add_argument("--seeds", type=int, metavar="N", help="use seeds 0..N-1 instead of the study's")
    p.add_argument("--precision", choices=PRECISIONS, help="float64 or float32 (default: the study's)")
    p.add_argument("--method", choices=METHODS, help="route (default: the study's, normally auto)")
    p.add_argument("--fresh", action="store_true", help="recompute every run unit, ignoring DIR/runs/")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true", help="numbers only: skip the PNG figures")
    add_max_hours_option(p)


DEFAULT_MAX_HOURS = 24.0


def add_max_hours_option(p) -> None:
    p.add_argument("--max-hours", type=float, default=DEFAULT_MAX_HOURS, metavar="H",
                   help="refuse to start when the planned computing time exceeds H hours")


def check_estimate(seconds: float, max_hours: float) -> None:
    """ValueError, before anything runs, when the plan's predicted seconds exceed ``max_hours``."""
    import math

    if not (math.isfinite(max_hours) and max_hours > 0):
        raise ValueError(f"--max-hours must be a positive number; got {max_hours:g}")
    if seconds > max_hours * 3600:
        raise ValueError(f"the plan predicts {seconds / 3600:.3g} h of computing, more than --max-hours {max_hours:g}; "
                         "use fewer or smaller students (or a GPU), or raise --max-hours")


def override(config, args):
    """The config with --seeds N (seeds 0..N-1), --precision and --method applied."""
    changes = {}
    if args.seeds is not None:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be a positive integer; got {args.seeds}")
        changes["seeds"] = tuple(range(args.seeds))
    if args.precision is not None:
        changes["precision"] = args.precision
    if args.method is not None:
        changes["method"] = args.method
    return dataclasses.replace(config, **changes) if changes else config


def execute(config, out, args) -> int:
    """Plan (printing the estimate), run, print the summary table and where the files went."""
    from w2sjax.studies.runner import run_study, summary_table

    def announce(plan, todo):
        check_estimate(plan.seconds, args.max_hours)
        if not args.no_progress and todo:
            print(f"{config.name}: {plan.describe()}", flush=True)

    result = run_study(config, out, fresh=args.fresh, progress=not args.no_progress, plots=not args.no_plots,
                       on_plan=announce)
    print(f"{config.name}: {config.description}" if config.description else config.name)
    print(summary_table(result))
    files = json.loads((Path(out) / "results.json").read_text())["files"]
    print(f"wrote {out}/: " + ", ".join(files))
    return 0


DEFAULT_TIMES = (0.1, 1e7, 400)
"""The default time grid of every command (the presets' too): 400 log-spaced times from 0.1 to 1e7, which
covers t* of every preset and reaches L(∞) within rounding on fig2."""


def add_times_option(p, default=DEFAULT_TIMES) -> None:
    p.add_argument(
        "--times", nargs=3, type=float, default=default, metavar=("FIRST", "LAST", "NUM"),
        help=f"stopping times: NUM log-spaced times from FIRST to LAST (default {default[0]:g} {default[1]:g} "
        f"{int(default[2])})",
    )


def time_grid(args):
    """The --times grid, checked: 0 < FIRST < LAST finite, NUM a whole number >= 2 and at most 100,000."""
    import math

    import numpy as np

    first, last, num = args.times
    if not (math.isfinite(first) and math.isfinite(last)) or not 0 < first < last:
        raise ValueError(f"--times needs 0 < FIRST < LAST (times, not their logarithms); got {first:g} {last:g}")
    if not math.isfinite(num) or num != int(num) or not 2 <= num <= 100_000:
        raise ValueError(f"--times NUM must be a whole number from 2 to 100000; got {num:g}")
    return np.geomspace(first, last, int(num))


def number(value) -> str:
    """A float for the terminal: ∞, NaN and numbers alike."""
    import math

    value = float(value)
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.6g}"
