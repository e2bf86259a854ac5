import os

# Most of the suite's time is XLA compiling many small programs once each. Compile them with LLVM's backend
# optimisations off (the same operations in the same order; the O(M³) and O(M²) work runs in LAPACK and BLAS
# calls either way). Set before jax starts its backend, so that the CLI subprocesses the tests start inherit it.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
# Every test compiles from scratch, as on a clean machine: no persistent compilation cache.
os.environ["W2SJAX_CACHE"] = "off"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
