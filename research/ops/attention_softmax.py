"""The attention softmax with its scale and padding bias folded in: `Research>AttentionSoftmax`
(+ `AttentionSoftmaxGrad`) and its twin.

    probs = softmax over keys of (scale * scores + (1 - input_mask) * padding_bias)

Why a kernel: TensorFlow runs this as a multiply (the 1 / sqrt(head size) scale), the padding add and
the softmax forward, and as five element-wise passes backward (the softmax gradient's multiply, sum,
subtract and multiply, then the scale's), each over [batch, heads, queries, keys], the largest tensor
of the attention; BERT small spent ~1.5% of a float32 training step there. The kernels compute in
float32 and round once; the gradient is computed from the op's output (for bfloat16, from the
rounded probabilities). The twin is the same formula in TensorFlow ops, in float32 (XLA-compilable).
"""
import tensorflow as tf

from research.ops import backend as backend_lib

OP_NAME = "Research>AttentionSoftmax"
DTYPES = (tf.float32, tf.bfloat16)
# Added to the scaled scores of padding keys, in float32 (where -1e9 is safe): their probability
# underflows to zero unless a row has no real key at all (then the row is uniform, as in the twin).
PADDING_BIAS = -1e9


def attention_softmax(scores, input_mask, scale: float, *, backend: str = "auto"):
    """Attention probabilities from raw query-key scores.

    Args:
      scores: [batch, heads, queries, keys] float32 or bfloat16 (other float dtypes go to the twin).
      input_mask: int [batch, keys], 1 for real keys and 0 for padding.
      scale: multiplies the scores before the softmax (1 / sqrt(head size)), a Python float.
      backend: 'auto', 'native' or 'reference' (see research/ops/backend.py).

    Returns:
      probabilities of the scores' shape and dtype.
    """
    scores = tf.convert_to_tensor(scores, name="scores")
    input_mask = tf.cast(input_mask, tf.int32)
    if scores.shape.rank is not None and scores.shape.rank != 4:
        raise ValueError(f"{OP_NAME}: scores must be [batch, heads, queries, keys], got shape {scores.shape}")
    if input_mask.shape.rank is not None and input_mask.shape.rank != 2:
        raise ValueError(f"{OP_NAME}: input_mask must be [batch, keys], got shape {input_mask.shape}")
    if not isinstance(scale, (int, float)) or isinstance(scale, bool):
        raise TypeError(f"{OP_NAME}: scale must be a Python number, got {scale!r}")
    library = backend_lib.resolve(OP_NAME, backend) if scores.dtype in DTYPES else None
    if library is None:
        if backend == "native":
            raise TypeError(f"{OP_NAME}: scores must be one of {[d.name for d in DTYPES]}, got {scores.dtype.name}")
        return _attention_softmax_reference(scores, input_mask, float(scale))
    return library.research_attention_softmax(scores, input_mask, scale=float(scale), padding_bias=PADDING_BIAS)


def padding_bias(input_mask):
    """[batch, 1, 1, keys] float32: 0 for real keys, PADDING_BIAS for padding (broadcast over heads, queries)."""
    mask = tf.cast(input_mask, tf.float32)
    return ((1.0 - mask) * PADDING_BIAS)[:, tf.newaxis, tf.newaxis, :]


def _attention_softmax_reference(scores, input_mask, scale):
    logits = tf.cast(scores, tf.float32) * scale + padding_bias(input_mask)
    return tf.cast(tf.nn.softmax(logits, axis=-1), scores.dtype)
