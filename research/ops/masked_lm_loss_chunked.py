"""The memory-lean masked-LM head in plain TensorFlow ops: what `masked_lm_loss` runs without its kernel.

Same contract as `research.ops.masked_lm_loss` (loss, argmax, -1 where the weight is 0, gradients of
the hidden states, the tied table and the output bias), computed without the `[N, V]` logits and
without a custom kernel, so that XLA compiles it (`jit_compile=True`, TPU) and it runs on any device:

    for each chunk of `rows` rows (a `tf.while_loop`, one chunk at a time):
        L = H_c E^T + b                                   # [rows, V] float32, the whole vocabulary
        m = max_v L;  s = sum_v exp(L - m)                # per row
        loss_c = m + log s - L[label];  predicted_c = argmax(L)
        G = w_c (exp(L - m - log s) - onehot)             # the gradient of sum(loss) w.r.t. L
        dH_c = G E;  dE += G^T H_c;  db += sum_rows(G)    # accumulated per chunk

An exact softmax per chunk (every row meets the whole vocabulary in one block, so no running max is
needed), the gradients of sum(loss) produced in the same pass: three matrix products a step, as the
explicit-logits twin does, with O(rows * V + V * D) memory instead of O(N * V). The custom gradient
scales them by the upstream gradient when it is one constant over the weighted rows (any
`sum(loss) * c`); any other upstream gradient is handled exactly by a second, recomputing pass. With
`training=False` the pass skips the gradients and a gradient taken anyway recomputes them.

Under XLA the softmax is written out as above (reductions over L and one element-wise expression for
G, with the label's logit gathered): XLA fuses it into two [rows, V] buffers a chunk, G written over
the product's, where `SparseSoftmaxCrossEntropyWithLogits` lowers to about twice the passes and
buffers. Outside XLA that fused TensorFlow kernel is the faster form and is used. The table gradient
grows by one [V, D] product a chunk, which XLA adds into the loop-carried accumulator in place.
Chunks of about CHUNK_MB MB of logits (304 rows at V = 30522): under XLA at N = 19456, D = 768 the
training step allocates 13% of the [N, V] logits (benchmarks/RESULTS.md); 512 rows would cost 16%.

Rows are walked in equal chunks (a divisor of N when N is static and has one near the target,
otherwise the rows are zero-padded to a whole number of chunks): XLA needs static slice sizes. Zero-
weight rows are computed like the others (their loss and gradients are exactly 0), unlike the native
path, which skips them: under XLA a dynamic compaction would cost a copy of the hidden states.

The softmax, the loss and every accumulation are float32; the matrix products run in `matmul_dtype`
(float32, or bfloat16 with the logits and G rounded to bfloat16 before the softmax and the backward
products, as the reference twin does); gradients come back in the input dtypes.
"""
import tensorflow as tf

from research.ops import backend as backend_lib

CHUNK_MB = 36  # float32 logits per chunk when chunk_rows = 0


