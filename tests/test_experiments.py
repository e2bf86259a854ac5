"""Experiments: presets, TOML configs, the resumable runner, output files, power-law fits, figure/run commands."""

import dataclasses
import json
import math

import numpy as np
import pytest

import w2sjax._io
import w2sjax.sweep
from w2sjax import experiments as ex
from w2sjax.cli import main
from w2sjax.sweep import student_weights, teacher_weights

# The smallest useful sweep: ReLU, d = 8, two students, two teachers (tiny presets reuse its shapes).
MINIMAL = "input_dims = [8]\nstudent_widths = [16, 32]\nteacher_widths = [4, 8]\nnum_times = 40\n"

RECORD_KEYS = {
    "input_dim",
    "teacher_width",
    "student_width",
    "teacher_seed",
    "student_seed",
    "teacher_loss",
    "best_time",
    "best_student_loss",
    "ratio",
    "pgr",
    "student_loss_at_infinity",
    "ceiling_loss",
    "run",
    "group",
}


def tiny(config, **changes):
    """A preset shrunk for tests, with the shapes of MINIMAL where it can (compiled code is reused across tests):
    d = 8 (fig4: 8 and 16), teachers 4 and 8, students 32 (16 and 32 for size maps), two seeds, 40 times.
    fig3 keeps its rule d = round(M_TE^1.5), M_ST = 16 d with teachers 4 and 6 (d = 8, 15)."""
    base = {"seeds": (0, 1), "num_times": 40}
    if config.input_dim_exponent is None:
        base["input_dims"] = (8, 16) if len(config.input_dims) > 1 else (8,)
        base["teacher_widths"] = (4, 8)
        base["student_widths"] = (32,) if len(config.student_widths) == 1 else (16, 32)
    else:
        base["teacher_widths"] = (4, 6)
    base.update(changes)
    return dataclasses.replace(config, **base)


def count_sweeps(monkeypatch, fail_at=None):
    """Count run_sweep calls made by the runner; optionally raise KeyboardInterrupt at call ``fail_at``."""
    calls = []
    real = w2sjax.sweep.run_sweep

    def counted(*args, **kwargs):
        calls.append(kwargs["student_seeds"])
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ex, "run_sweep", counted)
    return calls


def read_results(out):
    return json.loads((out / "results.json").read_text())


def no_temporary_files(folder):
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------------------------------
# The weak-to-strong effect and the output files
# --------------------------------------------------------------------------------------------------


