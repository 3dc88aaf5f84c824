"""BertEncoder: the BERT transformer stack (Devlin et al., 2018), with Model Garden's constructor and outputs."""
import keras
import tensorflow as tf

from research import ops
from research.data import features
from research.modeling import layers

# Our earlier keyword names, still accepted (gin files bind them): ours -> Model Garden's.
_ALIASES = {"intermediate_size": "inner_dim", "activation": "inner_activation",
            "hidden_dropout_rate": "output_dropout", "dropout_rate": "output_dropout",
            "attention_dropout_rate": "attention_dropout"}
INPUT_WORD_EMBEDDINGS = "input_word_embeddings"


def _encoder_inputs():
    """Model Garden's symbolic inputs: int32 [batch, seq_len] each."""
    return {name: keras.Input(shape=(None,), dtype="int32", name=name)
            for name in (features.INPUT_WORD_IDS, features.INPUT_MASK, features.INPUT_TYPE_IDS)}


@keras.saving.register_keras_serializable(package="research")
class BertEncoder(keras.Model):
    """A BERT encoder: embeddings, `num_layers` transformer blocks, and a [CLS] pooler.

    The constructor is Model Garden's `BertEncoder` / `BertEncoderV2` (same keywords, same meaning):
      vocab_size, hidden_size, num_layers, num_attention_heads, max_sequence_length, type_vocab_size
      (16 by default, as Model Garden's), inner_dim (FFN width), inner_activation ('gelu' is exact GELU on
      `research.ops.gelu`; 'gelu_tanh' the tanh approximation of google-research/bert and Model Garden),
      output_dropout, attention_dropout, initializer (TruncatedNormal(0.02) when
      None), output_range, embedding_width, embedding_layer, norm_first, dict_outputs,
      return_all_encoder_outputs, return_attention_scores, return_word_embeddings; and
      layer_norm_epsilon, that of every layer normalization (BERT's 1e-12 by default).
    Our earlier names stay accepted: intermediate_size, activation, hidden_dropout_rate, attention_dropout_rate.

    Inputs: a dict of `input_word_ids`, `input_mask` (1 real, 0 padding) and `input_type_ids`, each
    int32 [batch, seq_len] with seq_len <= max_sequence_length (a list or tuple in that order also
    works); `input_word_embeddings` [batch, seq_len, embedding_width] may replace `input_word_ids`.

    Outputs (dict_outputs=True, the default, as Model Garden's BertEncoderV2): a dict of
      `sequence_output` float32 [batch, seq_len, hidden_size], the last layer;
      `pooled_output` [batch, hidden_size] in the compute dtype, dense + tanh on the [CLS] (first) token;
      `encoder_outputs`, a list of num_layers float32 tensors [batch, seq_len, hidden_size];
      `attention_scores` (return_attention_scores) a list of num_layers float32 [batch, heads, seq_len, seq_len];
      `word_embeddings` (return_word_embeddings) the embedding output [batch, seq_len, hidden_size].
    As in Model Garden, sequence and layer outputs are float32 under a mixed policy (the layers compute in
    the compute dtype; only the returned tensors are cast). dict_outputs=False gives Model Garden's
    BertEncoder list: [sequence_output (or encoder_outputs with return_all_encoder_outputs), pooled_output]
    (+ [attention_scores]).

    output_range=R runs the last layer at the first R positions only: sequence_output is [batch, R, hidden].
    `call(inputs, output_positions=positions)` (int32 [batch, P]) is the same for scattered positions:
    the last layer runs only at those positions and the [CLS] token (its keys and values still span the
    sequence), `sequence_output` and the last of `encoder_outputs` are [batch, P, hidden], the full
    outputs gathered at `positions`, and `pooled_output` is unchanged: a masked-LM loss reads only the
    masked positions, and the rest of the last layer is work nothing uses.

    Variables are created at construction, so `get_embedding_table()` works at once.
    """

    def __init__(self, vocab_size, hidden_size=768, num_layers=12, num_attention_heads=12, max_sequence_length=512,
                 type_vocab_size=16, inner_dim=3072, inner_activation="gelu", output_dropout=0.1,
                 attention_dropout=0.1, initializer=None, output_range=None, embedding_width=None,
                 embedding_layer=None, norm_first=False, dict_outputs=True, return_all_encoder_outputs=False,
                 return_attention_scores=False, return_word_embeddings=False,
                 layer_norm_epsilon=layers.LAYER_NORM_EPSILON, **kwargs):
        for ours, theirs in _ALIASES.items():
            if ours in kwargs:
                value = kwargs.pop(ours)
                if theirs == "inner_dim":
                    inner_dim = value
                elif theirs == "inner_activation":
                    inner_activation = value
                elif theirs == "output_dropout":
                    output_dropout = value
                else:
                    attention_dropout = value
        super().__init__(**kwargs)
        if output_range is not None and (not isinstance(output_range, int) or output_range == 0):
            raise ValueError(f"BertEncoder: output_range must be None or a positive int, got {output_range!r}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = inner_dim
        self.max_sequence_length = max_sequence_length
        self.type_vocab_size = type_vocab_size
        self.hidden_dropout_rate = output_dropout
        self.attention_dropout_rate = attention_dropout
        self.activation = layers.get_activation(inner_activation)
        self.initializer = layers.default_initializer(initializer)
        self.output_range = None if output_range is None or output_range < 0 else output_range
        self.embedding_width = embedding_width or hidden_size
        self.norm_first = bool(norm_first)
        self.dict_outputs = bool(dict_outputs)
        self.return_all_encoder_outputs = bool(return_all_encoder_outputs)
        self.return_attention_scores = bool(return_attention_scores)
        self.return_word_embeddings = bool(return_word_embeddings)
        self._embedding_layer_config = embedding_layer
        self.layer_norm_epsilon = layers.check_layer_norm_epsilon(layer_norm_epsilon)
        policy = self.dtype_policy
        self.embeddings = layers.BertEmbeddings(
            vocab_size, self.embedding_width, max_sequence_length, type_vocab_size, output_dropout,
            layers.clone_initializer(self.initializer), embedding_layer=embedding_layer,
            layer_norm_epsilon=self.layer_norm_epsilon, dtype=policy, name="embeddings")
        if self.embedding_width != hidden_size:
            self._embedding_projection = keras.layers.Dense(
                hidden_size, kernel_initializer=layers.clone_initializer(self.initializer), dtype=policy,
                name="embedding_projection")
        self.transformer_layers = [
            layers.TransformerBlock(hidden_size, num_attention_heads, inner_dim, output_dropout, attention_dropout,
                                    self.activation, layers.clone_initializer(self.initializer),
                                    norm_first=self.norm_first, layer_norm_epsilon=self.layer_norm_epsilon,
                                    dtype=policy, name=f"transformer_layer_{i}")
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
        if self.built:  # Model Garden's users may call build() again, with the input shapes
            return
        self.embeddings.build(None)
        if hasattr(self, "_embedding_projection"):
            self._embedding_projection.build((None, None, self.embedding_width))
        shape = (None, None, self.hidden_size)
        for block in self.transformer_layers:
            block.build(shape)
        self.pooler.build((None, self.hidden_size))
        self.built = True

    @property
    def inputs(self):
        """Model Garden's symbolic inputs: a dict of three int32 [batch, seq_len] keras.Input."""
        return _encoder_inputs()

    @property
    def pooler_layer(self):
        """The pooler dense layer after the transformer layers."""
        return self.pooler

    def get_embedding_table(self):
        """The word-embedding variable, float32 [vocab_size, embedding_width]."""
        return self.embeddings.word_embeddings.embeddings

    def get_embedding_layer(self):
        """The layer mapping word ids to embeddings [batch, seq_len, embedding_width]."""
        return self.embeddings.word_embeddings

    def call(self, inputs, training=None, output_positions=None):
        word_embeddings = None
        if isinstance(inputs, (list, tuple)):
            word_ids, input_mask, type_ids = inputs
        else:
            word_ids = inputs.get(features.INPUT_WORD_IDS)
            input_mask = inputs[features.INPUT_MASK]
            type_ids = inputs[features.INPUT_TYPE_IDS]
            word_embeddings = inputs.get(INPUT_WORD_EMBEDDINGS)
        if word_ids is not None and word_embeddings is None:
            word_ids = tf.cast(word_ids, tf.int32)
        type_ids = tf.cast(type_ids, tf.int32)
        x = self.embeddings(word_ids, type_ids, training=training, word_embeddings=word_embeddings)
        if hasattr(self, "_embedding_projection"):
            x = self._embedding_projection(x)
        embedding_output = x
        input_mask = tf.cast(input_mask, tf.int32)
        rows = self._last_layer_rows(x, output_positions)
        if rows is not None and not self.transformer_layers:
            x = ops.gather_positions(x, rows)
        encoder_outputs, attention_scores = [], []
        last = len(self.transformer_layers) - 1
        for i, block in enumerate(self.transformer_layers):
            x = block(x, input_mask, training=training, query_positions=rows if i == last else None,
                      return_attention_scores=self.return_attention_scores)
            if self.return_attention_scores:
                x, scores = x
                attention_scores.append(scores)
            encoder_outputs.append(x)
        pooled_output = self.pooler(x[:, 0, :])
        if output_positions is not None:
            x = x[:, 1:, :]  # drop the [CLS] row added for the pooler
            if encoder_outputs:
                encoder_outputs[-1] = x
        sequence_output = tf.cast(x, tf.float32)
        if encoder_outputs:
            encoder_outputs = [tf.cast(output, tf.float32) for output in encoder_outputs[:-1]] + [sequence_output]
        outputs = {"sequence_output": sequence_output, "pooled_output": pooled_output,
                   "encoder_outputs": encoder_outputs}
        if self.return_attention_scores:
            outputs["attention_scores"] = attention_scores
        if self.return_word_embeddings:
            outputs["word_embeddings"] = embedding_output
        if self.dict_outputs:
            return outputs
        listed = [encoder_outputs if self.return_all_encoder_outputs else sequence_output, pooled_output]
        if self.return_attention_scores:
            listed.append(attention_scores)
        return listed

    def _last_layer_rows(self, x, output_positions):
        """int32 [batch, R]: the rows the last layer runs at ([CLS] first), or None for all of them."""
        if output_positions is not None:
            output_positions = tf.cast(output_positions, tf.int32)
            cls_rows = tf.zeros([tf.shape(output_positions)[0], 1], tf.int32)
            return tf.concat([cls_rows, output_positions], axis=1)
        if self.output_range is not None:
            length = tf.minimum(self.output_range, tf.shape(x)[1])
            return tf.tile(tf.range(length)[tf.newaxis], [tf.shape(x)[0], 1])
        return None

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                      num_attention_heads=self.num_attention_heads, max_sequence_length=self.max_sequence_length,
                      type_vocab_size=self.type_vocab_size, inner_dim=self.intermediate_size,
                      inner_activation=keras.activations.serialize(self.activation),
                      output_dropout=self.hidden_dropout_rate, attention_dropout=self.attention_dropout_rate,
                      initializer=keras.initializers.serialize(self.initializer), output_range=self.output_range,
                      embedding_width=self.embedding_width,
                      embedding_layer=None if self._embedding_layer_config is None
                      else keras.saving.serialize_keras_object(self._embedding_layer_config),
                      norm_first=self.norm_first, dict_outputs=self.dict_outputs,
                      return_all_encoder_outputs=self.return_all_encoder_outputs,
                      return_attention_scores=self.return_attention_scores,
                      return_word_embeddings=self.return_word_embeddings,
                      layer_norm_epsilon=self.layer_norm_epsilon)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if config.get("embedding_layer") is not None:
            config["embedding_layer"] = keras.saving.deserialize_keras_object(config["embedding_layer"],
                                                                             custom_objects=custom_objects)
        return cls(**config)


BertEncoderV2 = BertEncoder  # Model Garden's name for the dict-output encoder