def chunk_rows_for(num_rows: int | None, vocab_size: int | None, chunk_rows: int = 0) -> int:
    """Rows per chunk: `chunk_rows` if > 0, else about CHUNK_MB MB of float32 logits, moved down to a
    divisor of `num_rows` (when static) if one lies within a factor 2, so that no padding is needed."""
    if chunk_rows > 0:
        target = chunk_rows
    else:
        target = max(8, (CHUNK_MB << 20) // (4 * max(vocab_size or 30522, 1)))
    if num_rows is None or num_rows <= target:
        return max(1, min(target, num_rows or target))
    for rows in range(target, max(1, target // 2) - 1, -1):
        if num_rows % rows == 0:
            return rows
    return target


def masked_lm_loss_chunked(hidden, embedding_table, output_bias, labels, weights, *, training, chunk_rows,
                           matmul_dtype):
    """(per_position_loss float32 [N], predicted_ids int32 [N]) with the chunked custom gradient.

    Args:
      hidden, embedding_table, output_bias: float [N, D], [V, D], [V] of one dtype.
      labels: int32 [N], in range (checked by the caller). weights: float32 [N].
      training: produce the gradients of sum(loss) in the forward pass.
      chunk_rows: rows per chunk; 0 picks about CHUNK_MB MB of logits (see `chunk_rows_for`).
      matmul_dtype: tf.float32 or tf.bfloat16.
    """
    dtypes = [hidden.dtype, embedding_table.dtype, output_bias.dtype]
    rows = chunk_rows_for(hidden.shape[0], embedding_table.shape[0], chunk_rows)

    @tf.custom_gradient
    def head(hidden, embedding_table, output_bias):
        hidden, table, bias = [tf.cast(x, tf.float32) for x in (hidden, embedding_table, output_bias)]
        walk = _Walk(hidden, table, bias, labels, rows, matmul_dtype)
        outputs = walk.run(weights, hidden_gradient=training, table_gradients=training)

        def grad(grad_loss, *unused_grads):
            if grad_loss is None:
                grad_loss = tf.zeros_like(weights)
            scaled = weights * grad_loss
            if not training:
                gradients = walk.run(scaled, hidden_gradient=True, table_gradients=True)[2:]
            else:
                gradients = _scale_or_recompute(walk, outputs[2:], grad_loss, weights)
            return [tf.cast(g, dtype) for g, dtype in zip(gradients, dtypes)]

        return (outputs[0], outputs[1]), grad

    return head(hidden, embedding_table, output_bias)


def _scale_or_recompute(walk, unit, grad_loss, weights):
    """(d_hidden, d_table, d_bias) of sum(loss * grad_loss) from the unit gradients of sum(loss).

    The hidden-state rows scale exactly. The table and bias gradients scale by the upstream gradient
    when it is one constant c over the weighted rows; otherwise they are recomputed by a second walk
    with weights * grad_loss. Without a tf.cond (whose branches would hold the unit gradients and new
    accumulators at once): the second walk starts from c * unit (or 0 * unit) and runs 0 (or all) chunks.
    """
    unit_d_hidden, unit_d_table, unit_d_bias = unit
    active = weights != 0
    largest = tf.reduce_max(tf.where(active, grad_loss, float("-inf")))
    smallest = tf.reduce_min(tf.where(active, grad_loss, float("inf")))
    any_active = tf.reduce_any(active)
    constant = tf.logical_or(tf.logical_not(any_active), largest == smallest)
    start_scale = tf.where(constant, tf.where(any_active, largest, 0.0), 0.0)
    d_table, d_bias = walk.run(weights * grad_loss, hidden_gradient=False, table_gradients=True,
                               start=(start_scale * unit_d_table, start_scale * unit_d_bias),
                               skip=constant)[3:]
    return grad_loss[:, tf.newaxis] * unit_d_hidden, d_table, d_bias


class _Walk:
    """The loop over row chunks, set up once per head call and run once or twice (forward, recompute)."""

    def __init__(self, hidden, table, bias, labels, rows, matmul_dtype):
        self.n = tf.shape(hidden)[0]
        static_n = hidden.shape[0]
        self.vocab_size, self.width = tf.shape(table)[0], tf.shape(table)[1]
        self.static_width = table.shape[1]
        self.rows = rows
        self.num_chunks = (self.n + rows - 1) // rows if static_n is None else -(-static_n // rows)
        self.pad = None if static_n is not None and static_n % rows == 0 else self.num_chunks * rows - self.n
        self.matmul_dtype = matmul_dtype
        self.bias = bias
        self.table_mm = tf.cast(table, matmul_dtype)
        # Chunk i is row i of these: a gather of one index is a plain dynamic slice in XLA (a `tf.slice` at a
        # loop-dependent offset would make XLA pad the whole [N, D] input to guard its bounds).
        self.hidden_chunks = self._chunks(tf.cast(hidden, matmul_dtype), [self.width])
        self.label_chunks = self._chunks(labels, [])
        self.fusible_softmax = backend_lib.in_xla_context()

    def _chunks(self, x, inner):
        """x [N, ...] as [num_chunks, rows, ...], zero-padded."""
        if self.pad is not None:
            x = tf.pad(x, [[0, self.pad]] + [[0, 0]] * len(inner))
        return tf.reshape(x, tf.stack([self.num_chunks, self.rows] + inner))

    def run(self, weights, *, hidden_gradient, table_gradients, start=None, skip=None):
        """(loss [N], predicted [N], d_hidden [N, D] or None, d_table [V, D], d_bias [V]) of sum(weights * xent).

        The gradients are computed only when asked (None otherwise); `start` gives the table and bias
        gradients' initial values (zeros by default); `skip` (a bool tensor) runs no chunk at all.
        """
        rows, mm = self.rows, self.matmul_dtype
        weight_chunks = self._chunks(weights, [])

        def body(i, losses, predictions, *grads):
            hidden_c, labels_c, weights_c = (tf.gather(x, i) for x in (self.hidden_chunks, self.label_chunks,
                                                                          weight_chunks))
            logits = tf.cast(tf.matmul(hidden_c, self.table_mm, transpose_b=True), tf.float32) + self.bias
            if self.fusible_softmax:
                xent, g = _fusible_softmax_xent(logits, labels_c, weights_c, gradient=table_gradients)
            else:
                xent, softmax_minus_onehot = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(features=logits,
                                                                                           labels=labels_c)
                g = softmax_minus_onehot * weights_c[:, tf.newaxis]
            outputs = [i + 1, losses.write(i, weights_c * xent),
                       predictions.write(i, tf.argmax(logits, axis=-1, output_type=tf.int32))]
            if not table_gradients:
                return outputs
            g_mm = tf.cast(g, mm)
            grads = list(grads)
            if hidden_gradient:
                outputs.append(grads.pop(0).write(i, tf.cast(tf.matmul(g_mm, self.table_mm), tf.float32)))
            d_table, d_bias = grads
            d_table += tf.cast(tf.matmul(g_mm, hidden_c, transpose_a=True), tf.float32)
            outputs += [d_table, d_bias + tf.reduce_sum(g, axis=0)]
            return outputs

        loop_vars = [tf.constant(0), self._array(tf.float32, [rows]), self._array(tf.int32, [rows])]
        if hidden_gradient:
            loop_vars.append(self._array(tf.float32, [rows, self.static_width]))
        if table_gradients:
            loop_vars += list(start) if start is not None else [zeros([self.vocab_size, self.width]),
                                                                 zeros(tf.shape(self.bias))]
        iterations = self.num_chunks if skip is None else tf.where(skip, 0, self.num_chunks)
        # One chunk at a time: overlapping iterations would only hold more [rows, V] buffers.
        results = tf.while_loop(lambda i, *_: i < iterations, body, loop_vars, parallel_iterations=1)
        n = self.n
        loss = tf.reshape(results[1].stack(), [-1])[:n]
        predicted = tf.where(weights != 0, tf.reshape(results[2].stack(), [-1])[:n], -1)
        d_hidden = None
        if hidden_gradient:
            d_hidden = tf.reshape(results[3].stack(), tf.stack([-1, self.width]))[:n]
        if not table_gradients:
            return loss, predicted, None, None, None
        return loss, predicted, d_hidden, results[-2], results[-1]

    def _array(self, dtype, shape):
        return tf.TensorArray(dtype, size=self.num_chunks, element_shape=shape)


def zeros(shape):
    """A float32 zero accumulator that Grappler cannot fold into a constant (a constant's buffer is never
    forwarded, so the first in-place accumulation would copy it; and a folded constant inside a cond
    branch beside a while loop breaks Grappler's topological sort). XLA compiles it as zeros."""
    return tf.raw_ops.Empty(shape=tf.stack(shape) if isinstance(shape, (list, tuple)) else shape, dtype=tf.float32,
                            init=True)


def _fusible_softmax_xent(logits, labels, weights, *, gradient):
    """(xent float32 [r], not yet weighted; G = weights (softmax - onehot) float32 [r, V], or None without
    `gradient`) of logits float32 [r, V], labels int32 [r], weights float32 [r]: reductions and one
    element-wise expression over the logits, which XLA fuses best (see the module doc)."""
    largest = tf.reduce_max(logits, axis=1, keepdims=True)
    log_normalizer = largest + tf.math.log(tf.reduce_sum(tf.exp(logits - largest), axis=1, keepdims=True))
    label_logit = tf.gather(logits, labels[:, tf.newaxis], batch_dims=1)
    xent = (log_normalizer - label_logit)[:, 0]
    if not gradient:
        return xent, None
    onehot = tf.cast(tf.equal(tf.range(tf.shape(logits)[1])[tf.newaxis, :], labels[:, tf.newaxis]), tf.float32)
    return xent, (tf.exp(logits - log_normalizer) - onehot) * weights[:, tf.newaxis]
