"""The weak-to-strong pipeline: sweeps, the paper's effect, the solve command, and bad input."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import w2sjax as w
from w2sjax.cli import main
from w2sjax.sweep import student_weights, teacher_weights


def test_weak_to_strong_effect_relu_d32():
    """The paper's Figure 2 setting at M_ST = 4096: early-stopped students beat their teachers."""
    d = 32
    sweep = w.run_sweep(
        w.gaussian_inputs(d), w.linear_target(np.eye(d)[0]),
        student_widths=(4096,), teacher_widths=(16, 32, 64, 128, 256),
        student_seeds=(0, 1, 2), teacher_seeds=(0, 1, 2), times=np.logspace(-1, 6, 1000),
    )
    ratio = sweep.ratio[0].mean(axis=(0, 2))  # mean over student and teacher seeds, per teacher width
    assert ratio[3] < 0.5, ratio  # M_TE = 128
    assert np.all(np.diff(ratio) < 0), ratio
    assert np.all(sweep.best_student_loss < sweep.teacher_loss[None, None])
    # Early stopping is what helps: trained to convergence the student is much closer to its teacher.
    assert np.all(sweep.student_loss_at_infinity > sweep.best_student_loss)
    assert np.all(np.isfinite(sweep.best_time))
    assert set(sweep.timings) == {"moments", "decomposition", "curves"}


def test_sweep_equals_pairwise_solutions():
    """Padding, masking and vmapping teachers of different widths changes nothing."""
    d = 8
    inputs, target = w.gaussian_inputs(d, np.linspace(0.5, 1.5, d)), w.linear_target(np.linspace(-1, 1, d))
    times = np.logspace(-1, 5, 40)
    sweep = w.run_sweep(
        inputs, target, student_widths=(64, 160), teacher_widths=(3, 8, 20), student_seeds=(5,),
        teacher_seeds=(1, 2), times=times,
    )
    for i, m_s in enumerate((64, 160)):
        student = w.random_features(student_weights(5, 160, d, "relu")[:m_s])
        for a, m_t in enumerate((3, 8, 20)):
            for b, seed in enumerate((1, 2)):
                teacher = w.random_features(teacher_weights(seed, m_t, d, "relu"))
                single = w.weak_to_strong(student, teacher, target, inputs, times)
                np.testing.assert_allclose(sweep.student_loss[i, 0, a, b], single.student_loss, rtol=1e-10, atol=1e-13)
                assert sweep.teacher_loss[a, b] == pytest.approx(float(single.teacher_loss), rel=1e-10)
                assert sweep.best_time[i, 0, a, b] == pytest.approx(float(single.best_time), rel=1e-8)
                assert sweep.pgr[i, 0, a, b] == pytest.approx(float(single.pgr), rel=1e-8)
        assert sweep.ceiling_loss[i, 0] == pytest.approx(float(single.ceiling_loss), rel=1e-10)


def test_nested_students_share_rows():
    full = student_weights(3, 100, 5, "relu")
    np.testing.assert_array_equal(student_weights(3, 100, 5, "relu")[:40], full[:40])
    assert not np.allclose(student_weights(4, 100, 5, "relu"), full)
    # A larger student spans more: its ceiling can only go down.
    d = 5
    sweep = w.run_sweep(
        w.gaussian_inputs(d), w.hermite_target(np.eye(d)[1], 2), student_widths=(20, 60, 100),
        teacher_widths=(4,), times=np.logspace(-1, 4, 20),
    )
    assert np.all(np.diff(sweep.ceiling_loss[:, 0]) <= 1e-12)


def test_linear_features_sweep_rank_deficient():
    d = 12
    sweep = w.run_sweep(
        w.gaussian_inputs(d, np.geomspace(1, 0.01, d)), w.linear_target(np.eye(d)[0]), activation="linear",
        student_widths=(400,), teacher_widths=(3, 6), times=np.logspace(-1, 6, 100),
    )
    assert np.all(np.isfinite(sweep.student_loss))
    assert sweep.ceiling_loss[0, 0] == pytest.approx(0.0, abs=1e-12)


def test_float32_sweep_close_to_float64():
    d = 8
    kwargs = dict(student_widths=(256,), teacher_widths=(4, 16), times=np.logspace(-1, 5, 100))
    target = np.eye(d)[0]
    r64 = w.run_sweep(w.gaussian_inputs(d), w.linear_target(target), **kwargs)
    r32 = w.run_sweep(
        w.gaussian_inputs(d, dtype=jnp.float32), w.linear_target(target, jnp.float32), **kwargs
    )
    err = np.max(np.abs(r32.student_loss - r64.student_loss))
    assert err < 1e-4, err
    np.testing.assert_allclose(r32.best_student_loss, r64.best_student_loss, rtol=1e-3)


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------


