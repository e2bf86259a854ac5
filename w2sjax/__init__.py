"""w2sjax: exact weak-to-strong generalization in random-feature networks, on JAX.

Importing w2sjax turns on JAX's 64-bit mode (``jax_enable_x64``): results are float64 unless an input law is
built with ``dtype=jnp.float32``.
"""

import jax

jax.config.update("jax_enable_x64", True)

from w2sjax.chains import ChainResult, chain, chain_stages  # noqa: E402
from w2sjax.curves import (  # noqa: E402
    W2SResult,
    best_strength,
    best_time,
    gd_loss,
    loss_at_infinity,
    ridge_loss,
    student_loss,
    summarize,
)
from w2sjax.engine import plan_route, solve_objective  # noqa: E402
from w2sjax.features import (  # noqa: E402
    ACTIVATIONS,
    InfiniteFeatures,
    RandomFeatures,
    feature_gram,
    feature_target_moment,
    infinite_features,
    model_function,
    random_features,
    sample_weights,
    student_features,
    teacher_features,
)
from w2sjax.inputs import (  # noqa: E402
    InputDistribution,
    Mixture,
    gaussian_inputs,
    gaussian_mixture,
    group_laws,
    make_inputs,
    mixture_inputs,
    sphere_inputs,
)
from w2sjax.objectives import Law, Objective, Samples  # noqa: E402
from w2sjax.spectral import Decomposition, SpectralProblem  # noqa: E402
from w2sjax.targets import (  # noqa: E402
    GroupTarget,
    HermiteTarget,
    LinearTarget,
    NetworkTarget,
    SumTarget,
    group_target,
    hermite_target,
    linear_target,
    network_target,
    random_relu_network_target,
    relu_network_target,
    sum_target,
    target_mean,
    target_second_moment,
    target_values,
)
from w2sjax.w2s import NarrowStudentWarning, TeacherFit, fit_teachers, weak_to_strong, weights_at  # noqa: E402

__version__ = "0.2.0"
