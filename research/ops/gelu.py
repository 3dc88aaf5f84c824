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
