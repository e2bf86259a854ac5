"""Bad input, everywhere: every bad value given to the CLI exits 2 with ONE line on stderr that names it and says
what to change (no traceback, nothing computed first); the public API raises ValueError. Valid but degenerate
problems (t* = ∞, PGR undefined, d = 1, extreme scales) exit 0 with correct, written figures."""

import json
import subprocess
import sys
import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import w2sjax as w
from w2sjax.cli import main
from w2sjax.studies import config as cfg
from w2sjax.studies import runner

D, M_ST, M_TE = 4, 32, 4
TIMES = ["0.1", "1e7", "40"]
E1 = np.eye(D)[0]


def cli(argv, capsys):
    """(exit status, stdout, stderr) of ``w2sjax ARGV`` run in this process."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as stop:  # argparse
        rc = stop.code
    out, err = capsys.readouterr()
    return rc, out, err


def refused(argv, capsys, *needles, seconds=10.0):
    """The command exits 2 at once with one line naming every needle (case-insensitive)."""
    clock = time.perf_counter()
    rc, out, err = cli(argv, capsys)
    elapsed = time.perf_counter() - clock
    lines = err.strip().splitlines()
    assert rc == 2, (rc, out, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("w2sjax")
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])
    assert elapsed < seconds, f"took {elapsed:.1f} s to refuse: {lines[0]}"
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Weights files (.npz) for `solve`, and files that are not what they claim."""
    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal((M_ST, D)), rng.standard_normal((M_TE, D))

    def npz(name, **arrays):
        path = root / f"{name}.npz"
        np.savez(path, **{"student_weights": u, "teacher_weights": v, "beta": E1, **arrays})
        return path

    paths = {
        "good": npz("good"), "complex": npz("complex", student_weights=u + 1j),
        "negvar": npz("negvar", input_variances=-np.ones(D)), "nanvar": npz("nanvar", input_variances=np.full(D, np.nan)),
        "nanweights": npz("nanweights", teacher_weights=np.where(v > 0, np.nan, v)),
        "extra": npz("extra", bias=np.ones(3)), "strings": npz("strings", beta=np.array(["a"] * D)),
    }
    np.savez(root / "missing.npz", student_weights=u, beta=E1)
    paths["missing"] = root / "missing.npz"
    np.save(root / "array.npy", u)
    paths["npy"] = root / "array.npy"
    (root / "text.npz").write_text("student_weights, teacher_weights, beta\n")
    paths["text"] = root / "text.npz"
    (root / "a-file").write_text("x")
    paths["file"] = root / "a-file"
    (root / "out-with-runs-file").mkdir()
    (root / "out-with-runs-file" / "runs").write_text("x")
    paths["runs_file"] = root / "out-with-runs-file"
    paths["root"] = root
    paths["u"], paths["v"] = u, v
    return paths


# --------------------------------------------------------------------------------------------------
# The CLI: a table of bad inputs
# --------------------------------------------------------------------------------------------------

SOLVE_BAD = [  # (extra arguments, features file, needles in the one line)
    (["--times", "nan", "10", "5"], "good", ["--times", "nan"]),
    (["--times", "-1", "10", "5"], "good", ["--times", "-1"]),
    (["--times", "10", "1", "5"], "good", ["--times", "first < last"]),
    (["--times", "1", "10", "1e9"], "good", ["NUM", "1e+09"]),
    (["--times", "1", "10", "2.5"], "good", ["NUM", "2.5"]),
    (["--times", "1", "10", "x"], "good", ["--times", "'x'"]),
    (["--activation", "tanh"], "good", ["--activation", "tanh"]),
    (["--method", "magic"], "good", ["--method", "magic"]),
    (["--precision", "float16"], "good", ["--precision", "float16"]),
    ([], "complex", ["student_weights", "real"]),
    ([], "negvar", ["variances", "> 0"]),
    ([], "nanvar", ["variances", "non-finite"]),
    ([], "nanweights", ["teacher", "non-finite"]),
    ([], "missing", ["teacher_weights"]),
    ([], "extra", ["bias", "valid names"]),
    ([], "strings", ["beta", "real numbers"]),
    ([], "npy", ["array.npy", "numpy.savez"]),
    ([], "text", ["text.npz", "numpy.savez"]),
    (["--method", "infinite"], "good", ["infinite"]),
]


