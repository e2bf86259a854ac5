"""A "linear plus even polynomial" target: f*(x) = h_1(x_1) + 0.5 h_2(x_1), h_k = He_k/sqrt(k!).

    python examples/hermite_target.py [OUT] [--quick]

ReLU features carry the degree-2 part too (their Hermite coefficient c_2 = 1/(2 sqrt(pi)) is not zero). Compare
the ratios L_ST*/L_TE with those of the linear target (``w2sjax figure fig2 --quick``): the early-stopped
student still beats its teacher, by less. Writes the study's files and figures to OUT (default
./examples_out/hermite_target) and prints the summary table.
"""

import argparse
import dataclasses

from w2sjax.studies.config import preset
from w2sjax.studies.runner import run_study, summary_table

parser = argparse.ArgumentParser(description="W2S on f*(x) = h_1(x_1) + 0.5 h_2(x_1)")
parser.add_argument("out", nargs="?", default="examples_out/hermite_target", help="output folder")
parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
args = parser.parse_args()

config = dataclasses.replace(          # replace() validates the changed study again
    preset("fig2", quick=True),
    name="hermite_target",
    description="ReLU, d = 16, f* = h_1(x_1) + 0.5 h_2(x_1)",
    input_dims=(16,),
    target_degrees=(1, 2),
    target_scales=(1.0, 0.5),
    student_widths=(512,),
    teacher_widths=(8, 16, 32, 64),
    seeds=(0, 1),
    num_times=200,
)
if args.quick:
    config = dataclasses.replace(config, input_dims=(8,), student_widths=(64,), teacher_widths=(4, 8),
                                 seeds=(0,), num_times=60)
result = run_study(config, args.out, progress=False)
print(summary_table(result))
print(f"wrote {args.out}")
