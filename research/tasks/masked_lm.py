"""Masked-language-model pretraining: Model Garden's `MaskedLMTask`, on our fused MLM head.

The model (a `BertPretrainer`) returns the per-position cross-entropy of the masked positions,
already weighted, and the argmax ids: the `[positions, vocab]` logits are never built in training.
The loss is the weighted mean over the masked positions, plus the next-sentence loss when the model
has a `next_sentence` head, plus the model's auxiliary losses.
"""
import dataclasses
from typing import Callable

import keras
import tensorflow as tf

from research.core import base_task
from research.core.config_definitions import require
from research.data import features, input_sharding, pretrain_input
from research.data import tokenizer_loader

NEXT_SENTENCE_HEAD = "next_sentence"


@dataclasses.dataclass(frozen=True)
class PretrainDataConfig:
    """Where the pretraining records are and how batches are made and masked.

    Attributes:
      input_path: glob (or comma-separated globs) of TFRecord shards from build_pretraining_data; may be
        empty until the inputs are built (as in Model Garden), when an empty path is an error.
      global_batch_size: examples per step over all replicas.
      seq_len: length of the records' id vectors.
      vocab_size: ids lie in [0, vocab_size); masking draws random replacements from it.
      max_predictions_per_seq: P, the masked positions per sequence.
      is_training: shuffle and repeat (training) or one ordered pass (evaluation).
      seed: shuffling and masking seed.
      use_next_sentence_label: the records carry next_sentence_labels.
      whole_word_masking: mask whole words; needs the tokenizer (`spm_model` or `vocab_file`) for the
        word starts.
      spm_model: the sentencepiece model of the records, or
      vocab_file: the WordPiece vocab.txt of the records (at most one of the two). Given one, masking
        takes the special ids ([PAD], [UNK], [CLS], [SEP], [MASK]) from it; given neither, they are the
        sentencepiece tokenizer's fixed ids 0-4.
      lower_case: with vocab_file, whether the tokenizer lower-cases.
      mask_rate, mask_prob, random_prob: see research.ops.mask_tokens.
      masking_backend: 'auto', 'native' or 'reference'.
      shuffle_buffer_size: records in the shuffle buffer.
      sharding: how the workers of a multi-worker job split the records: 'auto' (by file when there
        are at least as many files as workers, else by record), 'file', 'element', or 'chief'
        (evaluation data only: the chief evaluates everything); see research/data/input_sharding.py.
    """
    input_path: str = ""
    global_batch_size: int = 32
    seq_len: int = 128
    vocab_size: int = 30522
    max_predictions_per_seq: int = 20
    is_training: bool = True
    seed: int = 0
    use_next_sentence_label: bool = False
    whole_word_masking: bool = False
    spm_model: str = ""
    vocab_file: str = ""
    lower_case: bool = True
    mask_rate: float = 0.15
    mask_prob: float = 0.8
    random_prob: float = 0.1
    masking_backend: str = "auto"
    shuffle_buffer_size: int = 10_000
    sharding: str = "auto"

    def __post_init__(self):
        for name in ("global_batch_size", "seq_len", "vocab_size", "max_predictions_per_seq", "shuffle_buffer_size"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1,
                     f"PretrainDataConfig.{name} must be an int >= 1, got {value!r}")
        input_sharding.check_policy(self.sharding, self.is_training, field="PretrainDataConfig.sharding")
        require(not (self.spm_model and self.vocab_file),
                f"PretrainDataConfig takes one tokenizer, got both spm_model={self.spm_model!r} and "
                f"vocab_file={self.vocab_file!r}")
        require(not self.whole_word_masking or bool(self.spm_model or self.vocab_file),
                 "PretrainDataConfig.whole_word_masking needs spm_model or vocab_file (the word starts come "
                 "from its pieces)")

    @property
    def seq_length(self) -> int:
        """Model Garden's name of seq_len."""
        return self.seq_len

    def tokenizer(self):
        """The records' tokenizer (sentencepiece or WordPiece), or None when neither path is set."""
        if not (self.spm_model or self.vocab_file):
            return None
        return tokenizer_loader.load_tokenizer(self.spm_model, self.vocab_file, self.lower_case)

    def masking(self, text_tokenizer=None) -> pretrain_input.MaskingConfig:
        """The masking configuration, with the special ids of `text_tokenizer` when given."""
        kwargs = dict(vocab_size=self.vocab_size, max_predictions_per_seq=self.max_predictions_per_seq,
                      mask_rate=self.mask_rate, mask_prob=self.mask_prob, random_prob=self.random_prob,
                      backend=self.masking_backend)
        if text_tokenizer is None:
            return pretrain_input.MaskingConfig(**kwargs)
        return pretrain_input.MaskingConfig.for_tokenizer(text_tokenizer, **kwargs)


