"""``w2sjax validate`` (the paper's statements against exact solutions) and ``w2sjax chain``: verdicts computed
from the numbers, report files, resume, exit codes, and one real run at the tiny sizes."""

import json
import math

import numpy as np
import pytest

from w2sjax.cli import main
from w2sjax.features import teacher_weights
from w2sjax.studies import validation as v

# --------------------------------------------------------------------------------------------------
# A fake engine: records that obey (or, on request, break) the statements, computed in microseconds
# --------------------------------------------------------------------------------------------------


def _record(m, seed, lte, lst, ceiling=0.0, at_inf=None, **extra):
    return {"teacher_width": m, "seed": seed, "teacher_loss": lte, "best_student_loss": lst, "best_time": 100.0,
            "student_loss_at_infinity": lte if at_inf is None else at_inf, "ceiling_loss": ceiling,
            "pgr": (lte - lst) / (lte - ceiling), "error_best_student_loss": 0.0, "route": "fake", **extra}


def fake_relu(spec, mimic_error=0.0):
    ceiling = 0.1 if spec["hermite_scale"] else 0.0
    out = []
    for m in spec["teacher_widths"]:
        excess = 4.0 / m ** 2 * (1 + 0.1 * spec["seed"])
        lst = excess ** 1.8
        width = spec["student_width"]
        at_inf = ceiling + excess * (1 + (mimic_error if width == "inf" else m / width))
        out.append(_record(m, spec["seed"], ceiling + excess, ceiling + lst, ceiling, at_inf,
                           student_width=width))
    return out


def fake_linear(spec):
    m = spec["teacher_width"]
    lte = 0.5 * m ** -0.3
    return [_record(m, spec["seed"], lte, lte ** 2 * (1 + 1 / m), dim=v.linear_dim(m), student_width="inf")]


def fake_chain(spec):
    out = []
    for k, width in enumerate(spec["stage_widths"], start=1):
        for m in spec["teacher_widths"]:
            lte = 1.0 / m
            out.append(_record(m, spec["seed"], lte, lte ** 1.9 * (1 - 0.01 * k), stage=k, stage_width=width))
    return out


@pytest.fixture
def fake_engine(monkeypatch):
    monkeypatch.setitem(v.COMPUTE, "relu", fake_relu)
    monkeypatch.setitem(v.COMPUTE, "linear", fake_linear)
    monkeypatch.setitem(v.COMPUTE, "chain", fake_chain)


def refuse(spec):
    raise AssertionError(f"recomputed a stored unit: {spec}")


def test_report_files_resume_and_verdicts_from_numbers(fake_engine, tmp_path, monkeypatch):
    out = tmp_path / "v"
    lines = []
    report = v.run_validation(out, v.TINY, say=lines.append)
    assert (out / "report.md").is_file() and (out / "report.json").is_file()
    assert [s["verdict"] for s in report["sections"]] == [v.CONSISTENT] * 5
    assert report["exit_status"] == 0
    assert any(line.startswith("claim 3:") for line in lines)  # progress lines
    md = (out / "report.md").read_text()
    for k in range(1, 6):
        assert (out / f"claim{k}.png").stat().st_size > 1000
        assert f"](claim{k}.png)" in md and v.STATEMENTS[k] in md
    stored = json.loads((out / "report.json").read_text())
    assert stored["sections"][2]["numbers"]["series"]["per_width"][0]["teacher_width"] == 4
    # the fitted exponent of claim 2 is the one put in: L_ST* − L_ceil = (L_TE − L_ceil)^1.8
    assert stored["sections"][1]["numbers"]["targets"]["hermite"]["series"]["fit"]["exponent"] == pytest.approx(1.8)

    # a rerun reuses every stored claim and unit
    for kind in v.COMPUTE:
        monkeypatch.setitem(v.COMPUTE, kind, refuse)
    again = v.run_validation(out, v.TINY, say=None)
    assert [s["reused"] for s in again["sections"]] == [True] * 5
    assert [s["reason"] for s in again["sections"]] == [s["reason"] for s in report["sections"]]

    # an inconsistent stored number (the converged infinitely wide student misses its teacher) gives the verdict
    # "not consistent" and exit status 1
    path = out / "claims" / "claim1.json"
    data = json.loads(path.read_text())
    entry = next(p for p in data["numbers"]["per_student"] if p["student_width"] == "inf")
    entry["max_gap"] = 1e-3
    path.write_text(json.dumps(data))
    assert main(["validate", "--sizes", "tiny", "--claims", "1,3", "--out", str(out), "--quiet"]) == 1
    sections = json.loads((out / "report.json").read_text())["sections"]
    assert [s["claim"] for s in sections] == [1, 3]
    assert sections[0]["verdict"] == v.INCONSISTENT and "1.00e-03" in sections[0]["reason"]
    assert sections[1]["verdict"] == v.CONSISTENT


