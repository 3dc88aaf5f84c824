"""Prediction heads on top of an encoder: the masked-LM head and a [CLS] classification head."""
import keras
import tensorflow as tf

from research import ops
from research.modeling import layers

OUTPUTS = ("loss", "logits", "predictions")


def _read_float32(variable):
    """The float32 value of a float32 Keras variable, also inside a mixed-precision autocast scope."""
    try:
        from keras.src.backend import AutocastScope  # Keras exports no public way to suspend autocasting.
    except ImportError:  # pragma: no cover - a later Keras; fall back to the (possibly rounded) value.
        return tf.cast(tf.convert_to_tensor(variable), tf.float32)
    with AutocastScope(None):
        return tf.convert_to_tensor(variable)


@keras.saving.register_keras_serializable(package="research")
class MaskedLMHead(keras.layers.Layer):
    """Masked-LM head whose output weights are TIED to the encoder's word-embedding table.

    The hidden states at the masked positions are gathered (`research.ops.gather_positions`), then
    transformed (dense [hidden] -> activation -> layer norm); logits are `transformed @ tableᵀ + bias`.
    With output='loss' the logits are never materialized: `research.ops.masked_lm_loss` fuses the
    projection, softmax and cross-entropy.

    The table and the output bias are read in float32 even under a mixed policy (the dense and the
    layer norm of the transform still compute in the compute dtype). Under mixed_bfloat16 the fused
    loss and the logits run their matrix products in bfloat16 (softmax, loss, bias and accumulations
    stay float32), as every other matmul of the model does; under float32 and mixed_float16 they are
    float32.

    Args:
      embedding_table: the encoder's word-embedding variable, float32 [vocab_size, hidden].
      activation: activation of the transform.
      initializer: initializer of the transform's dense kernel (None: TruncatedNormal(stddev=0.02)).
      layer_norm_epsilon: epsilon of the transform's layer normalization.
      backend: 'auto', 'native' or 'reference', passed to the ops.
      input_width: the width of the sequence output it reads, when the table is narrower (an encoder with
        Model Garden's `embedding_width`); None: the table's width.

    Not serializable on its own (the table belongs to the encoder): `from_config` needs the table as
    `embedding_table=`; BertPretrainer's config rebuilds its head from the encoder.
    """

    def __init__(self, embedding_table, activation="gelu", initializer=None, backend="auto", input_width=None,
                 layer_norm_epsilon=layers.LAYER_NORM_EPSILON, **kwargs):
        # autocast=False: Keras would otherwise cast every float argument to the compute dtype, and
        # masked_lm_weights must stay float32. (The sublayers still autocast their own inputs.)
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)
        if backend not in ops.BACKENDS:
            raise ValueError(f"MaskedLMHead: backend must be one of {ops.BACKENDS}, got {backend!r}")
        self.embedding_table = embedding_table
        self.vocab_size, self.hidden_size = (int(d) for d in embedding_table.shape)
        self.input_width = int(input_width or self.hidden_size)
        self.activation = layers.get_activation(activation)
        self.initializer = layers.default_initializer(initializer)
        self.layer_norm_epsilon = layers.check_layer_norm_epsilon(layer_norm_epsilon)
        self.backend = backend
        # Layers holding native kernels cannot be compiled by XLA (TRAPS.md: Kernels in graphs).
        self.supports_jit = backend == "reference"
        self.dense = keras.layers.Dense(self.hidden_size, activation=self.activation,
                                        kernel_initializer=layers.clone_initializer(self.initializer),
                                        dtype=self.dtype_policy, name="transform")
        self.layer_norm = layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy,
                                                    name="transform_layer_norm")
        self.build(None)

    def build(self, input_shape=None):
        if self.built:
            return
        self.dense.build((None, self.input_width))
        self.layer_norm.build((None, self.hidden_size))
        self.output_bias = self.add_weight(name="output_bias", shape=(self.vocab_size,), initializer="zeros")
        self.built = True

    def _transform(self, sequence_output, masked_lm_positions):
        """float32 [batch * P, hidden]: the transformed hidden states at the masked positions."""
        if masked_lm_positions is None:
            gathered = sequence_output
        else:
            positions = tf.cast(masked_lm_positions, tf.int32)
            gathered = ops.gather_positions(sequence_output, positions, backend=self.backend)  # [batch, P, hidden]
        flat = tf.reshape(gathered, [-1, self.input_width])
        return tf.cast(self.layer_norm(self.dense(flat)), tf.float32)

    def call(self, sequence_output, masked_lm_positions, masked_lm_ids=None, masked_lm_weights=None,
             output="loss", training=None):
        """Applies the head.

        Args:
          sequence_output: [batch, seq_len, hidden], float32 or the compute dtype.
          masked_lm_positions: int32 [batch, P]; None when `sequence_output` already holds the hidden
            states at the masked positions, [batch, P, hidden] (an encoder called with
            `output_positions`).
          masked_lm_ids: int32 [batch, P], the original ids; required for output='loss'.
          masked_lm_weights: float32 [batch, P], 1 for real predictions and 0 for padding; None means
            all ones.
          output: 'loss' -> dict of `per_position_loss` float32 [batch, P] (weight * cross-entropy)
            and `predicted_ids` int32 [batch, P] (argmax, -1 where the weight is 0); 'logits' ->
            float32 [batch, P, vocab_size]; 'predictions' -> float32 log-probabilities
            [batch, P, vocab_size].
          training: passed to the fused loss, which prepares its gradients in the forward pass unless
            training is False (None counts as True: values are identical, only the cost differs).
        """
        if output not in OUTPUTS:
            raise ValueError(f"MaskedLMHead: output must be one of {OUTPUTS}, got {output!r}")
        leading = tf.shape(sequence_output if masked_lm_positions is None else masked_lm_positions)
        batch, num_predictions = leading[0], leading[1]
        hidden = self._transform(sequence_output, masked_lm_positions)
        matmul_dtype = tf.bfloat16 if self.compute_dtype == "bfloat16" else tf.float32
        table = _read_float32(self.embedding_table)
        bias = _read_float32(self.output_bias)
        if output == "loss":
            if masked_lm_ids is None:
                raise ValueError("MaskedLMHead: output='loss' needs masked_lm_ids")
            labels = tf.reshape(tf.cast(masked_lm_ids, tf.int32), [-1])
            if masked_lm_weights is None:
                weights = tf.ones_like(labels, tf.float32)
            else:
                weights = tf.reshape(tf.cast(masked_lm_weights, tf.float32), [-1])
            loss, predicted = ops.masked_lm_loss(hidden, table, bias, labels, weights, backend=self.backend,
                                                 training=training is not False, matmul_dtype=matmul_dtype)
            shape = [batch, num_predictions]
            return {"per_position_loss": tf.reshape(loss, shape), "predicted_ids": tf.reshape(predicted, shape)}
        logits = tf.matmul(tf.cast(hidden, matmul_dtype), tf.cast(table, matmul_dtype), transpose_b=True)
        logits = tf.cast(logits, tf.float32) + bias
        if output == "predictions":
            logits = tf.nn.log_softmax(logits, axis=-1)
        return tf.reshape(logits, [batch, num_predictions, self.vocab_size])

    def get_config(self):
        config = super().get_config()
        config.pop("autocast", None)
        config.update(activation=keras.activations.serialize(self.activation),
                      initializer=keras.initializers.serialize(self.initializer), backend=self.backend,
                      input_width=self.input_width, layer_norm_epsilon=self.layer_norm_epsilon)
        return config


