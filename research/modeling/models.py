"""Models around a BertEncoder: BertPretrainer (masked LM + optional [CLS] heads) and BertClassifier."""
import keras
import tensorflow as tf

from research.data import features
from research.modeling import layers
from research.modeling.bert_encoder import BertEncoder
from research.modeling.heads import ClassificationHead, MaskedLMHead

_ENCODER_INPUTS = (features.INPUT_WORD_IDS, features.INPUT_MASK, features.INPUT_TYPE_IDS)


def _encoder_inputs(inputs):
    if isinstance(inputs, (list, tuple)):
        return inputs
    return {name: inputs[name] for name in _ENCODER_INPUTS}


def _no_positions(encoder_inputs):
    """int32 [batch, 0]: `output_positions` that leave only [CLS] in the encoder's last layer."""
    if isinstance(encoder_inputs, (list, tuple)):
        word_ids = encoder_inputs[0]
    else:
        word_ids = encoder_inputs[features.INPUT_WORD_IDS]
    return tf.zeros([tf.shape(word_ids)[0], 0], tf.int32)


@keras.saving.register_keras_serializable(package="research")
class BertPretrainer(keras.Model):
    """Masked-LM pretraining model: an encoder, a tied MaskedLMHead and optional classification heads.

    Args:
      encoder: a BertEncoder (or any network with the same inputs, outputs and `get_embedding_table()`).
      mlm_head: a MaskedLMHead; None builds one tied to the encoder's embedding table, with the
        encoder's activation, initializer and layer-norm epsilon.
      classification_heads: layers applied to `sequence_output` (e.g.
        `ClassificationHead(num_classes=2, name='next_sentence')`), their outputs keyed by layer name.
      masked_positions_only: run the encoder's last layer only at the masked positions (its
        `output_positions`; the encoder must accept them, as BertEncoder does). The loss and every
        gradient are unchanged; the last layer costs about a quarter as much, and `sequence_output`
        is [batch, P, hidden] at the masked positions. Not with classification heads, which read
        whole sequences.

    call(inputs): `inputs` holds the encoder inputs plus `masked_lm_positions` int32 [batch, P],
    `masked_lm_ids` int32 [batch, P] and `masked_lm_weights` float32 [batch, P] (optional). Returns a dict
    of `mlm_per_position_loss` float32 [batch, P] (weight * cross-entropy), `mlm_predicted_ids` int32
    [batch, P] (-1 where the weight is 0), `sequence_output` [batch, seq_len, hidden] ([batch, P, hidden]
    with masked_positions_only), `pooled_output`
    [batch, hidden] and one float32 [batch, num_classes] entry per classification head.
    """

    def __init__(self, encoder, mlm_head=None, classification_heads=None, masked_positions_only=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(masked_positions_only, bool):
            raise ValueError("BertPretrainer: masked_positions_only must be True or False, got "
                             f"{masked_positions_only!r}")
        if masked_positions_only and classification_heads:
            raise ValueError("BertPretrainer: masked_positions_only=True leaves no whole sequence for the "
                             f"classification heads {[head.name for head in classification_heads]}")
        self.encoder = encoder
        self.masked_positions_only = masked_positions_only
        if mlm_head is None:
            mlm_head = MaskedLMHead(encoder.get_embedding_table(), activation=getattr(encoder, "activation", "gelu"),
                                    initializer=getattr(encoder, "initializer", None),
                                    layer_norm_epsilon=getattr(encoder, "layer_norm_epsilon", layers.LAYER_NORM_EPSILON),
                                    name="masked_lm")
        self.masked_lm = mlm_head
        self.classification_heads = list(classification_heads or [])
        names = [head.name for head in self.classification_heads]
        reserved = {"mlm_per_position_loss", "mlm_predicted_ids", "sequence_output", "pooled_output"}
        if len(set(names)) != len(names) or reserved & set(names):
            raise ValueError(f"BertPretrainer: classification head names must be unique and not in {sorted(reserved)}, "
                             f"got {names}")
        # tf.train.Checkpoint does not see into Keras' tracked lists: one attribute per head.
        for head in self.classification_heads:
            setattr(self, f"classification_head_{head.name}", head)

    def call(self, inputs, training=None):
        positions = inputs[features.MASKED_LM_POSITIONS]
        if self.masked_positions_only:
            outputs = self.encoder(_encoder_inputs(inputs), training=training, output_positions=positions)
            positions = None  # sequence_output is already at the masked positions
        else:
            outputs = self.encoder(_encoder_inputs(inputs), training=training)
        sequence_output = outputs["sequence_output"]
        mlm = self.masked_lm(sequence_output, positions, inputs[features.MASKED_LM_IDS],
                             inputs.get(features.MASKED_LM_WEIGHTS), output="loss", training=training)
        result = {
            "mlm_per_position_loss": mlm["per_position_loss"],
            "mlm_predicted_ids": mlm["predicted_ids"],
            "sequence_output": sequence_output,
            "pooled_output": outputs["pooled_output"],
        }
        for head in self.classification_heads:
            result[head.name] = head(sequence_output, training=training)
        return result

    @property
    def checkpoint_items(self):
        """The pieces to checkpoint separately: encoder, masked_lm and each classification head by name."""
        items = {"encoder": self.encoder, "masked_lm": self.masked_lm}
        items.update((head.name, head) for head in self.classification_heads)
        return items

    def get_config(self):
        config = super().get_config()
        config.update(encoder=keras.saving.serialize_keras_object(self.encoder),
                      mlm_head=keras.saving.serialize_keras_object(self.masked_lm),
                      classification_heads=[keras.saving.serialize_keras_object(h) for h in self.classification_heads],
                      masked_positions_only=self.masked_positions_only)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"))
        head_config = config.pop("mlm_head")
        head_class = keras.saving.get_registered_object(head_config.get("registered_name")) or MaskedLMHead
        mlm_head = head_class.from_config({**head_config["config"], "embedding_table": encoder.get_embedding_table()})
        heads = [keras.saving.deserialize_keras_object(h) for h in config.pop("classification_heads")]
        return cls(encoder, mlm_head=mlm_head, classification_heads=heads, **config)


@keras.saving.register_keras_serializable(package="research")
class BertClassifier(keras.Model):
    """Classifier model based on a BERT-style transformer-based encoder (Model Garden's API).

    With `use_encoder_pooler` the encoder's `pooled_output` goes through dropout and an output dense;
    without it, the [CLS] token of `sequence_output` goes through dense + tanh, dropout and an output
    dense. num_classes=1 makes a regression model.

    Args:
      network: the encoder: dict inputs, outputs with `sequence_output` and `pooled_output`, and a
        `get_embedding_table()` method.
      num_classes: number of classes to predict (1 for regression).
      initializer: initializer of the classification head (default Glorot uniform).
      dropout_rate: dropout probability of the classification head.
      use_encoder_pooler: whether to use the encoder's pooler.
      head_name: name of the classification head.
      cls_head: optional layer used as the head instead; then num_classes, initializer and head_name
        are ignored. As in Model Garden it receives the dropped-out `pooled_output` when
        use_encoder_pooler is True, else `sequence_output`, and returns the logits.

    call(inputs) with the encoder inputs (int32 [batch, seq_len] each) returns float32 logits
    [batch, num_classes] (whatever dtype `cls_head` returns, when given).

    With use_encoder_pooler and a BertEncoder, the encoder's last layer runs only at [CLS] (its
    `output_positions`, empty): the pooled output is all the model reads, and the logits and gradients
    are those of the full layer, for about a quarter of its work.
    """

    def __init__(self, network, num_classes, initializer="glorot_uniform", dropout_rate=0.1, use_encoder_pooler=True,
                 head_name="sentence_prediction", cls_head=None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.initializer = keras.initializers.get(initializer)
        self.dropout_rate = dropout_rate
        self.use_encoder_pooler = use_encoder_pooler
        self.head_name = head_name
        self._network = network
        self._cls_head = cls_head
        self.pooler_dropout = layers.Dropout(dropout_rate) if use_encoder_pooler else None
        if cls_head is not None:
            self.classifier = cls_head
        else:
            self.classifier = ClassificationHead(inner_dim=0 if use_encoder_pooler else None, num_classes=num_classes,
                                                 initializer=self.initializer, dropout_rate=dropout_rate,
                                                 name=head_name)
            # Create the head's variables now, when the encoder's width is known, as the encoder does its
            # own: an optimizer built before the first step (the Trainer builds it eagerly) must see them.
            width = getattr(network, "hidden_size", None)
            if width is not None:
                self.classifier.build((None, width) if use_encoder_pooler else (None, None, width))

    @property
    def network(self):
        return self._network

    def call(self, inputs, training=None, mask=None):
        encoder_inputs = _encoder_inputs(inputs)
        if self.use_encoder_pooler and isinstance(self._network, BertEncoder):
            outputs = self._network(encoder_inputs, training=training, output_positions=_no_positions(encoder_inputs))
        else:
            outputs = self._network(encoder_inputs, training=training)
        if self.use_encoder_pooler:
            cls_inputs = self.pooler_dropout(outputs["pooled_output"], training=training)
        else:
            cls_inputs = outputs["sequence_output"]
        return self.classifier(cls_inputs, training=training)

    @property
    def checkpoint_items(self):
        """{'encoder': network, <head name>: head}, plus the head's own items as '<head name>.<key>'."""
        items = {"encoder": self._network, self.classifier.name: self.classifier}
        for key, item in getattr(self.classifier, "checkpoint_items", {}).items():
            items[f"{self.classifier.name}.{key}"] = item
        return items

    def get_config(self):
        config = super().get_config()
        config.update(network=keras.saving.serialize_keras_object(self._network), num_classes=self.num_classes,
                      initializer=keras.initializers.serialize(self.initializer), dropout_rate=self.dropout_rate,
                      use_encoder_pooler=self.use_encoder_pooler, head_name=self.head_name,
                      cls_head=None if self._cls_head is None else keras.saving.serialize_keras_object(self._cls_head))
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        if config.get("cls_head") is not None:
            config["cls_head"] = keras.saving.deserialize_keras_object(config["cls_head"])
        return cls(**config)
