"""``w2sjax run CONFIG.toml``: any study described by a TOML file (see the presets and docs/cli.md)."""

from __future__ import annotations

from w2sjax.commands._common import add_study_options, execute, override


def register(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a study described by a TOML file",
        description="Run the study of CONFIG.toml (keys as in the shipped presets, `w2sjax figure` names them; "
        "unknown keys are errors; docs/cli.md lists every key). Writes DIR/results.json, curves.csv, config.toml "
        "and PNG figures; run units already in DIR/runs/ are reused (--fresh to redo).",
    )
    p.add_argument("config", metavar="CONFIG.toml", help="study file")
    p.add_argument("--quick", action="store_true", help="apply the file's [quick] table")
    add_study_options(p, "results/<name in the file>")
    p.set_defaults(func=run)


def run(args) -> int:
    from w2sjax.studies.config import load_config

    config = override(load_config(args.config, quick=args.quick), args)
    return execute(config, args.out or f"results/{config.name}", args)
