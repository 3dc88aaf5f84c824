"""Gradient registrations of the native ops, imported exactly once, when the library loads.

Registering a name twice raises KeyError, so this module is the only place that does it.
"""
import tensorflow as tf

tf.no_gradient("Research>MaskTokens")


def _library():
    # Imported lazily: this module is itself imported while the loader loads the library.
    from research.ops._loader import LIBRARY
    return LIBRARY.get()


@tf.RegisterGradient("Research>GatherPositions")
def _gather_positions_grad(op, grad):
    """d sequence: the gradient rows scatter-added (duplicates accumulate) into [batch, seq_len, hidden]."""
    sequence, positions = op.inputs
    seq_len = tf.shape(sequence, out_type=tf.int32)[1]
    return _library().research_gather_positions_grad(grad, positions, seq_len), None


@tf.RegisterGradient("Research>GatherPositionsGrad")
def _gather_positions_grad_grad(op, grad):
    """The scatter-add is linear in its first input; its own gradient gathers (second-order gradients)."""
    return _library().research_gather_positions(grad, op.inputs[1]), None, None


@tf.RegisterGradient("Research>MaskedSoftmaxXent")
def _masked_softmax_xent_grad(op, grad_loss, *unused_grads):
    """Gradients w.r.t. hidden, embedding_table and output_bias (none for labels and weights).

    With compute_gradients the op already returned the float32 gradients of sum(loss): d_hidden rows
    scale exactly by the upstream gradient; d_table and d_bias scale by it when it is one constant c
    over the rows with a non-zero weight, and are otherwise recomputed exactly with weights * upstream
    (d sum_i g_i w_i xent_i), decided at run time.
    """
    hidden, table, bias, labels, weights = op.inputs
    chunk_rows = op.get_attr("chunk_rows")
    if grad_loss is None:
        grad_loss = tf.zeros_like(weights)

    def recompute():
        outputs = _library().research_masked_softmax_xent(
            hidden, table, bias, labels, weights * grad_loss, compute_gradients=True, chunk_rows=chunk_rows)
        return outputs[2], outputs[3], outputs[4]

    if op.get_attr("compute_gradients"):
        unit_d_hidden, unit_d_table, unit_d_bias = op.outputs[2:5]
        d_hidden = grad_loss[:, tf.newaxis] * unit_d_hidden
        active = weights != 0
        largest = tf.reduce_max(tf.where(active, grad_loss, float("-inf")))
        smallest = tf.reduce_min(tf.where(active, grad_loss, float("inf")))
        any_active = tf.reduce_any(active)
        constant = tf.logical_or(tf.logical_not(any_active), largest == smallest)
        scale = tf.where(any_active, largest, 0.0)
        d_table, d_bias = tf.cond(constant, lambda: (scale * unit_d_table, scale * unit_d_bias),
                                  lambda: recompute()[1:])
    else:
        d_hidden, d_table, d_bias = recompute()
    return (tf.cast(d_hidden, hidden.dtype), tf.cast(d_table, table.dtype), tf.cast(d_bias, bias.dtype), None, None)
