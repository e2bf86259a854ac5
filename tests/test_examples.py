"""Every script in examples/ runs with ``--quick`` (tiny sizes) and writes what it says it writes.

The scripts run in this process (``runpy``), one after another, so they share JAX's compiled functions; each
writes into its own folder under tmp_path.
"""

import json
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
PNG = b"\x89PNG\r\n\x1a\n"

# What each script must leave in its output folder (relative paths); a new example must be added here.
EXPECTED = {
    "custom_sweep.py": ["results.json", "curves.csv", "config.toml", "loss_ratio.png", "power_law.png",
                        "heatmap.png"],
    "gpu_run.py": ["float64/results.json", "float32/results.json", "float64/power_law.png"],
    "hermite_target.py": ["results.json", "loss_ratio.png", "power_law.png"],
    "w2s_curve.py": ["w2s_curve.png"],
}


def run_example(name: str, out: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [name, str(out), "--quick"])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")


def test_every_example_is_listed():
    assert SCRIPTS == sorted(EXPECTED)


@pytest.mark.parametrize("name", SCRIPTS)
def test_example_runs_quick(name, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    run_example(name, out, monkeypatch)
    printed = capsys.readouterr().out
    for rel in EXPECTED[name]:
        path = out / rel
        assert path.is_file(), f"{name} did not write {rel}"
        if rel.endswith(".png"):
            assert path.read_bytes()[:8] == PNG
    if name == "w2s_curve.py":
        values = dict(line.split(" = ", 1) for line in printed.splitlines() if line.startswith(("L_TE", "t*")))
        assert float(values["L_TE"]) > 0
    if name == "custom_sweep.py":  # the infinitely wide student is a run of the study, and is drawn
        records = json.loads((out / "results.json").read_text())["records"]
        assert {str(r["student_width"]) for r in records} == {"32", "inf"}
        assert all(0 < r["ratio"] < 1 for r in records if r["teacher_width"] == 8)


def test_example_default_output_is_in_working_directory(tmp_path, monkeypatch):
    """Without OUT, a script writes ./examples_out/<name> in the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["w2s_curve.py", "--quick"])
    runpy.run_path(str(EXAMPLES / "w2s_curve.py"), run_name="__main__")
    assert (tmp_path / "examples_out" / "w2s_curve" / "w2s_curve.png").is_file()
