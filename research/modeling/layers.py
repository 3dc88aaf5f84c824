"""The pieces of a post-layer-norm BERT encoder: embeddings, self-attention, transformer block.

Every layer computes in its dtype policy's compute dtype (bfloat16 under 'mixed_bfloat16') and keeps
its variables in float32; attention softmax and layer normalization run in float32.
"""
import math

import keras
import tensorflow as tf

from research import ops

LAYER_NORM_EPSILON = 1e-12  # BERT's (google-research/bert, Hugging Face, Model Garden)


def default_initializer(initializer=None):
    """The initializer to use: `initializer`, or BERT's TruncatedNormal(stddev=0.02) when None."""
    if initializer is None:
        return keras.initializers.TruncatedNormal(stddev=0.02)
    return keras.initializers.get(initializer)


def clone_initializer(initializer):
    """A fresh copy of `initializer`, so that layers never share one (and its random state)."""
    initializer = keras.initializers.get(initializer)
    return initializer.__class__.from_config(initializer.get_config())


@keras.saving.register_keras_serializable(package="research")
def gelu_tanh(x):
    """GELU's tanh approximation, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): the activation of
    google-research/bert's and Model Garden's BERT, and Hugging Face's 'gelu_new'."""
    return keras.activations.gelu(x, approximate=True)


def get_activation(identifier):
    """`keras.activations.get`, except that 'gelu' is exact GELU on `research.ops.gelu` (a one-pass kernel
    each way, same values as Keras' exact gelu to float32 round-off) and 'gelu_tanh' is `gelu_tanh`."""
    if identifier == "gelu":
        return ops.gelu
    if identifier in ("gelu_tanh", "research>gelu_tanh"):
        return gelu_tanh
    return keras.activations.get(identifier)


def check_layer_norm_epsilon(epsilon):
    """Returns `epsilon` as a float; ValueError naming it unless it is a number > 0."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
        raise ValueError(f"layer_norm_epsilon must be a number > 0, got {epsilon!r}")
    return float(epsilon)


@tf.function(experimental_attributes={"_noinline": True})
def _materialized_transpose(matrix):
    """tf.transpose(matrix) as a tensor of its own: in a function Grappler does not inline, so that its
    arithmetic optimizer cannot fold it back into the consuming matmul's transpose flag."""
    return tf.transpose(matrix)


def _matmul_with_transposed_kernel_backward(inputs, kernel):
    """inputs [rows, in] @ kernel [in, out], whose input gradient dY @ kernel^T reads a transposed copy of
    the kernel instead of passing oneDNN a transposed operand.

    For the feed-forward expansion ([hidden, 4 hidden]) in float32, oneDNN's dY W^T with W transposed by
    flag reduces over 4 hidden in ~25% more time than the same product on a contiguous W^T (BERT small
    on this project's 2-core AMD EPYC: 55-59 ms against 41-45 ms per layer, the transpose included);
    bfloat16 and wider models show no difference, and the copy costs one pass over the kernel.
    """
    @tf.custom_gradient
    def product(inputs, kernel):
        def grad(d_outputs):
            return (tf.matmul(d_outputs, _materialized_transpose(kernel)),
                    tf.matmul(inputs, d_outputs, transpose_a=True))

        return tf.matmul(inputs, kernel), grad

    return product(inputs, kernel)


