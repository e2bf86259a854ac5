"""Studies: presets, TOML configs, the planned and resumable runner, output files, power-law fits, the
figure/run/samples commands, interruption and output-folder errors."""

import dataclasses
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

import w2sjax as w
import w2sjax._io
from w2sjax.cli import main
from w2sjax.features import student_weights, teacher_weights
from w2sjax.studies import config as cfg
from w2sjax.studies import runner

# The smallest useful study: ReLU, d = 8, two students, two teachers (tiny presets reuse its shapes).
MINIMAL = "input_dims = [8]\nstudent_widths = [16, 32]\nteacher_widths = [4, 8]\nnum_times = 40\n"

RECORD_KEYS = {
    "input_dim", "teacher_width", "student_width", "seed", "samples", "teacher_loss", "best_time", "best_time_location",
    "best_student_loss", "ratio", "pgr", "student_loss_at_infinity", "ceiling_loss", "route", "blocks",
    "error_estimate", "run", "group",
}


def tiny(config, **changes):
    """A preset shrunk for tests, with the shapes of MINIMAL where it can (compiled code is reused across tests)."""
    base = {"seeds": (0, 1), "num_times": 40}
    if config.finite_samples:
        base.update(input_dims=(8,), teacher_widths=(4,), student_widths=(16, 32), samples=24)
    elif config.input_dim_exponent is None:
        base["input_dims"] = (8, 16) if len(config.input_dims) > 1 else (8,)
        base["teacher_widths"] = (4, 8)
        base["student_widths"] = (32,) if len(config.student_widths) == 1 else (16, 32)
    else:
        base["teacher_widths"] = (4, 6)
    base.update(changes)
    return dataclasses.replace(config, **base)


def count_units(monkeypatch, fail_at=None):
    """Count compute_unit calls; optionally raise KeyboardInterrupt at call ``fail_at``."""
    calls = []
    real = runner.compute_unit

    def counted(config, unit):
        calls.append(unit.key)
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt
        return real(config, unit)

    monkeypatch.setattr(runner, "compute_unit", counted)
    return calls


def read_results(out):
    return json.loads((out / "results.json").read_text())


def no_temporary_files(folder):
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def relu_moment(A, B):
    """E[relu(Ax) relu(Bx)ᵀ] for x ~ N(0, I), in numpy (the arc-cosine kernel)."""
    na, nb = np.linalg.norm(A, axis=1), np.linalg.norm(B, axis=1)
    cos = np.clip(A @ B.T / np.outer(na, nb), -1, 1)
    theta = np.arccos(cos)
    return np.outer(na, nb) * (np.sin(theta) + (np.pi - theta) * cos) / (2 * np.pi)


def test_fig2_quick_shows_weak_to_strong(tmp_path):
    config = dataclasses.replace(cfg.preset("fig2", quick=True), student_widths=(1024,), teacher_widths=(32, 64, 128),
                                 seeds=(0, 1))
    result = runner.run_study(config, tmp_path, progress=False, plots=False)
    data = read_results(tmp_path)
    assert {"config", "environment", "seconds", "records", "fits", "files"} <= set(data)
    assert {"jax", "device", "precision", "backend"} <= set(data["environment"])
    assert len(data["records"]) == 3 * 2 and all(set(r) == RECORD_KEYS for r in data["records"])
    assert data["files"] == ["results.json", "curves.csv", "config.toml"]
    ratio = np.array([[r["ratio"] for r in data["records"] if r["seed"] == s] for s in (0, 1)]).mean(0)
    assert ratio[-1] < 0.5 and np.all(np.diff(ratio) < 0), ratio
    # curves.csv: long format, one row per (run, time), in the order of the records
    lines = (tmp_path / "curves.csv").read_text().splitlines()
    assert lines[0].split(",") == list(runner.CURVE_COLUMNS)
    table = np.genfromtxt(tmp_path / "curves.csv", delimiter=",", skip_header=1, usecols=(5, 6, 7, 8))
    assert table.shape == (6 * config.num_times, 4)
    np.testing.assert_allclose(table[: config.num_times, 0], config.time_grid(), rtol=1e-15)
    np.testing.assert_allclose(table[-config.num_times:, 1], result.curves[-1], rtol=1e-15)
    np.testing.assert_allclose(table[:, 3], table[:, 1] / table[:, 2], rtol=1e-15)
    fit = data["fits"][0]
    assert fit["exponent"] == pytest.approx(np.mean(fit["seed_exponents"]))
    assert fit["exponent_stderr"] == pytest.approx(np.std(fit["seed_exponents"], ddof=1) / math.sqrt(2))
    assert cfg.load_config(tmp_path / "config.toml") == config