@pytest.mark.parametrize("extra, name, needles", SOLVE_BAD, ids=[f"solve-{i}" for i in range(len(SOLVE_BAD))])
def test_solve_refuses(extra, name, needles, files, capsys):
    out = files["root"] / "never"
    refused(["solve", "--features", files[name], "--out", out, *extra], capsys, *needles)
    assert not (out / "results.json").exists()


@pytest.mark.parametrize("where", ["under_file", "is_file", "runs_file", "proc"])
def test_output_folder_refused_before_computing(where, files, capsys, monkeypatch):
    """A folder that cannot be written is refused before any work: the solver is never called."""
    out = {"under_file": files["file"] / "sub", "is_file": files["file"], "runs_file": files["runs_file"],
           "proc": Path("/proc/w2sjax-cannot-write-here")}[where]
    monkeypatch.setattr(runner, "compute_unit", lambda *a: pytest.fail("computed before checking the folder"))
    import w2sjax.w2s

    monkeypatch.setattr(w2sjax.w2s, "solve_objective", lambda *a, **k: pytest.fail("solved before checking"))
    needle = str(out) if where != "under_file" else str(files["file"])
    if where == "runs_file":
        refused(["figure", "fig2", "--quick", "--out", out, "--no-progress"], capsys, "runs", "is a file")
        return
    refused(["solve", "--features", files["good"], "--out", out], capsys, needle)
    refused(["large", "--student-width", "16", "--teacher-width", "4", "--out", out], capsys, needle)
    refused(["run", files["root"] / "any.toml", "--out", out], capsys)  # config missing: refused either way


LARGE_BAD = [
    (["--student-width", "0"], ["--student-width", "'0'"]),
    (["--student-width", "1.5"], ["--student-width", "'1.5'"]),
    (["--student-width", "-8"], ["--student-width", "'-8'"]),
    (["--student-width", "abc"], ["--student-width", "'abc'"]),
    (["--teacher-width", "0"], ["--teacher-width", "0"]),
    (["--teacher-width", "1.5"], ["--teacher-width", "'1.5'"]),
    (["--dim", "0"], ["--dim", "0"]),
    (["--dim", "-3"], ["--dim", "-3"]),
    (["--student-seed", "1.7"], ["--student-seed", "1.7"]),
    (["--student-seed", "-1"], ["--student-seed", "-1"]),
    (["--teacher-seed", "-2"], ["--teacher-seed", "-2"]),
    (["--tol", "nan"], ["--tol", "nan"]),
    (["--time-rtol", "-1"], ["--time-rtol", "-1"]),
    (["--max-blocks", "0"], ["--max-blocks", "0"]),
    (["--memory-gb", "-1"], ["--memory-gb", "-1"]),
    (["--max-hours", "nan"], ["--max-hours", "nan"]),
    (["--times", "1", "1", "10"], ["--times"]),
    # sizes that cannot be held: refused by planning before anything is drawn
    (["--student-width", "64", "--dim", "100000000"], ["weights", "100,000,000", "GiB"]),
    (["--student-width", "64", "--teacher-width", "2000000"], ["M_TE = 2,000,000", "GiB"]),
    (["--student-width", "2000000", "--memory-gb", "1"], ["2,000,000", "fit no route", "GiB"]),
    (["--student-width", "2000000"], ["predicts", "--max-hours"]),  # fits in memory, would take weeks
    (["--student-width", "4096", "--method", "infinite"], ["infinite"]),
]


