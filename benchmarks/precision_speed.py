"""float32 vs float64 speed of weak_to_strong (eigh) and of a bare eigh, side by side:  python benchmarks/precision_speed.py 2048"""
import os, sys, time
sys.path.insert(0, os.environ.get("W2SJAX_ROOT", os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import jax, jax.numpy as jnp, numpy as np
import w2sjax as w
from w2sjax.features import RandomFeatures, student_weights, teacher_weights
d = 32; M = int(sys.argv[1])
times = np.geomspace(0.1, 1e7, 400)
def make(dt):
    u = student_weights(0, M, d, "relu").astype(dt)
    ts = [RandomFeatures(teacher_weights(0, m, d, "relu").astype(dt), jnp.asarray(float(m), dt), "relu") for m in (16, 32, 64, 128, 256)]
    return (RandomFeatures(u, jnp.asarray(float(M), dt), "relu"), ts, w.linear_target(np.eye(d)[0], dt), w.gaussian_inputs(d, dtype=dt), times)
import warnings; warnings.simplefilter("ignore")
out = {}
for dt in (jnp.float64, jnp.float32):
    args = make(dt); jax.block_until_ready(w.weak_to_strong(*args, method="eigh"))  # compile
    best = []
    for _ in range(2):
        c = time.perf_counter(); jax.block_until_ready(w.weak_to_strong(*args, method="eigh")); best.append(time.perf_counter() - c)
    g = jnp.asarray(np.random.default_rng(0).normal(size=(M, M)), dt); g = g @ g.T
    jnp.linalg.eigh(g)[0].block_until_ready(); c = time.perf_counter(); jnp.linalg.eigh(g)[0].block_until_ready(); e = time.perf_counter() - c
    out[dt.__name__] = (min(best), e)
    print(dt.__name__, "weak_to_strong", min(best), "bare eigh", e, flush=True)
print("ratio float32/float64: weak_to_strong %.2f, eigh %.2f" % (out["float32"][0] / out["float64"][0], out["float32"][1] / out["float64"][1]))
