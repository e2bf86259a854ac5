import os
import tempfile
from pathlib import Path

# Most of the suite's time is XLA compiling many small programs. Compile them with LLVM's backend
# optimisations off and fusions emitted by the older elemental emitter (backend compilation 41 s -> 24 s on
# tests/test_curves.py): the same operations in the same order; the O(M³) and O(M²) work runs in LAPACK and
# BLAS calls either way. Set before jax starts its backend, so that the CLI subprocesses the tests start inherit it.
for _flag in ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false"):
    if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
# Programs compiled by one test process are reused by the other worker and by CLI subprocesses through one
# persistent compilation cache per test session (new for every session: a clean checkout compiles everything).
_session = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
_cache = Path(tempfile.gettempdir()) / f"w2sjax-test-cache-{_session}"
_cache.mkdir(parents=True, exist_ok=True)
os.environ["W2SJAX_CACHE"] = str(_cache)

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_compilation_cache_dir", str(_cache))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
