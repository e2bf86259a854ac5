"""``w2sjax figure NAME``: one of the paper's experiments (a preset), with its files and figures."""

from __future__ import annotations

import dataclasses

from w2sjax.experiments import PRECISIONS, PRESETS


def register(sub) -> None:
    p = sub.add_parser(
        "figure",
        help="reproduce a figure of the paper (presets: " + ", ".join(PRESETS) + ")",
        description="Run a preset sweep and write DIR/results.json, curves.csv, config.toml and PNG figures. "
        "fig2: ReLU, d = 32, M_ST = 16384, M_TE 16..256; fig3: linear features, d = M_TE^(3/2), spiked Σ, "
        "target e1, M_ST = 16 d; fig4: fig2 at d in {16, 32, 64}; fig5: fig2 with M_ST in {1024, 4096, 16384}; "
        "sizes: L_ST*/L_TE over M_TE x M_ST. The full presets are meant for a GPU; --quick runs the CPU-sized "
        "variant (about a minute on 2 cores). Run units already in DIR/runs/ are reused (--fresh to redo).",
    )
    p.add_argument("name", choices=PRESETS, metavar="NAME", help="preset: " + ", ".join(PRESETS))
    p.add_argument("--quick", action="store_true", help="the smaller variant of the preset (its [quick] table)")
    p.add_argument("--seeds", type=int, metavar="N", help="use seeds 0..N-1 instead of the preset's")
    p.add_argument("--out", metavar="DIR", help="output folder (default results/NAME, or results/NAME-quick)")
    p.add_argument("--precision", choices=PRECISIONS, help="float64 (the presets' default) or float32")
    p.add_argument("--fresh", action="store_true", help="recompute every run, ignoring DIR/runs/")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true", help="numbers only: skip the PNG figures")
    p.set_defaults(func=run)


def override(config, seeds=None, precision=None):
    """The config with --seeds N (seeds 0..N-1) and --precision applied."""
    changes = {}
    if seeds is not None:
        if seeds < 1:
            raise ValueError(f"--seeds must be a positive integer; got {seeds}")
        changes["seeds"] = tuple(range(seeds))
    if precision is not None:
        changes["precision"] = precision
    return dataclasses.replace(config, **changes) if changes else config


def execute(config, out, fresh: bool, progress: bool, plots: bool = True) -> int:
    """Run, print the summary table and where the files went."""
    from w2sjax.experiments import run_experiment, summary_table

    result = run_experiment(config, out, fresh=fresh, progress=progress, plots=plots)
    print(f"{config.name}: {config.description}" if config.description else config.name)
    print(summary_table(result))
    print(f"wrote {out}/: " + ", ".join(read_files(out)))
    return 0


def read_files(out) -> list:
    import json
    from pathlib import Path

    return json.loads((Path(out) / "results.json").read_text())["files"]


def run(args) -> int:
    from w2sjax.experiments import preset

    config = override(preset(args.name, quick=args.quick), args.seeds, args.precision)
    out = args.out or f"results/{config.name}"
    return execute(config, out, args.fresh, not args.no_progress, not args.no_plots)
