"""Fused masked-LM output head: a chunked native path (`Research>SoftmaxXentChunk`) and its pure-TensorFlow twin.

    logits = hidden @ embedding_table^T + output_bias                      # [N, V], never built natively
    per_position_loss[i] = weights[i] * (logsumexp(logits[i]) - logits[i, labels[i]])
    predicted_ids[i] = argmax(logits[i]) (lowest index on ties), or -1 where weights[i] == 0

Rows whose weight is 0 are skipped entirely by the native path (no matrix product touches them): their
loss is 0, their gradients are exactly 0 and, having no logits, their predicted id is -1 (the twin
returns -1 there too, so both agree everywhere).

The native path walks the rows with a non-zero weight in chunks of `chunk_rows`, each against the whole
vocabulary (an exact softmax per chunk; memory O(chunk_rows * V + V * D), never O(N * V)), inside a
`tf.while_loop`: the matrix products are TensorFlow matmuls (oneDNN, much faster here than the
OpenBLAS the kernel used before) and `Research>SoftmaxXentChunk` does the element-wise part of a chunk
(bias, max/argmax, exp, loss, and G = w (softmax - onehot) written over the logits buffer). A chunk's
logits are computed transposed, [V, rows]: then the table gradient's product dE += G^T H_c needs no
transpose, and oneDNN adds it into the [V, D] accumulator's buffer in place (Grappler fuses
matmul + bias_add + add into one oneDNN product with a sum post-op), so the accumulation costs neither
a [V, D] temporary nor a pass of its own. Where that fusion is unavailable (bfloat16 products, oneDNN
off) the accumulator grows by vocabulary slices in place (`Research>AccumulateRows`), each slice of
G^T a contiguous block of rows. Chunks of CHUNK_MB keep the products near oneDNN's peak (smaller
chunks lose 10-20% of it) and the whole step within 10% of the [N, V] logits' memory at N = 19456.
With `training=True` (the default) the same pass also produces the gradients of sum(loss): the
custom gradient multiplies the hidden-state rows by the upstream gradient exactly and, when the
upstream gradient is one constant over the rows with a non-zero weight (any loss of the form
`sum(loss) * c`, such as `sum(loss) / sum(weights)`), scales the table and bias gradients by it;
otherwise it recomputes them exactly in a second pass. That is three matrix products for a training
step instead of four. `training=False` skips the gradient work (inference, evaluation); a gradient
taken through it anyway is correct, computed by the recomputing pass.

The softmax, the loss and every accumulation are float32 whatever the input dtype (float32, bfloat16,
float16); gradients come back in the input dtypes. The matrix products run in `matmul_dtype`:
float32 by default, or bfloat16 (operands rounded to bfloat16, oneDNN accumulating in float32, the
logits and G rounded to bfloat16 before the softmax and the backward products), which is how a
mixed_bfloat16 model computes every other matmul, and about twice as fast on CPUs with AVX512-BF16.
Model Garden's head under mixed_bfloat16 computes its logits, softmax input included, in bfloat16.
"""
import os

import tensorflow as tf
from tensorflow.python.util import _pywrap_util_port


from research.ops import backend as backend_lib
from research.ops.masked_lm_loss_chunked import masked_lm_loss_chunked, zeros

OP_NAME = "Research>SoftmaxXentChunk"
CHUNK_MB = 48  # float32 logits per chunk when chunk_rows = 0
SLICE_MB = 12  # float32 table-gradient rows per update by slices (where oneDNN cannot add in place)
_KERNEL_DTYPES = (tf.float32, tf.bfloat16, tf.float16)
MATMUL_DTYPES = (tf.float32, tf.bfloat16)
# The shared switch plus 'chunked': the head in plain TensorFlow ops (masked_lm_loss_chunked.py), which
# 'auto' runs wherever the kernel cannot (XLA, TPU, GPU, no library).
BACKENDS = backend_lib.BACKENDS + ("chunked",)


