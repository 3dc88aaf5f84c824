"""Fused masked-LM output head: `Research>MaskedSoftmaxXent` and its pure-TensorFlow reference twin.

    logits = hidden @ embedding_table^T + output_bias                      # [N, V], never built natively
    per_position_loss[i] = weights[i] * (logsumexp(logits[i]) - logits[i, labels[i]])
    predicted_ids[i] = argmax(logits[i]) (lowest index on ties), or -1 where weights[i] == 0

Rows whose weight is 0 are skipped entirely by the kernel (no matrix product touches them): their
loss is 0, their gradients are exactly 0 and, having no logits, their predicted id is -1 (the twin
returns -1 there too, so both agree everywhere).

The kernel walks the rows with a non-zero weight in chunks of `chunk_rows`, each against the whole
vocabulary (an exact one-pass softmax per chunk; memory O(chunk_rows * V + V * D), never O(N * V)).
With `training=True` (the default) the same pass also produces the gradients of sum(loss): the
registered gradient multiplies the hidden-state rows by the upstream gradient exactly and, when the
upstream gradient is one constant over the rows with a non-zero weight (any loss of the form
`sum(loss) * c`, such as `sum(loss) / sum(weights)`), scales the table and bias gradients by it;
otherwise it recomputes them exactly in a second pass. That is three matrix products for a training
step instead of four. `training=False` skips the gradient work (inference, evaluation); a gradient
taken through it anyway is correct, computed by the recomputing pass.

Everything is computed in float32 whatever the input dtype (float32, bfloat16, float16); gradients
come back in the input dtypes. Inputs of mixed dtypes are all cast to float32 first.
"""
import tensorflow as tf

from research.ops import backend as backend_lib

OP_NAME = "Research>MaskedSoftmaxXent"
_KERNEL_DTYPES = (tf.float32, tf.bfloat16, tf.float16)


def masked_lm_loss(hidden, embedding_table, output_bias, labels, weights, *, training: bool = True,
                   backend: str = "auto", chunk_rows: int = 0):
    """Per-position weighted softmax cross-entropy and argmax of a tied-embedding output layer.

    Args:
      hidden: float [N, D], the transformed hidden states at the predicted positions.
      embedding_table: float [V, D].
      output_bias: float [V].
      labels: int32 [N], each in [0, V) (InvalidArgumentError naming the row and value otherwise).
      weights: float32 [N]; 0 marks padding rows.
      training: also compute the gradients in the forward pass (cheaper when a gradient follows);
        False for inference and evaluation. Values are identical either way.
      backend: 'auto', 'native' or 'reference' (see research/ops/backend.py).
      chunk_rows: rows per chunk of the native kernel; 0 picks about 24 MB of logits per chunk.

    Returns:
      (per_position_loss float32 [N], predicted_ids int32 [N]).
    """
    hidden, embedding_table, output_bias = _common_dtype(hidden, embedding_table, output_bias)
    labels = tf.cast(labels, tf.int32)
    weights = tf.cast(weights, tf.float32)
    library = backend_lib.resolve(OP_NAME, backend)
    if library is None:
        return _masked_lm_loss_reference(hidden, embedding_table, output_bias, labels, weights)
    outputs = library.research_masked_softmax_xent(hidden, embedding_table, output_bias, labels, weights,
                                                   compute_gradients=bool(training), chunk_rows=int(chunk_rows))
    return outputs[0], outputs[1]


def _common_dtype(hidden, embedding_table, output_bias):
    tensors = [tf.convert_to_tensor(t) for t in (hidden, embedding_table, output_bias)]
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) == 1 and tensors[0].dtype in _KERNEL_DTYPES:
        return tensors
    return [tf.cast(t, tf.float32) for t in tensors]


def _check_labels_in_range(labels, vocab_size):
    """An assertion naming the first label outside [0, vocab_size), its row and value."""
    bad = tf.logical_or(labels < 0, labels >= vocab_size)
    flat_bad = tf.concat([tf.cast(bad, tf.int32), [0]], axis=0)  # a sentinel for empty batches
    first = tf.argmax(flat_bad, output_type=tf.int32)
    return tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(bad)),
        ["labels outside [0, vocab_size =", vocab_size, "): first at row", first, "value",
         tf.gather(tf.concat([labels, [0]], axis=0), first)])


def _masked_lm_loss_reference(hidden, embedding_table, output_bias, labels, weights):
    """Pure-TensorFlow twin (XLA-compilable): explicit [N, V] float32 logits."""
    vocab_size = tf.shape(embedding_table)[0]
    with tf.control_dependencies([_check_labels_in_range(labels, vocab_size)]):
        labels = tf.identity(labels)
    logits = tf.matmul(tf.cast(hidden, tf.float32), tf.cast(embedding_table, tf.float32), transpose_b=True)
    logits = logits + tf.cast(output_bias, tf.float32)
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    loss = weights * xent
    predicted = tf.where(weights != 0, tf.argmax(logits, axis=-1, output_type=tf.int32), -1)
    return loss, predicted
