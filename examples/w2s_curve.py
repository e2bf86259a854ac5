"""One weak-to-strong curve: a ReLU student of width 1024 trained on the labels of a width-64 teacher.

    python examples/w2s_curve.py [OUT.png]

Prints L_TE, the best stopping time t*, L_ST* = L_ST(t*), the ratio L_ST*/L_TE and PGR; with OUT.png, also
draws L_ST(t)/L_TE against t.
"""

import sys

import numpy as np

import w2sjax
from w2sjax.sweep import student_weights, teacher_weights

d, m_student, m_teacher = 32, 1024, 64
inputs = w2sjax.gaussian_inputs(d)  # x ~ N(0, I_d)
target = w2sjax.linear_target(np.eye(d)[0])  # f*(x) = x_1
student = w2sjax.random_features(student_weights(0, m_student, d, "relu"), "relu")  # rows uniform on the sphere
teacher = w2sjax.random_features(teacher_weights(0, m_teacher, d, "relu"), "relu")
times = np.logspace(-1, 6, 300)

result = w2sjax.weak_to_strong(student, teacher, target, inputs, times)
print(f"L_TE = {float(result.teacher_loss):.4g}")
print(f"t* = {float(result.best_time):.4g}, L_ST* = {float(result.best_student_loss):.4g}")
print(f"L_ST*/L_TE = {float(result.ratio):.3f}, PGR = {float(result.pgr):.3f}, "
      f"L_ST(inf) = {float(result.student_loss_at_infinity):.4g}")

if len(sys.argv) > 1:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.loglog(times, np.asarray(result.student_loss) / float(result.teacher_loss))
    ax.axhline(1.0, color="gray", ls="--")
    ax.set_xlabel("t")
    ax.set_ylabel("L_ST(t) / L_TE")
    fig.savefig(sys.argv[1])
    print(f"wrote {sys.argv[1]}")
