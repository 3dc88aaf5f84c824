"""Per-row gather of hidden states at given positions: `Research>GatherPositions` and its twin.

`gather_positions(sequence, positions)[b, p, :] == sequence[b, positions[b, p], :]`, the gather of
the masked-LM head. The reference twin is `tf.gather(sequence, positions, batch_dims=1)`; it is
XLA-compilable, so it serves under `jit_compile` and on accelerators. The native kernel's gradient
(`Research>GatherPositionsGrad`, registered in research/ops/_gradients.py) is a dense scatter-add
into [batch, seq_len, hidden] where duplicate positions accumulate, in float32 for bfloat16 and
float16.

Out-of-range positions are an InvalidArgumentError naming the first culprit on CPU for both
implementations (the native kernel: "positions[b, p] = v is outside [0, seq_len=L)"; tf.gather:
"indices[b,p] = v is not in [0, L)"). Under XLA or on GPU, tf.gather does not check them.
"""
import tensorflow as tf

from research.ops import backend as backend_lib

OP_NAME = "Research>GatherPositions"
DTYPES = (tf.float32, tf.bfloat16, tf.float16)


def _invalid(message: str) -> tf.errors.InvalidArgumentError:
    return tf.errors.InvalidArgumentError(None, None, message)


def gather_positions(sequence, positions, *, backend="auto"):
    """Gathers, for each batch row, the hidden vectors at `positions`.

    Args:
      sequence: float32, bfloat16 or float16 [batch, seq_len, hidden].
      positions: int32 [batch, P], each in [0, seq_len).
      backend: 'auto', 'native' or 'reference' (see research/ops/backend.py).

    Returns:
      [batch, P, hidden] of the dtype of `sequence`.

    Raises:
      TypeError: `sequence` of another dtype.
      InvalidArgumentError: wrong ranks or batch sizes, positions outside [0, seq_len) (on CPU).
      ValueError: an unknown backend, or 'native' inside an XLA-compiled function.
    """
    sequence = tf.convert_to_tensor(sequence, name="sequence")
    positions = tf.convert_to_tensor(positions, dtype=tf.int32, name="positions")
    if sequence.dtype not in DTYPES:
        raise TypeError(f"{OP_NAME}: sequence must be one of {[d.name for d in DTYPES]}, got {sequence.dtype.name}")
    if sequence.shape.rank is not None and sequence.shape.rank != 3:
        raise _invalid(f"{OP_NAME}: sequence must be rank 3 [batch, seq_len, hidden], got shape {sequence.shape}")
    if positions.shape.rank is not None and positions.shape.rank != 2:
        raise _invalid(f"{OP_NAME}: positions must be rank 2 [batch, P], got shape {positions.shape}")
    if not sequence.shape[:1].is_compatible_with(positions.shape[:1]):
        raise _invalid(f"{OP_NAME}: sequence {sequence.shape} and positions {positions.shape} must have the same "
                       "batch size")
    library = backend_lib.resolve(OP_NAME, backend)
    if library is None:
        return tf.gather(sequence, positions, batch_dims=1)
    return library.research_gather_positions(sequence, positions)
