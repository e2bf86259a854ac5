"""``w2sjax validate``: the paper's statements checked against exact solutions, in one report."""

from __future__ import annotations

import argparse
import time


def register(sub) -> None:
    p = sub.add_parser(
        "validate",
        help="check the paper's statements against exact solutions (report.md, report.json, PNGs)",
        description="Check five statements of the paper against exact solutions: (1) trained to convergence the "
        "student mimics its teacher, early-stopped it beats it; (2) ReLU features: L_ST*/L_TE -> 0, PGR -> 1, "
        "L_ST* = O~(L_TE^1.49); (3) linear features, spiked covariance: L_ST* ~ L_TE^2; (4) never better than "
        "quadratic, L_ST* >= c L_TE^2; (5) chains of students do not beat the quadratic limit. Each gets its "
        "numbers, a figure and a verdict: consistent / not consistent / not decidable at these sizes. Writes "
        "DIR/report.md, report.json and claim<N>.png; each engine call (DIR/units/) and each claim's numbers "
        "(DIR/claims/) are saved as they finish and reused by a rerun with the same DIR (--fresh to redo). "
        "Exit status: 0 nothing inconsistent, 1 a statement found inconsistent, 2 bad input.",
    )
    p.add_argument("--quick", action="store_true", help="CPU-sized run (about a minute or two on 2 cores)")
    p.add_argument("--out", metavar="DIR", help="output folder (default results/validate, or results/validate-quick)")
    p.add_argument("--claims", default="1,2,3,4,5", metavar="LIST",
                   help="which statements, numbers 1..5 separated by commas (4 also computes 1, 2, 3, 5)")
    p.add_argument("--fresh", action="store_true", help="recompute everything, ignoring DIR/units and DIR/claims")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--sizes", choices=("quick", "full", "tiny"), help=argparse.SUPPRESS)  # testing
    p.set_defaults(func=run)


def run(args) -> int:
    from w2sjax.studies.validation import SIZES, parse_claims, run_validation

    claims = parse_claims(args.claims)
    name = args.sizes or ("quick" if args.quick else "full")
    sizes = SIZES[name]
    out = args.out or ("results/validate" if name == "full" else f"results/validate-{name}")
    clock = time.perf_counter()
    say = None if args.quiet else (lambda line: print(line, flush=True))
    report = run_validation(out, sizes, claims, fresh=args.fresh, say=say)
    print(f"\n{'claim':<6} {'verdict':<30} statement")
    for s in report["sections"]:
        print(f"{s['claim']:<6} {s['verdict']:<30} {s['title']}")
    print(f"wrote {out}/report.md, report.json and {len(report['sections'])} figures in "
          f"{time.perf_counter() - clock:.1f} s")
    return int(report["exit_status"])