@keras.saving.register_keras_serializable(package="research")
class Dense(keras.layers.Dense):
    """`keras.layers.Dense` (same weights, config and checkpoints) with two faster paths.

    - With the exact GELU of `research.ops` as activation and a bias, the bias add and the activation are
      one op each way (`research.ops.bias_gelu`), in every dtype.
    - transposed_kernel_backward: compute the input gradient from a transposed copy of the kernel (see
      `_matmul_with_transposed_kernel_backward`); used in float32 outside XLA, ignored otherwise.
    """

    def __init__(self, units, transposed_kernel_backward=False, **kwargs):
        super().__init__(units, **kwargs)
        self.transposed_kernel_backward = bool(transposed_kernel_backward)

    def call(self, inputs, training=None):
        transposed = (self.transposed_kernel_backward and inputs.dtype == tf.float32
                      and not ops.backend.in_xla_context())
        bias_gelu = self.activation is ops.gelu and self.bias is not None
        if self.lora_enabled or self.quantization_mode or not (transposed or bias_gelu):
            return super().call(inputs, training=training)
        # Keras' tensordot (reshape, matmul, reshape), then the bias as a BiasAdd (its gradient a
        # BiasAddGrad, not a broadcast add's Sum over the leading axes) or inside the fused GELU.
        flat = tf.reshape(inputs, [-1, tf.shape(inputs)[-1]])
        kernel = tf.convert_to_tensor(self.kernel)
        if transposed:
            outputs = _matmul_with_transposed_kernel_backward(flat, kernel)
        else:
            outputs = tf.matmul(flat, kernel)
        outputs = tf.reshape(outputs, tf.concat([tf.shape(inputs)[:-1], [self.units]], axis=0))
        if bias_gelu:
            return ops.bias_gelu(outputs, tf.convert_to_tensor(self.bias))
        if self.bias is not None:
            outputs = tf.nn.bias_add(outputs, tf.convert_to_tensor(self.bias))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(transposed_kernel_backward=self.transposed_kernel_backward)
        return config


@keras.saving.register_keras_serializable(package="research")
class Dropout(keras.layers.Layer):
    """Keras' `Dropout` contract (rate, seed, active only with `training=True`) on `research.ops.dropout`.

    The op regenerates its mask from the seed in the backward pass instead of saving it, and on CPU
    its kernel does in one pass what Keras' dropout does in four (draw, compare, scale, select).
    Like Keras' layer, it draws a fresh seed from its `SeedGenerator` at every call.
    """

    def __init__(self, rate, seed=None, backend="auto", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate < 1:
            raise ValueError(f"Dropout: rate must be a number in [0, 1), got {rate!r}")
        if backend not in ops.BACKENDS:
            raise ValueError(f"Dropout: backend must be one of {ops.BACKENDS}, got {backend!r}")
        self.rate = float(rate)
        self.seed = seed
        self.backend = backend
        self.supports_masking = True
        self.supports_jit = backend != "native"  # 'auto' switches to the XLA-safe twin under XLA
        self.seed_generator = keras.random.SeedGenerator(seed) if self.rate > 0 else None
        self.built = True

    def call(self, inputs, training=False):
        if training and self.rate > 0:
            return ops.dropout(inputs, self.rate, self.seed_generator.next(), backend=self.backend)
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed, backend=self.backend)
        return config


