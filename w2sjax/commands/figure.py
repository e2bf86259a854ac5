"""``w2sjax figure NAME``: one of the paper's experiments (a preset), with its files and figures."""

from __future__ import annotations

from w2sjax.commands._common import add_study_options, execute, override
from w2sjax.studies.config import PRESETS


def register(sub) -> None:
    p = sub.add_parser(
        "figure",
        help="reproduce a figure of the paper (presets: " + ", ".join(PRESETS) + ")",
        description="Run a preset study and write DIR/results.json, curves.csv, config.toml and PNG figures. "
        "fig2: ReLU, d = 32, M_ST = 16384 and ∞, M_TE 16..256; fig3: linear features, d = M_TE^(3/2), spiked Σ, "
        "target e1, M_ST = 16 d and ∞; fig4: fig2 at d in {16, 32, 64}; fig5: fig2 with M_ST in {1024, 4096, "
        "16384, ∞}; sizes: L_ST*/L_TE over M_TE x M_ST; relu-samples: finite samples (ReLU-network target, teacher "
        "48 on n = 2048 samples, students 256..4096); shift: teacher, student and test on two-group laws with a "
        "spurious coordinate, over a grid of minority fractions. --quick runs the CPU-sized variant. Every run unit is planned first (the "
        "estimate is printed), saved as it finishes, and reused by a later call with the same DIR (--fresh to redo).",
    )
    p.add_argument("name", choices=PRESETS, metavar="NAME", help="preset: " + ", ".join(PRESETS))
    p.add_argument("--quick", action="store_true", help="the smaller variant of the preset (its [quick] table)")
    add_study_options(p, "results/NAME, or results/NAME-quick")
    p.set_defaults(func=run)


def run(args) -> int:
    from w2sjax.studies.config import preset

    config = override(preset(args.name, quick=args.quick), args)
    return execute(config, args.out or f"results/{config.name}", args)
