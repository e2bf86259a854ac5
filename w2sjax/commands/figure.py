"""``w2sjax figure NAME``: one of the paper's experiments (a preset), with its files and figures."""

from __future__ import annotations

import dataclasses

from w2sjax.experiments import PRECISIONS, PRESETS

SAMPLE_PRESETS = ("relu-samples",)


def register(sub) -> None:
    p = sub.add_parser(
        "figure",
        help="reproduce a figure of the paper (presets: " + ", ".join(PRESETS + SAMPLE_PRESETS) + ")",
        description="Run a preset sweep and write DIR/results.json, curves.csv, config.toml and PNG figures. "
        "fig2: ReLU, d = 32, M_ST = 16384, M_TE 16..256; fig3: linear features, d = M_TE^(3/2), spiked Σ, "
        "target e1, M_ST = 16 d; fig4: fig2 at d in {16, 32, 64}; fig5: fig2 with M_ST in {1024, 4096, 16384}; "
        "sizes: L_ST*/L_TE over M_TE x M_ST; relu-samples: finite-sample study (ReLU-network target of 64 units, "
        "teacher of 48 features on n = 2048 samples, students 256..4096 on the same samples). The full presets "
        "are meant for a GPU; --quick runs the CPU-sized variant (about a minute on 2 cores). Run units already in DIR/runs/ are reused (--fresh to redo).",
    )
    names = PRESETS + SAMPLE_PRESETS
    p.add_argument("name", choices=names, metavar="NAME", help="preset: " + ", ".join(names))
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


def run_samples(args) -> int:
    """The finite-sample preset (``w2sjax.finite_experiment.relu_samples_experiment``)."""
    from w2sjax.finite_experiment import relu_samples_experiment

    if args.precision == "float32":
        raise ValueError("relu-samples runs in float64 only; drop --precision float32")
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds must be a positive integer; got {args.seeds}")
    out = args.out or ("results/relu-samples-quick" if args.quick else "results/relu-samples")
    record = relu_samples_experiment(args.quick, tuple(range(args.seeds or 1)), out)
    print("relu-samples: L_TE per seed = " + ", ".join(f"{v:.4g}" for v in record["teacher_loss"]))
    for entry in record["per_width"]:
        print(f"  M_ST = {entry['student_width']:>5}: mean L_ST*/L_TE = {entry['best_ratio_mean']:.4g}")
    print(f"wrote {out}/: " + ", ".join(record["files"]))
    return 0


def run(args) -> int:
    from w2sjax.experiments import preset

    if args.name in SAMPLE_PRESETS:
        return run_samples(args)
    config = override(preset(args.name, quick=args.quick), args.seeds, args.precision)
    out = args.out or f"results/{config.name}"
    return execute(config, out, args.fresh, not args.no_progress, not args.no_plots)
