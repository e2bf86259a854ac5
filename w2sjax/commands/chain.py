"""``w2sjax chain``: a chain of students teacher → S_1 → … → S_K on the population, every stage exactly: a chain
study (``chain_widths``, ``chain_times``) built from flags and run like any other study."""

from __future__ import annotations

from w2sjax.commands._common import add_study_options, add_times_option, execute, override, time_grid
from w2sjax.features import ACTIVATIONS


def register(sub) -> None:
    p = sub.add_parser(
        "chain",
        help="a chain of students: teacher -> S_1 -> S_2 -> ..., each trained on the previous stage's function",
        description="Stage 1 learns from the teacher (fitted to f* = x_1 by least squares); stage k >= 2 learns by "
        "gradient flow from the function of stage k-1 at its stopping time ('best': its own t*, a number: that "
        "time, inf: least squares). Inputs x ~ N(0, I_d); every stage is scored against f* and its ratio and PGR "
        "are against the teacher's L_TE. The same study as a TOML file with chain_widths and chain_times (w2sjax "
        "run): DIR/results.json (one record per seed, teacher and stage), curves.csv (with stage columns), "
        "config.toml, loss_ratio.png, power_law.png and chain.png; run units in DIR/runs/ are reused.",
    )
    p.add_argument("--stages", required=True, nargs="+", metavar="M",
                   help="widths of the stages, in order (e.g. 512 1024 1024); the last may be inf")
    p.add_argument("--stage-times", nargs="+", default=["best"], metavar="T",
                   help="time at which each stage but the last labels the next: 'best' (its own t*), a number, or "
                   "inf; one value for all, or one per stage but the last (default best)")
    p.add_argument("--teacher-width", required=True, nargs="+", type=int, metavar="M_TE",
                   help="teacher width(s); each teacher labels its own chain")
    p.add_argument("--dim", type=int, default=16, help="input dimension d (default 16)")
    p.add_argument("--activation", default="relu", choices=ACTIVATIONS, help="activation of every model (default relu)")
    add_times_option(p)
    add_study_options(p, "results/chain")
    p.set_defaults(func=run)


def _entries(values, flag: str, words: dict, number, minimum: float, what: str) -> list:
    """Each value a word (``words`` maps it to its entry) or a ``number(text)`` >= ``minimum`` (ValueError naming
    the flag otherwise)."""
    entries = []
    for v in values:
        text = str(v).strip().lower()
        if text in words:
            entries.append(words[text])
            continue
        try:
            value = number(text)
        except ValueError:
            raise ValueError(f"{flag} takes {what}; got {v!r}") from None
        if not value >= minimum:
            raise ValueError(f"{flag} takes {what}; got {v!r}")
        entries.append(value)
    return entries


def parse_stage_times(values, count: int) -> list:
    """'best' | number | 'inf' per entry; one entry is used for every labelling stage (ValueError on bad input)."""
    entries = _entries(values, "--stage-times", {"best": "best"}, float, 0.0, "'best', a time >= 0 or inf")
    if len(entries) not in (1, max(count - 1, 1)):
        raise ValueError(f"--stage-times needs one value or {count - 1} (one per stage but the last); got {len(entries)}")
    return entries


def parse_stages(values) -> list:
    """Stage widths: positive integers, the last may be inf (ValueError on bad input)."""
    widths = _entries(values, "--stages", {"inf": "inf", "infinity": "inf"}, int, 1,
                      "positive integers (the last may be inf)")
    if "inf" in widths[:-1]:
        raise ValueError("--stages: only the last stage may be inf (an infinitely wide stage cannot label another)")
    return widths


def chain_config(args):
    """The chain study the flags describe (ValueError naming the flag on bad input)."""
    from w2sjax.studies.config import StudyConfig

    stages = parse_stages(args.stages)
    stage_times = parse_stage_times(args.stage_times, len(stages))
    bad = [v for v in args.teacher_width if v < 1]
    if bad:
        raise ValueError(f"--teacher-width takes positive integers; got {bad[0]}")
    if len(set(args.teacher_width)) != len(args.teacher_width):
        raise ValueError(f"--teacher-width has repeated values {args.teacher_width}; list each once")
    if args.dim < 1:
        raise ValueError(f"--dim must be a positive integer; got {args.dim}")
    grid = time_grid(args)
    description = (f"chain {' -> '.join(map(str, stages))} (label times: {', '.join(map(str, stage_times))}), "
                   f"{args.activation} features, d = {args.dim}, f* = x_1")
    config = StudyConfig(
        name="chain", description=description, teacher_widths=tuple(args.teacher_width),
        student_widths=(stages[0],), chain_widths=tuple(stages[1:]),
        chain_times=tuple(stage_times) if len(stages) > 1 else ("best",), input_dims=(args.dim,),
        activation=args.activation, seeds=(0,), times=(float(grid[0]), float(grid[-1])), num_times=len(grid),
    )
    return override(config, args)


def run(args) -> int:
    config = chain_config(args)
    return execute(config, args.out or "results/chain", args)
