"""One weak-to-strong curve: a ReLU student of width 1024 trained by gradient flow on a width-64 teacher's labels.

    python examples/w2s_curve.py [OUT] [--quick]

Prints L_TE, the best stopping time t*, L_ST* = L_ST(t*), the ratio L_ST*/L_TE, PGR and L_ST(∞), and draws
L_ST(t)/L_TE against t in OUT/w2s_curve.png (OUT defaults to ./examples_out/w2s_curve).
"""

import argparse
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import w2sjax
from w2sjax.studies.plots import label_log_axis

parser = argparse.ArgumentParser(description="one weak-to-strong curve")
parser.add_argument("out", nargs="?", default="examples_out/w2s_curve", help="output folder")
parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

d, m_student, m_teacher = (8, 64, 8) if args.quick else (32, 1024, 64)
inputs = w2sjax.gaussian_inputs(d)                                   # x ~ N(0, I_d)
target = w2sjax.linear_target(np.eye(d)[0])                          # f*(x) = x_1
student = w2sjax.student_features(seed=0, width=m_student, dim=d)    # ReLU rows uniform on the sphere
teacher = w2sjax.random_features(w2sjax.features.teacher_weights(0, m_teacher, d, "relu"))
times = np.logspace(-1, 6, 300)

result = w2sjax.weak_to_strong(student, teacher, target, inputs, times)
lte, t_best, best = float(result.teacher_loss), float(result.best_time), float(result.best_student_loss)
print(f"M_ST = {m_student}, M_TE = {m_teacher}, d = {d}")
print(f"L_TE = {lte:.4g}")
print(f"t* = {t_best:.4g}, L_ST* = {best:.4g}")
print(f"L_ST*/L_TE = {float(result.ratio):.3f}, PGR = {float(result.pgr):.3f}, "
      f"L_ST(inf) = {float(result.student_loss_at_infinity):.4g}")

fig = Figure(figsize=(5.6, 3.8), layout="constrained")
FigureCanvasAgg(fig)
ax = fig.subplots()
ax.loglog(times, np.asarray(result.student_loss) / lte, color="C0", lw=1.8, label=r"$L_{ST}(t)\,/\,L_{TE}$")
ax.plot([t_best], [best / lte], "o", mfc="C1", mec="black", label=rf"$t^* = {t_best:.3g}$, "
        rf"$L_{{ST}}^*/L_{{TE}} = {best / lte:.3f}$")
ax.axhline(1.0, color="gray", ls=":", label=r"teacher: $L_{ST} = L_{TE}$")
ax.set_xlabel(r"training time $t$")
ax.set_ylabel(r"$L_{ST}(t)\,/\,L_{TE}$")
ax.set_title(rf"Student ($M_{{ST}} = {m_student}$) trained on a teacher ($M_{{TE}} = {m_teacher}$), $d = {d}$",
             fontsize=10)
ax.grid(True, which="major", alpha=0.3)
label_log_axis(ax.yaxis)  # plain-number ticks (0.5, 1, 2, ...)
ax.legend(fontsize=8)
fig.savefig(out / "w2s_curve.png", dpi=110)
print(f"wrote {out / 'w2s_curve.png'}")
