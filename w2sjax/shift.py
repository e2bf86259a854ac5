"""Teacher, student and test on different input laws: group imbalance and a spurious correlation, exactly.

The model (``SpuriousModel``): x ∈ R^d comes from one of two groups, each a zero-mean Gaussian,
    group 0 (majority): x ~ N(0, Σ_0),   group 1 (minority): x ~ N(0, Σ_1),
where the core coordinate x_c = x[0] ~ N(0, 1) and the spurious coordinate x_s = x[1] ~ N(0, σ_s²) have
correlation ρ_0 in the majority and ρ_1 in the minority (the minority breaks the correlation: ρ_1 = 0 by
default), and the other d − 2 coordinates are i.i.d. N(0, 1), independent of both. The target depends on the
core only, f*(x) = x_c (``target="linear"``) or a standardised relu(x_c) (``target="relu"``), so its law is
the same in both groups; a model that leans on x_s does well where ρ = ρ_0 and badly where it does not.
A law with minority fraction η is the mixture (1 − η) N(0, Σ_0) + η N(0, Σ_1) (``inputs.Mixture``).

Three laws per problem: the teacher is fitted on P_ℓ = law(η_ℓ) (population, least squares), the student is
trained by gradient flow on the teacher's function under P_u = law(η_u), and every error is measured on
P_test = law(η_test), the groups balanced by default (η_test = 1/2). Per-group errors are the errors under
each group's own law; the balanced test error is their mean. The student's t* is chosen on the test error;
the worst-group error is max_g L_g(t*) at that t* (``group_best_loss`` holds each group's own best).

``shift_grid`` computes a grid of (η_ℓ, η_u) as arrays, ``plot_shift`` draws the W2S gain L_TE − L_ST* and
the worst-group error as two heatmaps. Everything is an exact population computation of the engine
(``w2s.weak_to_strong`` with ``teacher_inputs`` and ``test_inputs``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from w2sjax.features import RandomFeatures, random_features, student_weights, teacher_weights
from w2sjax.inputs import Mixture, gaussian_inputs, group_laws, mixture_inputs, with_weights
from w2sjax.scoring import losses_at
from w2sjax.targets import linear_target, relu_network_target
from w2sjax.w2s import weak_to_strong

TARGETS = ("linear", "relu")
CORE, SPURIOUS = 0, 1


@dataclasses.dataclass(frozen=True)
class SpuriousModel:
    """The two-group spurious-correlation model (see the module docstring).

    Attributes:
      dim: d ≥ 2.
      majority_correlation: ρ_0 = corr(x_c, x_s) in the majority group.
      minority_correlation: ρ_1 = corr(x_c, x_s) in the minority group (0: the correlation is broken).
      spurious_scale: σ_s, the standard deviation of x_s (σ_s > 1 makes x_s the easier, larger feature).
      target: ``"linear"`` (f* = x_c) or ``"relu"`` (f* = relu(x_c) scaled to unit variance).
    """

    dim: int = 8
    majority_correlation: float = 0.9
    minority_correlation: float = 0.0
    spurious_scale: float = 2.0
    target: str = "linear"

    def __post_init__(self):
        if isinstance(self.dim, bool) or not isinstance(self.dim, (int, np.integer)) or self.dim < 2:
            raise ValueError(f"dim must be an integer >= 2 (a core and a spurious coordinate); got {self.dim!r}")
        for name in ("majority_correlation", "minority_correlation"):
            rho = getattr(self, name)
            if not (isinstance(rho, (int, float, np.floating)) and -1 < rho < 1):
                raise ValueError(f"{name} must lie strictly between -1 and 1; got {rho!r}")
        if not (isinstance(self.spurious_scale, (int, float, np.floating)) and self.spurious_scale > 0
                and math.isfinite(self.spurious_scale)):
            raise ValueError(f"spurious_scale must be a finite number > 0; got {self.spurious_scale!r}")
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}; choose one of {TARGETS}")


def group_covariance(model: SpuriousModel, correlation: float) -> np.ndarray:
    """Σ (d, d): unit variances except Var x_s = σ_s², and Cov(x_c, x_s) = ρ σ_s."""
    cov = np.eye(model.dim)
    cov[SPURIOUS, SPURIOUS] = model.spurious_scale**2
    cov[CORE, SPURIOUS] = cov[SPURIOUS, CORE] = correlation * model.spurious_scale
    return cov


def _check_fraction(eta, name: str) -> float:
    if not (isinstance(eta, (int, float, np.floating, np.integer)) and 0 <= eta <= 1):
        raise ValueError(f"{name} (a minority fraction) must lie in [0, 1]; got {eta!r}")
    return float(eta)


def spurious_law(model: SpuriousModel, minority_fraction: float) -> Mixture:
    """(1 − η) N(0, Σ_0) + η N(0, Σ_1): group 0 the majority, group 1 the minority."""
    eta = _check_fraction(minority_fraction, "minority_fraction")
    parts = [gaussian_inputs(model.dim, covariance=group_covariance(model, rho))
             for rho in (model.majority_correlation, model.minority_correlation)]
    return mixture_inputs([1 - eta, eta], parts)


@dataclasses.dataclass(frozen=True)
class ShiftLaws:
    """The laws of one problem: teacher P_ℓ, student P_u, test P_test, and each group's law (one-hot
    mixtures, ``inputs.group_laws``)."""

    teacher: Mixture
    student: Mixture
    test: Mixture
    groups: tuple

    @property
    def evaluations(self) -> tuple:
        """(P_test, P_group0, P_group1): the leading law axis of a ``shift_point`` result."""
        return (self.test, *self.groups)


def shift_laws(model: SpuriousModel, eta_teacher: float, eta_student: float, eta_test: float = 0.5) -> ShiftLaws:
    """P_ℓ = law(η_ℓ), P_u = law(η_u), P_test = law(η_test) and the group laws."""
    test = spurious_law(model, eta_test)
    return ShiftLaws(with_weights(test, [1 - _check_fraction(eta_teacher, "eta_teacher"), float(eta_teacher)]),
                     with_weights(test, [1 - _check_fraction(eta_student, "eta_student"), float(eta_student)]),
                     test, group_laws(test))


def core_target(model: SpuriousModel):
    """f* of the model: x_c, or relu(x_c)/sd(relu(z)) (unit variance in every group: x_c ~ N(0, 1) in each)."""
    e = np.zeros(model.dim)
    e[CORE] = 1.0
    if model.target == "linear":
        return linear_target(e)
    return relu_network_target(e[None], [1.0], standardize=True, inputs=gaussian_inputs(model.dim))


def shift_features(model: SpuriousModel, student_width: int, teacher_width: int, seed: int = 0,
                   teacher_seeds=(0,)):
    """(student ReLU features, [teacher ReLU features per teacher seed]) by the default weight laws."""
    student = random_features(student_weights(seed, student_width, model.dim, "relu"))
    teachers = [random_features(teacher_weights(s, teacher_width, model.dim, "relu")) for s in teacher_seeds]
    return student, teachers


def shift_point(student: RandomFeatures, teachers, target, laws: ShiftLaws, times, **options):
    """The W2SResult of one (η_ℓ, η_u): teachers fitted on P_ℓ, the student trained on P_u, scored on
    (P_test, group 0, group 1) — a leading law axis of 3 (``scoring.law_result``)."""
    return weak_to_strong(student, teachers, target, laws.student, times, teacher_inputs=laws.teacher,
                          test_inputs=laws.evaluations, **options)


@dataclasses.dataclass(frozen=True)
class ShiftGrid:
    """Figures of merit over a grid of (η_ℓ, η_u); arrays indexed [i (η_ℓ), j (η_u), teacher seed, (group)].

    Attributes:
      eta_teacher: (A,) η_ℓ.   eta_student: (B,) η_u.   eta_test: η_test.
      teacher_loss: (A, B, n) L_TE on P_test.   teacher_group_loss: (A, B, n, G) L_TE per group.
      best_student_loss: (A, B, n) L_ST* on P_test.   best_time: (A, B, n) t* (on P_test).
      gain: (A, B, n) L_TE − L_ST*.
      group_loss: (A, B, n, G) L_g(t*) per group at the test law's t*.
      worst_group_loss: (A, B, n) max_g L_g(t*).   teacher_worst_group_loss: (A, B, n) max_g L_TE,g.
      group_best_loss: (A, B, n, G) each group's own best error min_t L_g(t).
      ceiling_loss: (A, B, n) the student on the true labels under P_u, at its own best time, on P_test.
      model: the SpuriousModel; student_width, teacher_width: the widths.
    """

    eta_teacher: np.ndarray
    eta_student: np.ndarray
    eta_test: float
    teacher_loss: np.ndarray
    teacher_group_loss: np.ndarray
    best_student_loss: np.ndarray
    best_time: np.ndarray
    gain: np.ndarray
    group_loss: np.ndarray
    worst_group_loss: np.ndarray
    teacher_worst_group_loss: np.ndarray
    group_best_loss: np.ndarray
    ceiling_loss: np.ndarray
    model: SpuriousModel
    student_width: int
    teacher_width: int

    def to_dict(self) -> dict:
        """JSON-ready (∞ as "inf")."""
        from w2sjax._io import json_safe

        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["model"] = dataclasses.asdict(self.model)
        return json_safe({k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v) for k, v in out.items()})


def shift_grid(eta_teacher, eta_student, *, model: SpuriousModel = SpuriousModel(), student_width: int = 256,
               teacher_width: int = 12, seed: int = 0, teacher_seeds=(0,), eta_test: float = 0.5, times=None,
               progress=None, **options) -> ShiftGrid:
    """Every (η_ℓ, η_u) of the grid: one ``weak_to_strong`` per point (all teacher seeds at once), exact.

    Args:
      eta_teacher, eta_student: (A,), (B,) minority fractions in [0, 1].
      times: the student's time grid (default logspace(−2, 5, 60); t* is refined past it).
      progress: called with (points done, points in all) after each point.
      **options: ``weak_to_strong`` options (method, rcond, …).
    """
    etas_l = np.asarray([_check_fraction(e, "eta_teacher") for e in np.atleast_1d(eta_teacher)])
    etas_u = np.asarray([_check_fraction(e, "eta_student") for e in np.atleast_1d(eta_student)])
    times = np.logspace(-2, 5, 60) if times is None else np.asarray(times, np.float64)
    student, teachers = shift_features(model, student_width, teacher_width, seed, teacher_seeds)
    target = core_target(model)
    rows = {k: [] for k in ("teacher", "teacher_groups", "best", "time", "group_at", "group_best", "ceiling")}
    total, done = etas_l.size * etas_u.size, 0
    for el in etas_l:
        per = {k: [] for k in rows}
        for eu in etas_u:
            result = shift_point(student, teachers, target, shift_laws(model, el, eu, eta_test), times, **options)
            at_best = np.asarray(losses_at(result, result.best_time[0]))  # (1 + G, n)
            per["teacher"].append(np.asarray(result.teacher_loss[0]))
            per["teacher_groups"].append(np.asarray(result.teacher_loss[1:]).T)
            per["best"].append(np.asarray(result.best_student_loss[0]))
            per["time"].append(np.asarray(result.best_time[0]))
            per["group_at"].append(at_best[1:].T)
            per["group_best"].append(np.asarray(result.best_student_loss[1:]).T)
            per["ceiling"].append(np.asarray(result.ceiling_loss[0]))
            done += 1
            if progress is not None:
                progress(done, total)
        for k in rows:
            rows[k].append(np.stack(per[k]))
    arr = {k: np.stack(v) for k, v in rows.items()}
    return ShiftGrid(
        eta_teacher=etas_l, eta_student=etas_u, eta_test=float(eta_test),
        teacher_loss=arr["teacher"], teacher_group_loss=arr["teacher_groups"], best_student_loss=arr["best"],
        best_time=arr["time"], gain=arr["teacher"] - arr["best"], group_loss=arr["group_at"],
        worst_group_loss=arr["group_at"].max(axis=-1), teacher_worst_group_loss=arr["teacher_groups"].max(axis=-1),
        group_best_loss=arr["group_best"], ceiling_loss=arr["ceiling"], model=model,
        student_width=int(student_width), teacher_width=int(teacher_width),
    )


def _edges(values: np.ndarray) -> np.ndarray:
    """Cell edges around (possibly uneven) grid values."""
    v = np.asarray(values, np.float64)
    if v.size == 1:
        return np.array([v[0] - 0.05, v[0] + 0.05])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def plot_shift(grid: ShiftGrid):
    """Two heatmaps over (η_ℓ, η_u), means over teacher seeds: the W2S gain L_TE − L_ST* on P_test
    (diverging colours, 0 white) and the worst-group error at the student's t*; η_u = η_ℓ dashed.
    Returns a ``matplotlib.figure.Figure`` on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.4, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    x, y = _edges(grid.eta_teacher), _edges(grid.eta_student)
    gain = grid.gain.mean(axis=-1).T  # rows η_u, columns η_ℓ
    worst = grid.worst_group_loss.mean(axis=-1).T
    span = float(np.max(np.abs(gain))) or 1.0
    low, high = min(float(gain.min()), -1e-12 * span), max(float(gain.max()), 1e-12 * span)
    panels = [
        (axes[0], gain, "RdBu", TwoSlopeNorm(0.0, low, high), r"W2S gain $L_{TE} - L_{ST}^*$ (test law)"),
        (axes[1], worst, "magma_r", None, r"worst-group error $\max_g L_g(t^*)$"),
    ]
    for ax, values, cmap, norm, title in panels:
        mesh = ax.pcolormesh(x, y, values, cmap=cmap, norm=norm, shading="flat")
        fig.colorbar(mesh, ax=ax)
        lo, hi = max(x[0], y[0]), min(x[-1], y[-1])
        ax.plot([lo, hi], [lo, hi], color="0.3", linestyle="--", linewidth=1, label=r"$\eta_u = \eta_\ell$")
        ax.set_xlabel(r"teacher's minority fraction $\eta_\ell$")
        ax.set_ylabel(r"student's minority fraction $\eta_u$")
        ax.set_title(title, fontsize=10)
        ax.set_xlim(x[0], x[-1])
        ax.set_ylim(y[0], y[-1])
    axes[0].legend(loc="upper left", fontsize=8, frameon=False)
    m = grid.model
    fig.suptitle(
        rf"$d={m.dim}$, $\rho_{{maj}}={m.majority_correlation:g}$, $\rho_{{min}}={m.minority_correlation:g}$, "
        rf"$\sigma_s={m.spurious_scale:g}$, target {m.target}; $M_{{TE}}={grid.teacher_width}$, "
        rf"$M_{{ST}}={grid.student_width}$; test $\eta={grid.eta_test:g}$", fontsize=10)
    return fig