@dataclasses.dataclass(frozen=True)
class MaskedLMConfig:
    """The masked-LM task.

    Attributes:
      model: a callable returning the `BertPretrainer` (gin binds `@BertPretrainer` with its encoder);
        called inside the distribution strategy's scope.
      train_data: the training data, or None for evaluation-only runs.
      validation_data: the validation data, or None.
      init_checkpoint: a checkpoint (or a directory of them) whose objects initialize the model's
        `checkpoint_items` of the same names (encoder, masked_lm, heads) when model_dir has none.
      scale_loss: divide the loss by the number of replicas before the gradient, so that the summed
        replica gradients are the gradient of the global mean. False by default, as in Model Garden
        (whose comment says False "works better"): then each replica's gradient of its own mean is
        summed; gin/tasks/masked_lm.gin sets True.
    """
    model: Callable[[], keras.Model] | None = None
    train_data: PretrainDataConfig | None = None
    validation_data: PretrainDataConfig | None = None
    init_checkpoint: str = ""
    scale_loss: bool = False

    def __post_init__(self):
        require(callable(self.model), f"MaskedLMConfig.model must be a callable building the model, got {self.model!r}")
        require(self.train_data is not None or self.validation_data is not None,
                 "MaskedLMConfig needs train_data, validation_data or both")


