"""The full fig2 preset on a GPU, in float64 and float32; on a machine without a GPU, the same code with small
sizes so that it finishes in seconds.

    pip install -e ".[gpu]"          # JAX for CUDA 13 (".[gpu-cuda12]" for CUDA 12 drivers)
    python examples/gpu_run.py [OUT] [--quick]

Writes OUT/float64 and OUT/float32 (OUT defaults to ./examples_out/gpu_run). float32 runs share the float64
weights (drawn in float64), so the two runs differ only by precision; the largest relative difference of L_ST*
is printed.
"""

import argparse
import dataclasses

import jax
import numpy as np

from w2sjax.studies.config import preset
from w2sjax.studies.runner import run_study, summary_table

parser = argparse.ArgumentParser(description="fig2 on a GPU in float64 and float32")
parser.add_argument("out", nargs="?", default="examples_out/gpu_run", help="output folder")
parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds), whatever the device")
args = parser.parse_args()

on_gpu = jax.default_backend() == "gpu"
config = preset("fig2")  # M_ST = 16384, M_TE in {16, ..., 256}, d = 32, 5 seeds
if args.quick:
    config = dataclasses.replace(config, input_dims=(8,), student_widths=(64,), teacher_widths=(4, 8), seeds=(0,),
                                 num_times=60)
elif not on_gpu:
    print(f"no GPU ({jax.default_backend()}): running fig2 with M_ST = 512 and M_TE <= 64 instead "
          '(pip install -e ".[gpu]" for CUDA)')
    config = dataclasses.replace(config, student_widths=(512,), teacher_widths=(16, 32, 64), seeds=(0, 1),
                                 num_times=100)

results = {}
for precision in ("float64", "float32"):
    run = dataclasses.replace(config, precision=precision, name=f"{config.name}-{precision}")
    results[precision] = run_study(run, f"{args.out}/{precision}", progress=False)
    print(summary_table(results[precision]))

best64 = np.array([r["best_student_loss"] for r in results["float64"].records])
best32 = np.array([r["best_student_loss"] for r in results["float32"].records])
print(f"device: {results['float64'].environment['device']}; "
      f"max relative difference of L_ST* float32 vs float64: {np.max(np.abs(best32 / best64 - 1)):.2e}")
print(f"wrote {args.out}/float64 and {args.out}/float32")
