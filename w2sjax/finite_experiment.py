"""Finite-sample studies: one teacher per seed and nested students, all trained on the same n samples.

Per seed s: samples x_i (drawn with seed s, or the user's array), a teacher with weights
``sweep.teacher_weights(s, M_TE, d, act)`` trained by gradient flow on the true labels f*(x_i) up to
``teacher_time`` (∞: least squares), and nested students (``sweep.student_weights(s, max M_ST, d, act)``,
width m uses the first m rows) trained by gradient flow on the teacher's values f_T(x_i) at the same points.
Every error is a population error (exact moments, or held-out means for user data); optionally ridge on the
same samples at μ = 1/t for the grid's times.

``relu_samples_experiment`` is the ``relu-samples`` preset: d = 32, a standardised ReLU-network target of 64
units, teacher of 48 ReLU features on n = 2048 samples, students of 256 … 4096 ReLU features.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._checks import check_choice, check_positive_int
from w2sjax._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from w2sjax.environment import environment
from w2sjax.features import ACTIVATIONS, RandomFeatures
from w2sjax._io import json_safe
from w2sjax.finite import (
    ROUTES,
    ExactMoments,
    Moments,
    _summarize_finite,
    _target_values,
    choose_route,
    draw_samples,
    fit_teacher_on_samples,
    sample_problem,
)
from w2sjax.inputs import gaussian_inputs
from w2sjax.relu_net_target import random_relu_network_target
from w2sjax.ridge import ridge_summary
from w2sjax.sweep import student_weights, teacher_weights
from w2sjax.w2s import check_increasing_times

FIGURES = ("best_time", "best_student_loss", "student_loss_at_infinity", "ceiling_loss", "ratio", "pgr")
RIDGE_FIGURES = ("best_strength", "best_student_loss", "ratio")


@dataclasses.dataclass(frozen=True)
class StudyResult:
    """A finite-sample study as numpy arrays; axes S = student widths, s = seeds, T = times.

    Attributes:
      times: (T,).   student_widths, seeds: the axes.
      teacher_loss: (s,) L_TE.
      student_loss: (S, s, T) L_ST(t).
      figures: name → (S, s) for best_time, best_student_loss, student_loss_at_infinity, ceiling_loss, ratio, pgr.
      routes: the decomposition used per student width (``"kernel"`` or ``"covariance"``).
      n: samples per seed.
      ridge_loss: (S, s, T) L_ST(μ) at μ = 1/times (None unless asked).
      ridge_figures: name → (S, s) for best_strength, best_student_loss, ratio (empty unless asked).
      seconds: wall time.
    """

    times: np.ndarray
    student_widths: tuple
    seeds: tuple
    teacher_loss: np.ndarray
    student_loss: np.ndarray
    figures: dict
    routes: tuple
    n: int
    ridge_loss: np.ndarray | None
    ridge_figures: dict
    seconds: float


def finite_study(
    *,
    moments: Moments,
    samples_for_seed: Callable[[int], jax.Array],
    labels_for: Callable[[jax.Array], jax.Array],
    activation: str,
    teacher_width: int,
    student_widths: Sequence[int],
    seeds: Sequence[int],
    times,
    teacher_time: float = math.inf,
    route: str = "auto",
    ridge: bool = False,
    rcond: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> StudyResult:
    """Teacher and nested students on the same samples, for every seed (see the module docstring).

    Args:
      moments: ``ExactMoments`` or ``HeldOutMoments`` (population errors).
      samples_for_seed(seed) → (n, d) training inputs.  labels_for(x) → (n,) true labels on them.
      activation: ``"relu"`` or ``"linear"`` (teacher and students).
      teacher_width, student_widths, seeds: the study's sizes.
      times: (T,) increasing positive stopping times of the students.
      teacher_time: the teacher's flow time (∞: least squares).
      route: ``"auto"``, ``"kernel"`` or ``"covariance"``.
      ridge: also ridge students on the same samples at μ = 1/t.
    """
    check_choice(activation, ACTIVATIONS, "activation")
    check_choice(route, ROUTES, "route")
    teacher_width = check_positive_int(teacher_width, "teacher width")
    widths = tuple(check_positive_int(m, "student width") for m in student_widths)
    seeds = tuple(int(s) for s in seeds)
    if not widths or not seeds:
        raise ValueError("give at least one student width and one seed")
    if not (teacher_time > 0):
        raise ValueError(f"teacher time must be > 0 (inf for least squares); got {teacher_time}")
    grid = check_increasing_times(times)
    t = jnp.asarray(grid)
    strengths = np.sort(1 / grid)

    clock = time.perf_counter()
    shape = (len(widths), len(seeds))
    curves = np.empty(shape + (grid.size,))
    figures = {k: np.empty(shape) for k in FIGURES}
    ridge_curves = np.empty(shape + (grid.size,)) if ridge else None
    ridge_figures = {k: np.empty(shape) for k in RIDGE_FIGURES} if ridge else {}
    teacher_loss = np.empty(len(seeds))
    total, done, n = len(widths) * len(seeds), 0, 0
    for j, seed in enumerate(seeds):
        x = samples_for_seed(seed)
        n, d = x.shape
        y = labels_for(x)
        w_t = jnp.asarray(teacher_weights(seed, teacher_width, d, activation), x.dtype)
        teacher = RandomFeatures(w_t, jnp.asarray(teacher_width, x.dtype), activation)
        fit = fit_teacher_on_samples(teacher, x, y, moments, time=teacher_time, route=route, rcond=rcond)
        teacher_loss[j] = float(fit.loss)
        labels = jnp.stack([fit.sample_labels, y], axis=1)
        full = jnp.asarray(student_weights(seed, max(widths), d, activation), x.dtype)
        for i, width in enumerate(widths):
            student = RandomFeatures(full[:width], jnp.asarray(width, x.dtype), activation)
            _, both = sample_problem(student, x, labels, moments, route, rcond)
            problem = dataclasses.replace(both, label_coef=both.label_coef[0])
            out = _summarize_finite(both, t, fit.loss)
            curves[i, j] = np.asarray(out["student_loss"])
            for key in FIGURES:
                figures[key][i, j] = float(out[key])
            if ridge:
                res = ridge_summary(problem, strengths, fit.loss, out["ceiling_loss"])
                ridge_curves[i, j] = np.asarray(res.student_loss)[::-1]  # μ = 1/t, in the order of times
                for key in RIDGE_FIGURES:
                    ridge_figures[key][i, j] = float(getattr(res, key))
            done += 1
            if progress is not None:
                progress(done, total)
    return StudyResult(
        times=grid, student_widths=widths, seeds=seeds, teacher_loss=teacher_loss, student_loss=curves,
        figures=figures, routes=tuple(choose_route(n, m, route) for m in widths), n=n,
        ridge_loss=ridge_curves, ridge_figures=ridge_figures, seconds=time.perf_counter() - clock,
    )


def study_record(result: StudyResult, config: dict) -> dict:
    """The JSON record of a study: config, teacher losses, per-width figures, ratio curves."""
    tl = result.teacher_loss
    per_width = []
    for i, m in enumerate(result.student_widths):
        entry = {"student_width": int(m), "route": result.routes[i]}
        entry.update({k: [json_safe(v) for v in result.figures[k][i]] for k in FIGURES})
        entry["ratio_at_infinity"] = [json_safe(v) for v in result.figures["student_loss_at_infinity"][i] / tl]
        entry["best_ratio_mean"] = json_safe(np.mean(result.figures["ratio"][i]))
        if result.ridge_loss is not None:
            entry["ridge"] = {k: [json_safe(v) for v in result.ridge_figures[k][i]] for k in RIDGE_FIGURES}
        per_width.append(entry)
    record = {
        "config": {**config, "n": int(result.n), "student_widths": [int(m) for m in result.student_widths],
                   "seeds": list(result.seeds), "times": [float(v) for v in result.times]},
        "teacher_loss": [float(v) for v in tl],
        "per_width": per_width,
        "ratio_curves": {
            str(m): [[json_safe(v) for v in result.student_loss[i, j] / tl[j]] for j in range(len(result.seeds))]
            for i, m in enumerate(result.student_widths)
        },
    }
    if result.ridge_loss is not None:
        record["ridge_ratio_curves"] = {
            str(m): [[json_safe(v) for v in result.ridge_loss[i, j] / tl[j]] for j in range(len(result.seeds))]
            for i, m in enumerate(result.student_widths)
        }
    record["seconds"] = result.seconds
    record["environment"] = environment()
    return record


def write_study(out_dir, record: dict, result: StudyResult, png_name: str, title: str) -> list:
    """results.json, curves.csv (long format) and the PNG, each written atomically; returns their paths."""
    out = Path(out_dir)
    tl = result.teacher_loss
    ridge = result.ridge_loss is not None
    header = "student_width,seed,time,student_loss,teacher_loss,ratio" + (",ridge_strength,ridge_loss,ridge_ratio" if ridge else "")
    rows = [header]
    for i, m in enumerate(result.student_widths):
        for j, s in enumerate(result.seeds):
            for k, tk in enumerate(result.times):
                loss = result.student_loss[i, j, k]
                row = f"{m},{s},{tk:.10g},{loss:.17g},{tl[j]:.17g},{loss / tl[j]:.17g}"
                if ridge:
                    rl = result.ridge_loss[i, j, k]
                    row += f",{1 / tk:.10g},{rl:.17g},{rl / tl[j]:.17g}"
                rows.append(row)
    paths = [out / "curves.csv", out / png_name, out / "results.json"]
    atomic_write_text(paths[0], "\n".join(rows) + "\n")
    atomic_write_bytes(paths[1], ratio_figure(result, title))
    atomic_write_json(paths[2], record)
    return paths


def ratio_figure(result: StudyResult, title: str) -> bytes:
    """PNG: L_ST(t)/L_TE against t per student width (mean over seeds, band from min to max); ridge dashed
    against t = 1/μ when present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    ratios = result.student_loss / result.teacher_loss[None, :, None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(result.student_widths)))
    for i, m in enumerate(result.student_widths):
        ax.plot(result.times, ratios[i].mean(axis=0), color=colors[i], label=f"$M_{{ST}}$ = {m}")
        if ratios.shape[1] > 1:
            ax.fill_between(result.times, ratios[i].min(axis=0), ratios[i].max(axis=0), color=colors[i], alpha=0.2)
        if result.ridge_loss is not None:
            ridge = result.ridge_loss[i] / result.teacher_loss[:, None]
            ax.plot(result.times, ridge.mean(axis=0), color=colors[i], ls="--", lw=1)
    ax.axhline(1.0, color="gray", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    low, high = ax.get_ylim()
    if high / low < 20:  # within about a decade the minor ticks carry the only labels
        ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("student training time t" + (" (ridge, dashed: t = 1/μ)" if result.ridge_loss is not None else ""))
    ax.set_ylabel(r"$L_{ST}(t) / L_{TE}$ (population)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------
# The relu-samples preset
# --------------------------------------------------------------------------------------------------

FULL = dict(dim=32, target_units=64, teacher_width=48, n=2048, student_widths=(256, 512, 1024, 2048, 4096),
            times=(-1.0, 6.0, 141))
QUICK = dict(dim=32, target_units=64, teacher_width=48, n=512, student_widths=(128, 256, 512, 1024),
             times=(-1.0, 6.0, 71))
PNG = "relu_samples.png"


def relu_samples_experiment(
    quick: bool,
    seeds: Sequence[int] = (0,),
    out_dir=None,
    *,
    dim: int | None = None,
    target_units: int | None = None,
    teacher_width: int | None = None,
    n: int | None = None,
    student_widths: Sequence[int] | None = None,
    times=None,
    target_seed: int = 0,
    ridge: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Run the ``relu-samples`` preset; with ``out_dir``, write results.json, curves.csv and relu_samples.png.

    Full: d = 32, target a ReLU network of 64 units standardised to unit variance (one network for all seeds,
    from ``target_seed``), teacher of 48 ReLU features fitted by least squares on n = 2048 samples, students
    of 256, 512, 1024, 2048, 4096 ReLU features trained by gradient flow on the teacher's values at the same
    samples; times logspace(-1, 6, 141). Quick: n = 512, students 128 … 1024, 71 times. Keyword arguments
    override either preset (``times``: an increasing array).

    Returns:
      The results record as written to results.json: ``config``, ``teacher_loss`` per seed, ``per_width``
      (per seed: t*, L_ST*, L_ST(∞), L_ceil, L_ST*/L_TE, PGR, L_ST(∞)/L_TE, route), ``ratio_curves``
      (width → per seed L_ST(t)/L_TE), ``seconds``, ``environment``, ``files``.
    """
    cfg = dict(QUICK if quick else FULL)
    for key, value in dict(dim=dim, target_units=target_units, teacher_width=teacher_width, n=n).items():
        if value is not None:
            cfg[key] = check_positive_int(value, key)
    if student_widths is not None:
        cfg["student_widths"] = tuple(student_widths)
    if not cfg["student_widths"] or not tuple(seeds):
        raise ValueError("give at least one student width and one seed")
    grid = np.logspace(cfg["times"][0], cfg["times"][1], int(cfg["times"][2])) if times is None else times

    inputs = gaussian_inputs(cfg["dim"])
    target = random_relu_network_target(target_seed, cfg["target_units"], inputs, standardize=True)
    result = finite_study(
        moments=ExactMoments(inputs, target),
        samples_for_seed=lambda s: draw_samples(inputs, cfg["n"], s),
        labels_for=lambda x: _target_values(target, x),
        activation="relu", teacher_width=cfg["teacher_width"], student_widths=cfg["student_widths"],
        seeds=seeds, times=grid, ridge=ridge, progress=progress,
    )
    config = {
        "preset": "relu-samples", "quick": bool(quick), "input": "gaussian", "dim": cfg["dim"],
        "target": "relu-network", "target_units": cfg["target_units"], "target_standardized": True,
        "target_seed": int(target_seed), "activation": "relu", "teacher_width": cfg["teacher_width"],
        "teacher_training": "least squares on the samples (gradient flow to t = inf)",
        "student_training": "gradient flow on the teacher's values at the same samples",
        "errors": "population, exact moments",
    }
    record = study_record(result, config)
    if out_dir is not None:
        title = (f"ReLU-network target ({cfg['target_units']} units), d = {cfg['dim']}, n = {result.n} samples, "
                 f"teacher $M_{{TE}}$ = {cfg['teacher_width']}")
        record["files"] = [str(Path(out_dir) / f) for f in ("results.json", "curves.csv", PNG)]
        write_study(out_dir, record, result, PNG, title)
    return record