@pytest.mark.parametrize("extra, needles", LARGE_BAD, ids=[f"large-{i}" for i in range(len(LARGE_BAD))])
def test_large_refuses(extra, needles, tmp_path, capsys):
    base = [x for flag, value in (("--student-width", "16"), ("--teacher-width", "4")) if flag not in extra
            for x in (flag, value)]
    refused(["large", *base, *extra, "--out", tmp_path / "o", "--no-progress"], capsys, *needles)
    assert not (tmp_path / "o" / "results.json").exists()


OTHER_BAD = [
    (["figure", "fig9"], ["fig9"]),
    (["figure", "fig2", "--seeds", "0"], ["--seeds", "0"]),
    (["figure", "fig2", "--seeds", "1.7"], ["--seeds", "1.7"]),
    (["figure", "fig2", "--method", "magic"], ["magic"]),
    (["figure", "fig2", "--max-hours", "0.0001"], ["predicts", "--max-hours 0.0001"]),
    (["samples", "--n", "0", "--dim", "4"], ["--n", "0"]),
    (["samples", "--n", "8", "--dim", "4", "--distribution", "cube"], ["cube"]),
    (["samples", "--n", "8", "--dim", "4", "--teacher-time", "nan"], ["teacher_time", "nan"]),
    (["samples", "--n", "8", "--dim", "4", "--student-widths", "0"], ["student_widths", "0"]),
    (["samples", "--n", "8", "--dim", "4", "--target-units", "0"], ["target_units", "0"]),
    (["crosscheck", "--dim", "0"], ["dim", "0"]),
    (["crosscheck", "--seeds", "1"], ["seeds", ">= 2"]),
    (["crosscheck", "--online-step", "nan"], ["step", "nan"]),
    (["crosscheck", "--student-width", "-5"], ["width", "-5"]),
    (["chain", "--stages", "16", "inf", "32", "--teacher-width", "4"], ["--stages", "only the last"]),
    (["chain", "--stages", "16", "32", "--teacher-width", "4", "--dim", "0"], ["--dim", "0"]),
    (["nonsense"], ["nonsense"]),
]


@pytest.mark.parametrize("argv, needles", OTHER_BAD, ids=[f"other-{i}" for i in range(len(OTHER_BAD))])
def test_other_commands_refuse(argv, needles, tmp_path, capsys):
    extra = [] if argv[0] in ("crosscheck", "nonsense") else ["--out", tmp_path / "o", "--no-progress", "--no-plots"]
    refused([*argv, *extra], capsys, *needles)


def test_samples_own_files_refused(files, capsys, tmp_path):
    """An .npz or a text file given as an .npy array is named, with what to do."""
    refused(["samples", "--inputs", files["good"], "--heldout", files["npy"], "--out", tmp_path], capsys,
            "--inputs", "several arrays", ".npy")
    refused(["samples", "--inputs", files["text"], "--heldout", files["npy"], "--out", tmp_path], capsys,
            "--inputs", "numpy.save")


# --------------------------------------------------------------------------------------------------
# TOML files
# --------------------------------------------------------------------------------------------------

# the shapes of the `solve` problems below (d = 4, M_ST = 32, one teacher of 4, 40 times): compiled code is shared
BASE = 'name = "tiny"\nteacher_widths = [4]\nstudent_widths = [32]\ninput_dims = [4]\nseeds = 1\nnum_times = 40\n'

