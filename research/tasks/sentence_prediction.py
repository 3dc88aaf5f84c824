"""Sentence (pair) classification and regression: Model Garden's `SentencePredictionTask`.

Fine-tunes a `BertClassifier` on `label<TAB>text[<TAB>text_b]` files. Classification reports
accuracy; regression (`num_classes=1`) reports the mean squared error and, over the whole
validation set, Pearson and Spearman correlations (gathered on the host by aggregate_logs).
"""
import dataclasses
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from research.core import base_task
from research.core.config_definitions import require
from research.data import classification_input, features
from research.data import tokenizer_loader
from research.tasks import checkpoint_init

SPLITS = ("all", "train", "validation")


@dataclasses.dataclass(frozen=True)
class ClassificationDataConfig:
    """A TSV of labelled sentences and how to batch it.

    Attributes:
      input_path: the TSV file.
      spm_model: the sentencepiece model that tokenizes it (the pretrained encoder's vocabulary), or
      vocab_file: a WordPiece `vocab.txt` instead (an imported BERT's; see research.interop); exactly
        one of the two.
      lower_case: with vocab_file, lower-case and strip accents first ('uncased' models).
      global_batch_size: examples per step over all replicas.
      seq_len: the most tokens per example, [CLS] and [SEP]s included.
      is_training: shuffle and repeat (training) or one ordered pass (evaluation).
      split: 'all', or the 'train' / 'validation' part of a seeded hold-out split of the file.
      validation_fraction: the held-out share when split is not 'all'.
      seed: split and shuffling seed.
      pad_to: 'max' (every batch seq_len long) or 'batch' (each batch padded to its longest example).
      bucket_boundaries: with pad_to='batch', lengths along which examples are bucketed.
    """
    input_path: str = ""
    spm_model: str = ""
    vocab_file: str = ""
    lower_case: bool = True
    global_batch_size: int = 32
    seq_len: int = 128
    is_training: bool = True
    split: str = "all"
    validation_fraction: float = 0.2
    seed: int = 0
    pad_to: str = "batch"
    bucket_boundaries: tuple | None = None

    def __post_init__(self):
        require(bool(self.input_path), "ClassificationDataConfig.input_path is empty: bind it to a TSV file")
        require(bool(self.spm_model) != bool(self.vocab_file),
                "ClassificationDataConfig needs exactly one tokenizer: spm_model (the encoder's sentencepiece "
                f"model) or vocab_file (its WordPiece vocab.txt), got spm_model={self.spm_model!r}, "
                f"vocab_file={self.vocab_file!r}")
        require(isinstance(self.lower_case, bool),
                f"ClassificationDataConfig.lower_case must be True or False, got {self.lower_case!r}")
        require(self.split in SPLITS, f"ClassificationDataConfig.split must be one of {SPLITS}, got {self.split!r}")
        for name in ("global_batch_size", "seq_len"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1,
                     f"ClassificationDataConfig.{name} must be an int >= 1, got {value!r}")


@dataclasses.dataclass(frozen=True)
class SentencePredictionConfig:
    """The sentence-prediction task.

    Attributes:
      model: a callable returning the `BertClassifier` (gin binds `@BertClassifier` with its network).
      num_classes: classes of the labels; 1 means regression on float labels.
      train_data, validation_data: the data configs (either may be None).
      init_checkpoint: a pretraining checkpoint whose `encoder` initializes the classifier's network.
    """
    model: Callable[[], keras.Model] | None = None
    num_classes: int = 2
    train_data: ClassificationDataConfig | None = None
    validation_data: ClassificationDataConfig | None = None
    init_checkpoint: str = ""

    def __post_init__(self):
        require(callable(self.model),
                 f"SentencePredictionConfig.model must be a callable building the model, got {self.model!r}")
        require(isinstance(self.num_classes, int) and self.num_classes >= 1,
                 f"SentencePredictionConfig.num_classes must be an int >= 1, got {self.num_classes!r}")
        require(self.train_data is not None or self.validation_data is not None,
                 "SentencePredictionConfig needs train_data, validation_data or both")

    @property
    def is_regression(self) -> bool:
        return self.num_classes == 1