def test_records_match_an_independent_numpy_computation():
    """Records and curves against the formulas evaluated in numpy on the same weights."""
    config = cfg.parse_config(MINIMAL + "seeds = 2\n")
    result = runner.run_study(config, None, progress=False)
    times = config.time_grid()
    beta = np.eye(8)[0]
    for index, rec in enumerate(result.records):
        seed, m_s, m_t = rec["seed"], rec["student_width"], rec["teacher_width"]
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
        gain = -np.expm1(-np.outer(times, lam)) / lam
        curve = np.sum(lam * (gain * labels - target / lam) ** 2, axis=1) + residual
        at_infinity = np.sum((labels - target) ** 2 / lam) + residual
        np.testing.assert_allclose(rec["teacher_loss"], teacher_loss, rtol=1e-8)
        np.testing.assert_allclose(result.curves[index], curve, rtol=1e-7)
        np.testing.assert_allclose(rec["student_loss_at_infinity"], at_infinity, rtol=1e-7)
        np.testing.assert_allclose(rec["ceiling_loss"], residual, rtol=1e-7, atol=1e-12)
        fine = np.geomspace(times[0], times[-1], 20000)
        fine_curve = np.sum(lam * (-np.expm1(-np.outer(fine, lam)) / lam * labels - target / lam) ** 2, 1) + residual
        assert min(fine_curve.min(), at_infinity) * (1 - 1e-7) <= rec["best_student_loss"] <= curve.min() * (1 + 1e-9)
        np.testing.assert_allclose(rec["ratio"], rec["best_student_loss"] / teacher_loss, rtol=1e-7)
    assert len(result.records) == 8


SHIFT_KEYS = {"minority_teacher", "minority_student", "gain", "group_losses", "worst_group_loss",
              "teacher_group_losses", "teacher_worst_group_loss"}


