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


@tf.RegisterGradient("Research>Dropout")
def _dropout_grad(op, grad):
    """y = mask * scale * x is linear in x: the same op, same seed, on the upstream gradient."""
    return (_library().research_dropout(grad, op.inputs[1], threshold=op.get_attr("threshold"),
                                        scale=op.get_attr("scale")), None)


@tf.RegisterGradient("Research>Gelu")
def _gelu_grad(op, grad):
    """dx = dy * (Phi(x) + x phi(x)), one fused pass."""
    return _library().research_gelu_grad(grad, op.inputs[0])


@tf.RegisterGradient("Research>LayerNorm")
def _layer_norm_grad(op, grad, unused_grad_mean, unused_grad_rstd):
    """dx, dgamma, dbeta from the saved per-row mean and 1/std (mean and rstd are not differentiated)."""
    x, gamma, _ = op.inputs
    _, mean, rstd = op.outputs
    dx, dgamma, dbeta = _library().research_layer_norm_grad(grad, x, gamma, mean, rstd)
    return dx, dgamma, dbeta


@tf.RegisterGradient("Research>AttentionSoftmax")
def _attention_softmax_grad(op, grad):
    """d scores = scale * probs * (d probs - sum(d probs * probs)), from the op's output; the mask has none."""
    return (_library().research_attention_softmax_grad(grad, op.outputs[0], scale=op.get_attr("scale")), None)


@tf.RegisterGradient("Research>BiasGelu")
def _bias_gelu_grad(op, grad):
    """dx = dy * gelu'(x + bias) and its column sums for the bias, one fused pass."""
    x, bias = op.inputs
    return _library().research_bias_gelu_grad(grad, x, bias)


@tf.RegisterGradient("Research>SplitHeads")
def _split_heads_grad(op, *grads):
    """A copy: the head-major gradients merged back (an unused output's missing gradient is zeros)."""
    grads = [tf.zeros_like(y) if g is None else g for g, y in zip(grads, op.outputs)]
    return _library().research_merge_heads(grads)


@tf.RegisterGradient("Research>MergeHeads")
def _merge_heads_grad(op, grad):
    """A copy: the token-major gradient split back into the inputs' layout (their head count must be static)."""
    num_heads = op.inputs[0].shape[1]
    if num_heads is None:
        raise ValueError(f"Research>MergeHeads gradient: the heads axis of {op.inputs[0]} must be static")
    return _library().research_split_heads(grad, num_groups=len(op.inputs), num_heads=num_heads)