def test_a_statement_broken_by_the_engine_exits_1(fake_engine, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(v.COMPUTE, "relu", lambda spec: fake_relu(spec, mimic_error=0.01))
    assert main(["validate", "--sizes", "tiny", "--claims", "1", "--out", str(tmp_path / "v")]) == 1
    text = capsys.readouterr().out
    assert "not consistent" in text and "does not mimic its teacher" in text


def test_verdict_rules():
    def rows(xs, ys, seeds=(0, 1)):
        return [{"teacher_width": m, "seed": s, "x": x * (1 + 0.01 * s), "y": y * (1 + 0.01 * s)}
                for s in seeds for m, x, y in zip((16, 32, 64, 128, 256), xs, ys)]

    x = np.array([0.5, 0.2, 0.08, 0.03, 0.01])
    quadratic = {"series": v.series_summary(rows(x, x ** 2))}
    assert v.verdict_claim3(quadratic)[0] == v.CONSISTENT
    assert v.series_summary(rows(x, x ** 2))["fit"]["exponent"] == pytest.approx(2.0)
    cubic = {"series": v.series_summary(rows(x, x ** 3))}  # L*/L_TE² = L_TE → 0 steadily: not ∝ L_TE²
    assert v.verdict_claim3(cubic)[0] == v.INCONSISTENT
    assert v.quadratic_evidence(cubic["series"])[0] == v.INCONSISTENT
    below = v.series_summary(rows(x, 0.9 * x ** 2.15))  # above 2 by more than 3 s.e., within the margin, falling
    assert v.quadratic_evidence(below)[0] == v.UNDECIDED
    assert v.quadratic_evidence(v.series_summary(rows(x, x ** 1.7)))[0] == v.CONSISTENT

    def claim2(ys, pgr_last):
        s = v.series_summary(rows(x, ys))
        for p in s["per_width"]:
            p["pgr"] = 1 - p["ratio"]
        s["per_width"][-1]["pgr"] = pgr_last
        return {"targets": {"linear": {"target": "f* = x_1", "series": s}}}

    assert v.verdict_claim2(claim2(x ** 1.9, 0.99))[0] == v.CONSISTENT
    assert v.verdict_claim2(claim2(x ** 1.2, 0.99))[0] == v.INCONSISTENT  # decays slower than L_TE^1.49
    assert v.verdict_claim2(claim2(x ** 1.9, 0.6))[0] == v.UNDECIDED  # PGR not yet near 1
    assert v.verdict_claim2(claim2(0.5 * x, 0.99))[0] == v.INCONSISTENT  # ratio constant


def test_bad_input_exits_2(tmp_path, capsys):
    assert main(["validate", "--claims", "1,9", "--out", str(tmp_path / "a")]) == 2
    assert main(["validate", "--claims", "", "--out", str(tmp_path / "a")]) == 2
    (tmp_path / "file").write_text("")
    assert main(["validate", "--sizes", "tiny", "--out", str(tmp_path / "file" / "x")]) == 2
    assert main(["chain", "--stages", "16", "0", "--teacher-width", "4", "--out", str(tmp_path / "c")]) == 2
    assert main(["chain", "--stages", "16", "16", "16", "--stage-times", "1", "2", "3", "--teacher-width", "4",
                 "--out", str(tmp_path / "c")]) == 2
    assert main(["chain", "--stages", "16", "16", "--stage-times", "soon", "--teacher-width", "4",
                 "--out", str(tmp_path / "c")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err) == 6 and all(line.startswith("w2sjax ") and ": error: " in line for line in err)


# --------------------------------------------------------------------------------------------------
# The real engine at the tiny sizes
# --------------------------------------------------------------------------------------------------


def test_real_run_at_tiny_sizes_and_chain_cli(tmp_path, monkeypatch):
    out = tmp_path / "v"
    status = main(["validate", "--sizes", "tiny", "--out", str(out), "--quiet"])
    report = json.loads((out / "report.json").read_text())
    assert status == report["exit_status"] == (1 if any(s["verdict"] == v.INCONSISTENT for s in report["sections"])
                                               else 0)
    sections = {s["claim"]: s for s in report["sections"]}
    assert all(s["verdict"] in v.VERDICTS and s["reason"] for s in sections.values())
    # claim 1 at M_ST = ∞: the converged student is its teacher (exact up to rounding)
    assert sections[1]["verdict"] == v.CONSISTENT
    c1 = sections[1]["numbers"]
    assert next(p for p in c1["per_student"] if p["student_width"] == "inf")["max_gap"] < 1e-10

    # claim 3's teacher losses against an independent numpy least squares: L_TE = s* − cᵀG⁺c,
    # G = UΣUᵀ/M, c = UΣβ/√M (linear features, Σ spiked, β = e1)
    for r in sections[3]["numbers"]["runs"]:
        m = r["teacher_width"]
        d = v.linear_dim(m)
        var = np.full(d, d ** (-2 / 3))
        var[0] = 1.0
        u = np.asarray(teacher_weights(r["seed"], m, d, "linear"))
        gram = (u * var) @ u.T / m
        c = u[:, 0] * var[0] / math.sqrt(m)
        assert r["teacher_loss"] == pytest.approx(1.0 - c @ np.linalg.pinv(gram) @ c, rel=1e-9)
        assert r["student_loss_at_infinity"] == pytest.approx(r["teacher_loss"], rel=1e-9)
        assert r["best_student_loss"] < r["teacher_loss"]

    # the chain command on claim 5's problem (same shapes: compiled already) agrees with claim 5's stage numbers
    sizes = v.TINY
    runs = sections[5]["numbers"]["settings"][0]["runs"]
    args = ["chain", "--stages", *map(str, sizes.chain_stage_widths), "--teacher-width",
            *map(str, sizes.chain_teacher_widths), "--dim", str(sizes.chain_dim), "--times",
            *map(str, sizes.relu_times), "--out", str(tmp_path / "c")]
    assert main(args) == 0
    records = json.loads((tmp_path / "c" / "results.json").read_text())["records"]
    for r in runs:
        rec = next(q for q in records if (q["stage"], q["teacher_width"], q["seed"]) == (r["stage"], r["teacher_width"], 0))
        assert rec["best_student_loss"] == pytest.approx(r["best_student_loss"], rel=1e-12)
    lines = (tmp_path / "c" / "curves.csv").read_text().splitlines()
    assert lines[0].startswith("run,input_dim,student_width,teacher_width,seed,stage,stage_width,time")
    assert len(lines) == 1 + len(sizes.chain_stage_widths) * len(sizes.chain_teacher_widths) * sizes.relu_times[2]
