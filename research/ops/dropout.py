"""Inverted dropout with a stateless mask keyed by element index: `Research>Dropout` and its twin.

    y = where(keep, x * scale, 0),   keep[i] = hash(seed, i) >= threshold,
    threshold = round(rate * 2^32),  scale = 1 / (1 - rate) (rounded to x's dtype, as Keras does)

Why not Keras' dropout: on CPU, `tf.nn.experimental.stateless_dropout` draws a float per element
with Philox, compares, multiplies, selects, and its gradient selects again with the saved mask; in
BERT tiny training that was 15% of all op time. The native kernel does one pass each way and stores
nothing: y is linear in x, so the gradient is the same op on the upstream gradient with the same seed
(the mask is recomputed, not kept alive between the passes).

The mask hash (ops/dropout/dropout_hash.h, a few multiply-xorshift rounds of the 32-bit index and a
key mixed from all four seed words) is reproduced here with TensorFlow integer ops, so the twin —
XLA-compilable, for `jit_compile` and accelerators — gives the same bits as the kernel. The keep
probability is 1 - threshold / 2^32, i.e. 1 - rate to within 2^-32.
"""
import tensorflow as tf

from research.ops import backend as backend_lib

OP_NAME = "Research>Dropout"
DTYPES = (tf.float32, tf.bfloat16, tf.float16)
_MIX_1, _MIX_2 = 0x7FEB352D, 0x846CA68B
_KEY_SALT, _HIGH_SALT = 0x9E3779B9, 0x85EBCA6B


def dropout(x, rate: float, seed, *, backend: str = "auto"):
    """Zeroes each element of `x` with probability `rate` and scales the others by 1 / (1 - rate).

    Args:
      x: float32, bfloat16 or float16 tensor of any shape.
      rate: a Python float in [0, 1); 0 returns `x` unchanged.
      seed: integer [2] tensor (e.g. a Keras `SeedGenerator`'s next value); same seed, same mask.
      backend: 'auto', 'native' or 'reference' (see research/ops/backend.py).

    Returns:
      A tensor of the shape and dtype of `x`.
    """
    x = tf.convert_to_tensor(x, name="x")
    if x.dtype not in DTYPES:
        raise TypeError(f"{OP_NAME}: x must be one of {[d.name for d in DTYPES]}, got {x.dtype.name}")
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0.0 <= rate < 1.0:
        raise ValueError(f"{OP_NAME}: rate must be a number in [0, 1), got {rate!r}")
    seed = tf.cast(tf.convert_to_tensor(seed, name="seed"), tf.int64)
    if seed.shape.rank is not None and seed.shape != [2]:
        raise ValueError(f"{OP_NAME}: seed must have shape [2], got {seed.shape}")
    if rate == 0.0:
        return x
    threshold = min(round(rate * 2.0 ** 32), 2 ** 32 - 1)
    scale = 1.0 / (1.0 - rate)
    library = backend_lib.resolve(OP_NAME, backend)
    if library is None:
        return _dropout_reference(x, seed, threshold, scale)
    return library.research_dropout(x, seed, threshold=threshold, scale=scale)


def _mix(h):
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(16, tf.uint32)))
    h = h * tf.constant(_MIX_1, tf.uint32)
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(15, tf.uint32)))
    h = h * tf.constant(_MIX_2, tf.uint32)
    return tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(16, tf.uint32)))


def _words(value):
    """(low, high) uint32 words of int64 values."""
    low = tf.cast(tf.bitwise.bitwise_and(value, tf.constant(0xFFFFFFFF, tf.int64)), tf.uint32)
    high = tf.cast(tf.bitwise.bitwise_and(tf.bitwise.right_shift(value, tf.constant(32, tf.int64)),
                                          tf.constant(0xFFFFFFFF, tf.int64)), tf.uint32)
    return low, high


def keep_mask(shape, seed, threshold: int):
    """The boolean keep mask of the given shape, as the kernel computes it."""
    s0, s1 = _words(seed[0])
    s2, s3 = _words(seed[1])
    key = _mix(s0 ^ _mix(s1 ^ _mix(s2 ^ _mix(s3 ^ tf.constant(_KEY_SALT, tf.uint32)))))
    low, high = _words(tf.range(tf.reduce_prod(tf.cast(shape, tf.int64)), dtype=tf.int64))
    hashed = _mix(_mix(low ^ key) + (high ^ tf.constant(_HIGH_SALT, tf.uint32)))
    return tf.reshape(hashed >= tf.constant(threshold, tf.uint32), shape)


def _dropout_reference(x, seed, threshold, scale):
    keep = keep_mask(tf.shape(x), seed, threshold)
    return tf.where(keep, x * tf.constant(scale, x.dtype), tf.zeros([], x.dtype))
