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


def _as_dict(outputs):
    """An encoder's outputs as a dict: Model Garden's list form ([sequence_output, pooled_output, ...]) too."""
    if isinstance(outputs, dict):
        return outputs
    sequence_output = outputs[0][-1] if isinstance(outputs[0], (list, tuple)) else outputs[0]
    return {"sequence_output": sequence_output, "pooled_output": outputs[1]}


def _without_pooler(variables, encoder):
    """`variables` less those of the encoder's pooler (`pooler_layer`), for a model that never reads it."""
    pooler = getattr(encoder, "pooler_layer", None)
    untrained = {id(v) for v in pooler.weights} if pooler is not None else set()
    return [v for v in variables if id(v) not in untrained]


def _mlm_inputs():
    """Model Garden's symbolic pretrainer inputs: the encoder's three and `masked_lm_positions`."""
    return {name: keras.Input(shape=(None,), dtype="int32", name=name)
            for name in (*_ENCODER_INPUTS, features.MASKED_LM_POSITIONS)}


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

    The constructor is Model Garden's `BertPretrainerV2`, plus `masked_positions_only`:

    Args:
      encoder_network: a BertEncoder (or any network with the same inputs and outputs and
        `get_embedding_table()`). `encoder=` is accepted too.
      mlm_head: a MaskedLMHead; None builds one tied to the encoder's embedding table, with the
        encoder's activation, initializer and layer-norm epsilon (or mlm_activation / mlm_initializer).
      mlm_activation: activation of the masked-LM transform; None: the encoder's (what Model Garden's
        MaskedLMTask passes).
      mlm_initializer: initializer of the transform; None: the encoder's.
      classification_heads: layers applied to `sequence_output` (e.g.
        `ClassificationHead(num_classes=2, name='next_sentence')`), their outputs keyed by layer name.
      customized_masked_lm: a MaskedLMHead to use instead of the one built here (`mlm_head=` too).
      mlm_output: 'logits' or 'predictions' (log-probabilities): what `mlm_logits` holds.
      masked_positions_only: in the training form (below), run the encoder's last layer only at the
        masked positions (its `output_positions`; the encoder must accept them, as BertEncoder does). The
        loss and every gradient are unchanged; the last layer costs about a quarter as much, and
        `sequence_output` is [batch, P, hidden] at the masked positions. Not with classification heads,
        which read whole sequences.

    call(inputs): `inputs` holds the encoder inputs (int32 [batch, seq_len] each) and
    `masked_lm_positions` int32 [batch, P] (optional). Two forms:
      * With `masked_lm_ids` int32 [batch, P] (and optionally `masked_lm_weights` float32 [batch, P]), the
        training form: the fused softmax/cross-entropy head, which never builds the [positions, vocab]
        logits. Returns `mlm_per_position_loss` float32 [batch, P] (weight * cross-entropy),
        `mlm_predicted_ids` int32 [batch, P] (-1 where the weight is 0), `sequence_output`
        ([batch, P, hidden] with masked_positions_only), `pooled_output` and the heads' outputs.
      * Without them, Model Garden's form: the encoder's outputs (`sequence_output`, `pooled_output`,
        `encoder_outputs`, ...), `mlm_logits` float32 [batch, P, vocab_size] when positions are given,
        and one float32 [batch, num_classes] entry per classification head.

    The encoder's pooler is not in `trainable_weights`: no output the pretraining losses read comes from
    it (the heads read `sequence_output`), so an optimizer would get no gradient for it. It is still
    part of the model and its checkpoints.
    """

    def __init__(self, encoder_network=None, mlm_activation=None, mlm_initializer=None, classification_heads=None,
                 customized_masked_lm=None, mlm_output="logits", masked_positions_only=False, encoder=None,
                 mlm_head=None, **kwargs):
        super().__init__(**kwargs)
        if (encoder_network is None) == (encoder is None):
            raise ValueError("BertPretrainer: pass the encoder once, as encoder_network (or encoder)")
        if customized_masked_lm is not None and mlm_head is not None:
            raise ValueError("BertPretrainer: pass customized_masked_lm or mlm_head, not both")
        if not isinstance(masked_positions_only, bool):
            raise ValueError("BertPretrainer: masked_positions_only must be True or False, got "
                             f"{masked_positions_only!r}")
        if masked_positions_only and classification_heads:
            raise ValueError("BertPretrainer: masked_positions_only=True leaves no whole sequence for the "
                             f"classification heads {[head.name for head in classification_heads]}")
        if mlm_output not in ("logits", "predictions"):
            raise ValueError(f"BertPretrainer: mlm_output must be 'logits' or 'predictions', got {mlm_output!r}")
        encoder = encoder_network if encoder_network is not None else encoder
        self.encoder = encoder
        self.masked_positions_only = masked_positions_only
        self.mlm_output = mlm_output
        mlm_head = customized_masked_lm if customized_masked_lm is not None else mlm_head
        self._customized_masked_lm = mlm_head is not None
        if mlm_head is None:
            mlm_head = MaskedLMHead(
                encoder.get_embedding_table(),
                activation=mlm_activation if mlm_activation is not None else getattr(encoder, "activation", "gelu"),
                initializer=mlm_initializer if mlm_initializer is not None else getattr(encoder, "initializer", None),
                layer_norm_epsilon=getattr(encoder, "layer_norm_epsilon", layers.LAYER_NORM_EPSILON),
                input_width=getattr(encoder, "hidden_size", None), name="masked_lm")
        self.masked_lm = mlm_head
        self.classification_heads = list(classification_heads or [])
        names = [head.name for head in self.classification_heads]
        reserved = {"mlm_per_position_loss", "mlm_predicted_ids", "mlm_logits", "sequence_output", "pooled_output",
                    "encoder_outputs"}
        if len(set(names)) != len(names) or reserved & set(names):
            raise ValueError(f"BertPretrainer: classification head names must be unique and not in {sorted(reserved)}, "
                             f"got {names}")
        # tf.train.Checkpoint does not see into Keras' tracked lists: one attribute per head.
        for head in self.classification_heads:
            setattr(self, f"classification_head_{head.name}", head)

    @property
    def encoder_network(self):
        return self.encoder

    @property
    def inputs(self):
        """Model Garden's symbolic inputs: the encoder's three and `masked_lm_positions` (keras.Input)."""
        return _mlm_inputs()

    @property
    def trainable_weights(self):
        return _without_pooler(super().trainable_weights, self.encoder)

    @property
    def trainable_variables(self):
        return self.trainable_weights

    def call(self, inputs, training=None):
        if features.MASKED_LM_IDS not in inputs:
            return self._call_logits(inputs, training)
        positions = inputs[features.MASKED_LM_POSITIONS]
        if self.masked_positions_only:
            outputs = self.encoder(_encoder_inputs(inputs), training=training, output_positions=positions)
            positions = None  # sequence_output is already at the masked positions
        else:
            outputs = self.encoder(_encoder_inputs(inputs), training=training)
        outputs = _as_dict(outputs)
        sequence_output = outputs["sequence_output"]
        mlm = self.masked_lm(sequence_output, positions, inputs[features.MASKED_LM_IDS],
                             inputs.get(features.MASKED_LM_WEIGHTS), output="loss", training=training)
        result = {
            "mlm_per_position_loss": mlm["per_position_loss"],
            "mlm_predicted_ids": mlm["predicted_ids"],
            "sequence_output": sequence_output,
            "pooled_output": outputs["pooled_output"],
        }
        self._apply_heads(result, sequence_output, training)
        return result

    def _call_logits(self, inputs, training):
        """Model Garden's outputs: the encoder's, `mlm_logits` at the masked positions, the heads'."""
        result = dict(_as_dict(self.encoder(_encoder_inputs(inputs), training=training)))
        sequence_output = result["sequence_output"]
        if features.MASKED_LM_POSITIONS in inputs:
            result["mlm_logits"] = self.masked_lm(sequence_output, inputs[features.MASKED_LM_POSITIONS],
                                                  output=self.mlm_output, training=training)
        self._apply_heads(result, sequence_output, training)
        return result

    def _apply_heads(self, result, sequence_output, training):
        """Adds each head's output under its name; a head returning a dict (MultiClsHeads) adds its entries."""
        for head in self.classification_heads:
            outputs = head(sequence_output, training=training)
            if isinstance(outputs, dict):
                result.update(outputs)
            else:
                result[head.name] = outputs

    @property
    def checkpoint_items(self):
        """The pieces to checkpoint separately: encoder, masked_lm and each classification head by name, with
        the heads' own items as '<head name>.<key>' (Model Garden's names)."""
        items = {"encoder": self.encoder, "masked_lm": self.masked_lm}
        for head in self.classification_heads:
            items[head.name] = head
            for key, item in getattr(head, "checkpoint_items", {}).items():
                items[f"{head.name}.{key}"] = item
        return items

    def get_config(self):
        config = super().get_config()
        config.update(encoder_network=keras.saving.serialize_keras_object(self.encoder),
                      classification_heads=[keras.saving.serialize_keras_object(h) for h in self.classification_heads],
                      mlm_output=self.mlm_output, masked_positions_only=self.masked_positions_only)
        if self._customized_masked_lm:
            config["customized_masked_lm"] = keras.saving.serialize_keras_object(self.masked_lm)
        else:
            config.update(mlm_activation=keras.activations.serialize(self.masked_lm.activation),
                          mlm_initializer=keras.initializers.serialize(self.masked_lm.initializer))
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder_network", None) or config.pop("encoder"),
                                                        custom_objects=custom_objects)
        head_config = config.pop("customized_masked_lm", None) or config.pop("mlm_head", None)
        if head_config is not None:
            head_class = keras.saving.get_registered_object(head_config.get("registered_name")) or MaskedLMHead
            config["customized_masked_lm"] = head_class.from_config(
                {**head_config["config"], "embedding_table": encoder.get_embedding_table()})
        if config.get("mlm_activation") is not None:
            config["mlm_activation"] = layers.get_activation(keras.activations.deserialize(config["mlm_activation"]))
        if config.get("mlm_initializer") is not None:
            config["mlm_initializer"] = keras.initializers.deserialize(config["mlm_initializer"])
        heads = [keras.saving.deserialize_keras_object(h, custom_objects=custom_objects)
                 for h in config.pop("classification_heads")]
        return cls(encoder, classification_heads=heads, **config)


BertPretrainerV2 = BertPretrainer  # Model Garden's name


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
    are those of the full layer, for about a quarter of its work. Without it, the encoder's pooler is
    left out of `trainable_variables` (no gradient reaches it).
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

    @property
    def trainable_weights(self):
        """Without the encoder's pooler when use_encoder_pooler is False (nothing reads it then)."""
        weights = super().trainable_weights
        return weights if self.use_encoder_pooler else _without_pooler(weights, self._network)

    @property
    def trainable_variables(self):
        return self.trainable_weights

    def call(self, inputs, training=None, mask=None):
        encoder_inputs = _encoder_inputs(inputs)
        if self.use_encoder_pooler and isinstance(self._network, BertEncoder):
            outputs = self._network(encoder_inputs, training=training, output_positions=_no_positions(encoder_inputs))
        else:
            outputs = self._network(encoder_inputs, training=training)
        outputs = _as_dict(outputs)
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
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"], custom_objects=custom_objects)
        if config.get("cls_head") is not None:
            config["cls_head"] = keras.saving.deserialize_keras_object(config["cls_head"],
                                                                       custom_objects=custom_objects)
        return cls(**config)