@keras.saving.register_keras_serializable(package="research")
class LayerNormalization(keras.layers.LayerNormalization):
    """Keras' `LayerNormalization` (same variables, config and checkpoints) computed by
    `research.ops.layer_norm` when it normalizes the last axis with both gamma and beta, the BERT case;
    any other configuration is Keras' own computation."""

    def __init__(self, *args, backend="auto", **kwargs):
        super().__init__(*args, **kwargs)
        if backend not in ops.BACKENDS:
            raise ValueError(f"LayerNormalization: backend must be one of {ops.BACKENDS}, got {backend!r}")
        self.backend = backend
        self.supports_jit = backend != "native"  # 'auto' switches to the XLA-safe twin under XLA

    def call(self, inputs):
        last_axis_only = list(self.axis) in ([-1], [len(inputs.shape) - 1])
        if not (last_axis_only and self.center and self.scale and not self.rms_scaling):
            return super().call(inputs)
        outputs = ops.layer_norm(inputs, self.gamma, self.beta, self.epsilon, backend=self.backend)
        return tf.cast(outputs, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(backend=self.backend)
        return config


@keras.saving.register_keras_serializable(package="research")
class BertEmbeddings(keras.layers.Layer):
    """Word + position + token-type embeddings, then layer normalization and dropout.

    call(word_ids int32 [batch, seq_len], type_ids int32 [batch, seq_len]) -> [batch, seq_len, hidden]
    in the compute dtype (`hidden_size` is the embedding width). `word_embeddings=` [batch, seq_len,
    hidden] replaces the lookup of `word_ids` (which may then be None).

    `embedding_layer`: a layer mapping word ids to [batch, seq_len, hidden] used instead of the own
    word-embedding table (Model Garden's `embedding_layer`); it must expose `.embeddings` for tying.
    """

    def __init__(self, vocab_size, hidden_size, max_sequence_length, type_vocab_size, dropout_rate=0.1,
                 initializer=None, embedding_layer=None, layer_norm_epsilon=LAYER_NORM_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_sequence_length = max_sequence_length
        self.type_vocab_size = type_vocab_size
        self.dropout_rate = dropout_rate
        self.layer_norm_epsilon = check_layer_norm_epsilon(layer_norm_epsilon)
        self.initializer = default_initializer(initializer)
        self.word_embeddings = embedding_layer if embedding_layer is not None else keras.layers.Embedding(
            vocab_size, hidden_size, embeddings_initializer=clone_initializer(self.initializer),
            dtype=self.dtype_policy, name="word_embeddings")
        self.type_embeddings = keras.layers.Embedding(
            type_vocab_size, hidden_size, embeddings_initializer=clone_initializer(self.initializer),
            dtype=self.dtype_policy, name="type_embeddings")
        self.layer_norm = LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm")
        self.dropout = Dropout(dropout_rate, dtype=self.dtype_policy)

    def build(self, input_shape=None):
        if self.built:
            return
        if not self.word_embeddings.built:
            self.word_embeddings.build((None, None))
        self.type_embeddings.build((None, None))
        self.position_embeddings = self.add_weight(
            name="position_embeddings", shape=(self.max_sequence_length, self.hidden_size),
            initializer=clone_initializer(self.initializer))
        self.layer_norm.build((None, None, self.hidden_size))
        self.built = True

    def check_sequence_length(self, word_ids):
        """Raises ValueError (static shapes) or adds an assertion (dynamic ones) when seq_len is too long.

        Returns `word_ids`, carrying the assertion in graphs with an unknown seq_len.
        """
        seq_len = word_ids.shape[1]
        if seq_len is not None:
            if seq_len > self.max_sequence_length:
                raise ValueError(f"BertEncoder: input seq_len {seq_len} exceeds max_sequence_length "
                                 f"{self.max_sequence_length}")
            return word_ids
        check = tf.debugging.assert_less_equal(
            tf.shape(word_ids)[1], self.max_sequence_length,
            message=f"BertEncoder: input seq_len exceeds max_sequence_length {self.max_sequence_length}")
        with tf.control_dependencies([check]):
            return tf.identity(word_ids)

    def call(self, word_ids, type_ids, training=None, word_embeddings=None):
        if word_embeddings is None:
            word_ids = self.check_sequence_length(word_ids)
            word_embeddings = self.word_embeddings(word_ids)
        seq_len = tf.shape(word_embeddings)[1]
        embeddings = word_embeddings + self.type_embeddings(type_ids)
        positions = tf.cast(self.position_embeddings[:seq_len], embeddings.dtype)
        embeddings = embeddings + positions[tf.newaxis]
        return self.dropout(self.layer_norm(embeddings), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                      max_sequence_length=self.max_sequence_length, type_vocab_size=self.type_vocab_size,
                      dropout_rate=self.dropout_rate, initializer=keras.initializers.serialize(self.initializer),
                      layer_norm_epsilon=self.layer_norm_epsilon)
        return config


def _attend_with_dropout(probs, value, rate, seed, backend):
    """matmul(dropout(probs), value), whose backward pass regenerates the dropped probabilities from
    `probs` and the seed instead of keeping them: one [batch, heads, seq_len, seq_len] tensor less held
    per layer between the forward and the backward pass, for one more dropout pass."""
    @tf.custom_gradient
    def attend(probs, value):
        context = tf.matmul(ops.dropout(probs, rate, seed, backend=backend), value)

        def grad(d_context):
            with tf.control_dependencies([d_context]):  # else Grappler merges it with the forward's dropout
                dropped = ops.dropout(probs, rate, seed, backend=backend)
            d_probs = ops.dropout(tf.matmul(d_context, value, transpose_b=True), rate, seed, backend=backend)
            return d_probs, tf.matmul(dropped, d_context, transpose_a=True)

        return context, grad

    return attend(probs, value)


@keras.saving.register_keras_serializable(package="research")
class SelfAttention(keras.layers.Layer):
    """Multi-head self-attention with one fused Q/K/V projection [hidden, 3 * heads * (hidden // heads)].

    call(x [batch, seq_len, hidden], input_mask int32 [batch, seq_len]) -> [batch, seq_len, hidden];
    with `query_positions` int32 [batch, Q], only those positions attend (keys and values still span the
    sequence) and the result is [batch, Q, hidden]. Scores are computed in the compute dtype; their
    1 / sqrt(head size) scale, the padding bias and the softmax in float32, in one op
    (`research.ops.attention_softmax`). (The mask goes in as int: Keras casts float arguments of a layer
    to its compute dtype.) With `return_attention_scores=True` it returns (output, the attention
    probabilities float32 [batch, heads, queries, keys]).
    """

    def __init__(self, hidden_size, num_heads, dropout_rate=0.1, initializer=None, **kwargs):
        super().__init__(**kwargs)
        if not 1 <= num_heads <= hidden_size:
            raise ValueError(f"num_attention_heads must be in [1, hidden_size={hidden_size}], got {num_heads}")
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        # As Model Garden's attention: heads of hidden_size // num_heads each; when that does not divide,
        # the heads span num_heads * head_size < hidden_size and the output projection maps back.
        self.head_size = hidden_size // num_heads
        self.dropout_rate = dropout_rate
        self.initializer = default_initializer(initializer)
        self.qkv = keras.layers.Dense(3 * num_heads * self.head_size,
                                      kernel_initializer=clone_initializer(self.initializer),
                                      dtype=self.dtype_policy, name="qkv")
        self.output_dense = keras.layers.Dense(hidden_size, kernel_initializer=clone_initializer(self.initializer),
                                               dtype=self.dtype_policy, name="output")
        self.dropout = Dropout(dropout_rate, dtype=self.dtype_policy)

    def build(self, input_shape=None):
        if self.built:
            return
        self.qkv.build((None, None, self.hidden_size))
        self.output_dense.build((None, None, self.num_heads * self.head_size))
        self.built = True

    def call(self, x, input_mask, training=None, query_positions=None, return_attention_scores=False):
        # Head-major [batch, heads, seq_len, head_size] queries, keys and values, then plain batched matmuls:
        # on CPU (oneDNN) this runs the attention core, forward and backward, ~40% faster than the einsums
        # "bqnd,bknd->bnqk" / "bnqk,bknd->bqnd", which transpose on every call and in their gradients.
        query, key, value = ops.split_heads(self.qkv(x), 3, self.num_heads)
        if query_positions is not None:
            query = tf.gather(query, tf.cast(query_positions, tf.int32), axis=2, batch_dims=1)
        scores = tf.matmul(query, key, transpose_b=True)  # [batch, heads, query, key]
        probs = ops.attention_softmax(scores, input_mask, 1.0 / math.sqrt(self.head_size))
        if training and self.dropout.rate > 0:
            context = _attend_with_dropout(probs, value, self.dropout.rate, self.dropout.seed_generator.next(),
                                           self.dropout.backend)
        else:
            context = tf.matmul(probs, value)
        output = self.output_dense(ops.merge_heads([context]))  # [batch, queries, hidden]
        if return_attention_scores:
            return output, probs  # probs: float32 [batch, heads, queries, keys]
        return output

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads, dropout_rate=self.dropout_rate,
                      initializer=keras.initializers.serialize(self.initializer))
        return config


@keras.saving.register_keras_serializable(package="research")
class TransformerBlock(keras.layers.Layer):
    """One post-layer-norm BERT layer.

    x -> attention -> dropout -> + x -> layer norm -> FFN (intermediate, activation, output) -> dropout
      -> + residual -> layer norm.
    call(x [batch, seq_len, hidden], input_mask int32 [batch, seq_len]) -> [batch, seq_len, hidden].
    With `query_positions` int32 [batch, Q] the layer runs only at those positions (they attend to the
    whole sequence): [batch, Q, hidden], equal to the full output gathered there, for about a quarter of
    the work when Q is small against seq_len (the fused Q/K/V projection still runs at every position).
    That is for a last layer whose other positions nothing reads.

    norm_first=True makes it a pre-layer-norm block (Model Garden's `norm_first`): x + attention(norm(x)),
    then + FFN(norm(.)), with no normalization of the output. `call(..., return_attention_scores=True)`
    returns (output, attention probabilities float32 [batch, heads, queries, seq_len]).
    """

    def __init__(self, hidden_size, num_heads, intermediate_size, hidden_dropout_rate=0.1,
                 attention_dropout_rate=0.1, activation="gelu", initializer=None, norm_first=False,
                 layer_norm_epsilon=LAYER_NORM_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.norm_first = bool(norm_first)
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.layer_norm_epsilon = check_layer_norm_epsilon(layer_norm_epsilon)
        self.hidden_dropout_rate = hidden_dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.activation = get_activation(activation)
        self.initializer = default_initializer(initializer)
        policy = self.dtype_policy
        self.attention = SelfAttention(hidden_size, num_heads, attention_dropout_rate,
                                       clone_initializer(self.initializer), dtype=policy, name="attention")
        self.attention_dropout = Dropout(hidden_dropout_rate, dtype=policy)
        self.attention_norm = LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=policy,
                                                 name="attention_layer_norm")
        self.intermediate = Dense(intermediate_size, activation=self.activation, transposed_kernel_backward=True,
                                  kernel_initializer=clone_initializer(self.initializer), dtype=policy,
                                  name="intermediate")
        self.ffn_output = keras.layers.Dense(hidden_size, kernel_initializer=clone_initializer(self.initializer),
                                             dtype=policy, name="output")
        self.ffn_dropout = Dropout(hidden_dropout_rate, dtype=policy)
        self.output_norm = LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=policy,
                                              name="output_layer_norm")

    def build(self, input_shape=None):
        if self.built:
            return
        shape = (None, None, self.hidden_size)
        self.attention.build(shape)
        self.attention_norm.build(shape)
        self.intermediate.build(shape)
        self.ffn_output.build((None, None, self.intermediate_size))
        self.output_norm.build(shape)
        self.built = True

    def call(self, x, input_mask, training=None, query_positions=None, return_attention_scores=False):
        if self.norm_first:
            return self._call_norm_first(x, input_mask, training, query_positions, return_attention_scores)
        attended = self.attention(x, input_mask, training=training, query_positions=query_positions,
                                  return_attention_scores=return_attention_scores)
        if return_attention_scores:
            attended, scores = attended
        attended = self.attention_dropout(attended, training=training)
        if query_positions is not None:
            x = ops.gather_positions(x, tf.cast(query_positions, tf.int32))
        x = self.attention_norm(x + attended)
        transformed = self.ffn_dropout(self.ffn_output(self.intermediate(x)), training=training)
        output = self.output_norm(x + transformed)
        return (output, scores) if return_attention_scores else output

    def _call_norm_first(self, x, input_mask, training, query_positions, return_attention_scores):
        attended = self.attention(self.attention_norm(x), input_mask, training=training,
                                  query_positions=query_positions, return_attention_scores=return_attention_scores)
        if return_attention_scores:
            attended, scores = attended
        if query_positions is not None:
            x = ops.gather_positions(x, tf.cast(query_positions, tf.int32))
        x = x + self.attention_dropout(attended, training=training)
        output = x + self.ffn_dropout(self.ffn_output(self.intermediate(self.output_norm(x))), training=training)
        return (output, scores) if return_attention_scores else output

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads,
                      intermediate_size=self.intermediate_size, hidden_dropout_rate=self.hidden_dropout_rate,
                      attention_dropout_rate=self.attention_dropout_rate,
                      activation=keras.activations.serialize(self.activation),
                      initializer=keras.initializers.serialize(self.initializer),
                      layer_norm_epsilon=self.layer_norm_epsilon)
        config.update(norm_first=self.norm_first)
        return config
