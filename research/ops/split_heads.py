"""Attention's head layout changes as one copy each: `Research>SplitHeads` / `Research>MergeHeads` and twins.

    split_heads(x [batch, seq_len, groups * heads * size], groups, heads) -> groups x [batch, heads, seq_len, size]
    merge_heads([groups x [batch, heads, seq_len, size]]) -> [batch, seq_len, groups * heads * size]

Why kernels: TensorFlow splits a fused query/key/value projection with a transpose and an unstack, and
its gradient is a stack (one more copy of the three gradients) and a transpose back; both ops' copies
here move whole contiguous head vectors. BERT small spent ~1.5% of a float32 step on those copies.
Each op is the other's gradient. The twins are reshape + transpose (+ unstack / stack): XLA-compilable.
"""
import tensorflow as tf

from research.ops import backend as backend_lib

SPLIT_OP_NAME = "Research>SplitHeads"
MERGE_OP_NAME = "Research>MergeHeads"
DTYPES = (tf.float32, tf.bfloat16, tf.float16)


def _check_positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{SPLIT_OP_NAME}: {name} must be an int >= 1, got {value!r}")


def split_heads(x, num_groups: int, num_heads: int, *, backend: str = "auto"):
    """Splits token-major projections into `num_groups` head-major tensors.

    Args:
      x: [batch, seq_len, num_groups * num_heads * size].
      num_groups: how many projections are fused along the last axis (3 for query, key, value).
      num_heads: attention heads per projection.
      backend: 'auto', 'native' or 'reference' (see research/ops/backend.py).

    Returns:
      A list of `num_groups` tensors [batch, num_heads, seq_len, size] in x's dtype.
    """
    x = tf.convert_to_tensor(x, name="x")
    _check_positive_int("num_groups", num_groups)
    _check_positive_int("num_heads", num_heads)
    if x.shape.rank is not None and x.shape.rank != 3:
        raise ValueError(f"{SPLIT_OP_NAME}: x must be [batch, seq_len, groups * heads * size], got shape {x.shape}")
    width = x.shape[-1] if x.shape.rank is not None else None
    if width is not None and width % (num_groups * num_heads):
        raise ValueError(f"{SPLIT_OP_NAME}: x's last axis {width} is not a multiple of num_groups * num_heads = "
                         f"{num_groups} * {num_heads}")
    library = backend_lib.resolve(SPLIT_OP_NAME, backend) if x.dtype in DTYPES else None
    if library is None:
        if backend == "native":
            raise TypeError(f"{SPLIT_OP_NAME}: x must be one of {[d.name for d in DTYPES]}, got {x.dtype.name}")
        batch, seq_len = tf.shape(x)[0], tf.shape(x)[1]
        grouped = tf.reshape(x, [batch, seq_len, num_groups, num_heads, -1])
        return tf.unstack(tf.transpose(grouped, [2, 0, 3, 1, 4]), num=num_groups)
    return library.research_split_heads(x, num_groups=num_groups, num_heads=num_heads)


def merge_heads(heads, *, backend: str = "auto"):
    """Merges head-major tensors back into token-major rows (the inverse of `split_heads`).

    Args:
      heads: a list of tensors [batch, num_heads, seq_len, size] of one shape and dtype.
      backend: 'auto', 'native' or 'reference' (see research/ops/backend.py).

    Returns:
      [batch, seq_len, len(heads) * num_heads * size].
    """
    heads = [tf.convert_to_tensor(h, name="heads") for h in heads]
    if not heads:
        raise ValueError(f"{MERGE_OP_NAME}: heads must be a non-empty list")
    for h in heads:
        if h.shape.rank is not None and h.shape.rank != 4:
            raise ValueError(f"{MERGE_OP_NAME}: each of heads must be [batch, heads, seq_len, size], got shape "
                             f"{h.shape}")
    dtype = heads[0].dtype
    library = backend_lib.resolve(MERGE_OP_NAME, backend) if dtype in DTYPES else None
    if library is None:
        if backend == "native":
            raise TypeError(f"{MERGE_OP_NAME}: heads must be one of {[d.name for d in DTYPES]}, got {dtype.name}")
        stacked = tf.transpose(tf.stack(heads), [1, 3, 0, 2, 4])  # [batch, seq_len, groups, heads, size]
        num_heads, size = heads[0].shape[1], heads[0].shape[3]
        width = -1 if num_heads is None or size is None else len(heads) * num_heads * size
        shape = tf.shape(stacked)
        return tf.reshape(stacked, [shape[0], shape[1], width])
    return library.research_merge_heads(heads)