TOML_BAD = [
    ("colour = 1\n", ["colour", "valid keys"]),
    ('seeds = "two"\n', ["seeds", "'two'"]),
    ("seeds = [1.7]\n", ["seeds", "1.7"]),
    ("student_widths = [32.5]\n", ["student_widths", "32.5"]),
    ("student_widths = [0]\n", ["student_widths", "0"]),
    ("teacher_widths = [-4]\n", ["teacher_widths", "-4"]),
    ("input_dims = [0]\n", ["input_dims", "0"]),
    ("rcond = 2.0\n", ["rcond", "2.0"]),
    ("rcond = nan\n", ["rcond", "nan"]),
    ("rcond = -1e-3\n", ["rcond", "-0.001"]),
    ("times = [10.0, 1.0]\n", ["times", "first < last"]),
    ("times = [nan, 1.0]\n", ["times", "nan"]),
    ("times = [-1.0, 1.0]\n", ["times", "-1"]),
    ("num_times = 1000000000\n", ["num_times", "1,000,000,000"]),
    ('input_kind = "cube"\n', ["input_kind", "cube"]),
    ('activation = "tanh"\n', ["activation", "tanh"]),
    ('method = "magic"\n', ["method", "magic"]),
    ('covariance = "spiked"\nspike_variance = -1.0\n', ["spike_variance", "-1"]),
    ('input_kind = "sphere"\ntarget_degrees = [2]\n', ["sphere", "gaussian"]),
    ("target_scales = [nan]\n", ["target_scales", "nan"]),
    ("= =\n", ["not valid TOML"]),
    ("[quick]\ncolour = 1\n", ["colour"]),
    ("student_widths = [2000000]\n", ["predicts", "--max-hours"]),
    ("input_dims = [100000000]\n", ["100,000,000", "GiB"]),
    ("teacher_widths = [2000000]\n", ["M_TE = 2,000,000", "GiB"]),
]


@pytest.mark.parametrize("text, needles", TOML_BAD, ids=[f"toml-{i}" for i in range(len(TOML_BAD))])
def test_toml_refused(text, needles, tmp_path, capsys):
    keys = {line.split("=")[0].strip() for line in text.splitlines() if "=" in line and not line.startswith("[")}
    base = "".join(line + "\n" for line in BASE.splitlines() if line.split("=")[0].strip() not in keys)
    path = tmp_path / "study.toml"
    path.write_text(base + text if not text.startswith("[") else BASE + text)
    refused(["run", path, "--out", tmp_path / "o", "--no-progress", "--no-plots"], capsys, *needles)
    assert not (tmp_path / "o" / "results.json").exists()


KEY_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                       st.text(max_size=6), st.lists(st.one_of(st.integers(-5, 10**7), st.floats(), st.text(max_size=3)),
                                                     max_size=3))


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from(sorted(cfg.CONFIG_KEYS)), value=KEY_VALUES)
def test_any_key_value_is_a_config_or_a_value_error(key, value):
    """Whatever value a key gets, the config is built or refused with one line; nothing else escapes."""
    data = {"teacher_widths": [4], "student_widths": [32], "input_dims": [4], key: value}
    try:
        cfg.config_from_dict(data)
    except ValueError as err:
        assert "\n" not in str(err) and str(err)


@settings(max_examples=50, deadline=None)
@given(first=st.floats(allow_nan=True), last=st.floats(allow_nan=True), num=st.floats(allow_nan=True))
def test_any_time_grid_is_valid_or_refused(first, last, num):
    from argparse import Namespace

    from w2sjax.commands._common import time_grid

    try:
        grid = time_grid(Namespace(times=(first, last, num)))
    except ValueError as err:
        assert "--times" in str(err) and "\n" not in str(err)
        return
    assert grid.size == num and np.all(np.isfinite(grid)) and np.all(np.diff(grid) > 0) and grid[0] > 0


# --------------------------------------------------------------------------------------------------
# A study resumed from damaged run files
# --------------------------------------------------------------------------------------------------


