"""A custom sweep through the Python API: inputs on the sphere, two student widths (and a size map).

    python examples/custom_sweep.py [OUT_DIR]

The same sweep as a TOML file runs with ``w2sjax run FILE.toml``; ``config_to_toml`` prints that file.
"""

import sys
import tempfile

from w2sjax.experiments import ExperimentConfig, config_to_toml, run_experiment, summary_table

config = ExperimentConfig(
    name="custom",
    description="ReLU features on the sphere of radius sqrt(d), d = 16, M_ST in {128, 256}",
    activation="relu",
    input_kind="sphere",
    input_dims=(16,),
    student_widths=(128, 256),
    teacher_widths=(4, 8, 16, 32),
    seeds=2,
    times_log10=(-1.0, 6.0),
    num_times=200,
)
out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="w2sjax-custom-")
print(config_to_toml(config))
result = run_experiment(config, out)  # a second call with the same `out` reuses every run
print(summary_table(result))
print(f"files in {out}: results.json, curves.csv, config.toml, loss_ratio.png, power_law.png, heatmap.png")
