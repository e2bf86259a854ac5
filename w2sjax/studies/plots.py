"""Figures of an experiment (matplotlib, Agg canvas, no pyplot state), saved atomically as PNG.

- ``loss_ratio.png``: L_ST(t)/L_TE^p against t (log–log), one line per teacher width (mean over seeds, the
  seed range shaded), t* marked on each line; one column per group (shared axes), one row per power p in
  ``config.ratio_powers``. The window shows the dip: t from where the curves leave their t → 0 plateau to where
  they flatten, y up to a small multiple of 1 (for p = 1).
- ``power_law.png``: L_ST* against L_TE on log–log axes, one point per (group, teacher width) at the seed mean,
  coloured by teacher width, the seed range as error bars; the fitted power law per group with its exponent ±
  uncertainty; the references L_ST = L_TE and L_TE². Below: L_ST*/fit, where points bend away from the law.
- ``heatmap.png`` (``heatmap_d<d>.png`` for several d): mean L_ST*/L_TE over M_TE × M_ST.
- ``shift.png`` (shift studies): the W2S gain and the worst-group error over (η_u, η_ℓ).
- ``samples.png`` (studies with one teacher width and several student widths, e.g. finite samples):
  L_ST(t)/L_TE per student width in one panel; ridge at μ = 1/t dashed when the study has ridge.
- ``chain.png`` (chain studies): L_k*/L_TE and L_k*/L_TE² against the stage k (k = 0: the teacher), one line per
  teacher width (seed mean, seed range as bars); one row per (d, M_ST of stage 1). In the other figures each
  stage is a group of its own.

An infinitely wide student (``student_width`` "inf" or float inf) is labelled M_ST = ∞ and drawn in its own
style (black, dashed fit, star markers).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

from w2sjax._io import atomic_write_bytes

DPI = 110
INFINITE_COLOR = "black"
GROUP_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
GROUP_STYLES = ("-", "--", "-.", ":")
RATIO_TOP = 3.0  # top of the L_ST/L_TE window: a few times the teacher's error


class _Canvas(FigureCanvasAgg):
    """An Agg canvas whose renderers share one mathtext parser: a label ($M_{TE} = 16$, a tick's 10³) is parsed
    once per process (several ms each), not once per figure and per layout pass."""

    parser = None  # the first renderer's, then every renderer's

    def get_renderer(self):
        renderer = super().get_renderer()
        if _Canvas.parser is None:
            _Canvas.parser = renderer.mathtext_parser
        renderer.mathtext_parser = _Canvas.parser
        return renderer


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")  # laid out at the dpi it is saved at
    _Canvas(fig)
    return fig


def save_png(fig: Figure, path) -> None:
    """Render to PNG in memory, then write atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    atomic_write_bytes(Path(path), buf.getvalue())


# --------------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------------


def is_infinite_width(width) -> bool:
    """True for the infinitely wide student: "inf" (as stored), float inf, "∞"."""
    if isinstance(width, str):
        return width.strip().lower() in ("inf", "infinite", "∞")
    try:
        return math.isinf(float(width))
    except (TypeError, ValueError):
        return False


def width_text(width) -> str:
    """A width as mathtext: 4096, or ∞."""
    return r"\infty" if is_infinite_width(width) else f"{int(width)}"


def _width_key(width):
    return math.inf if is_infinite_width(width) else int(width)


def _math_group(label: str) -> str:
    """'d = 32, M_ST = 4096' → mathtext; M_ST = inf → M_ST = ∞."""
    parts = []
    for part in label.split(", "):
        name, _, value = part.partition(" = ")
        value = value.strip()
        if name == "M_ST":
            if is_infinite_width(value):
                value = r"\infty"
            parts.append(rf"$M_{{ST}} = {value}$")
        elif name == "d":
            parts.append(rf"$d = {value}$")
        elif name.startswith("stage") and value.endswith(")"):  # "stage 2 (M = 1024)"
            width = value[:-1]
            parts.append(f"{name} = ${width_text(width)}$)" if is_infinite_width(width) else part)
        else:
            parts.append(part)
    return ", ".join(parts)


def _group_is_infinite(result, group: str) -> bool:
    """The group's model is infinitely wide (a chain stage: that stage's width)."""
    return any(is_infinite_width(r.get("stage_width", r["student_width"])) for r in result.records
               if r["group"] == group)


def _power_label(p: float) -> str:
    return r"L_{TE}" if p == 1 else rf"L_{{TE}}^{{{p:g}}}"


def _groups(result) -> list[str]:
    return list(dict.fromkeys(r["group"] for r in result.records))


def _palette(n: int, cmap: str = "viridis") -> list:
    from matplotlib import colormaps

    cm = colormaps[cmap]
    if cmap == "tab10":
        return [cm(i % 10) for i in range(n)]
    return [cm(x) for x in np.linspace(0.05, 0.85, max(n, 1))][:n]


def _teacher_colors(result) -> dict:
    widths = sorted({r["teacher_width"] for r in result.records})
    return dict(zip(widths, _palette(len(widths))))


LOG_TICK_SUBS = (
    (1.0,),
    (1.0, 2.0, 5.0),
    (1.0, 2.0, 3.0, 5.0),
    (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0),
    (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0),
    tuple(np.round(np.arange(1.0, 10.0, 0.1), 1)),
    tuple(np.round(np.arange(1.0, 10.0, 0.05), 2)),
)


def log_ticks(low: float, high: float, least: int = 3) -> np.ndarray:
    """Ticks m × 10^k in [low, high], the coarsest mantissa set of ``LOG_TICK_SUBS`` giving ``least`` or more
    (at most about 12): readable over a half-decade as over six decades."""
    if not (0 < low < high and math.isfinite(high)):
        return np.array([])
    exponents = np.arange(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
    ticks = np.array([])
    for subs in LOG_TICK_SUBS:
        cand = np.array([m * 10.0**k for k in exponents for m in subs])
        cand = cand[(cand >= low * (1 - 1e-9)) & (cand <= high * (1 + 1e-9))]
        if cand.size > 12 and ticks.size:
            break
        ticks = cand
        if cand.size >= least:
            break
    if ticks.size > 12:  # many decades: every second or third power of ten
        ticks = ticks[:: math.ceil(ticks.size / 8)]
    return ticks


def label_log_axis(axis, low: float | None = None, high: float | None = None, least: int = 3) -> None:
    """Plain-number tick labels on a log axis (``log_ticks``; minor ticks unlabelled)."""
    if low is None or high is None:
        low, high = axis.get_view_interval()
    ticks = log_ticks(low, high, least)
    if ticks.size < 2:
        return
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.4g}"))
    axis.set_minor_locator(minor_log_locator(low, high))
    axis.set_minor_formatter(NullFormatter())


MINOR_TICK_DECADES = 4
"""Log axes spanning more decades than this get no minor ticks: there they are dense, and each is a matplotlib
Tick made and laid out anew for every figure (about 3 ms; a time axis over 0.1…1e7 had 60 of them)."""


def minor_log_locator(low: float, high: float):
    """Minor ticks at 2…9 × 10^k for a log axis from ``low`` to ``high``, none past MINOR_TICK_DECADES decades."""
    if 0 < low < high and math.log10(high / low) <= MINOR_TICK_DECADES:
        return LogLocator(base=10, subs=np.arange(1, 10))
    return NullLocator()


# --------------------------------------------------------------------------------------------------
# L_ST(t) / L_TE^p
# --------------------------------------------------------------------------------------------------


def _time_window(times: np.ndarray, curves: list, top: float) -> tuple[float, float]:
    """From shortly before the first curve enters the window (below ``top``) to shortly after the last one
    flattens (within 1 % of its value at the last time)."""
    first, last = len(times) - 1, 0
    for c in curves:
        ok = np.isfinite(c)
        if not ok.any():
            continue
        inside = np.nonzero(ok & (c < top))[0]
        if inside.size:
            first = min(first, int(inside[0]))
        final = c[ok][-1]
        moving = np.nonzero(ok & (np.abs(c - final) > 0.01 * abs(final)))[0]
        last = max(last, int(moving[-1]) + 1 if moving.size else 0)
    if last <= first:
        return float(times[0]), float(times[-1])
    lo = max(times[0], times[first] / 4)
    hi = min(times[-1], times[min(last, len(times) - 1)] * 4)
    return float(lo), float(hi)


def plot_loss_ratio(result) -> Figure:
    """L_ST(t)/L_TE^p against t per teacher width, seed spread shaded, t* marked; panels share axes."""
    groups = _groups(result)
    powers = result.config.ratio_powers
    width = 3.6 * len(groups) + 1.9
    fig = _new_figure(width, 3.1 * len(powers) + 0.4)
    axes = fig.subplots(len(powers), len(groups), squeeze=False, sharex=True, sharey="row")
    times = np.asarray(result.times)
    colors = _teacher_colors(result)
    tied_dim = result.config.input_dim_exponent is not None
    handles = {}
    for row, p in enumerate(powers):
        panel_curves = []
        for col, group in enumerate(groups):
            ax = axes[row, col]
            infinite = _group_is_infinite(result, group)
            idx = [i for i, r in enumerate(result.records) if r["group"] == group]
            for m in colors:
                sel = [i for i in idx if result.records[i]["teacher_width"] == m]
                if not sel:
                    continue
                lte = np.array([result.records[i]["teacher_loss"] for i in sel])
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = result.curves[sel] / lte[:, None] ** p
                mean = ratio.mean(0)
                panel_curves.append(mean)
                label = rf"$M_{{TE}} = {m}$"
                if tied_dim:
                    label += rf" ($d = {result.records[sel[0]]['input_dim']}$)"
                if len(sel) > 1:
                    ax.fill_between(times, ratio.min(0), ratio.max(0), color=colors[m], alpha=0.18, lw=0, zorder=1)
                (line,) = ax.plot(times, mean, color=colors[m], lw=1.6, ls="--" if infinite else "-", zorder=3)
                handles.setdefault(label, line)
                best_t = np.array([result.records[i]["best_time"] for i in sel])
                best_l = np.array([result.records[i]["best_student_loss"] for i in sel])
                finite = np.isfinite(best_t) & (best_t > 0)
                if finite.any():
                    t_mark = float(np.exp(np.mean(np.log(best_t[finite]))))
                    y_mark = float(np.mean(best_l[finite] / lte[finite] ** p))
                    ax.plot([t_mark], [y_mark], ls="none", marker="o", ms=5.5, mfc=colors[m], mec="black",
                            mew=0.8, zorder=4)
            if p == 1:
                ax.axhline(1.0, color="gray", ls=":", lw=1.0, zorder=2)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(_math_group(group) + ("  (infinitely wide student)" if infinite else ""), fontsize=10)
            ax.grid(True, which="major", alpha=0.3)
            if row == len(powers) - 1:
                ax.set_xlabel(r"training time $t$")
            if col == 0:
                ax.set_ylabel(rf"$L_{{ST}}(t)\,/\,{_power_label(p)}$")
        finite_vals = np.concatenate([c[np.isfinite(c) & (c > 0)] for c in panel_curves] or [np.ones(1)])
        minima = [np.nanmin(c) for c in panel_curves if np.isfinite(c).any()] or [1.0]
        low = 0.6 * float(finite_vals.min())
        if p == 1:
            finals = [c[np.isfinite(c)][-1] for c in panel_curves if np.isfinite(c).any()] or [1.0]
            top = max(RATIO_TOP, 1.4 * max(finals))
        else:
            top = 12 * max(minima)
        top = min(top, 1.2 * float(finite_vals.max()))
        lo_t, hi_t = _time_window(times, panel_curves, top)
        axes[row, 0].set_ylim(low, top)
        axes[row, 0].set_xlim(lo_t, hi_t)
        label_log_axis(axes[row, 0].yaxis, low, top, least=4)
    axes[0, 0].xaxis.set_major_locator(LogLocator(base=10, numticks=12))
    axes[0, 0].xaxis.set_minor_locator(minor_log_locator(*axes[0, 0].get_xlim()))
    legend = list(handles.values()) + [
        Line2D([], [], ls="none", marker="o", ms=5.5, mfc="white", mec="black", label=r"$t^*$ (mean $L_{ST}^*$)")]
    labels = list(handles) + [r"$t^*$: best time"]
    if 1 in powers or 1.0 in powers:
        legend.append(Line2D([], [], color="gray", ls=":", lw=1.0))
        labels.append(r"$L_{ST} = L_{TE}$")
    fig.legend(legend, labels, loc="outside right center", fontsize=8, frameon=False)
    seeds = len(result.config.seeds)
    fig.suptitle(rf"{result.config.name}: student error $L_{{ST}}(t)$ while it trains, relative to its teacher's"
                 "\n" rf"mean over {seeds} seed{'s' if seeds != 1 else ''} (band: range over seeds)", fontsize=10)
    return fig


# --------------------------------------------------------------------------------------------------
# L_ST* against L_TE
# --------------------------------------------------------------------------------------------------


def _seed_stats(rows, key):
    vals = np.array([r[key] for r in rows], dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return math.nan, math.nan, math.nan
    return float(vals.mean()), float(vals.min()), float(vals.max())


def plot_power_law(result) -> Figure:
    """L_ST* against L_TE (log–log): seed means coloured by teacher width with seed-range error bars, the
    fitted power law per group; below, L_ST*/fit."""
    fig = _new_figure(7.6, 5.6)
    ax, res_ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1.1)})
    groups = _groups(result)
    colors = _teacher_colors(result)
    fits = {f["group"]: f for f in result.fits}
    finite_groups = [g for g in groups if not _group_is_infinite(result, g)]
    group_handles, group_labels = [], []
    x_all, y_all = [], []
    for group in groups:
        infinite = _group_is_infinite(result, group)
        k = finite_groups.index(group) if not infinite else 0
        marker = "*" if infinite else GROUP_MARKERS[k % len(GROUP_MARKERS)]
        style = "--" if infinite else GROUP_STYLES[k % len(GROUP_STYLES)]
        line_color = INFINITE_COLOR if infinite else "0.25"
        rows = [r for r in result.records if r["group"] == group]
        fit = fits.get(group)
        xs, ys = [], []
        for m in colors:
            sel = [r for r in rows if r["teacher_width"] == m]
            if not sel:
                continue
            x, x_lo, x_hi = _seed_stats(sel, "teacher_loss")
            y, y_lo, y_hi = _seed_stats(sel, "best_student_loss")
            if not (x > 0 and y > 0):
                continue
            ax.errorbar([x], [y], xerr=[[x - x_lo], [x_hi - x]], yerr=[[y - y_lo], [y_hi - y]], ls="none",
                        marker=marker, ms=9 if infinite else 6.5, mfc=colors[m], mec="black", mew=0.6,
                        ecolor=colors[m], elinewidth=1.2, capsize=2.5, zorder=4)
            xs.append(x)
            ys.append(y)
            x_all += [x_lo, x_hi]
            y_all += [y_lo, y_hi]
        xs, ys = np.array(xs), np.array(ys)
        text = _math_group(group)
        if fit is not None and xs.size:
            err = fit["exponent_stderr"]
            err_text = "" if err is None or (isinstance(err, float) and math.isnan(err)) else rf" \pm {err:.2f}"
            text += rf": $L_{{ST}}^* \propto L_{{TE}}^{{\,k}}$, $k = {fit['exponent']:.2f}{err_text}$"
            grid = np.geomspace(xs.min(), xs.max(), 50)
            ax.plot(grid, fit["prefactor"] * grid ** fit["exponent"], color=line_color, ls=style, lw=1.4, zorder=3)
            residual = ys / (fit["prefactor"] * xs ** fit["exponent"])
            order = np.argsort(xs)
            res_ax.plot(xs[order], residual[order], color=line_color, ls=style, lw=1.0, zorder=3)
            for x, r, m in zip(xs, residual, [m for m in colors if any(q["teacher_width"] == m for q in rows)]):
                res_ax.plot([x], [r], ls="none", marker=marker, ms=9 if infinite else 6, mfc=colors[m], mec="black",
                            mew=0.6, zorder=4)
        group_handles.append(Line2D([], [], color=line_color, ls=style if fit is not None else "none", lw=1.4,
                                    marker=marker, mfc="white", mec="black", ms=8 if infinite else 6))
        group_labels.append(text)
    positive = np.array([v for v in x_all if v > 0])
    if positive.size:
        ref = np.geomspace(positive.min(), positive.max(), 50)
        ax.plot(ref, ref, color="gray", ls=(0, (5, 3)), lw=0.9, zorder=2)
        ax.plot(ref, ref**2, color="gray", ls=":", lw=1.0, zorder=2)
        group_handles += [Line2D([], [], color="gray", ls=(0, (5, 3)), lw=0.9),
                          Line2D([], [], color="gray", ls=":", lw=1.0)]
        group_labels += [r"$L_{ST} = L_{TE}$", r"$L_{ST} = L_{TE}^2$"]
    res_ax.axhline(1.0, color="gray", lw=0.9, zorder=2)
    for a in (ax, res_ax):
        a.set_xscale("log")
        a.grid(True, which="major", alpha=0.3)
    ax.set_yscale("log")
    res_ax.set_yscale("log")
    if positive.size:
        x_lo, x_hi = positive.min() / 1.15, positive.max() * 1.15
        ax.set_xlim(x_lo, x_hi)
        label_log_axis(res_ax.xaxis, x_lo, x_hi)
        y_pos = [v for v in y_all if v > 0] + list(ref**2) + list(ref)
        label_log_axis(ax.yaxis, min(y_pos), max(y_pos))
    res_lim = res_ax.get_ylim()
    spread = max(abs(math.log10(res_lim[0])), abs(math.log10(res_lim[1])), math.log10(1.25))
    res_ax.set_ylim(10 ** -spread, 10**spread)
    label_log_axis(res_ax.yaxis, 10 ** -spread, 10**spread, least=4)
    res_ax.set_xlabel(r"teacher error $L_{TE}$")
    ax.set_ylabel(r"best student error $L_{ST}^* = L_{ST}(t^*)$")
    res_ax.set_ylabel(r"$L_{ST}^*$ / fit")
    fig.suptitle(f"{result.config.name}: best student error against teacher error\n"
                 f"(mean over seeds; bars: range over seeds; fitted exponent ± s.e.)", fontsize=10)
    teacher_handles = [Line2D([], [], ls="none", marker="o", ms=7, mfc=c, mec="black", mew=0.6) for c in colors.values()]
    first = fig.legend(teacher_handles, [rf"$M_{{TE}} = {m}$" for m in colors], loc="outside right upper",
                       fontsize=8, frameon=False, title="teacher width", title_fontsize=8)
    ax.legend(group_handles, group_labels, loc="upper left", fontsize=8, framealpha=0.9)
    del first
    return fig