def masked_lm_loss(hidden, embedding_table, output_bias, labels, weights, *, training: bool = True,
                   backend: str = "auto", chunk_rows: int = 0, matmul_dtype=tf.float32):
    """Per-position weighted softmax cross-entropy and argmax of a tied-embedding output layer.

    Args:
      hidden: float [N, D], the transformed hidden states at the predicted positions.
      embedding_table: float [V, D].
      output_bias: float [V].
      labels: int32 [N], each in [0, V) (InvalidArgumentError naming the row and value otherwise).
      weights: float32 [N]; 0 marks padding rows.
      training: also compute the gradients in the forward pass (cheaper when a gradient follows);
        False for inference and evaluation. Values are identical either way.
      backend: 'native' (the kernel), 'chunked' (the same chunked head in plain TensorFlow ops,
        XLA-compilable, any device), 'reference' (explicit [N, V] logits, for tests) or 'auto':
        native where the kernel can run, chunked elsewhere (see research/ops/backend.py).
      chunk_rows: rows per chunk of the native and chunked paths; 0 picks about CHUNK_MB MB of
        logits per chunk (masked_lm_loss_chunked.CHUNK_MB for the chunked one).
      matmul_dtype: tf.float32 or tf.bfloat16, the dtype of the matrix products (see the module doc).

    Returns:
      (per_position_loss float32 [N], predicted_ids int32 [N]).
    """
    matmul_dtype = tf.as_dtype(matmul_dtype)
    if matmul_dtype not in MATMUL_DTYPES:
        raise ValueError(f"masked_lm_loss: matmul_dtype must be one of {[d.name for d in MATMUL_DTYPES]}, "
                         f"got {matmul_dtype.name}")
    hidden, embedding_table, output_bias = _common_dtype(hidden, embedding_table, output_bias)
    _check_static_shapes(hidden, embedding_table, output_bias)
    labels = tf.cast(labels, tf.int32)
    weights = tf.cast(weights, tf.float32)
    if backend not in BACKENDS:
        raise ValueError(f"masked_lm_loss: backend must be one of {BACKENDS}, got {backend!r}")
    library = None
    if backend != "chunked":
        library = backend_lib.resolve(OP_NAME, backend, fallback="reference" if backend == "reference" else "chunked")
    if library is None and backend == "reference":
        return _masked_lm_loss_reference(hidden, embedding_table, output_bias, labels, weights, matmul_dtype)
    if library is None:
        with tf.control_dependencies([_check_labels_in_range(labels, tf.shape(embedding_table)[0])]):
            labels = tf.identity(labels)
        return masked_lm_loss_chunked(hidden, embedding_table, output_bias, labels, weights, training=bool(training),
                                      chunk_rows=int(chunk_rows), matmul_dtype=matmul_dtype)
    return _masked_lm_loss_native(library, hidden, embedding_table, output_bias, labels, weights,
                                  training=bool(training), chunk_rows=int(chunk_rows), matmul_dtype=matmul_dtype)


def _masked_lm_loss_native(library, hidden, embedding_table, output_bias, labels, weights, *, training, chunk_rows,
                           matmul_dtype):
    """The chunked path; the registered gradient is a closure over the forward pass's unit gradients."""
    dtypes = [hidden.dtype, embedding_table.dtype, output_bias.dtype]
    with tf.control_dependencies([_check_labels_in_range(labels, tf.shape(embedding_table)[0])]):
        labels = tf.identity(labels)

    @tf.custom_gradient
    def head(hidden, embedding_table, output_bias):
        hidden, table, bias = [tf.cast(x, tf.float32) for x in (hidden, embedding_table, output_bias)]
        rows = _rows_per_chunk(chunk_rows, tf.shape(table)[0])
        outputs = _chunked(library, hidden, table, bias, labels, weights, rows, matmul_dtype, gradients=training)
        loss, predicted = outputs[:2]

        def grad(grad_loss, *unused_grads):
            unit = outputs[2:] if training else None
            gradients = _upstream_gradients(
                grad_loss, weights, unit,
                lambda scaled: _chunked(library, hidden, table, bias, labels, scaled, rows, matmul_dtype,
                                        gradients=True)[2:])
            return [tf.cast(g, dtype) for g, dtype in zip(gradients, dtypes)]

        return (loss, predicted), grad

    loss, predicted = head(hidden, embedding_table, output_bias)
    return loss, predicted


def _upstream_gradients(grad_loss, weights, unit, recompute):
    """(d_hidden, d_table, d_bias) of sum(loss * grad_loss), float32, for both chunked paths.

    `unit` is the forward pass's gradients of sum(loss) (None when it skipped them); `recompute(w)`
    runs the pass again with row weights `w` and returns its gradients. The hidden-state rows scale
    exactly by the upstream gradient; the table and bias gradients scale by it when it is one constant
    over the rows with a non-zero weight, and are recomputed otherwise.
    """
    if grad_loss is None:
        grad_loss = tf.zeros_like(weights)
    if unit is None:
        return recompute(weights * grad_loss)
    unit_d_hidden, unit_d_table, unit_d_bias = unit
    d_hidden = grad_loss[:, tf.newaxis] * unit_d_hidden
    active = weights != 0
    largest = tf.reduce_max(tf.where(active, grad_loss, float("-inf")))
    smallest = tf.reduce_min(tf.where(active, grad_loss, float("inf")))
    any_active = tf.reduce_any(active)
    constant = tf.logical_or(tf.logical_not(any_active), largest == smallest)
    scale = tf.where(any_active, largest, 0.0)
    d_table, d_bias = tf.cond(constant, lambda: (scale * unit_d_table, scale * unit_d_bias),
                              lambda: tuple(recompute(weights * grad_loss)[1:]))
    return d_hidden, d_table, d_bias


