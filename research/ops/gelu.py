"""Exact (erf) GELU in one pass each way: `Research>Gelu` / `Research>GeluGrad` and their twin.

    gelu(x) = 0.5 x (1 + erf(x / sqrt(2)))
    d gelu / dx = Phi(x) + x phi(x)

Why a kernel: TensorFlow builds GELU from five element-wise ops and its gradient from about eight,
each a full pass over the feed-forward activations ([tokens, intermediate], the largest tensors of a
BERT layer); BERT small spent ~8% of a training step there. The kernels compute in float32 and
round once (for bfloat16/float16 inputs that is slightly more accurate than the twin, which rounds
after every op, as Keras' `gelu` does). The twin is `tf.nn.gelu(approximate=False)`: XLA-compilable.
"""
import keras
import tensorflow as tf

from research.ops import backend as backend_lib

OP_NAME = "Research>Gelu"
DTYPES = (tf.float32, tf.bfloat16, tf.float16)


@keras.saving.register_keras_serializable(package="research", name="gelu")
def gelu(x, backend: str = "auto"):
    """Exact GELU of a float32, bfloat16 or float16 tensor (usable as a Keras activation).

    Args:
      x: the input; other dtypes go to the twin.
      backend: 'auto', 'native' or 'reference' (see research/ops/backend.py).
    """
    x = tf.convert_to_tensor(x, name="x")
    library = backend_lib.resolve(OP_NAME, backend) if x.dtype in DTYPES else None
    if library is None:
        if backend == "native":
            raise TypeError(f"{OP_NAME}: x must be one of {[d.name for d in DTYPES]}, got {x.dtype.name}")
        return tf.nn.gelu(x, approximate=False)
    return library.research_gelu(x)


BIAS_OP_NAME = "Research>BiasGelu"
BIAS_DTYPES = (tf.float32, tf.bfloat16)


def bias_gelu(x, bias, backend: str = "auto"):
    """gelu(x + bias), the bias added along the last axis: a feed-forward layer's bias and activation.

    One pass forward instead of BiasAdd and Gelu, and one backward instead of GeluGrad and BiasAddGrad
    (the bias gradient is summed while the input gradient is written). The kernel adds the bias in
    float32; the twin, `tf.nn.gelu(x + bias, approximate=False)`, in x's dtype.

    Args:
      x: [..., C] float32 or bfloat16 (other dtypes go to the twin).
      bias: [C], cast to x's dtype.
      backend: 'auto', 'native' or 'reference' (see research/ops/backend.py).
    """
    x = tf.convert_to_tensor(x, name="x")
    bias = tf.cast(bias, x.dtype)
    if bias.shape.rank is not None and bias.shape.rank != 1:
        raise ValueError(f"{BIAS_OP_NAME}: bias must be [channels], got shape {bias.shape}")
    library = backend_lib.resolve(BIAS_OP_NAME, backend) if x.dtype in BIAS_DTYPES else None
    if library is None:
        if backend == "native":
            raise TypeError(f"{BIAS_OP_NAME}: x must be one of {[d.name for d in BIAS_DTYPES]}, got {x.dtype.name}")
        return tf.nn.gelu(x + bias, approximate=False)
    return library.research_bias_gelu(x, bias)