# --------------------------------------------------------------------------------------------------
# Heatmap of L_ST*/L_TE over sizes
# --------------------------------------------------------------------------------------------------


def heatmap_dims(result) -> list[int]:
    """Input dimensions with two or more student widths and teacher widths (a size map makes sense)."""
    if result.config.input_dim_exponent is not None:
        return []
    dims = []
    for d in dict.fromkeys(r["input_dim"] for r in result.records):
        rows = [r for r in result.records if r["input_dim"] == d]
        if len({str(r["student_width"]) for r in rows}) > 1 and len({r["teacher_width"] for r in rows}) > 1:
            dims.append(d)
    return dims


def plot_heatmap(result, dim: int) -> Figure:
    """Mean L_ST*/L_TE over seeds, teacher width × student width, at input dimension ``dim``."""
    rows = [r for r in result.records if r["input_dim"] == dim]
    students = sorted({_width_key(r["student_width"]) for r in rows})
    teachers = sorted({r["teacher_width"] for r in rows})
    grid = np.full((len(students), len(teachers)), np.nan)
    for i, ms in enumerate(students):
        for j, mt in enumerate(teachers):
            vals = [r["ratio"] for r in rows if _width_key(r["student_width"]) == ms and r["teacher_width"] == mt]
            if vals:
                grid[i, j] = float(np.mean(vals))
    fig = _new_figure(1.1 * len(teachers) + 2.8, 0.8 * len(students) + 1.8)
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
    ax.set_yticks(range(len(students)), [f"${width_text(m)}$" for m in students])
    ax.set_xlabel(r"teacher width $M_{TE}$")
    ax.set_ylabel(r"student width $M_{ST}$")
    ax.set_title(rf"{result.config.name}: mean $L_{{ST}}^*/L_{{TE}}$ ($d = {dim}$; lower is better)", fontsize=10)
    bar = fig.colorbar(image, ax=ax, label=r"$L_{ST}^*/L_{TE}$")
    if finite.size:
        label_log_axis(bar.ax.yaxis, norm.vmin, norm.vmax, least=4)
    return fig


