"""The full fig2 preset on a GPU, in float64 and float32; on a machine without a GPU, the same code with
small sizes so that it finishes in seconds.

    python examples/gpu_run.py [OUT_DIR]      # needs jax[cuda12] for the GPU (pip install "w2sjax[gpu]")

float32 runs share the float64 weights (drawn in float64), so the two runs differ only by precision.
"""

import dataclasses
import sys
import tempfile

import jax
import numpy as np

from w2sjax.experiments import preset, run_experiment, summary_table

on_gpu = jax.default_backend() == "gpu"
config = preset("fig2")  # M_ST = 16384, M_TE in {16, ..., 256}, d = 32
if not on_gpu:
    print(f"no GPU ({jax.default_backend()}): running fig2 with M_ST = 512 and M_TE <= 64 instead")
    config = dataclasses.replace(config, student_widths=(512,), teacher_widths=(16, 32, 64), seeds=2, num_times=100)
out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="w2sjax-gpu-")

results = {}
for precision in ("float64", "float32"):
    run = dataclasses.replace(config, precision=precision, name=f"{config.name}-{precision}")
    results[precision] = run_experiment(run, f"{out}/{precision}")
    print(summary_table(results[precision]))

best64 = np.array([r["best_student_loss"] for r in results["float64"].records])
best32 = np.array([r["best_student_loss"] for r in results["float32"].records])
print(f"device: {results['float64'].environment['device']}; "
      f"max relative difference of L_ST* float32 vs float64: {np.max(np.abs(best32 / best64 - 1)):.2e}")
print(f"wrote {out}/float64 and {out}/float32")