def _chunk_bytes():
    return int(os.environ.get("RESEARCH_XENT_CHUNK_MB", CHUNK_MB)) << 20  # the variable: for measurements


def _rows_per_chunk(chunk_rows, vocab_size):
    if chunk_rows > 0:
        return tf.constant(chunk_rows, tf.int32)
    return tf.maximum(8, _chunk_bytes() // (4 * tf.maximum(vocab_size, 1)))


def _accumulates_in_place(matmul_dtype):
    """Whether `bias_add(matmul(a, b), 0) + accumulator` runs as one oneDNN product adding into the
    accumulator's buffer: Grappler's remapper fuses that pattern when oneDNN is enabled and the dtypes
    agree. Otherwise the table gradient is accumulated by vocabulary slices (`Research>AccumulateRows`).
    Run eagerly, or with Grappler's remapping turned off, the fused form still computes the same sum,
    only out of place (one [V, D] temporary per chunk); tests/ops/test_masked_lm_loss.py holds a
    tf.function step to the in-place memory."""
    return matmul_dtype == tf.float32 and _pywrap_util_port.IsMklEnabled()


def _chunked(library, hidden, table, bias, labels, weights, rows, matmul_dtype, *, gradients):
    """(loss [N], predicted [N]) and, with gradients, (d_hidden [N, D], d_table [V, D], d_bias [V]) of sum(loss).

    Rows with a non-zero weight are gathered, then walked in chunks of `rows`, one at a time, in the
    transposed layout: L = E H_c^T ([V, R], TensorFlow's matmul: oneDNN), Research>SoftmaxXentChunk for
    the element-wise part (G^T = w (softmax - onehot) over the logits buffer, and its row sums),
    dH_c = (G^T)^T E, and dE += G^T H_c, an untransposed product that oneDNN adds into the accumulator
    in place (see `_accumulates_in_place`; otherwise by vocabulary slices, whose slices of G^T are
    contiguous rows). The products run in `matmul_dtype`, everything else in float32.
    """
    n = tf.shape(hidden)[0]
    vocab_size, width = tf.shape(table)[0], tf.shape(table)[1]
    active = tf.cast(tf.where(weights != 0)[:, 0], tf.int32)
    num_active = tf.size(active)
    all_active = tf.equal(num_active, n)
    hidden_a = tf.cond(all_active, lambda: hidden, lambda: tf.gather(hidden, active))
    labels_a, weights_a = tf.gather(labels, active), tf.gather(weights, active)
    num_chunks = (num_active + rows - 1) // rows
    divisor = tf.maximum(num_chunks, 1)
    rows = (num_active + divisor - 1) // divisor  # equal chunks, no small tail
    in_place = _accumulates_in_place(matmul_dtype)
    slices = None if in_place else _vocabulary_slices(table)
    table_mm = tf.cast(table, matmul_dtype)
    hidden_mm = tf.cast(hidden_a, matmul_dtype)
    # The logits product reads H_c^T as a contiguous [D, rows] block, sliced from one transposed copy:
    # oneDNN's E H_c^T with a transposed operand runs 5-20% slower at a few hundred rows (the slice also
    # keeps Grappler from folding the transpose back into the product's transpose flag).
    hidden_t = tf.transpose(hidden_mm)

    def product(a, b, **kwargs):
        return tf.cast(tf.matmul(a, b, **kwargs), tf.float32)

    def array(dtype):
        return tf.TensorArray(dtype, size=num_chunks, infer_shape=False, element_shape=[None])

    def accumulate_table_gradient(d_table, g_t, hidden_c):
        if in_place:
            return tf.nn.bias_add(tf.matmul(g_t, hidden_c), zero_width) + d_table
        for v0, v1 in slices or [(0, vocab_size)]:
            with tf.control_dependencies([d_table]):  # one slice's product alive at a time
                update = product(g_t[v0:v1], hidden_c)
            d_table = library.research_accumulate_rows(d_table, update, v0)
        return d_table

    def body(i, losses, predictions, *grads):
        start = i * rows
        size = tf.minimum(rows, num_active - start)
        hidden_c = tf.slice(hidden_mm, [start, 0], [size, -1])
        transposed_logits = product(table_mm, tf.slice(hidden_t, [0, start], [-1, size]))
        loss_c, predicted_c, g_t, d_bias_c = library.research_softmax_xent_chunk(
            transposed_logits, bias, tf.slice(labels_a, [start], [size]), tf.slice(weights_a, [start], [size]),
            compute_gradients=gradients)
        outputs = [i + 1, losses.write(i, loss_c), predictions.write(i, predicted_c)]
        if gradients:
            d_hidden, d_table, d_bias = grads
            g_t = tf.cast(g_t, matmul_dtype)
            d_hidden = library.research_accumulate_rows(d_hidden, product(g_t, table_mm, transpose_a=True), start)
            outputs += [d_hidden, accumulate_table_gradient(d_table, g_t, hidden_c), d_bias + d_bias_c]
        return outputs

    loop_vars = [tf.constant(0), array(tf.float32), array(tf.int32)]
    if gradients:
        with tf.control_dependencies([hidden]):  # not before the head runs: nothing else orders it
            d_table = zeros([vocab_size, width])
        with tf.control_dependencies([d_table]):  # the larger first: the allocator then wastes less
            d_hidden = zeros([num_active, width])
        zero_width = zeros([width])
        loop_vars += [d_hidden, d_table, tf.zeros_like(bias)]
    # One iteration at a time: overlapping ones would only hold more [V, rows] buffers.
    results = tf.while_loop(lambda i, *_: i < num_chunks, body, loop_vars, parallel_iterations=1)
    scatter_rows = active[:, tf.newaxis]
    loss = tf.scatter_nd(scatter_rows, _concat(results[1]), [n])
    predicted = tf.tensor_scatter_nd_update(tf.fill([n], -1), scatter_rows, _concat(results[2]))
    if not gradients:
        return loss, predicted
    # ScatterNd refuses an empty [n, 0] output even with nothing to scatter: zero width needs no scatter.
    d_hidden = tf.cond(all_active, lambda: results[3],
                       lambda: tf.cond(tf.equal(width, 0), lambda: tf.zeros(tf.stack([n, width])),
                                       lambda: tf.scatter_nd(scatter_rows, results[3], tf.stack([n, width]))))
    return loss, predicted, d_hidden, results[4], results[5]


def _concat(array):
    """TensorArray.concat of vectors, empty for zero elements."""
    return tf.cond(array.size() > 0, array.concat, lambda: tf.zeros([0], array.dtype))


def _common_dtype(hidden, embedding_table, output_bias):
    tensors = [tf.convert_to_tensor(t) for t in (hidden, embedding_table, output_bias)]
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) == 1 and tensors[0].dtype in _KERNEL_DTYPES:
        return tensors
    return [tf.cast(t, tf.float32) for t in tensors]


