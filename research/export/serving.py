"""Serving modules: a trained model and its in-graph tokenizer as tf.functions on raw strings.

`ClassifierServing` wraps a `BertClassifier`; `FillMaskServing` the encoder and masked-LM head of a
`BertPretrainer`. Both are plain `tf.Module`s: `research.export.saved_model` saves them, and
`research.predict` calls them in process. Their functions (batch = any number of texts):

ClassifierServing
  classify(text string [batch]) -> {probabilities float32 [batch, num_classes], logits float32
      [batch, num_classes], predicted_class int32 [batch]}; for regression (num_classes=1) {prediction
      float32 [batch]}.
  classify_pair(text_a, text_b string [batch]) -> the same, for sentence pairs.
FillMaskServing
  fill_mask(text string [batch], each "[MASK]" a position to fill) -> {num_masks int32 [batch],
      top_ids int32 [batch, M, k], top_tokens string [batch, M, k], top_scores float32 [batch, M, k]},
      M the most masks of a text in the batch; a text's masks past its num_masks are padding (id -1,
      token '', score 0). Scores are probabilities over the whole vocabulary; [PAD], [CLS], [SEP] and
      [MASK] are never proposed.
Both
  tokenize(text string [batch]) -> {input_word_ids, input_mask, input_type_ids int32 [batch, L]}, what
      the model reads ("[MASK]" becomes the mask id in FillMaskServing).
"""
import keras
import tensorflow as tf

from research.data import features
from research.export import graph_tokenizer

TEXTS = tf.TensorSpec([None], tf.string)


def _saveable_variables(variables) -> list:
    """The tf.Variables under Keras variables (each once): what the saved functions capture and restore."""
    unique = {}
    for variable in variables:
        variable = getattr(variable, "value", variable) if not isinstance(variable, tf.Variable) else variable
        unique.setdefault(id(variable), variable)
    return list(unique.values())


class _Serving(tf.Module):
    """What both servings share: the tokenizer, seq_len, and the model's variables (tracked for saving)."""

    def __init__(self, tokenizer: graph_tokenizer.GraphTokenizer, seq_len: int, name=None):
        super().__init__(name=name)
        if not isinstance(seq_len, int) or seq_len < 3:
            raise ValueError(f"seq_len must be an int >= 3, got {seq_len!r}")
        self.tokenizer = tokenizer
        self.seq_len = seq_len


class ClassifierServing(_Serving):
    """A BertClassifier on raw strings (module docstring).

    Args:
      model: a built `BertClassifier` (or any model of its inputs returning logits [batch, num_classes]).
      num_classes: the model's classes (1: regression).
      tokenizer: the encoder's in-graph tokenizer.
      seq_len: the most tokens per example, [CLS] and [SEP]s included (the fine-tune's).
    """

    def __init__(self, model: keras.Model, num_classes: int, tokenizer: graph_tokenizer.GraphTokenizer,
                 seq_len: int, name=None):
        super().__init__(tokenizer, seq_len, name=name)
        self._run_model = lambda inputs: model(inputs, training=False)  # a closure: the Keras model stays unsaved
        self.model_variables = _saveable_variables(model.variables)
        self.num_classes = num_classes
        self.classify = tf.function(self._classify, input_signature=[TEXTS], autograph=False)
        self.classify_pair = tf.function(self._classify_pair, input_signature=[TEXTS, TEXTS], autograph=False)
        self.tokenize = tf.function(self._tokenize, input_signature=[TEXTS], autograph=False)

    def _tokenize(self, text):
        return graph_tokenizer.layout_single(self.tokenizer.tokenize(text), self.seq_len, self.tokenizer)

    def _outputs(self, inputs):
        logits = tf.cast(self._run_model(inputs), tf.float32)
        if self.num_classes == 1:
            return {"prediction": tf.squeeze(logits, axis=-1)}
        return {"probabilities": tf.nn.softmax(logits, axis=-1), "logits": logits,
                "predicted_class": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    def _classify(self, text):
        return self._outputs(self._tokenize(text))

    def _classify_pair(self, text_a, text_b):
        return self._outputs(graph_tokenizer.layout_pair(self.tokenizer.tokenize(text_a),
                                                         self.tokenizer.tokenize(text_b), self.seq_len,
                                                         self.tokenizer))


class FillMaskServing(_Serving):
    """Fill-mask with a pretrained encoder and its masked-LM head (module docstring).

    Args:
      encoder: the encoder (BertEncoder or any network of its inputs returning `sequence_output`).
      mlm_head: its `MaskedLMHead` (tied to the encoder's embedding table).
      tokenizer: the encoder's in-graph tokenizer.
      seq_len: the most tokens per text, [CLS] and [SEP] included; masks past it are dropped.
      top_k: how many candidates per mask.
    """

    def __init__(self, encoder: keras.Model, mlm_head: keras.layers.Layer, tokenizer: graph_tokenizer.GraphTokenizer,
                 seq_len: int, top_k: int = 5, name=None):
        super().__init__(tokenizer, seq_len, name=name)
        if not isinstance(top_k, int) or not 1 <= top_k <= tokenizer.vocab_size:
            raise ValueError(f"top_k must be an int in [1, vocab_size={tokenizer.vocab_size}], got {top_k!r}")
        self._run_encoder = lambda inputs: encoder(inputs, training=False)["sequence_output"]
        self._run_head = lambda hidden, positions: mlm_head(hidden, positions, output="logits", training=False)
        self.model_variables = _saveable_variables(list(encoder.variables) + list(mlm_head.variables))
        self.top_k = top_k
        self.fill_mask = tf.function(self._fill_mask, input_signature=[TEXTS], autograph=False)
        self.tokenize = tf.function(self._tokenize, input_signature=[TEXTS], autograph=False)

    def _tokenize(self, text):
        return graph_tokenizer.layout_single(self.tokenizer.tokenize_with_masks(text), self.seq_len, self.tokenizer)

    def _fill_mask(self, text):
        inputs = self._tokenize(text)
        word_ids = inputs[features.INPUT_WORD_IDS]
        is_mask = tf.equal(word_ids, self.tokenizer.mask_id)
        positions = tf.ragged.boolean_mask(tf.broadcast_to(tf.range(tf.shape(word_ids)[1]), tf.shape(word_ids)),
                                           is_mask)  # [batch, (masks)]
        num_masks = tf.cast(positions.row_lengths(), tf.int32)
        real = tf.sequence_mask(num_masks, tf.reduce_max(tf.concat([num_masks, [0]], axis=0)))  # [batch, M]
        dense_positions = positions.to_tensor(default_value=0)
        logits = self._run_head(self._run_encoder(inputs), dense_positions)  # [batch, M, V]
        probabilities = tf.nn.softmax(logits, axis=-1)
        never = tf.scatter_nd(tf.constant([[i] for i in self.tokenizer.special_ids()]),
                              tf.ones([len(self.tokenizer.special_ids())], tf.bool), [self.tokenizer.vocab_size])
        scores, ids = tf.math.top_k(tf.where(never, -1.0, probabilities), k=self.top_k)
        real_k = tf.broadcast_to(real[:, :, tf.newaxis], tf.shape(ids))
        ids = tf.where(real_k, ids, -1)
        return {"num_masks": num_masks, "top_ids": ids,
                "top_tokens": tf.where(real_k, self.tokenizer.id_to_token(tf.maximum(ids, 0)), ""),
                "top_scores": tf.where(real_k, scores, 0.0)}
