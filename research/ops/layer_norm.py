"""Layer normalization over the last axis in one pass: `Research>LayerNorm` (+ `LayerNormGrad`) and its twin.

    y = (x - mean) / sqrt(variance + epsilon) * gamma + beta     (mean, variance over the last axis)

Why a kernel: TensorFlow composes it from moments, rsqrt, scale and shift, about six passes over x
forward and a dozen backward; BERT small spent ~5% of its step there. The kernel computes in float32
for every input dtype (as Keras' layer normalization does for 16-bit inputs), keeps the per-row mean
and 1/std for the backward pass, and returns y in x's dtype. gamma and beta are float32.
The twin is the same formula in TensorFlow ops (XLA-compilable).
"""
import tensorflow as tf

from research.ops import backend as backend_lib

OP_NAME = "Research>LayerNorm"
DTYPES = (tf.float32, tf.bfloat16, tf.float16)


def layer_norm(x, gamma, beta, epsilon: float, *, backend: str = "auto"):
    """Normalizes `x` over its last axis, then scales by `gamma` and shifts by `beta`.

    Args:
      x: float32, bfloat16 or float16 [..., C].
      gamma, beta: [C], cast to float32.
      epsilon: added to the variance, a Python float >= 0.
      backend: 'auto', 'native' or 'reference' (see research/ops/backend.py).

    Returns:
      A tensor of x's shape and dtype.
    """
    x = tf.convert_to_tensor(x, name="x")
    if x.dtype not in DTYPES:
        raise TypeError(f"{OP_NAME}: x must be one of {[d.name for d in DTYPES]}, got {x.dtype.name}")
    if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not epsilon >= 0:
        raise ValueError(f"{OP_NAME}: epsilon must be a number >= 0, got {epsilon!r}")
    gamma = tf.cast(gamma, tf.float32)
    beta = tf.cast(beta, tf.float32)
    library = backend_lib.resolve(OP_NAME, backend)
    if library is None:
        return _layer_norm_reference(x, gamma, beta, float(epsilon))
    return library.research_layer_norm(x, gamma, beta, epsilon=float(epsilon))[0]


def _layer_norm_reference(x, gamma, beta, epsilon):
    values = tf.cast(x, tf.float32)
    mean, variance = tf.nn.moments(values, axes=[-1], keepdims=True)
    normalized = (values - mean) * tf.math.rsqrt(variance + epsilon)
    return tf.cast(normalized * gamma + beta, x.dtype)