def test_resume_recomputes_damaged_run_files(tmp_path, capsys):
    """A run file with a key missing, a value of the wrong type or a short curve is recomputed, never trusted."""
    path = tmp_path / "study.toml"
    path.write_text(BASE.replace("seeds = 1", "seeds = 2"))
    out = tmp_path / "o"
    argv = ["run", path, "--out", out, "--no-progress", "--no-plots"]
    assert cli(argv, capsys)[0] == 0
    before = json.loads((out / "results.json").read_text())["records"]
    config = cfg.load_config(path)
    units = runner.run_units(config)
    first = out / "runs" / f"{units[0].key}.json"
    good = json.loads(first.read_text())
    assert runner._load_unit(first, units[0], config.num_times) is not None
    damage = [
        lambda d: d["records"][0].pop("teacher_loss"),  # a key missing
        lambda d: d["records"][0].update(best_student_loss="abc"),  # a value of the wrong type
        lambda d: d["records"][0].update(ratio=[1.0]),
        lambda d: d.update(curves=[d["curves"][0][:3]]),  # a curve cut short
        lambda d: d.update(curves=d["curves"] * 2),  # more curves than records
        lambda d: d["curves"][0].__setitem__(2, {"a": 1}),
        lambda d: d.update(seconds="soon"),
    ]
    for harm in damage:
        data = json.loads(json.dumps(good))
        harm(data)
        first.write_text(json.dumps(data))
        assert runner._load_unit(first, units[0], config.num_times) is None, data
    first.write_text("{not json")
    assert runner._load_unit(first, units[0], config.num_times) is None
    rc, _, err = cli(argv, capsys)  # resumed: the damaged unit recomputed, the other reused, same numbers
    assert rc == 0, err
    result = json.loads((out / "results.json").read_text())
    assert (result["runs_computed"], result["runs_reused"]) == (1, 1)
    assert [r["best_student_loss"] for r in result["records"]] == [r["best_student_loss"] for r in before]


# --------------------------------------------------------------------------------------------------
# The public API
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def problem(files):
    student, teacher = w.random_features(files["u"]), w.random_features(files["v"])
    return student, teacher, w.linear_target(E1), w.gaussian_inputs(D), np.geomspace(0.1, 1e7, 40)


def one_line_error(fn, *needles):
    with pytest.raises(ValueError) as info:
        fn()
    text = str(info.value)
    assert "\n" not in text, text
    for needle in needles:
        assert needle.lower() in text.lower(), (needle, text)


def test_api_refuses_bad_values(problem):
    student, teacher, target, inputs, times = problem

    def run(**changes):
        args = dict(student=student, teachers=teacher, target=target, inputs=inputs, times=times)
        args.update(changes)
        return w.weak_to_strong(args.pop("student"), args.pop("teachers"), args.pop("target"), args.pop("inputs"),
                                args.pop("times"), **args)

    for rcond in (2.0, float("nan"), -1e-3, 1.0):
        one_line_error(lambda: run(rcond=rcond), "rcond", repr(rcond))
    one_line_error(lambda: run(times=times[::-1]), "times", "increasing")
    one_line_error(lambda: run(times=np.array([1.0, np.nan])), "times", "non-finite")
    one_line_error(lambda: run(times=np.array([-1.0, 2.0])), "times", "-1")
    one_line_error(lambda: run(times=times + 0j), "times", "complex")
    one_line_error(lambda: run(method="magic"), "method", "magic")
    one_line_error(lambda: run(teacher_time=float("nan")), "teacher_time", "nan")
    one_line_error(lambda: run(samples=8, sample_seed=1.7), "seed", "1.7")
    one_line_error(lambda: run(inputs=w.gaussian_inputs(D + 1)), "dimension")
    one_line_error(lambda: w.random_features(np.asarray(student.weights) + 1j), "real")
    one_line_error(lambda: w.random_features(np.ones((3, 2)), "tanh"), "activation", "tanh")
    one_line_error(lambda: w.make_inputs("cube", 3), "cube")
    one_line_error(lambda: w.gaussian_inputs(3, -np.ones(3)), "variances", "> 0")
    one_line_error(lambda: w.gaussian_inputs(3, np.ones(3) + 1j), "variances", "real")
    one_line_error(lambda: w.gaussian_inputs(2, covariance=np.eye(2) * 1j), "covariance", "real")
    one_line_error(lambda: w.linear_target(E1 + 1j), "real")
    one_line_error(lambda: w.features.student_weights(1.7, 8, 3, "relu"), "seed", "1.7")
    one_line_error(lambda: w.features.teacher_weights(0, 1.5, 3, "relu"), "width", "1.5")
    one_line_error(lambda: w.features.student_features(0, 0, 3), "width", "0")
    one_line_error(lambda: w.features.student_features(0, "wide", 3), "width", "wide")
    one_line_error(lambda: w.hermite_target(E1, 1.5), "degree", "1.5")
    one_line_error(lambda: w.target_second_moment(w.hermite_target(E1, 2), w.sphere_inputs(D)), "sphere", "gaussian")