class MaskedLMTask(base_task.Task):
    """Task object for masked language modeling."""

    def build_model(self, params=None) -> keras.Model:
        """Builds the model and its variables (a call on a one-token batch), so that optimizers and
        distribution strategies see every variable before the first step.

        Args:
          params: the model's builder (a callable returning the BertPretrainer, what MaskedLMConfig.model
            holds); None: task_config.model. (Model Garden's takes its model config here.)
        """
        builder = params if params is not None else self.task_config.model
        if not callable(builder):
            raise ValueError(f"MaskedLMTask.build_model needs a callable returning the model, got {builder!r}")
        model = builder()
        datasets = () if self.task_config is None else (self.task_config.train_data, self.task_config.validation_data)
        for data in datasets:
            if data is not None and data.input_path:  # Model Garden's configs may fill paths later
                pretrain_input.check_vocab_size(data.input_path, data.vocab_size, "PretrainDataConfig.vocab_size")
        dummy = {name: tf.zeros([1, 1], tf.int32) for name in (
            features.INPUT_WORD_IDS, features.INPUT_MASK, features.INPUT_TYPE_IDS, features.MASKED_LM_POSITIONS,
            features.MASKED_LM_IDS)}
        model({**dummy, features.MASKED_LM_WEIGHTS: tf.zeros([1, 1], tf.float32)}, training=False)
        encoder = getattr(model, "checkpoint_items", {}).get("encoder")
        for data in datasets:
            if encoder is not None and data is not None:
                rows = int(encoder.get_embedding_table().shape[0])
                if rows != data.vocab_size:
                    raise ValueError(f"The encoder's vocabulary has {rows} ids (BertEncoder.vocab_size) but the data's "
                                     f"has {data.vocab_size} (PretrainDataConfig.vocab_size); give both the "
                                     f"records' size (with gin: VOCAB_SIZE)")
        return model

    def build_inputs(self, params: PretrainDataConfig, input_context: tf.distribute.InputContext | None = None):
        """Returns tf.data.Dataset for pretraining."""
        if not params.input_path:
            raise ValueError("PretrainDataConfig.input_path is empty: bind it to a glob of TFRecord shards")
        text_tokenizer = params.tokenizer()
        word_start_table = text_tokenizer.word_start_table() if params.whole_word_masking else None
        return pretrain_input.pretrain_dataset(
            params.input_path, batch_size=params.global_batch_size, seq_len=params.seq_len,
            masking=params.masking(text_tokenizer), is_training=params.is_training, seed=params.seed,
            word_start_table=word_start_table, use_next_sentence_label=params.use_next_sentence_label,
            shuffle_buffer_size=params.shuffle_buffer_size, input_context=input_context, sharding=params.sharding)

    def build_losses(self, labels, model_outputs, aux_losses=None) -> tf.Tensor:
        """Weighted mean masked-LM cross-entropy (+ next-sentence loss, + auxiliary losses).

        Args:
          labels: the batch: `masked_lm_weights` float32 [batch, P] and, with a next-sentence head,
            `next_sentence_labels` int32 [batch] (or [batch, 1], Model Garden's input shape).
          model_outputs: the BertPretrainer outputs.
          aux_losses: auxiliary loss tensors, i.e. losses in keras.Model.

        Returns:
          The total loss, a float32 scalar.
        """
        total = masked_lm_loss(labels, model_outputs)
        if NEXT_SENTENCE_HEAD in model_outputs:
            total += tf.reduce_mean(next_sentence_losses(labels, model_outputs))
        if aux_losses:
            total += tf.add_n([tf.cast(loss, tf.float32) for loss in aux_losses])
        return total

    def build_metrics(self, training: bool = True) -> list:
        del training
        metrics = [keras.metrics.Mean(name="masked_lm_accuracy"), keras.metrics.Mean(name="lm_example_loss")]
        if self._has_next_sentence_head():
            metrics += [keras.metrics.SparseCategoricalAccuracy(name="next_sentence_accuracy"),
                        keras.metrics.Mean(name="next_sentence_loss")]
        return metrics

    def _has_next_sentence_head(self) -> bool:
        data = self.task_config.train_data or self.task_config.validation_data
        return data.use_next_sentence_label

    def process_metrics(self, metrics, labels, model_outputs, **kwargs):
        metrics = {metric.name: metric for metric in metrics}
        weights = labels[features.MASKED_LM_WEIGHTS]
        correct = tf.cast(tf.equal(model_outputs["mlm_predicted_ids"], labels[features.MASKED_LM_IDS]), tf.float32)
        metrics["masked_lm_accuracy"].update_state(correct, sample_weight=weights)
        # Weighted by the batch's masked positions: over an evaluation, the weighted mean loss of every
        # masked position (an empty or partial last batch counts for what it holds).
        metrics["lm_example_loss"].update_state(masked_lm_loss(labels, model_outputs),
                                                sample_weight=tf.reduce_sum(weights))
        if NEXT_SENTENCE_HEAD in model_outputs and "next_sentence_accuracy" in metrics:
            next_labels = tf.reshape(labels[features.NEXT_SENTENCE_LABELS], [-1])
            metrics["next_sentence_accuracy"].update_state(next_labels, model_outputs[NEXT_SENTENCE_HEAD])
            metrics["next_sentence_loss"].update_state(next_sentence_losses(labels, model_outputs))

    def process_compiled_metrics(self, compiled_metrics, labels, model_outputs):
        """Feeds compiled metrics (masked ids, predicted ids, masked-LM weights): Accuracy gives the MLM accuracy."""
        compiled_metrics.update_state(labels[features.MASKED_LM_IDS], model_outputs["mlm_predicted_ids"],
                                      sample_weight=labels[features.MASKED_LM_WEIGHTS])

    def train_step(self, inputs, model: keras.Model, optimizer, metrics=None) -> dict:
        """Does forward and backward: mixed-precision loss scaling, replica scaling, clipping (optimizer)."""
        with tf.GradientTape() as tape:
            outputs = model(inputs, training=True)
            loss = self.build_losses(labels=inputs, model_outputs=outputs, aux_losses=model.losses)
            scaled_loss = loss
            if self.task_config.scale_loss:
                scaled_loss = loss / tf.distribute.get_strategy().num_replicas_in_sync
            scaled_loss = optimizer.scale_loss(scaled_loss)  # loss scaling (float16); identity otherwise
        variables = model.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        optimizer.apply_gradients(list(zip(gradients, variables)))
        if metrics:
            self.process_metrics(metrics, inputs, outputs)
        return {self.loss: loss}

    def validation_step(self, inputs, model: keras.Model, metrics=None) -> dict:
        outputs = self.inference_step(inputs, model)
        loss = self.build_losses(labels=inputs, model_outputs=outputs, aux_losses=model.losses)
        if metrics:
            self.process_metrics(metrics, inputs, outputs)
        return {self.loss: loss}


def masked_lm_loss(labels, model_outputs) -> tf.Tensor:
    """float32 scalar: sum of the weighted per-position losses over the sum of the weights."""
    weights = tf.cast(labels[features.MASKED_LM_WEIGHTS], tf.float32)
    per_position = tf.cast(model_outputs["mlm_per_position_loss"], tf.float32)
    return tf.reduce_sum(per_position) / (tf.reduce_sum(weights) + 1e-5)


def next_sentence_losses(labels, model_outputs) -> tf.Tensor:
    """float32 [batch]: cross-entropy of the next-sentence head against `next_sentence_labels` int32 [batch]
    or [batch, 1]."""
    logits = tf.cast(model_outputs[NEXT_SENTENCE_HEAD], tf.float32)
    next_labels = tf.reshape(labels[features.NEXT_SENTENCE_LABELS], [-1])  # [batch] or Model Garden's [batch, 1]
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=next_labels, logits=logits)
