"""A custom study through the Python API: ReLU features on the sphere, two student widths and the infinitely wide
student (M_ST = ∞), teachers of 4..32 units, two seeds; figures and a summary table.

    python examples/custom_sweep.py [OUT] [--quick]

Writes OUT/results.json, curves.csv, config.toml, loss_ratio.png, power_law.png and heatmap.png (OUT defaults to
./examples_out/custom_sweep). The same study as a TOML file runs with ``w2sjax run FILE.toml``; the file is
printed first. A second call with the same OUT reuses every finished run unit.
"""

import argparse
import dataclasses
from pathlib import Path

from w2sjax.studies.config import StudyConfig, config_to_toml
from w2sjax.studies.runner import run_study, summary_table

parser = argparse.ArgumentParser(description="a custom study: sphere inputs, M_ST in {128, 512, inf}")
parser.add_argument("out", nargs="?", default="examples_out/custom_sweep", help="output folder")
parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
args = parser.parse_args()

config = StudyConfig(
    name="custom_sweep",
    description="ReLU features on the sphere of radius sqrt(d), d = 16, M_ST in {128, 512, inf}",
    activation="relu",
    input_kind="sphere",
    input_dims=(16,),
    student_widths=(128, 512, "inf"),        # "inf": the infinitely wide student, in closed form
    teacher_widths=(4, 8, 16, 32),
    seeds=2,
    times=(0.1, 1e6),
    num_times=200,
)
if args.quick:
    config = dataclasses.replace(config, input_dims=(8,), student_widths=(32, "inf"), teacher_widths=(4, 8),
                                 seeds=(0,), num_times=60)
print(config_to_toml(config))
result = run_study(config, args.out, progress=False)
print(summary_table(result))
print(f"wrote {args.out}: " + ", ".join(sorted(p.name for p in Path(args.out).iterdir() if p.is_file())))
