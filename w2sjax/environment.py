"""The run's environment, recorded beside every result: versions, device, precision default."""

from __future__ import annotations

import platform

import jax
import numpy as np


def environment() -> dict:
    device = jax.devices()[0]
    return {
        "w2sjax": __import__("w2sjax").__version__,
        "jax": jax.__version__,
        "jaxlib": getattr(__import__("jaxlib"), "__version__", "unknown"),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "device_count": jax.device_count(),
        "x64": bool(jax.config.jax_enable_x64),
    }
