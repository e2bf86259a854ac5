"""A "linear plus even polynomial" target: f*(x) = h_1(x_1) + 0.5 h_2(x_1), h_k = He_k/sqrt(k!).

    python examples/hermite_target.py [OUT_DIR]

ReLU features carry the degree-2 part too (their Hermite coefficient c_2 = 1/(2 sqrt(pi)) is not zero). Compare
the ratios L_ST*/L_TE with those of the linear target (``w2sjax figure fig2 --quick``): the early-stopped
student still beats its teacher, by less.
"""

import dataclasses
import sys
import tempfile

from w2sjax.experiments import preset, run_experiment, summary_table

config = dataclasses.replace(
    preset("fig2", quick=True),
    name="hermite",
    description="ReLU, d = 16, f* = h_1(x_1) + 0.5 h_2(x_1)",
    input_dims=(16,),
    target_degrees=(1, 2),
    target_scales=(1.0, 0.5),
    student_widths=(512,),
    teacher_widths=(8, 16, 32, 64),
    seeds=(0, 1),
    num_times=200,
)
out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="w2sjax-hermite-")
result = run_experiment(config, out)
print(summary_table(result))
print(f"wrote {out}")
