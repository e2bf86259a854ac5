"""Figures of an experiment (matplotlib, Agg canvas, no pyplot state), saved atomically as PNG.

- ``loss_ratio.png``: L_ST(t)/L_TE^p against t (log t), one line per teacher width (mean over seeds, the
  seed range shaded), one column per group and one row per power p in ``config.ratio_powers``.
- ``power_law.png``: L_ST* against L_TE on log–log axes, every run a point, the fitted power law per group
  with its exponent ± uncertainty in the legend, and the references L_ST = L_TE and L_ST = L_TE².
- ``heatmap.png`` (``heatmap_d<d>.png`` for several d): mean L_ST*/L_TE over M_TE × M_ST.
- ``shift.png`` (shift studies): the W2S gain and the worst-group error over (η_u, η_ℓ).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from w2sjax._io import atomic_write_bytes


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path) -> None:
    """Render to PNG in memory, then write atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130)
    atomic_write_bytes(Path(path), buf.getvalue())


def _groups(result) -> list[str]:
    return list(dict.fromkeys(r["group"] for r in result.records))


def _power_label(p: float) -> str:
    return r"$L_{TE}$" if p == 1 else rf"$L_{{TE}}^{{{p:g}}}$"


def plot_loss_ratio(result) -> Figure:
    """L_ST(t)/L_TE^p against t per teacher width, seed spread shaded."""
    groups = _groups(result)
    powers = result.config.ratio_powers
    fig = _new_figure(4.2 * len(groups) + 0.8, 3.4 * len(powers))
    axes = fig.subplots(len(powers), len(groups), squeeze=False)
    times = result.times
    teacher_widths = sorted({r["teacher_width"] for r in result.records})
    colors = {m: c for m, c in zip(teacher_widths, _palette(len(teacher_widths)))}
    for col, group in enumerate(groups):
        idx = [i for i, r in enumerate(result.records) if r["group"] == group]
        for row, p in enumerate(powers):
            ax = axes[row, col]
            for m in teacher_widths:
                sel = [i for i in idx if result.records[i]["teacher_width"] == m]
                if not sel:
                    continue
                lte = np.array([result.records[i]["teacher_loss"] for i in sel])
                ratio = result.curves[sel] / lte[:, None] ** p
                dims = {result.records[i]["input_dim"] for i in sel}
                label = f"$M_{{TE}}$ = {m}" + (f" (d = {dims.pop()})" if result.config.input_dim_exponent else "")
                ax.plot(times, ratio.mean(0), color=colors[m], label=label, lw=1.5)
                if len(sel) > 1:
                    ax.fill_between(times, ratio.min(0), ratio.max(0), color=colors[m], alpha=0.2, lw=0)
            if p == 1:
                ax.axhline(1.0, color="gray", ls="--", lw=0.8)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("training time t")
            ax.set_ylabel(r"$L_{ST}(t)$ / " + _power_label(p))
            ax.set_title(_math_group(group), fontsize=10)
            ax.grid(True, which="major", alpha=0.3)
            if col == len(groups) - 1 and row == 0:
                ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"{result.config.name}: mean over {len(result.config.seeds)} seeds, range over seeds shaded", fontsize=10)
    return fig


def plot_power_law(result) -> Figure:
    """L_ST* against L_TE (log–log) with the fitted power law per group."""
    fig = _new_figure(6.2, 4.8)
    ax = fig.subplots()
    groups = _groups(result)
    colors = dict(zip(groups, _palette(len(groups), "tab10")))
    fits = {f["group"]: f for f in result.fits}
    lte_all = np.array([r["teacher_loss"] for r in result.records])
    for group in groups:
        rows = [r for r in result.records if r["group"] == group]
        x = np.array([r["teacher_loss"] for r in rows])
        y = np.array([r["best_student_loss"] for r in rows])
        fit = fits.get(group)
        label = group
        if fit is not None:
            err = fit["exponent_stderr"]
            err_text = "" if err is None or (isinstance(err, float) and math.isnan(err)) else f" ± {err:.2f}"
            err_text = err_text.replace("±", r"\pm")
            label = _math_group(group) + rf": $L_{{ST}}^* \propto L_{{TE}}^{{{fit['exponent']:.2f}{err_text}}}$"
            pos = x[x > 0]
            grid = np.geomspace(pos.min(), pos.max(), 50)
            ax.plot(grid, fit["prefactor"] * grid ** fit["exponent"], color=colors[group], lw=1.5)
        ax.scatter(x, y, s=14, color=colors[group], alpha=0.7, label=label if fit is not None else _math_group(group))
    pos = lte_all[lte_all > 0]
    if pos.size:
        ref = np.geomspace(pos.min(), pos.max(), 50)
        ax.plot(ref, ref, color="gray", ls="--", lw=0.8, label=r"$L_{ST} = L_{TE}$")
        ax.plot(ref, ref**2, color="gray", ls=":", lw=0.8, label=r"$L_{ST} = L_{TE}^2$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"teacher error $L_{TE}$")
    ax.set_ylabel(r"best student error $L_{ST}^* = \min_t L_{ST}(t)$")
    ax.set_title(f"{result.config.name}: fitted exponent, mean ± s.e. over seeds", fontsize=10)
    for axis in (ax.xaxis, ax.yaxis):
        _label_log_axis(axis)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig


def heatmap_dims(result) -> list[int]:
    """Input dimensions with two or more student widths and teacher widths (a size map makes sense)."""
    if result.config.input_dim_exponent is not None:
        return []
    dims = []
    for d in dict.fromkeys(r["input_dim"] for r in result.records):
        rows = [r for r in result.records if r["input_dim"] == d]
        if len({r["student_width"] for r in rows}) > 1 and len({r["teacher_width"] for r in rows}) > 1:
            dims.append(d)
    return dims


def plot_heatmap(result, dim: int) -> Figure:
    """Mean L_ST*/L_TE over seeds, teacher width × student width, at input dimension ``dim``."""
    rows = [r for r in result.records if r["input_dim"] == dim]
    students = sorted({r["student_width"] for r in rows}, key=_width_key)
    teachers = sorted({r["teacher_width"] for r in rows})
    grid = np.full((len(students), len(teachers)), np.nan)
    for i, ms in enumerate(students):
        for j, mt in enumerate(teachers):
            vals = [r["ratio"] for r in rows if r["student_width"] == ms and r["teacher_width"] == mt]
            if vals:
                grid[i, j] = float(np.mean(vals))
    fig = _new_figure(1.1 * len(teachers) + 2.6, 0.8 * len(students) + 1.8)
    ax = fig.subplots()
    finite = grid[np.isfinite(grid) & (grid > 0)]
    norm = LogNorm(vmin=finite.min(), vmax=max(finite.max(), finite.min() * 1.01)) if finite.size else None
    image = ax.imshow(grid, origin="lower", cmap="viridis_r", norm=norm, aspect="auto")
    for i in range(len(students)):
        for j in range(len(teachers)):
            if np.isfinite(grid[i, j]):
                shade = image.cmap(image.norm(grid[i, j]))
                text_color = "white" if sum(shade[:3]) < 1.5 else "black"
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8, color=text_color)
    ax.set_xticks(range(len(teachers)), [str(m) for m in teachers])
    ax.set_yticks(range(len(students)), [str(m) for m in students])
    ax.set_xlabel(r"teacher width $M_{TE}$")
    ax.set_ylabel(r"student width $M_{ST}$")
    ax.set_title(rf"{result.config.name}: mean $L_{{ST}}^*/L_{{TE}}$ (d = {dim})", fontsize=10)
    fig.colorbar(image, ax=ax, label=r"$L_{ST}^*/L_{TE}$")
    return fig