@pytest.mark.parametrize("name", cfg.PRESETS)
def test_every_preset_runs_shrunk(name, tmp_path):
    config = tiny(cfg.preset(name, quick=True))
    runner.run_study(config, tmp_path, progress=False)
    data = read_results(tmp_path)
    problems = config.problems()
    n_students = len(config.student_widths) if config.student_widths else len(config.student_widths_per_dim)
    n_teachers = sum(len(p.teacher_widths) for p in problems)
    assert len(data["records"]) == n_teachers * n_students * len(config.seeds)
    keys = RECORD_KEYS | (SHIFT_KEYS if config.shift else set())
    assert all(set(r) == keys for r in data["records"])
    assert all(0 < r["teacher_loss"] and 0 <= r["best_student_loss"] for r in data["records"])
    assert len(list((tmp_path / "runs").glob("*.json"))) == len(runner.run_units(config))
    figure = "shift.png" if config.shift else "loss_ratio.png"
    assert {"results.json", "curves.csv", "config.toml", figure} <= set(data["files"])
    pngs = [f for f in data["files"] if f.endswith(".png")]
    assert all((tmp_path / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in pngs)
    if name in ("fig5", "sizes"):
        assert "heatmap.png" in data["files"]
    if name == "fig3":  # each teacher width its own problem with d = round(M_TE^1.5) and M_ST = 16 d
        assert {(r["teacher_width"], r["input_dim"], r["student_width"]) for r in data["records"]} == {
            (4, 8, 128), (6, 15, 240), (4, 8, "inf"), (6, 15, "inf")}
        variances = runner.input_variances(config, 15)
        assert variances[0] == 1.0 and np.allclose(variances[1:], 15 ** (-2 / 3))
        assert all(r["route"] == ("infinite" if r["student_width"] == "inf" else "factor")  # finite: d × d side
                   for r in data["records"])
    if name == "relu-samples":  # finite samples: the ceiling is the student on true labels of the same samples
        assert all(r["samples"] == 24 for r in data["records"])
    assert no_temporary_files(tmp_path)


def test_presets_are_valid_and_round_trip():
    for name in cfg.PRESETS:
        for quick in (False, True):
            config = cfg.preset(name, quick)
            assert config.name == name + ("-quick" if quick else "")
            assert cfg.parse_config(cfg.config_to_toml(config)) == config
            assert config.method == "auto"
    full, quick = cfg.preset("fig2"), cfg.preset("fig2", quick=True)
    assert (full.input_dims, full.student_widths, full.teacher_widths) == ((32,), (16384, math.inf), (16, 32, 64, 128, 256))
    assert quick.student_widths == (4096, math.inf) and quick.seeds == (0, 1, 2)
    assert cfg.preset("fig4").input_dims == (16, 32, 64)
    assert cfg.preset("fig5").student_widths == (1024, 4096, 16384, math.inf)
    assert cfg.preset("fig3").student_widths_per_dim == (16, math.inf)
    assert cfg.preset("relu-samples", quick=True).seeds == (0, 1, 2)
    fig3 = cfg.preset("fig3")
    assert fig3.activation == "linear" and fig3.covariance == "spiked" and 2 in fig3.ratio_powers


def test_planning_happens_first_and_refuses_what_cannot_fit(tmp_path):
    config = cfg.parse_config(MINIMAL)
    plan = runner.plan_study(config)
    assert len(plan.plans) == len(runner.run_units(config)) and plan.seconds > 0 and "run units" in plan.describe()
    with pytest.raises(ValueError, match="run unit d=8, M_ST=16: .*fit no route"):
        runner.run_study(config, tmp_path, progress=False, memory_bytes=10_000)
    assert not list((tmp_path / "runs").glob("*.json"))  # nothing computed
    with pytest.raises(ValueError, match=r"the weights alone \(44 features × d = 8\)"):
        runner.plan_study(config, memory_bytes=1000)  # refused before any weights are drawn


def test_a_student_not_wider_than_its_teacher_is_noted_once_in_the_plan(tmp_path, recwarn):
    config = cfg.parse_config("input_dims = [8]\nstudent_widths = [8, 32]\nteacher_widths = [4, 8]\nnum_times = 40\n")
    plan = runner.plan_study(config)
    assert plan.narrow == (("8", (8,)),)
    assert "note: M_ST = 8 is not wider than M_TE = 8" in plan.describe()
    runner.run_study(config, tmp_path, progress=False, plots=False)
    assert not [r for r in recwarn if issubclass(r.category, w.NarrowStudentWarning)]  # said once, by the plan
    with pytest.warns(w.NarrowStudentWarning, match=r"M_ST = 8\) is not wider than its teacher\(s\) of width 8"):
        w.weak_to_strong(w.random_features(student_weights(0, 8, 8, "relu")),
                         [w.random_features(teacher_weights(0, m, 8, "relu")) for m in (4, 8)],
                         w.linear_target(np.eye(8)[0]), w.gaussian_inputs(8), np.geomspace(0.1, 1e4, 40))


def test_unknown_toml_key_lists_valid_keys(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['teacher_width'\]") as err:
        cfg.parse_config("input_dims = [8]\nstudent_widths = [32]\nteacher_width = [4]\n")
    for key in cfg.CONFIG_KEYS:
        assert key in str(err.value)
    path = tmp_path / "bad.toml"
    path.write_text(MINIMAL + "seed = 3\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, message", [
    ("student_widths_per_dim = [4]\n", "exactly one of student_widths"),
    ("input_dim_exponent = 1.5\n", "exactly one of input_dims"),
    ('activation = "tanh"\n', "activation must be one of"),
    ('covariance = "spiked"\ninput_kind = "sphere"\n', "sphere inputs are isotropic"),
    ('input_kind = "sphere"\ntarget_degrees = [1, 2]\ntarget_scales = [1.0, 0.5]\n', "no closed-form moments on the sphere"),
    ("target_degrees = [1, 2]\n", "one scale per degree"),
    ("seeds = 0\n", "seeds must be a positive count"),
    ("times = [1e3, 1.0]\n", "first < last"),
    ("times = [0.0, 1.0]\n", "positive"),
    ("num_times = 1\n", "num_times must be an integer >= 2"),
    ("num_times = 1000000000\n", "more than 100,000"),
    ('precision = "float16"\n', "precision must be one of"),
    ("rcond = 2.0\n", "rcond is a relative eigenvalue cutoff"),
    ('method = "magic"\n', "method must be one of"),
    ('inputs_file = "x.npy"\n', "needs both inputs_file"),
    ('chain_widths = ["inf", 16]\n', "only the last stage may be"),
    ('chain_widths = [16, 16]\nchain_times = ["best", 1.0, 2.0]\n', "chain_times needs one entry or 2"),
    ('chain_widths = [16]\nchain_times = ["soon"]\n', "chain_times holds"),
    ('chain_times = [1.0]\n', "chain_times goes with chain_widths"),
    ("chain_widths = [16]\nsamples = 64\n", "chains are population studies"),
    ('chain_widths = [16]\nmethod = "infinite"\n', "an \"inf\" last stage takes it by itself"),
])
def test_invalid_config_values(extra, message):
    with pytest.raises(ValueError, match=message):
        cfg.parse_config(MINIMAL.replace("num_times = 40\n", "") + extra)


def test_config_type_and_file_errors(tmp_path):
    with pytest.raises(ValueError, match="teacher_widths must hold integers >= 1"):
        cfg.parse_config("input_dims = [8]\nstudent_widths = [32]\nteacher_widths = [4.5]\n")
    with pytest.raises(ValueError, match="repeated values"):
        cfg.parse_config("input_dims = [8]\nstudent_widths = [32]\nteacher_widths = [4, 4]\n")
    with pytest.raises(ValueError, match="teacher_widths is required"):
        cfg.parse_config("input_dims = [8]\nstudent_widths = [32]\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        cfg.parse_config("input_dims = [8\n")
    with pytest.raises(ValueError, match="no \\[quick\\] table"):
        cfg.parse_config(MINIMAL, quick=True)
    with pytest.raises(ValueError, match="does not exist"):
        cfg.load_config(tmp_path / "missing.toml")
    with pytest.raises(ValueError, match="preset must be one of"):
        cfg.preset("fig9")
    assert cfg.parse_config(MINIMAL + "seeds = 2\n").seeds == (0, 1)
    assert cfg.parse_config('input_dims = [8]\nstudent_widths = ["inf", 32]\nteacher_widths = [4]\n').student_widths \
        == (32, math.inf)


def test_resume_skips_done_units_and_fresh_recomputes(tmp_path, monkeypatch, capsys):
    config = dataclasses.replace(cfg.parse_config(MINIMAL), seeds=(0, 1, 2))
    units = len(runner.run_units(config))
    assert units == 6
    calls = count_units(monkeypatch)
    first = runner.run_study(config, tmp_path, progress=False, plots=False)
    assert len(calls) == units and first.runs_computed == units
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()}
    again = runner.run_study(config, tmp_path, progress=False, plots=False)
    assert len(calls) == units, "a second run must not recompute"
    assert (again.runs_computed, again.runs_reused) == (0, units)
    assert again.seconds_computed == 0 and again.seconds_reused == pytest.approx(first.seconds_computed)
    assert "reused 6 from earlier runs" in runner.summary_table(again)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()} == stamps
    np.testing.assert_array_equal(again.curves, first.curves)
    changed = dataclasses.replace(config, target_scales=(2.0,))  # a different number: never reuse a stale file
    runner.run_study(changed, tmp_path, progress=False, plots=False)
    assert len(calls) == 2 * units
    # a damaged run file is recomputed, not trusted
    damaged = sorted((tmp_path / "runs").glob("*.json"))[0]
    damaged.write_text('{"signature": "x"}')
    fresh = runner.run_study(config, tmp_path, fresh=True, progress=False, plots=False)
    assert len(calls) == 3 * units and fresh.runs_computed == units
    assert len(list((tmp_path / "runs").glob("*.json"))) == units
    np.testing.assert_array_equal(fresh.curves, first.curves)


def test_interrupted_study_resumes_with_no_partial_files(tmp_path, monkeypatch, capsys):
    path = tmp_path / "study.toml"
    path.write_text(MINIMAL + "seeds = 3\n")
    out = tmp_path / "out"
    calls = count_units(monkeypatch, fail_at=3)
    assert main(["run", str(path), "--out", str(out), "--no-progress", "--no-plots"]) == 130
    err = capsys.readouterr().err
    assert "interrupted: 2 of 6 run units saved" in err and f"resume with: w2sjax run {path}" in err
    assert "Traceback" not in err
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 2 and not (out / "results.json").exists() and no_temporary_files(out)
    real_fsync = w2sjax._io.os.fsync  # a crash inside a file write leaves neither the file nor its temporary

    def crash(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(w2sjax._io.os, "fsync", crash)
    count_units(monkeypatch)
    config = cfg.load_config(path)
    with pytest.raises(runner.Interrupted):
        runner.run_study(config, out, progress=False, plots=False)
    assert len(list((out / "runs").iterdir())) == 2 and no_temporary_files(out)
    monkeypatch.setattr(w2sjax._io.os, "fsync", real_fsync)
    calls = count_units(monkeypatch)
    result = runner.run_study(config, out, progress=False, plots=False)
    assert len(calls) == 4 and (result.runs_computed, result.runs_reused) == (4, 2)


@pytest.mark.parametrize("make_bad, message", [
    (lambda p: p.write_text("x"), "is a file"),
    (lambda p: (p.mkdir(), (p / "runs").write_text("x")), "runs' is a file"),
])
def test_output_folder_problems_are_caught_before_any_work(tmp_path, monkeypatch, capsys, make_bad, message):
    bad = tmp_path / "out"
    make_bad(bad)
    calls = count_units(monkeypatch)
    path = tmp_path / "study.toml"
    path.write_text(MINIMAL)
    assert main(["run", str(path), "--out", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not calls


def test_infinite_best_time_and_undefined_pgr_are_json_safe(tmp_path, capsys):
    # linear features with M_TE >= d: the teacher is exact (L_TE = 0), the student only converges (t* = ∞)
    path = tmp_path / "lin.toml"
    path.write_text('activation = "linear"\ninput_dims = [8]\nstudent_widths = [128]\nteacher_widths = [8]\n'
                    "seeds = 1\nnum_times = 40\n")
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--no-progress", "--no-plots"]) == 0
    raw = json.loads((tmp_path / "o" / "results.json").read_text())
    assert raw["records"][0]["best_time"] == "inf" and raw["records"][0]["pgr"] is None
    assert "n/a" in capsys.readouterr().out


def test_fit_power_law():
    lte = np.geomspace(1e-3, 0.5, 6)
    exact = runner.fit_power_law(np.tile(lte, 2), np.tile(3.0 * lte**1.7, 2), np.repeat([0, 1], 6))
    assert exact.exponent == pytest.approx(1.7, abs=1e-12) and exact.prefactor == pytest.approx(3.0, rel=1e-10)
    assert exact.exponent_stderr == pytest.approx(0.0, abs=1e-12) and exact.num_points == 12
    two = runner.fit_power_law(np.tile(lte, 2), np.concatenate([lte**1.5, lte**1.9]), np.repeat([0, 1], 6))
    assert two.exponent == pytest.approx(1.7) and two.exponent_stderr == pytest.approx(0.2)
    with pytest.raises(ValueError, match="two or more teacher widths"):
        runner.fit_power_law([0.1], [0.01], [0])


def test_run_and_figure_commands(tmp_path, capsys, monkeypatch):
    path = tmp_path / "study.toml"
    path.write_text(MINIMAL + 'name = "tiny"\nseeds = 2\n[quick]\nseeds = 1\n')
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--no-progress", "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "L_ST*/L_TE (± sd)" in text and "power law" in text and "s.e. over seeds" in text
    assert len(read_results(out)["records"]) == 8
    assert main(["run", str(path), "--out", str(tmp_path / "q"), "--quick", "--no-progress", "--no-plots"]) == 0
    assert len(read_results(tmp_path / "q")["records"]) == 4
    shrunk = tiny(cfg.preset("fig2", quick=True))
    monkeypatch.setattr(cfg, "preset", lambda name, quick=False: shrunk)
    f = tmp_path / "f"
    assert main(["figure", "fig2", "--quick", "--seeds", "3", "--method", "eigh", "--out", str(f), "--no-progress",
                 "--no-plots"]) == 0
    data = read_results(f)
    assert data["config"]["seeds"] == [0, 1, 2] and data["config"]["method"] == "eigh"
    assert {r["route"] for r in data["records"]} == {"eigh"}
    assert main(["figure", "fig2", "--seeds", "0", "--out", str(f)]) == 2
    assert "--seeds must be a positive integer" in capsys.readouterr().err


def test_help_shows_every_default(capsys):
    for command in ("figure", "run", "solve", "large", "samples"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "--times" not in text or "default 0.1" in text, command
    with pytest.raises(SystemExit):
        main(["large", "--help"])
    text = capsys.readouterr().out
    assert "(default: 32)" in text and "(default: auto)" in text and "(default: float64)" in text


def test_samples_command_with_your_own_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x, xh = rng.normal(size=(30, 6)), rng.normal(size=(400, 6))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "xh.npy", xh)
    out = tmp_path / "s"
    args = ["samples", "--inputs", str(tmp_path / "x.npy"), "--heldout", str(tmp_path / "xh.npy"), "--teacher-width",
            "5", "--student-widths", "20", "60", "--times", "0.1", "1e4", "30", "--out", str(out), "--no-progress",
            "--no-plots"]
    assert main(args) == 0
    data = read_results(out)
    assert [r["samples"] for r in data["records"]] == [30, 30]
    # independent: the teacher's least-squares fit on the 30 samples, scored by the held-out mean square
    record = data["records"][0]
    inputs = w.gaussian_inputs(6)
    target = w.random_relu_network_target(0, 64, inputs)
    T = np.asarray(teacher_weights(0, 5, 6, "relu"))
    phi, phih = np.maximum(x @ T.T, 0) / np.sqrt(5), np.maximum(xh @ T.T, 0) / np.sqrt(5)
    y, yh = np.asarray(w.target_values(target, jnp.asarray(x))), np.asarray(w.target_values(target, jnp.asarray(xh)))
    w_t = np.linalg.lstsq(phi, y, rcond=None)[0]
    assert record["teacher_loss"] == pytest.approx(np.mean((phih @ w_t - yh) ** 2), rel=1e-9)
    assert main(args) == 0 and read_results(out)["runs_reused"] == 2  # resumable like every study
    np.save(tmp_path / "bad.npy", np.array([[1.0, np.nan]]))
    assert main(["samples", "--inputs", str(tmp_path / "bad.npy"), "--heldout", str(tmp_path / "xh.npy"),
                 "--out", str(tmp_path / "b")]) == 2
    assert "non-finite" in capsys.readouterr().err


SHIFT = """
name = "tiny-shift"
input_dims = [4]
student_widths = [32]
teacher_widths = [4]
seeds = [0]
times = [0.01, 1e5]
num_times = 40
minority_teacher = [0.5]
minority_student = [0.1, 0.5]
"""


def test_shift_study_scores_each_group_and_the_balanced_test_law(tmp_path):
    """The balanced test law is the mean of the two groups' laws, so every test error is the mean of the group
    errors (a check across three separately scored laws); the shift figure and resume work like any study."""
    config = cfg.parse_config(SHIFT)
    result = runner.run_study(config, tmp_path, progress=False)
    assert [(r["minority_teacher"], r["minority_student"]) for r in result.records] == [(0.5, 0.1), (0.5, 0.5)]
    for r in result.records:
        assert r["best_student_loss"] == pytest.approx(np.mean(r["group_losses"]), rel=1e-10)
        assert r["teacher_loss"] == pytest.approx(np.mean(r["teacher_group_losses"]), rel=1e-10)
        assert r["worst_group_loss"] == max(r["group_losses"]) and r["gain"] > 0
    assert (tmp_path / "shift.png").exists() and "η_ℓ" in runner.summary_table(result)
    again = runner.run_study(config, tmp_path, progress=False, plots=False)
    assert again.runs_reused == 2 and again.records[1]["gain"] == result.records[1]["gain"]


def test_shift_study_refuses_what_the_model_does_not_have():
    with pytest.raises(ValueError, match="minority_student"):
        cfg.parse_config(SHIFT.replace("minority_student = [0.1, 0.5]", ""))
    with pytest.raises(ValueError, match="activation"):
        cfg.parse_config(SHIFT + 'activation = "linear"\n')
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        cfg.parse_config(SHIFT.replace("[0.5]", "[1.5]"))


CHAIN = "input_dims = [8]\nstudent_widths = [24]\nteacher_widths = [4, 8]\nnum_times = 40\nseeds = 2\n" \
        'chain_widths = [40, "inf"]\nchain_times = [30.0, "best"]\n'


def test_a_chain_study_is_the_chain_of_its_stages(tmp_path, capsys):
    """chain_widths in TOML: one record per (seed, stage, teacher) equal to ``w2sjax.chain`` on the same stages
    (stage 1 the study's student of that seed); curves.csv with stage columns; resumed; chain.png."""
    config = cfg.parse_config(CHAIN)
    assert config.stage_times() == (30.0, "best") and cfg.parse_config(cfg.config_to_toml(config)) == config
    plan = runner.plan_study(config)
    assert "stage 2: eigh" in plan.describe() and "stage 3: infinite" in plan.describe()
    result = runner.run_study(config, tmp_path, progress=False)
    assert len(result.records) == 2 * 3 * 2
    inputs = runner.build_inputs(config, 8)
    f_star = runner.build_target(config, 8, inputs)
    for seed in (0, 1):
        stages = list(w.chain_stages(seed, [24, 40], 8)) + [w.infinite_features(8)]
        teacher_models = runner.build_teachers(config, 8, (4, 8), seed)
        expected = w.chain(stages, teacher_models, f_star, inputs, config.time_grid(), stage_times=[30.0, "best"])
        for k, stage in enumerate(expected, start=1):
            for i, m_te in enumerate((4, 8)):
                index = next(j for j, r in enumerate(result.records)
                             if (r["seed"], r["stage"], r["teacher_width"]) == (seed, k, m_te))
                rec = result.records[index]
                assert rec["stage_width"] == (24, 40, "inf")[k - 1] and rec["student_width"] == 24
                assert rec["route"] == ("infinite" if k == 3 else "eigh")
                np.testing.assert_allclose(result.curves[index], stage.student_loss[i], rtol=1e-12)
                for name in ("best_student_loss", "best_time", "ratio", "teacher_loss", "ceiling_loss"):
                    np.testing.assert_allclose(rec[name], getattr(stage, name)[i], rtol=1e-12)
                if k < 3:
                    np.testing.assert_allclose(rec["label_time"], expected.label_times[k - 1, i], rtol=1e-12)
                else:
                    assert rec["label_time"] is None
    lines = (tmp_path / "curves.csv").read_text().splitlines()
    assert lines[0] == "run,input_dim,student_width,teacher_width,seed,stage,stage_width,time,student_loss," \
                       "teacher_loss,loss_ratio"
    assert lines[1].startswith("d8_mst24_mte4_seed0_stage1,8,24,4,0,1,24,") and len(lines) == 1 + 12 * 40
    data = read_results(tmp_path)
    assert {"chain.png", "loss_ratio.png", "power_law.png"} <= set(data["files"])
    assert [f["group"] for f in data["fits"]] == ["d = 8, M_ST = 24, stage 1", "d = 8, M_ST = 24, stage 2 (M = 40)",
                                                  "d = 8, M_ST = 24, stage 3 (M = inf)"]
    table = runner.summary_table(result)
    assert "stage: M" in table and "3: inf" in table
    again = runner.run_study(config, tmp_path, progress=False, plots=False)
    assert again.runs_reused == 2 and again.records == result.records