def test_fig2_quick_shows_weak_to_strong(tmp_path):
    config = dataclasses.replace(
        ex.preset("fig2", quick=True), student_widths=(1024,), teacher_widths=(32, 64, 128), seeds=(0, 1)
    )
    result = ex.run_experiment(config, tmp_path, progress=False, plots=False)
    data = read_results(tmp_path)
    assert {"config", "environment", "timings", "records", "fits", "files"} <= set(data)
    assert {"jax", "device", "precision", "backend"} <= set(data["environment"])
    assert data["environment"]["precision"] == "float64"
    assert set(data["timings"]) == {"moments", "decomposition", "curves"}
    assert all(v > 0 for v in data["timings"].values())
    assert len(data["records"]) == 3 * 2 and all(set(r) == RECORD_KEYS for r in data["records"])
    assert data["files"] == ["results.json", "curves.csv", "config.toml"]
    assert all((tmp_path / name).is_file() for name in data["files"])

    ratio = np.array([[r["ratio"] for r in data["records"] if r["student_seed"] == s] for s in (0, 1)])
    mean_ratio = ratio.mean(0)  # over seeds, ordered by teacher width
    assert mean_ratio[-1] < 0.5, mean_ratio
    assert np.all(np.diff(mean_ratio) < 0), mean_ratio

    column = len(result.records) - 1
    # curves.csv: a time column and one column per run, in the order of the records.
    lines = (tmp_path / "curves.csv").read_text().splitlines()
    assert lines[0].split(",") == ["time"] + [r["run"] for r in data["records"]]
    table = np.loadtxt(tmp_path / "curves.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(table[:, 0], config.times(), rtol=1e-15)
    np.testing.assert_allclose(table[:, 1 + column], result.curves[column], rtol=1e-15)
    # The fit combines two seeds: standard error of the mean of the per-seed slopes.
    fit = data["fits"][0]
    slopes = fit["seed_exponents"]
    assert fit["exponent"] == pytest.approx(np.mean(slopes))
    assert fit["exponent_stderr"] == pytest.approx(np.std(slopes, ddof=1) / math.sqrt(2))
    assert ex.load_config(tmp_path / "config.toml") == config


def relu_moment(A, B):
    """E[relu(Ax) relu(Bx)ᵀ] for x ~ N(0, I), in numpy (the arc-cosine kernel)."""
    na, nb = np.linalg.norm(A, axis=1), np.linalg.norm(B, axis=1)
    cos = np.clip(A @ B.T / np.outer(na, nb), -1, 1)
    theta = np.arccos(cos)
    return np.outer(na, nb) * (np.sin(theta) + (np.pi - theta) * cos) / (2 * np.pi)


def test_records_match_an_independent_numpy_computation():
    """Records and curves against DESIGN's formulas evaluated in numpy on the same weights."""
    config = ex.parse_config(MINIMAL + "seeds = 2\n")
    result = ex.run_experiment(config, None, progress=False)
    times = config.times()
    beta = np.eye(8)[0]
    checked = 0
    for index, rec in enumerate(result.records):
        seed, m_s, m_t = rec["student_seed"], rec["student_width"], rec["teacher_width"]
        U_s = np.asarray(student_weights(seed, 32, 8, "relu"))[:m_s]  # students are nested
        U_t = np.asarray(teacher_weights(seed, m_t, 8, "relu"))
        g_t = relu_moment(U_t, U_t) / m_t
        c_t = U_t @ beta / 2 / np.sqrt(m_t)
        w_t = np.linalg.pinv(g_t, rcond=m_t * np.finfo(float).eps, hermitian=True) @ c_t
        teacher_loss = 1.0 - c_t @ w_t
        lam, q = np.linalg.eigh(relu_moment(U_s, U_s) / m_s)
        keep = lam > m_s * np.finfo(float).eps * lam.max()
        lam, q = lam[keep], q[:, keep]
        labels = q.T @ (relu_moment(U_s, U_t) / np.sqrt(m_s * m_t) @ w_t)
        target = q.T @ (U_s @ beta / 2 / np.sqrt(m_s))
        residual = 1.0 - np.sum(target**2 / lam)
        gain = -np.expm1(-np.outer(times, lam)) / lam  # g(λ, t)
        curve = np.sum(lam * (gain * labels - target / lam) ** 2, axis=1) + residual
        at_infinity = np.sum((labels - target) ** 2 / lam) + residual
        np.testing.assert_allclose(rec["teacher_loss"], teacher_loss, rtol=1e-8)
        np.testing.assert_allclose(result.curves[index], curve, rtol=1e-7)
        np.testing.assert_allclose(rec["student_loss_at_infinity"], at_infinity, rtol=1e-7)
        np.testing.assert_allclose(rec["ceiling_loss"], residual, rtol=1e-7, atol=1e-12)
        assert rec["best_student_loss"] <= curve.min() * (1 + 1e-9)
        fine = np.geomspace(times[0], times[-1], 20000)
        fine_curve = np.sum(lam * (-np.expm1(-np.outer(fine, lam)) / lam * labels - target / lam) ** 2, 1) + residual
        assert rec["best_student_loss"] >= min(fine_curve.min(), at_infinity) * (1 - 1e-7)
        np.testing.assert_allclose(rec["ratio"], rec["best_student_loss"] / teacher_loss, rtol=1e-7)
        checked += 1
    assert checked == 8


@pytest.mark.parametrize("name", ex.PRESETS)
def test_every_preset_runs_shrunk(name, tmp_path):
    config = tiny(ex.preset(name, quick=True))
    ex.run_experiment(config, tmp_path, progress=False)
    data = read_results(tmp_path)
    problems = config.problems()
    n_students = len(config.student_widths) if config.student_widths else len(config.student_widths_per_dim)
    n_teachers = sum(len(p.teacher_widths) for p in problems)
    assert len(data["records"]) == n_teachers * n_students * len(config.seeds)
    assert all(set(r) == RECORD_KEYS for r in data["records"])
    assert all(r["teacher_seed"] == r["student_seed"] for r in data["records"])
    assert all(0 < r["teacher_loss"] and 0 <= r["best_student_loss"] for r in data["records"])
    assert len(list((tmp_path / "runs").glob("*.json"))) == len(ex.run_units(config))
    header = (tmp_path / "curves.csv").read_text().splitlines()[0].split(",")
    assert len(header) == 1 + len(data["records"]) and len(set(header)) == len(header)
    expected = {"results.json", "curves.csv", "config.toml", "loss_ratio.png", "power_law.png"}
    if name in ("fig5", "sizes"):
        expected.add("heatmap.png")
    assert set(data["files"]) == expected
    assert all((tmp_path / f).is_file() for f in expected)
    assert all((tmp_path / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in expected if f.endswith(".png"))
    assert data["fits"], "every preset fits a power law"
    if name == "fig3":
        # Each teacher width is its own problem with d = round(M_TE^1.5) and M_ST = 16 d.
        assert {(r["teacher_width"], r["input_dim"], r["student_width"]) for r in data["records"]} == {
            (4, 8, 128),
            (6, 15, 240),
        }
        variances = ex.input_variances(config, 15)
        assert variances[0] == 1.0 and np.allclose(variances[1:], 15 ** (-2 / 3))
    assert no_temporary_files(tmp_path)


def test_presets_are_valid_and_round_trip():
    for name in ex.PRESETS:
        for quick in (False, True):
            config = ex.preset(name, quick)
            assert config.name == name + ("-quick" if quick else "")
            assert ex.parse_config(ex.config_to_toml(config)) == config
            assert max(config.student_widths_for(p.input_dim)[-1] for p in config.problems()) <= (
                8192 if quick else 65536
            )
    full, quick = ex.preset("fig2"), ex.preset("fig2", quick=True)
    assert (full.input_dims, full.student_widths, full.teacher_widths) == ((32,), (16384,), (16, 32, 64, 128, 256))
    assert quick.student_widths == (4096,)
    assert ex.preset("fig4").input_dims == (16, 32, 64)
    assert ex.preset("fig5").student_widths == (1024, 4096, 16384)
    assert ex.preset("sizes").student_widths == (512, 1024, 2048, 4096, 8192)
    fig3 = ex.preset("fig3")
    assert fig3.activation == "linear" and fig3.covariance == "spiked" and 2 in fig3.ratio_powers
    assert [p.input_dim for p in fig3.problems()] == [round(m**1.5) for m in fig3.teacher_widths]


# --------------------------------------------------------------------------------------------------
# Configuration errors
# --------------------------------------------------------------------------------------------------



def test_unknown_toml_key_lists_valid_keys(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['teacher_width'\]") as err:
        ex.parse_config("input_dims = [8]\nstudent_widths = [32]\nteacher_width = [4]\n")
    for key in ex.CONFIG_KEYS:
        assert key in str(err.value)
    with pytest.raises(ValueError, match=r"\[quick\].*unknown key\(s\) \['students'\]"):
        ex.parse_config(MINIMAL + "[quick]\nstudents = [8]\n")
    path = tmp_path / "bad.toml"
    path.write_text(MINIMAL + "seed = 3\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        ("student_widths_per_dim = [4]\n", "exactly one of student_widths"),
        ("input_dim_exponent = 1.5\n", "exactly one of input_dims"),
        ('activation = "tanh"\n', "activation must be one of"),
        ('covariance = "spiked"\ninput_kind = "sphere"\n', "sphere inputs are isotropic"),
        ('covariance = "spiked"\ntarget_degrees = [1, 2]\ntarget_scales = [1.0, 0.5]\n', "need input_kind"),
        ("target_degrees = [1, 2]\n", "one scale per degree"),
        ("seeds = 0\n", "seeds must be a positive count"),
        ("times_log10 = [3.0, 1.0]\n", "start < stop"),
        ("num_times = 1\n", "num_times must be an integer >= 2"),
        ('precision = "float16"\n', "precision must be one of"),
        ("rcond = 2.0\n", "rcond is a relative eigenvalue cutoff"),
    ],
)
def test_invalid_config_values(extra, message):
    with pytest.raises(ValueError, match=message):
        ex.parse_config(MINIMAL.replace("num_times = 40\n", "") + extra)


def test_config_type_and_file_errors(tmp_path):
    with pytest.raises(ValueError, match="teacher_widths must hold integers >= 1"):
        ex.parse_config("input_dims = [8]\nstudent_widths = [32]\nteacher_widths = [4.5]\n")
    with pytest.raises(ValueError, match="repeated values"):
        ex.parse_config("input_dims = [8]\nstudent_widths = [32]\nteacher_widths = [4, 4]\n")
    with pytest.raises(ValueError, match="teacher_widths is required"):
        ex.parse_config("input_dims = [8]\nstudent_widths = [32]\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        ex.parse_config("input_dims = [8\n")
    with pytest.raises(ValueError, match="no \\[quick\\] table"):
        ex.parse_config(MINIMAL, quick=True)
    with pytest.raises(ValueError, match="does not exist"):
        ex.load_config(tmp_path / "missing.toml")
    with pytest.raises(ValueError, match="preset must be one of"):
        ex.preset("fig9")
    assert ex.parse_config(MINIMAL + "seeds = 2\n").seeds == (0, 1)
    unsorted = "input_dims = [8]\nstudent_widths = [32]\nteacher_widths = [8, 4]\n"
    assert ex.parse_config(unsorted).teacher_widths == (4, 8)


# --------------------------------------------------------------------------------------------------
# Resume, --fresh, atomic files
# --------------------------------------------------------------------------------------------------


def test_resume_skips_done_runs_and_fresh_recomputes(tmp_path, monkeypatch):
    config = dataclasses.replace(ex.parse_config(MINIMAL), seeds=(0, 1, 2))
    units = len(ex.run_units(config))
    assert units == 6
    calls = count_sweeps(monkeypatch)
    first = ex.run_experiment(config, tmp_path, progress=False, plots=False)
    assert len(calls) == units and first.runs_computed == units
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()}

    again = ex.run_experiment(config, tmp_path, progress=False, plots=False)
    assert len(calls) == units, "a second run must not recompute"
    assert (again.runs_computed, again.runs_reused) == (0, units)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()} == stamps
    np.testing.assert_array_equal(again.curves, first.curves)
    assert again.records == first.records

    # A changed setting that alters the numbers is a different run: never reuse a stale file.
    changed = dataclasses.replace(config, target_scales=(2.0,))
    ex.run_experiment(changed, tmp_path, progress=False, plots=False)
    assert len(calls) == 2 * units

    fresh = ex.run_experiment(config, tmp_path, fresh=True, progress=False, plots=False)
    assert len(calls) == 3 * units and fresh.runs_computed == units
    assert len(list((tmp_path / "runs").glob("*.json"))) == units  # --fresh clears the old run files
    np.testing.assert_array_equal(fresh.curves, first.curves)


def test_interrupted_sweep_resumes_with_no_partial_files(tmp_path, monkeypatch):
    config = dataclasses.replace(ex.parse_config(MINIMAL), seeds=(0, 1, 2))
    calls = count_sweeps(monkeypatch, fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        ex.run_experiment(config, tmp_path, progress=False, plots=False)
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(json.loads(p.read_text())["records"] for p in runs)
    assert not (tmp_path / "results.json").exists() and no_temporary_files(tmp_path)

    # A crash inside a file write leaves neither the file nor its temporary.
    real_fsync = w2sjax._io.os.fsync

    def crash(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(w2sjax._io.os, "fsync", crash)
    count_sweeps(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        ex.run_experiment(config, tmp_path, progress=False, plots=False)
    assert len(list((tmp_path / "runs").iterdir())) == 2 and no_temporary_files(tmp_path)
    monkeypatch.setattr(w2sjax._io.os, "fsync", real_fsync)

    calls = count_sweeps(monkeypatch)
    result = ex.run_experiment(config, tmp_path, progress=False, plots=False)
    assert len(calls) == 4 and (result.runs_computed, result.runs_reused) == (4, 2)
    assert read_results(tmp_path)["runs_reused"] == 2


# --------------------------------------------------------------------------------------------------
# JSON safety, power-law fits
# --------------------------------------------------------------------------------------------------


def test_infinite_best_time_is_json_safe(tmp_path):
    # A teacher that spans the target (linear features, M_TE >= d) gives labels the student never overfits:
    # its error only decreases, so t* = ∞.
    config = ex.parse_config(
        'activation = "linear"\ninput_dims = [8]\nstudent_widths = [128]\nteacher_widths = [8]\nseeds = 1\n'
        "num_times = 40\n"
    )
    result = ex.run_experiment(config, tmp_path, progress=False, plots=False)
    assert result.records[0]["best_time"] == math.inf
    raw = (tmp_path / "results.json").read_text()
    assert json.loads(raw)["records"][0]["best_time"] == "inf"
    assert ex.json_safe([math.inf, -math.inf, math.nan, 1.5]) == ["inf", "-inf", None, 1.5]
    assert [ex.from_json_float(v) for v in ("inf", 2.0)] == [math.inf, 2.0] and math.isnan(ex.from_json_float(None))


def test_fit_power_law():
    lte = np.geomspace(1e-3, 0.5, 6)
    exact = ex.fit_power_law(np.tile(lte, 2), np.tile(3.0 * lte**1.7, 2), np.repeat([0, 1], 6))
    assert exact.exponent == pytest.approx(1.7, abs=1e-12) and exact.prefactor == pytest.approx(3.0, rel=1e-10)
    assert exact.exponent_stderr == pytest.approx(0.0, abs=1e-12) and exact.num_points == 12
    two = ex.fit_power_law(np.tile(lte, 2), np.concatenate([lte**1.5, lte**1.9]), np.repeat([0, 1], 6))
    assert two.seed_exponents == pytest.approx((1.5, 1.9))
    assert two.exponent == pytest.approx(1.7) and two.exponent_stderr == pytest.approx(0.2)
    # One seed: the least-squares standard error of the slope, from the covariance of the fit.
    rng = np.random.default_rng(0)
    y = 2.0 * lte**1.6 * np.exp(0.1 * rng.standard_normal(lte.size))
    one = ex.fit_power_law(lte, y, np.zeros(lte.size))
    _, cov = np.polyfit(np.log(lte), np.log(y), 1, cov="unscaled")
    resid = np.log(y) - np.polyval(np.polyfit(np.log(lte), np.log(y), 1), np.log(lte))
    assert one.exponent_stderr == pytest.approx(math.sqrt(cov[0, 0] * resid @ resid / (lte.size - 2)))
    with pytest.raises(ValueError, match="two or more teacher widths"):
        ex.fit_power_law([0.1], [0.01], [0])


# --------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------


def test_run_command_writes_files_and_summary(tmp_path, capsys):
    path = tmp_path / "sweep.toml"
    path.write_text(MINIMAL + 'name = "tiny"\nseeds = 2\n[quick]\nseeds = 1\n')
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--no-progress", "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "L_ST*/L_TE" in text and "power law" in text and "decomposition" in text
    assert len(read_results(out)["records"]) == 8
    assert main(["run", str(path), "--out", str(tmp_path / "q"), "--quick", "--no-progress", "--no-plots"]) == 0
    assert len(read_results(tmp_path / "q")["records"]) == 4


def test_figure_command_applies_seeds_and_precision(tmp_path, monkeypatch, capsys):
    shrunk = tiny(ex.preset("fig2", quick=True))
    asked = []

    def fake_preset(name, quick=False):
        asked.append((name, quick))
        return shrunk

    monkeypatch.setattr(ex, "preset", fake_preset)
    out = tmp_path / "f"
    args = ["figure", "fig2", "--quick", "--seeds", "3", "--precision", "float32", "--out", str(out), "--no-progress"]
    assert main(args + ["--no-plots"]) == 0
    assert asked == [("fig2", True)]
    data = read_results(out)
    assert data["config"]["seeds"] == [0, 1, 2] and data["config"]["precision"] == "float32"
    assert data["environment"]["precision"] == "float32"
    assert sorted({r["student_seed"] for r in data["records"]}) == [0, 1, 2]
    # float32 agrees with float64 to float32 accuracy on the same weights.
    ref = ex.run_experiment(dataclasses.replace(shrunk, seeds=(0, 1, 2)), None, progress=False)
    np.testing.assert_allclose(
        [r["teacher_loss"] for r in data["records"]], [r["teacher_loss"] for r in ref.records], rtol=1e-3
    )
    assert main(["figure", "fig2", "--seeds", "0", "--out", str(out)]) == 2
    assert "--seeds must be a positive integer" in capsys.readouterr().err