def test_hermite_moments_on_diagonal_covariance():
    """h_k(⟨β, x⟩) under Σ = diag(s): the exact moments (not the Σ = I values), against closed forms and a Monte
    Carlo estimate (5 standard errors)."""
    variances = np.array([2.0, 1.0, 1.0, 1.0])
    inputs = w.gaussian_inputs(D, variances)
    # x₁ ~ N(0, 2): E[h_2(x₁)²] = E[(x₁² − 1)²]/2 = (3·4 − 2·2 + 1)/2 = 4.5
    assert float(w.target_second_moment(w.hermite_target(E1, 2), inputs)) == pytest.approx(4.5, rel=1e-12)
    # E[h_3(x₁)²] = E[(x³ − 3x)²]/6 = (15·8 − 6·3·4 + 9·2)/6 = 11
    assert float(w.target_second_moment(w.hermite_target(E1, 3), inputs)) == pytest.approx(11.0, rel=1e-12)
    rng = np.random.default_rng(3)
    beta = rng.standard_normal(D)
    beta /= np.linalg.norm(beta)
    n = 100_000
    x = rng.standard_normal((n, D)) * np.sqrt(variances)
    features = w.random_features(rng.standard_normal((6, D)))
    phi = np.asarray(features(x))
    for degree in (2, 4):
        f = w.hermite_target(beta, degree)
        y = np.asarray(w.target_values(f, x))
        exact = np.asarray(w.feature_target_moment(features, f, inputs))
        product = phi * y[:, None]
        assert np.all(np.abs(exact - product.mean(0)) < 5 * product.std(0) / np.sqrt(n)), degree
        squares = y**2
        second = float(w.target_second_moment(f, inputs))
        assert abs(second - squares.mean()) < 5 * squares.std() / np.sqrt(n), degree


# --------------------------------------------------------------------------------------------------
# Valid problems at the edges: exit 0, results written and right
# --------------------------------------------------------------------------------------------------


def solve(files, name, capsys, *extra, **arrays):
    path = files["root"] / f"{name}.npz"
    np.savez(path, **{"student_weights": files["u"], "teacher_weights": files["v"], "beta": E1, **arrays})
    out = files["root"] / f"out-{name}"
    rc, text, err = cli(["solve", "--features", path, "--out", out, "--times", *TIMES, *extra], capsys)
    assert rc == 0, err
    record = json.loads((out / "results.json").read_text())
    for key in ("teacher_loss", "best_student_loss", "student_loss_at_infinity", "ceiling_loss"):
        assert isinstance(record[key], float) and math.isfinite(record[key]), (key, record[key])
    assert all(isinstance(v, float) and math.isfinite(v) for v in record["student_loss"])
    return record


def test_equal_weights_have_no_gain(files, capsys):
    """Teacher = student: L(w) = ‖w − w_T‖²_G + L_TE ≥ L_TE, lowest at t* = ∞; PGR is undefined (null)."""
    r = solve(files, "equal", capsys, teacher_weights=files["u"])
    assert r["best_time"] == "inf" and r["best_time_location"] == "infinity"
    assert r["best_student_loss"] == pytest.approx(r["teacher_loss"], rel=1e-10)
    assert r["ratio"] == pytest.approx(1.0, rel=1e-10) and r["pgr"] is None
    assert min(r["student_loss"]) >= r["teacher_loss"] * (1 - 1e-12)