# --------------------------------------------------------------------------------------------------
# Student widths at one teacher (finite samples)
# --------------------------------------------------------------------------------------------------


def samples_panels(result) -> list[tuple[int, int]]:
    """(d, M_TE) pairs with one teacher width and two or more student widths: the samples figure applies."""
    if len({r["teacher_width"] for r in result.records}) != 1:
        return []
    panels = []
    for key in dict.fromkeys((r["input_dim"], r["teacher_width"]) for r in result.records):
        widths = {str(r["student_width"]) for r in result.records if (r["input_dim"], r["teacher_width"]) == key}
        if len(widths) > 1:
            panels.append(key)
    return panels


def plot_samples(result) -> Figure:
    """L_ST(t)/L_TE per student width at one teacher; ridge at μ = 1/t dashed; t* marked."""
    panels = samples_panels(result)
    fig = _new_figure(4.6 * len(panels) + 2.0, 3.8)
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    times = np.asarray(result.times)
    ridge_curves = getattr(result, "ridge_curves", None)
    students = sorted({_width_key(r["student_width"]) for r in result.records})
    finite_students = [m for m in students if not math.isinf(m)]
    colors = dict(zip(finite_students, _palette(len(finite_students), "plasma")))
    colors.update({math.inf: INFINITE_COLOR})
    handles, labels, curves = [], [], []
    has_ridge = False
    for ax, (dim, m_te) in zip(axes, panels):
        for z, m in enumerate(students):
            sel = [i for i, r in enumerate(result.records)
                   if (r["input_dim"], r["teacher_width"]) == (dim, m_te) and _width_key(r["student_width"]) == m]
            if not sel:
                continue
            lte = np.array([result.records[i]["teacher_loss"] for i in sel])
            ratio = result.curves[sel] / lte[:, None]
            mean = ratio.mean(0)
            curves.append(mean)
            if len(sel) > 1:
                ax.fill_between(times, ratio.min(0), ratio.max(0), color=colors[m], alpha=0.13, lw=0, zorder=1)
            (line,) = ax.plot(times, mean, color=colors[m], lw=1.6, zorder=3 + z)
            if ridge_curves is not None and np.isfinite(ridge_curves[sel]).all():
                ax.plot(times, (ridge_curves[sel] / lte[:, None]).mean(0), color=colors[m], lw=1.2, ls="--",
                        zorder=3 + z)
                has_ridge = True
            best_t = np.array([result.records[i]["best_time"] for i in sel])
            ok = np.isfinite(best_t) & (best_t > 0)
            if ok.any():
                ax.plot([np.exp(np.mean(np.log(best_t[ok])))], [np.mean([result.records[i]["ratio"] for i in sel])],
                        ls="none", marker="o", ms=5.5, mfc=colors[m], mec="black", mew=0.8, zorder=20)
            label = rf"$M_{{ST}} = {width_text(m)}$"
            if label not in labels:
                handles.append(line)
                labels.append(label)
        ax.axhline(1.0, color="gray", ls=":", lw=1.0, zorder=2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlabel(r"training time $t$" + (r" (ridge: $t = 1/\mu$)" if has_ridge else ""))
        samples = {r.get("samples", 0) for r in result.records if r["input_dim"] == dim}
        n_text = f", $n = {samples.pop()}$" if len(samples) == 1 and list(samples)[0] else ""
        ax.set_title(rf"$d = {dim}$, $M_{{TE}} = {m_te}${n_text}", fontsize=10)
    axes[0].set_ylabel(r"$L_{ST}(t)\,/\,L_{TE}$")
    values = np.concatenate([c[np.isfinite(c) & (c > 0)] for c in curves] or [np.ones(1)])
    finals = [c[np.isfinite(c)][-1] for c in curves if np.isfinite(c).any()] or [1.0]
    top = min(max(RATIO_TOP, 1.4 * max(finals)), 1.2 * float(values.max()))
    low = 0.7 * float(values.min())
    axes[0].set_ylim(low, top)
    axes[0].set_xlim(*_time_window(times, curves, top))
    axes[0].xaxis.set_minor_locator(minor_log_locator(*axes[0].get_xlim()))
    label_log_axis(axes[0].yaxis, low, top, least=4)
    handles.append(Line2D([], [], ls="none", marker="o", ms=5.5, mfc="white", mec="black"))
    labels.append(r"$t^*$: best time")
    if has_ridge:
        handles.append(Line2D([], [], color="0.3", ls="--", lw=1.2))
        labels.append(r"ridge, $\mu = 1/t$")
    handles.append(Line2D([], [], color="gray", ls=":", lw=1.0))
    labels.append(r"$L_{ST} = L_{TE}$")
    fig.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False)
    seeds = len(result.config.seeds)
    fig.suptitle(f"{result.config.name}: students of several widths trained on one teacher\n"
                 f"mean over {seeds} seed{'s' if seeds != 1 else ''} (band: range over seeds)", fontsize=10)
    return fig


