"""benchmarks/gpu_check.py --smoke: the GPU measurement script's code paths at tiny sizes, and its output files."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("gpu_check")
    assert module.main(["--smoke", "--out", str(out)]) == 0
    return json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def test_smoke_json_has_every_measurement(smoke):
    report, _ = smoke
    assert report["smoke"] is True and report["parts"] == ["fig2", "routes", "fig3"]
    assert {"jax", "jaxlib"} <= set(report["environment"]) and report["device"] and report["date"]
    fig2 = report["fig2"]
    for precision in ("float64", "float32"):
        r = fig2[precision]
        assert r["study_seconds"] > 0 and r["bare_eigh_seconds"] > 0 and r["ratio_to_eigh_per_seed"] > 0 and r["routes"]
    diff = fig2["float32_vs_float64"]
    # float32 against float64 on the same weights: differences at float32 rounding, not zero, not O(1)
    assert 0 <= diff["max_abs_best_student_loss"] < 1e-3 and 0 <= diff["max_abs_teacher_loss"] < 1e-3
    assert 0 <= diff["max_rel_best_time"] < 0.1
    routes = {(r["student_width"], r["route"]): r for r in report["routes"]}
    assert {(64, "eigh"), (64, "krylov/stored"), (64, "krylov/tiled"), ("inf", "infinite")} <= set(routes)
    for key, row in routes.items():
        assert row["status"] == "ran", row
        assert row["seconds"] > 0 and "peak_bytes" in row
    for route in ("krylov/stored", "krylov/tiled"):
        row = routes[(64, route)]
        assert row["blocks"] > 0 and row["planned_bytes"] > 0
        agree = row["agreement_with_eigh"]
        assert agree["max_abs_student_loss"] < 1e-8 and agree["max_rel_best_time"] < 1e-5 and agree["same_infinite_best_times"]
    fig3 = report["fig3"]
    assert fig3["seconds"] > 0 and fig3["runs"] >= 1 and fig3["routes"] == ["factor", "infinite"]
    assert set(report["part_seconds"]) == {"fig2", "routes", "fig3"}


def test_smoke_markdown_tables(smoke):
    _, table = smoke
    for text in ("Device:", "jax", "fig2 end to end", "| float64 |", "| float32 |", "float32 vs float64",
                 "Routes on fig2", "krylov/tiled", "infinite", "fig3 end to end", "Seconds per part"):
        assert text in table, text
