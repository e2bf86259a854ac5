"""w2sjax: exact weak-to-strong generalization in random-feature networks, on JAX.

Importing w2sjax turns on JAX's 64-bit mode (``jax_enable_x64``): results are float64 unless an input
distribution is built with ``dtype=jnp.float32``.
"""

import jax

jax.config.update("jax_enable_x64", True)

from w2sjax.features import (  # noqa: E402
    ACTIVATIONS,
    RandomFeatures,
    feature_gram,
    feature_target_moment,
    random_features,
    sample_weights,
)
from w2sjax.inputs import (  # noqa: E402
    HermiteTarget,
    InputDistribution,
    LinearTarget,
    SumTarget,
    gaussian_inputs,
    hermite_target,
    linear_target,
    make_inputs,
    sphere_inputs,
    sum_target,
    target_second_moment,
    target_values,
)
from w2sjax.spectral import (  # noqa: E402
    SpectralProblem,
    Spectrum,
    best_time,
    decompose,
    flow_weights,
    student_loss,
    student_loss_at_infinity,
    student_loss_from_decay,
)
from w2sjax.sweep import SweepResult, run_sweep  # noqa: E402
from w2sjax.w2s import TeacherFit, W2SResult, fit_teacher, weak_to_strong  # noqa: E402

__version__ = "0.1.0"