@keras.saving.register_keras_serializable(package="research")
class ClassificationHead(keras.layers.Layer):
    """Logits from the [CLS] token: dense(inner_dim) + activation -> dropout -> dense(num_classes).

    call(features) -> float32 logits [batch, num_classes]. `features` is [batch, seq_len, hidden] (the
    token at `cls_token_idx` is used) or, with inner_dim=0, already pooled [batch, hidden], which goes
    straight to the output dense.

    Args:
      inner_dim: width of the inner dense; None means the width of the features, 0 means no inner
        dense (the features are used as they are).
      num_classes: number of logits (1 for regression).
      cls_token_idx: index of the [CLS] token along seq_len.
      activation: activation of the inner dense.
      dropout_rate: dropout after the inner dense.
      initializer: kernel initializer of both denses.
    """

    def __init__(self, inner_dim=None, num_classes=None, cls_token_idx=0, activation="tanh", dropout_rate=0.0,
                 initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if num_classes is None or num_classes < 1:
            raise ValueError(f"ClassificationHead: num_classes must be a positive int, got {num_classes!r}")
        self.inner_dim = inner_dim
        self.num_classes = num_classes
        self.cls_token_idx = cls_token_idx
        self.activation = layers.get_activation(activation)
        self.dropout_rate = dropout_rate
        self.initializer = keras.initializers.get(initializer)
        self.dropout = layers.Dropout(dropout_rate, dtype=self.dtype_policy)
        self.out_proj = keras.layers.Dense(num_classes, kernel_initializer=layers.clone_initializer(self.initializer),
                                           dtype=self.dtype_policy, name="logits")
        self.dense = None

    def build(self, input_shape):
        width = int(input_shape[-1])
        if self.inner_dim != 0:
            units = width if self.inner_dim is None else self.inner_dim
            self.dense = keras.layers.Dense(units, activation=self.activation,
                                            kernel_initializer=layers.clone_initializer(self.initializer),
                                            dtype=self.dtype_policy, name="pooler_dense")
            self.dense.build((None, width))
            width = units
        self.out_proj.build((None, width))
        self.built = True

    @property
    def checkpoint_items(self):
        """{'pooler_dense': the inner dense} (Model Garden's), when the head has one."""
        return {} if self.dense is None else {"pooler_dense": self.dense}

    def call(self, features, training=None):
        x = features
        if self.dense is not None:
            x = self.dropout(self.dense(features[:, self.cls_token_idx, :]), training=training)
        return tf.cast(self.out_proj(x), tf.float32)

    def get_config(self):
        config = super().get_config()
        config.update(inner_dim=self.inner_dim, num_classes=self.num_classes, cls_token_idx=self.cls_token_idx,
                      activation=keras.activations.serialize(self.activation), dropout_rate=self.dropout_rate,
                      initializer=keras.initializers.serialize(self.initializer))
        return config


@keras.saving.register_keras_serializable(package="research")
class MultiClsHeads(keras.layers.Layer):
    """Several classification heads on the [CLS] token sharing one inner dense (Model Garden's `MultiClsHeads`).

    call(features [batch, seq_len, hidden]) -> {name: float32 logits [batch, num_classes]} for each
    (name, num_classes) of `cls_list`: dense(inner_dim) + activation -> dropout -> one dense per head.

    Args:
      inner_dim: width of the shared inner dense; 0: none (the [CLS] features go straight to the heads).
      cls_list: a list of (name, num_classes).
      cls_token_idx: index of the [CLS] token along seq_len.
      activation, dropout_rate, initializer: of the inner dense, the dropout after it, and every dense.
    """

    def __init__(self, inner_dim, cls_list, cls_token_idx=0, activation="tanh", dropout_rate=0.0,
                 initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        names = [name for name, _ in cls_list]
        if not cls_list or len(set(names)) != len(names):
            raise ValueError(f"MultiClsHeads: cls_list needs unique (name, num_classes) pairs, got {cls_list!r}")
        self.inner_dim = inner_dim
        self.cls_list = [(name, int(num_classes)) for name, num_classes in cls_list]
        self.cls_token_idx = cls_token_idx
        self.activation = layers.get_activation(activation)
        self.dropout_rate = dropout_rate
        self.initializer = keras.initializers.get(initializer)
        self.dense = None
        if inner_dim:
            self.dense = keras.layers.Dense(inner_dim, activation=self.activation,
                                            kernel_initializer=layers.clone_initializer(self.initializer),
                                            dtype=self.dtype_policy, name="pooler_dense")
        self.dropout = layers.Dropout(dropout_rate, dtype=self.dtype_policy)
        self.out_projs = [keras.layers.Dense(num_classes, kernel_initializer=layers.clone_initializer(self.initializer),
                                             dtype=self.dtype_policy, name=name) for name, num_classes in self.cls_list]

    def build(self, input_shape):
        width = int(input_shape[-1])
        if self.dense is not None:
            self.dense.build((None, width))
            width = self.inner_dim
        for projection in self.out_projs:
            projection.build((None, width))
        self.built = True

    @property
    def checkpoint_items(self):
        return {} if self.dense is None else {"pooler_dense": self.dense}

    def call(self, features, training=None):
        x = features[:, self.cls_token_idx, :]
        if self.dense is not None:
            x = self.dropout(self.dense(x), training=training)
        return {name: tf.cast(projection(x), tf.float32) for (name, _), projection in zip(self.cls_list, self.out_projs)}

    def get_config(self):
        config = super().get_config()
        config.update(inner_dim=self.inner_dim, cls_list=self.cls_list, cls_token_idx=self.cls_token_idx,
                      activation=keras.activations.serialize(self.activation), dropout_rate=self.dropout_rate,
                      initializer=keras.initializers.serialize(self.initializer))
        return config