def good_problem(d=4):
    inputs = w.gaussian_inputs(d)
    student = w.random_features(w.sample_weights(jax.random.key(0), 10, d, "relu"))
    teacher = w.random_features(w.sample_weights(jax.random.key(1), 3, d, "relu"))
    return student, teacher, w.linear_target(np.ones(d)), inputs


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: w.gaussian_inputs(0), "dim must be a positive integer"),
        (lambda: w.gaussian_inputs(3, [1, 2]), r"input variances must have shape \(3\)"),
        (lambda: w.gaussian_inputs(2, [1, -1]), "must be > 0"),
        (lambda: w.gaussian_inputs(2, [1, np.nan]), "non-finite"),
        (lambda: w.make_inputs("uniform", 3), "unknown input distribution 'uniform'"),
        (lambda: w.random_features(np.ones((3, 2)), "tanh"), "unknown activation 'tanh'"),
        (lambda: w.random_features(np.full((3, 2), np.inf)), "non-finite"),
        (lambda: w.random_features(np.ones((0, 2))), "non-empty"),
        (lambda: w.sample_weights(jax.random.key(0), -4, 3, "relu"), "width must be a positive integer"),
        (lambda: w.linear_target([np.nan, 1.0]), "beta has 1 non-finite"),
        (lambda: w.hermite_target([1.0, 1.0], 2), "needs ‖beta‖ = 1"),
        (lambda: w.hermite_target([1.0, 0.0], -1), "degree must be an integer >= 0"),
        (lambda: w.sum_target(), "at least one term"),
    ],
)
def test_bad_construction_raises(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_problem_raises():
    student, teacher, target, inputs = good_problem()
    times = np.logspace(-1, 2, 5)
    cases = [
        ((w.random_features(np.ones((5, 3))), teacher, target, inputs, times), "student features have input dimension 3"),
        ((student, w.random_features(np.ones((5, 7))), target, inputs, times), "teacher features have input dimension 7"),
        ((student, teacher, w.linear_target(np.ones(5)), inputs, times), "target dimension 5"),
        ((student, teacher, w.hermite_target(np.eye(4)[0], 2), w.gaussian_inputs(4, [1, 2, 1, 1]), times), "identity"),
        ((student, teacher, target, inputs, [1.0, -2.0]), "times must be >= 0"),
        ((student, teacher, target, inputs, [1.0, np.inf]), "non-finite"),
        ((student, teacher, target, inputs, [3.0, 2.0]), "strictly increasing"),
        ((student, teacher, target, inputs, [0.0, 2.0]), "must be > 0"),
    ]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            w.weak_to_strong(*args)
    with pytest.raises(ValueError, match="unknown activation"):
        w.run_sweep(inputs, target, activation="sigmoid", student_widths=(8,), teacher_widths=(2,), times=times)
    with pytest.raises(ValueError, match="student width must be a positive integer"):
        w.run_sweep(inputs, target, student_widths=(0,), teacher_widths=(2,), times=times)


# ------------------------------------------------------------------------------------------------
# The solve command
# ------------------------------------------------------------------------------------------------


def test_solve_command_matches_api(tmp_path):
    rng = np.random.default_rng(0)
    d = 6
    arrays = dict(
        student_weights=rng.normal(size=(120, d)), teacher_weights=rng.normal(size=(9, d)),
        beta=rng.normal(size=d) * 3, input_variances=rng.uniform(0.5, 2.0, size=d),
    )
    np.savez(tmp_path / "f.npz", **arrays)
    out = tmp_path / "out"
    assert main(["solve", "--features", str(tmp_path / "f.npz"), "--out", str(out), "--times", "-2", "5", "300"]) == 0
    record = json.loads((out / "results.json").read_text())
    keys = {"teacher_loss", "times", "student_loss", "best_time", "best_student_loss", "student_loss_at_infinity",
            "ceiling_loss", "pgr"}
    assert keys <= set(record)
    assert len(record["times"]) == len(record["student_loss"]) == 300
    api = w.weak_to_strong(
        w.random_features(arrays["student_weights"]), w.random_features(arrays["teacher_weights"]),
        w.linear_target(arrays["beta"]), w.gaussian_inputs(d, arrays["input_variances"]), np.logspace(-2, 5, 300),
    )
    np.testing.assert_allclose(record["student_loss"], np.asarray(api.student_loss), rtol=1e-12)
    assert record["best_time"] == pytest.approx(float(api.best_time), rel=1e-12)
    assert record["pgr"] == pytest.approx(float(api.pgr), rel=1e-12)
    assert not [p for p in out.iterdir() if p.name != "results.json"]  # no temporary files left


def test_solve_command_rejects_bad_files(tmp_path, capsys):
    np.savez(tmp_path / "bad.npz", student_weights=np.ones((4, 3)), beta=np.ones(3))
    assert main(["solve", "--features", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "o")]) == 2
    assert "lacks ['teacher_weights']" in capsys.readouterr().err
    np.savez(tmp_path / "odd.npz", student_weights=np.ones((4, 3)), teacher_weights=np.ones((2, 3)), beta=np.ones(3),
             extra=np.ones(1))
    assert main(["solve", "--features", str(tmp_path / "odd.npz"), "--out", str(tmp_path / "o")]) == 2
    assert "unknown arrays ['extra']" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
