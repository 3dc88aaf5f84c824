"""BertEncoder: the post-layer-norm BERT transformer stack (Devlin et al., 2018)."""
import keras
import tensorflow as tf

from research import ops
from research.data import features
from research.modeling import layers


@keras.saving.register_keras_serializable(package="research")
class BertEncoder(keras.Model):
    """A BERT encoder: embeddings, `num_layers` transformer blocks, and a [CLS] pooler.

    `activation` is the feed-forward activation: 'gelu' (exact, erf), 'gelu_tanh' (the tanh
    approximation of google-research/bert and Model Garden) or any Keras activation; `layer_norm_epsilon`
    is that of every layer normalization (BERT's 1e-12 by default).

    Inputs: a dict of `input_word_ids`, `input_mask` (1 real, 0 padding) and `input_type_ids`, each
    int32 [batch, seq_len] with seq_len <= max_sequence_length (a list or tuple in that order also works).

    Outputs: a dict of
      `sequence_output` [batch, seq_len, hidden_size], the last layer;
      `pooled_output` [batch, hidden_size], dense + tanh on the [CLS] (first) token of the last layer;
      `encoder_outputs`, a list of num_layers tensors [batch, seq_len, hidden_size], one per layer;
    all in the compute dtype of the dtype policy (bfloat16 under 'mixed_bfloat16': cast to float32
    before a loss). Variables are created at construction, so `get_embedding_table()` works at once.

    `call(inputs, output_positions=positions)` (int32 [batch, P]) runs the last layer only at those
    positions and the [CLS] token (its keys and values still span the sequence): `sequence_output` and
    the last of `encoder_outputs` are then [batch, P, hidden], the full outputs gathered at `positions`,
    and `pooled_output` is unchanged. This is Model Garden's `output_range` for scattered positions: a
    masked-LM loss reads only the masked positions, and the rest of the last layer is work nothing uses.
    """

    def __init__(self, vocab_size, hidden_size=768, num_layers=12, num_attention_heads=12, intermediate_size=3072,
                 max_sequence_length=512, type_vocab_size=2, hidden_dropout_rate=0.1, attention_dropout_rate=0.1,
                 activation="gelu", initializer=None, layer_norm_epsilon=layers.LAYER_NORM_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_sequence_length = max_sequence_length
        self.type_vocab_size = type_vocab_size
        self.hidden_dropout_rate = hidden_dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.activation = layers.get_activation(activation)
        self.initializer = layers.default_initializer(initializer)
        self.layer_norm_epsilon = layers.check_layer_norm_epsilon(layer_norm_epsilon)
        policy = self.dtype_policy
        self.embeddings = layers.BertEmbeddings(
            vocab_size, hidden_size, max_sequence_length, type_vocab_size, hidden_dropout_rate,
            layers.clone_initializer(self.initializer), layer_norm_epsilon=self.layer_norm_epsilon, dtype=policy,
            name="embeddings")
        self.transformer_layers = [
            layers.TransformerBlock(hidden_size, num_attention_heads, intermediate_size, hidden_dropout_rate,
                                    attention_dropout_rate, self.activation,
                                    layers.clone_initializer(self.initializer),
                                    layer_norm_epsilon=self.layer_norm_epsilon, dtype=policy,
                                    name=f"transformer_layer_{i}")
            for i in range(num_layers)]
        # tf.train.Checkpoint does not see into Keras' tracked lists: one attribute per block makes each
        # a checkpoint dependency (the .keras format saves each block once either way).
        for i, block in enumerate(self.transformer_layers):
            setattr(self, f"transformer_layer_{i}", block)
        self.pooler = keras.layers.Dense(hidden_size, activation="tanh",
                                         kernel_initializer=layers.clone_initializer(self.initializer),
                                         dtype=policy, name="pooler")
        self.build(None)

    def build(self, input_shape=None):
        shape = (None, None, self.hidden_size)
        self.embeddings.build(None)
        for block in self.transformer_layers:
            block.build(shape)
        self.pooler.build((None, self.hidden_size))
        self.built = True

    def get_embedding_table(self):
        """The word-embedding variable, float32 [vocab_size, hidden_size]."""
        return self.embeddings.word_embeddings.embeddings

    def call(self, inputs, training=None, output_positions=None):
        if isinstance(inputs, (list, tuple)):
            word_ids, input_mask, type_ids = inputs
        else:
            word_ids = inputs[features.INPUT_WORD_IDS]
            input_mask = inputs[features.INPUT_MASK]
            type_ids = inputs[features.INPUT_TYPE_IDS]
        word_ids = tf.cast(word_ids, tf.int32)
        type_ids = tf.cast(type_ids, tf.int32)
        x = self.embeddings(word_ids, type_ids, training=training)
        input_mask = tf.cast(input_mask, tf.int32)
        if output_positions is None:
            rows = None
        else:
            # The [CLS] row first, for the pooler; the requested positions after it.
            output_positions = tf.cast(output_positions, tf.int32)
            cls_rows = tf.zeros([tf.shape(output_positions)[0], 1], tf.int32)
            rows = tf.concat([cls_rows, output_positions], axis=1)
            if not self.transformer_layers:
                x = ops.gather_positions(x, rows)
        encoder_outputs = []
        last = len(self.transformer_layers) - 1
        for i, block in enumerate(self.transformer_layers):
            x = block(x, input_mask, training=training, query_positions=rows if i == last else None)
            encoder_outputs.append(x)
        pooled_output = self.pooler(x[:, 0, :])
        if rows is not None:
            x = x[:, 1:, :]
            if encoder_outputs:
                encoder_outputs[-1] = x
        return {"sequence_output": x, "pooled_output": pooled_output, "encoder_outputs": encoder_outputs}

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                      num_attention_heads=self.num_attention_heads, intermediate_size=self.intermediate_size,
                      max_sequence_length=self.max_sequence_length, type_vocab_size=self.type_vocab_size,
                      hidden_dropout_rate=self.hidden_dropout_rate,
                      attention_dropout_rate=self.attention_dropout_rate,
                      activation=keras.activations.serialize(self.activation),
                      initializer=keras.initializers.serialize(self.initializer),
                      layer_norm_epsilon=self.layer_norm_epsilon)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