def test_linear_teacher_that_spans_the_inputs(files, capsys):
    """Linear features with M_TE ≥ d (here d = 1): the teacher is exact (L_TE = 0 to rounding), and so is the
    student; t* = ∞."""
    r = solve(files, "linear", capsys, "--activation", "linear", student_weights=np.linspace(-2, 2, 8)[:, None],
              teacher_weights=np.array([[1.0], [-0.5]]), beta=np.ones(1))
    assert r["teacher_loss"] < 1e-12 and r["best_student_loss"] < 1e-12 and r["ceiling_loss"] < 1e-12
    assert r["best_time"] == "inf"


def test_one_input_dimension(files, capsys):
    """d = 1, ReLU: f* = x = relu(x) − relu(−x) is in the span of a teacher with units of both signs."""
    r = solve(files, "d1", capsys, student_weights=np.linspace(-2, 2, 8)[:, None],
              teacher_weights=np.array([[1.0], [-0.5]]), beta=np.ones(1))
    assert r["teacher_loss"] < 1e-12 and r["best_student_loss"] < 1e-12


@pytest.fixture(scope="module")
def reference(files, problem):
    student, teacher, target, inputs, times = problem
    return w.weak_to_strong(student, teacher, target, inputs, times)


@pytest.mark.parametrize("weight_scale, variance", [(1e150, 1.0), (1e-150, 1.0), (1.0, 1e150), (1.0, 1e-150),
                                                    (1e100, 1e-100), (2.0**-500, 2.0**600)])
def test_extreme_scales_are_exact(files, capsys, reference, weight_scale, variance):
    """Weights × s and Σ × v: G scales by s² v, so t* = t*₁/(s² v), and every loss scales by v (f* = ⟨e₁, x⟩);
    the ratio and PGR do not change. Written by `solve` (exit 0, finite values)."""
    r = solve(files, f"scale-{weight_scale:g}-{variance:g}", capsys, student_weights=files["u"] * weight_scale,
              teacher_weights=files["v"] * weight_scale, input_variances=np.full(D, variance))
    factor = weight_scale**2 * variance
    assert r["best_time"] == pytest.approx(float(reference.best_time) / factor, rel=1e-8)
    for key in ("teacher_loss", "best_student_loss", "student_loss_at_infinity", "ceiling_loss"):
        assert r[key] == pytest.approx(float(getattr(reference, key)) * variance, rel=1e-9), key
    assert r["ratio"] == pytest.approx(float(reference.ratio), rel=1e-9)


def test_scales_beyond_float64_are_refused(problem):
    """t* past the largest float64 (weights ≈ 1e-160): a clear refusal, never a NaN or a silent ∞."""
    student, teacher, target, inputs, times = problem
    tiny = w.random_features(np.asarray(student.weights) * 1e-160)
    one_line_error(lambda: w.weak_to_strong(tiny, teacher, target, inputs, times), "t*", "rescale")


def test_the_command_flushes_its_output_exits_with_its_status_and_stops_quietly_on_a_closed_pipe(files, tmp_path):
    """`python -m w2sjax` (the installed command's entry point, which exits without interpreter teardown):
    everything printed reaches a pipe, the status is main's, bad input is one line with exit 2, and a reader
    that goes away early (`| head -1`) ends the command quietly with 141, its files written."""
    command = [sys.executable, "-m", "w2sjax", "solve", "--features", str(files["good"]), "--times", *TIMES]
    ok = subprocess.run(command + ["--out", str(tmp_path / "ok")], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "L_TE" in ok.stdout and ok.stdout.endswith("\n") and (tmp_path / "ok" / "results.json").is_file()
    bad = subprocess.run(command[:-4] + ["--times", "1", "0", "5", "--out", str(tmp_path / "bad")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    reader = subprocess.Popen(command + ["--out", str(tmp_path / "pipe")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    reader.stdout.close()  # the reader is gone before the command prints
    _, err = reader.communicate(timeout=120)
    assert reader.returncode == 141 and err.decode().strip() == "", err.decode()
    assert (tmp_path / "pipe" / "results.json").is_file()