class SentencePredictionTask(base_task.Task):
    """Task object for sentence (pair) classification and regression."""

    def build_model(self) -> keras.Model:
        """Builds the model and its variables (a call on a one-token batch), so that optimizers and
        distribution strategies see every variable before the first step."""
        model = self.task_config.model()
        model({name: tf.zeros([1, 1], tf.int32)
               for name in (features.INPUT_WORD_IDS, features.INPUT_MASK, features.INPUT_TYPE_IDS)}, training=False)
        return model

    def initialize(self, model: keras.Model):
        """Loads a pretraining checkpoint's encoder into the classifier's network."""
        if self.task_config.init_checkpoint:
            checkpoint_init.restore_encoder(model, self.task_config.init_checkpoint)

    def build_inputs(self, params: ClassificationDataConfig, input_context: tf.distribute.InputContext | None = None):
        label_type = "float" if self.task_config.is_regression else "int"
        num_classes = None if self.task_config.is_regression else self.task_config.num_classes
        examples = classification_input.read_examples(params.input_path, label_type=label_type,
                                                      num_classes=num_classes)
        if params.split != "all":
            train, validation = classification_input.split_examples(examples, params.validation_fraction, params.seed)
            examples = train if params.split == "train" else validation
        return classification_input.build_dataset(
            examples, tokenizer_loader.load_tokenizer(params.spm_model, params.vocab_file, params.lower_case),
            seq_len=params.seq_len,
            batch_size=params.global_batch_size, is_training=params.is_training, pad_to=params.pad_to,
            bucket_boundaries=params.bucket_boundaries, label_type=label_type, seed=params.seed,
            input_context=input_context)

    def split_inputs(self, inputs):
        features_only = {name: value for name, value in inputs.items() if name != features.LABEL}
        return features_only, inputs[features.LABEL]

    def build_losses(self, labels, model_outputs, aux_losses=None) -> tf.Tensor:
        logits = tf.cast(model_outputs, tf.float32)
        if self.task_config.is_regression:
            loss = tf.reduce_mean(tf.square(tf.cast(labels, tf.float32) - tf.squeeze(logits, axis=-1)))
        else:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        if aux_losses:
            loss += tf.add_n([tf.cast(aux, tf.float32) for aux in aux_losses])
        return loss

    def build_metrics(self, training: bool = True) -> list:
        del training
        if self.task_config.is_regression:
            return [keras.metrics.MeanSquaredError(name="mean_squared_error")]
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def process_metrics(self, metrics, labels, model_outputs, **kwargs):
        predictions = tf.cast(model_outputs, tf.float32)
        if self.task_config.is_regression:
            predictions = tf.squeeze(predictions, axis=-1)
        for metric in metrics:
            metric.update_state(labels, predictions)

    def process_compiled_metrics(self, compiled_metrics, labels, model_outputs):
        compiled_metrics.update_state(labels, tf.cast(model_outputs, tf.float32))

    def validation_step(self, inputs, model: keras.Model, metrics=None) -> dict:
        features_only, labels = self.split_inputs(inputs)
        outputs = self.inference_step(features_only, model)
        logs = {self.loss: self.build_losses(labels=labels, model_outputs=outputs, aux_losses=model.losses)}
        if metrics:
            self.process_metrics(metrics, labels, outputs)
        if self.task_config.is_regression:
            logs["sentence_prediction"] = tf.squeeze(tf.cast(outputs, tf.float32), axis=-1)
            logs["labels"] = tf.cast(labels, tf.float32)
        return logs

    def aggregate_logs(self, state=None, step_logs=None):
        """Regression: gathers predictions and labels on the host for the correlations."""
        if not self.task_config.is_regression:
            return state
        state = state if state is not None else {"predictions": [], "labels": []}
        state["predictions"].append(np.concatenate(_host_values(step_logs["sentence_prediction"])))
        state["labels"].append(np.concatenate(_host_values(step_logs["labels"])))
        return state

    def reduce_aggregated_logs(self, aggregated_logs, global_step=None) -> dict:
        if not self.task_config.is_regression or not aggregated_logs:
            return {}
        predictions = np.concatenate(aggregated_logs["predictions"])
        labels = np.concatenate(aggregated_logs["labels"])
        return {"pearson_correlation": pearson(predictions, labels),
                "spearman_correlation": pearson(_ranks(predictions), _ranks(labels))}


def _host_values(value):
    """The per-replica pieces of a step output as numpy arrays."""
    if isinstance(value, (tuple, list)):
        return [np.asarray(v) for v in value]
    return [np.asarray(value)]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two float vectors (0.0 when either is constant)."""
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties given their average rank (as Spearman's correlation needs)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    unique, inverse = np.unique(values, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    counts = np.bincount(inverse)
    return (sums / counts)[inverse]