def _check_static_shapes(hidden, embedding_table, output_bias):
    """ValueError naming both sizes when the known widths (D) or vocabulary sizes (V) disagree."""
    width, table_width = hidden.shape[-1], embedding_table.shape[-1]
    if width is not None and table_width is not None and width != table_width:
        raise ValueError(f"masked_lm_loss: hidden is [N, {width}] but embedding_table is "
                         f"{embedding_table.shape.as_list()}: its width must be the hidden width {width}")
    vocab, bias_size = embedding_table.shape[0], output_bias.shape[0]
    if vocab is not None and bias_size is not None and vocab != bias_size:
        raise ValueError(f"masked_lm_loss: output_bias has {bias_size} entries but embedding_table has {vocab} "
                         "rows: one bias per vocabulary id is needed")


def _check_labels_in_range(labels, vocab_size):
    """An assertion naming the first label outside [0, vocab_size), its row and value."""
    bad = tf.logical_or(labels < 0, labels >= vocab_size)
    flat_bad = tf.concat([tf.cast(bad, tf.int32), [0]], axis=0)  # a sentinel for empty batches
    first = tf.argmax(flat_bad, output_type=tf.int32)
    return tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(bad)),
        ["labels outside [0, vocab_size =", vocab_size, "): first at row", first, "value",
         tf.gather(tf.concat([labels, [0]], axis=0), first)])


def _masked_lm_loss_reference(hidden, embedding_table, output_bias, labels, weights, matmul_dtype):
    """Pure-TensorFlow twin (XLA-compilable): explicit [N, V] float32 logits."""
    vocab_size = tf.shape(embedding_table)[0]
    with tf.control_dependencies([_check_labels_in_range(labels, vocab_size)]):
        labels = tf.identity(labels)
    logits = tf.matmul(tf.cast(hidden, matmul_dtype), tf.cast(embedding_table, matmul_dtype), transpose_b=True)
    logits = tf.cast(logits, tf.float32) + tf.cast(output_bias, tf.float32)
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    loss = weights * xent
    predicted = tf.where(weights != 0, tf.argmax(logits, axis=-1, output_type=tf.int32), -1)
    return loss, predicted


def _vocabulary_slices(table):
    """Static [v0, v1) ranges splitting the table gradient's per-chunk product into parts of about SLICE_MB."""
    vocab_size, width = table.shape
    if vocab_size is None or width is None:
        return None
    parts = max(1, min(vocab_size, -(-vocab_size * width * 4 // (SLICE_MB << 20))))
    return [(vocab_size * p // parts, vocab_size * (p + 1) // parts) for p in range(parts)]