def save_figures(result, folder) -> list[str]:
    """Write every figure that applies to ``result`` into ``folder``; returns the file names."""
    folder = Path(folder)
    names = []
    if not result.records:
        return names
    if result.config.shift:
        save_png(plot_shift(result), folder / "shift.png")
        return ["shift.png"]
    save_png(plot_loss_ratio(result), folder / "loss_ratio.png")
    names.append("loss_ratio.png")
    save_png(plot_power_law(result), folder / "power_law.png")
    names.append("power_law.png")
    dims = heatmap_dims(result)
    for d in dims:
        name = "heatmap.png" if len(dims) == 1 else f"heatmap_d{d}.png"
        save_png(plot_heatmap(result, d), folder / name)
        names.append(name)
    return names


def _width_key(width):
    return math.inf if width == "inf" else int(width)


def _label_log_axis(axis) -> None:
    """Ticks at 1, 2, 5 × 10^k labelled in plain numbers: readable over narrow and wide ranges alike."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axis.set_minor_formatter(NullFormatter())


def _math_group(label: str) -> str:
    return label.replace("M_ST", "$M_{ST}$")


def _palette(n: int, cmap: str = "viridis") -> list:
    from matplotlib import colormaps

    cm = colormaps[cmap]
    if cmap == "tab10":
        return [cm(i % 10) for i in range(n)]
    return [cm(x) for x in np.linspace(0.05, 0.85, max(n, 1))][:n]


def plot_shift(result) -> Figure:
    """A shift study: the W2S gain L_TE − L_ST* and the student's worst-group error at t* over (η_u, η_ℓ)
    (means over seeds), for the first student and teacher width."""
    first = result.records[0]
    rows = [r for r in result.records
            if (r["student_width"], r["teacher_width"]) == (first["student_width"], first["teacher_width"])]
    teacher_etas = sorted({r["minority_teacher"] for r in rows})
    student_etas = sorted({r["minority_student"] for r in rows})
    fig = _new_figure(2 * (0.75 * len(student_etas) + 2.2), 0.6 * len(teacher_etas) + 1.9)
    axes = fig.subplots(1, 2)
    panels = (("gain", r"W2S gain $L_{TE} - L_{ST}^*$", "viridis"),
              ("worst_group_loss", r"student's worst-group error at $t^*$", "magma_r"))
    for ax, (key, title, cmap) in zip(axes, panels):
        grid = np.full((len(teacher_etas), len(student_etas)), np.nan)
        for i, a in enumerate(teacher_etas):
            for j, b in enumerate(student_etas):
                vals = [r[key] for r in rows if (r["minority_teacher"], r["minority_student"]) == (a, b)]
                grid[i, j] = float(np.mean(vals)) if vals else np.nan
        image = ax.imshow(grid, origin="lower", cmap=cmap, aspect="auto")
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                shade = image.cmap(image.norm(grid[i, j]))
                ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=7,
                        color="white" if sum(shade[:3]) < 1.5 else "black")
        ax.set_xticks(range(len(student_etas)), [f"{v:g}" for v in student_etas])
        ax.set_yticks(range(len(teacher_etas)), [f"{v:g}" for v in teacher_etas])
        ax.set_xlabel(r"student's minority fraction $\eta_u$")
        ax.set_ylabel(r"teacher's minority fraction $\eta_\ell$")
        ax.set_title(title, fontsize=10)
        bar = fig.colorbar(image, ax=ax)
        bar.formatter.set_useOffset(False)
        bar.ax.ticklabel_format(style="plain")
    fig.suptitle(f"{result.config.name}: M_ST = {first['student_width']}, M_TE = {first['teacher_width']}, "
                 f"test law η = {result.config.minority_test:g}", fontsize=10)
    return fig