# --------------------------------------------------------------------------------------------------


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
    if result.config.chain:
        save_png(plot_chain(result), folder / "chain.png")
        return names + ["chain.png"]
    dims = heatmap_dims(result)
    for d in dims:
        name = "heatmap.png" if len(dims) == 1 else f"heatmap_d{d}.png"
        save_png(plot_heatmap(result, d), folder / name)
        names.append(name)
    if samples_panels(result):
        save_png(plot_samples(result), folder / "samples.png")
        names.append("samples.png")
    return names


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


# --------------------------------------------------------------------------------------------------
# Chains: the best error stage by stage
# --------------------------------------------------------------------------------------------------


def plot_chain(result) -> Figure:
    """L_k*/L_TE and L_k*/L_TE² against the stage k (0: the teacher, where they are 1 and 1/L_TE), one line per
    teacher width (mean over seeds, seed range as bars); one row per (d, M_ST of stage 1)."""
    rows = list(dict.fromkeys((r["input_dim"], str(r["student_width"])) for r in result.records))
    colors = _teacher_colors(result)
    fig = _new_figure(9.0, 3.2 * len(rows) + 0.6)
    axes = fig.subplots(len(rows), 2, squeeze=False, sharex=True)
    widths = {}
    for row, (dim, first) in enumerate(rows):
        sel = [r for r in result.records if (r["input_dim"], str(r["student_width"])) == (dim, first)]
        for col, power in enumerate((1, 2)):
            ax = axes[row, col]
            for m, color in colors.items():
                by_stage = {}
                for r in sel:
                    if r["teacher_width"] == m and r["teacher_loss"] > 0:
                        by_stage.setdefault(r["stage"], []).append(r["best_student_loss"] / r["teacher_loss"] ** power)
                        widths[r["stage"]] = r["stage_width"]
                if not by_stage:
                    continue
                teacher = [1.0 / r["teacher_loss"] ** (power - 1) for r in sel
                           if r["teacher_width"] == m and r["stage"] == 1 and r["teacher_loss"] > 0]
                stages = [0, *sorted(by_stage)]
                values = [np.asarray(teacher)] + [np.asarray(by_stage[k]) for k in stages[1:]]
                mean = np.array([v.mean() for v in values])
                low = mean - np.array([v.min() for v in values])
                high = np.array([v.max() for v in values]) - mean
                ax.errorbar(stages, mean, yerr=[low, high], color=color, marker="o", ms=5, lw=1.4, capsize=2.5,
                            label=rf"$M_{{TE}} = {m}$")
            ax.set_yscale("log")
            ax.grid(True, which="major", alpha=0.3)
            ax.set_ylabel(r"$L_k^*\,/\,L_{TE}$" if power == 1 else r"$L_k^*\,/\,L_{TE}^2$")
            ax.set_title(rf"$d = {dim}$, $M_1 = {width_text(first)}$", fontsize=10)
            if power == 1:
                ax.axhline(1.0, color="gray", ls=":", lw=1.0)
    ticks = sorted(widths)
    for ax in axes[-1]:
        ax.set_xticks([0, *ticks], ["teacher"] + [f"{k}\n$M = {width_text(widths[k])}$" for k in ticks])
    for ax in axes.flat:
        low, high = ax.get_ylim()
        label_log_axis(ax.yaxis, low, high, least=4)
    fig.supxlabel("stage $k$ (each trained on the previous one's function at its label time)", fontsize=10)
    handles = [Line2D([], [], color=c, marker="o", ms=5, lw=1.4) for c in colors.values()]
    fig.legend(handles, [rf"$M_{{TE}} = {m}$" for m in colors], loc="outside right center", fontsize=8,
               frameon=False)
    seeds = len(result.config.seeds)
    fig.suptitle(f"{result.config.name}: best error of each stage of the chain, against the teacher's\n"
                 f"mean over {seeds} seed{'s' if seeds != 1 else ''} (bars: range over seeds)", fontsize=10)
    return fig
