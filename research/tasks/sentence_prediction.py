"""Sentence (pair) classification and regression: Model Garden's `SentencePredictionTask`.

Fine-tunes a `BertClassifier` on `label<TAB>text[<TAB>text_b]` files. Classification reports
`accuracy` (streaming) and, over the whole validation set (predictions and labels gathered on the
host by aggregate_logs, as in Model Garden), `cls_accuracy` (Model Garden's name) and the
`metric_type` metric; regression (`num_classes=1`) reports the mean squared error and Pearson and
Spearman correlations. `predict(task, params, model)` returns one prediction per example.
"""
import dataclasses
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from research.core import base_task, checkpoint_restore
from research.core.config_definitions import require
from research.data import classification_input, classification_records, features, input_sharding
from research.data import tokenizer_loader

SPLITS = ("auto", "all", "train", "validation")
METRIC_TYPES = ("accuracy", "f1", "matthews_corrcoef", "pearson_spearman_corr")
LABEL_IDS = "label_ids"  # Model Garden's label key, accepted beside ours
FILE_TYPES = ("tsv", "tfrecord")


@dataclasses.dataclass(frozen=True)
class ClassificationDataConfig:
    """A TSV of labelled sentences (or Model Garden's tokenized TFRecords) and how to batch it.

    Attributes:
      input_path: the TSV file; with file_type='tfrecord', the TFRecord files (comma-separated or globs).
      spm_model: the sentencepiece model that tokenizes it (the pretrained encoder's vocabulary), or
      vocab_file: a WordPiece `vocab.txt` instead (an imported BERT's; see research.interop); exactly
        one of the two for a TSV, neither for TFRecords (already tokenized).
      lower_case: with vocab_file, lower-case and strip accents first ('uncased' models).
      global_batch_size: examples per step over all replicas.
      seq_len: the most tokens per example, [CLS] and [SEP]s included.
      is_training: shuffle and repeat (training) or one ordered pass (evaluation).
      split: 'all', or the 'train' / 'validation' part of a seeded hold-out split of the file; 'auto'
        (SentencePredictionConfig decides) splits one file that serves both training and evaluation,
        and takes the whole of each file when they are two.
      validation_fraction: the held-out share when the file is split.
      seed: split and shuffling seed.
      pad_to: 'max' (every batch seq_len long) or 'batch' (each batch padded to its longest example).
      bucket_boundaries: with pad_to='batch', lengths along which examples are bucketed.
      sharding: how the workers of a multi-worker job split the examples: 'auto' or 'element' (each
        keeps every N-th), or 'chief' (evaluation data only: the chief evaluates everything); 'file' too
        for TFRecords.
      file_type: 'tsv' (ours) or 'tfrecord': Model Garden's sentence-prediction records (`input_ids`,
        `input_mask`, `segment_ids`, the label; see research/data/classification_records.py), read whole
        (split 'auto' or 'all').
      label_field: with file_type='tfrecord', the label's feature name (Model Garden's `label_field`).
      label_type: None (from the task: 'float' when num_classes is 1, else 'int'), or 'int' / 'float',
        which must agree with the task (Model Garden's `label_type`).
      include_example_id: with file_type='tfrecord', batches also carry each record's `example_id`
        (int32 [batch]); `predict` then returns the predictions sorted by it, as Model Garden's.
    """
    input_path: str = ""
    spm_model: str = ""
    vocab_file: str = ""
    lower_case: bool = True
    global_batch_size: int = 32
    seq_len: int = 128
    is_training: bool = True
    split: str = "auto"
    validation_fraction: float = 0.2
    seed: int = 0
    pad_to: str = "batch"
    bucket_boundaries: tuple | None = None
    sharding: str = "auto"
    file_type: str = "tsv"
    label_field: str = LABEL_IDS
    label_type: str | None = None
    include_example_id: bool = False

    def __post_init__(self):
        require(bool(self.input_path), "ClassificationDataConfig.input_path is empty: bind it to a TSV file")
        require(self.file_type in FILE_TYPES,
                f"ClassificationDataConfig.file_type must be one of {FILE_TYPES}, got {self.file_type!r}")
        require(self.label_type in (None, "int", "float"),
                f"ClassificationDataConfig.label_type must be None, 'int' or 'float', got {self.label_type!r}")
        for name in ("global_batch_size", "seq_len"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1,
                     f"ClassificationDataConfig.{name} must be an int >= 1, got {value!r}")
        if self.file_type == "tfrecord":
            require(not self.spm_model and not self.vocab_file,
                    "ClassificationDataConfig with file_type='tfrecord' reads tokenized records: leave spm_model "
                    f"and vocab_file empty, got spm_model={self.spm_model!r}, vocab_file={self.vocab_file!r}")
            require(self.split in ("auto", "all"),
                    f"ClassificationDataConfig.split={self.split!r} only splits a TSV: TFRecords are read whole "
                    "('auto' or 'all'); give validation_data its own files")
            require(self.bucket_boundaries is None, "ClassificationDataConfig.bucket_boundaries apply to TSV input "
                                                    "only: with file_type='tfrecord' set them to None")
            input_sharding.check_policy(self.sharding, self.is_training, field="ClassificationDataConfig.sharding")
            return
        require(not self.include_example_id, "ClassificationDataConfig.include_example_id needs file_type="
                                             "'tfrecord' (TSV lines have no example_id; predict keeps file order)")
        require(bool(self.spm_model) != bool(self.vocab_file),
                "ClassificationDataConfig needs exactly one tokenizer: spm_model (the encoder's sentencepiece "
                f"model) or vocab_file (its WordPiece vocab.txt), got spm_model={self.spm_model!r}, "
                f"vocab_file={self.vocab_file!r}")
        require(isinstance(self.lower_case, bool),
                f"ClassificationDataConfig.lower_case must be True or False, got {self.lower_case!r}")
        require(self.split in SPLITS, f"ClassificationDataConfig.split must be one of {SPLITS}, got {self.split!r}")
        require(self.sharding != "file", "ClassificationDataConfig.sharding='file' does not apply (one TSV, read "
                                         "into memory): use 'auto', 'element' or 'chief'")
        input_sharding.check_policy(self.sharding, self.is_training, field="ClassificationDataConfig.sharding")


@dataclasses.dataclass(frozen=True)
class SentencePredictionConfig:
    """The sentence-prediction task.

    Attributes:
      model: a callable returning the `BertClassifier` (gin binds `@BertClassifier` with its network).
      num_classes: classes of the labels; 1 means regression on float labels.
      train_data, validation_data: the data configs (either may be None).
      init_checkpoint: a pretraining checkpoint whose `encoder` initializes the classifier's network.
      init_cls_pooler: also initialize the classification head's inner dense from the pretraining
        checkpoint's `next_sentence.pooler_dense` (Model Garden's; for a classifier without the encoder's
        pooler, use_encoder_pooler=False).
      metric_type: the whole-validation-set metric reported beside the streaming ones: 'accuracy', 'f1'
        (binary), 'matthews_corrcoef' or 'pearson_spearman_corr' (the mean of the two correlations).
    """
    model: Callable[[], keras.Model] | None = None
    num_classes: int = 2
    train_data: ClassificationDataConfig | None = None
    validation_data: ClassificationDataConfig | None = None
    init_checkpoint: str = ""
    init_cls_pooler: bool = False
    metric_type: str = "accuracy"

    def __post_init__(self):
        require(callable(self.model),
                 f"SentencePredictionConfig.model must be a callable building the model, got {self.model!r}")
        require(isinstance(self.num_classes, int) and self.num_classes >= 1,
                 f"SentencePredictionConfig.num_classes must be an int >= 1, got {self.num_classes!r}")
        require(self.train_data is not None or self.validation_data is not None,
                 "SentencePredictionConfig needs train_data, validation_data or both")
        require(self.metric_type in METRIC_TYPES,
                 f"SentencePredictionConfig.metric_type must be one of {METRIC_TYPES}, got {self.metric_type!r}")
        require(self.metric_type != "f1" or self.num_classes == 2,
                 f"SentencePredictionConfig.metric_type='f1' is binary: it needs num_classes=2, got {self.num_classes}")
        expected = "float" if self.num_classes == 1 else "int"
        for name in ("train_data", "validation_data"):
            label_type = getattr(getattr(self, name), "label_type", None)
            require(label_type in (None, expected),
                    f"SentencePredictionConfig.{name}.label_type is {label_type!r} but num_classes="
                    f"{self.num_classes} means {expected!r} labels: set label_type={expected!r} (or None)")
        self._resolve_splits()

    def _resolve_splits(self):
        """Replaces split='auto': a file serving both sides is split; two files are each read whole.

        An explicit 'train' / 'validation' split of one side while the other side reads another file
        would train on part of one file and evaluate on part of another: refused.
        """
        sides = {name: getattr(self, name) for name in ("train_data", "validation_data")
                 if hasattr(getattr(self, name), "split")}  # ClassificationDataConfigs (any other passes as is)
        one_file = len(sides) == 2 and len({data.input_path for data in sides.values()}) == 1
        for name, data in sides.items():
            if data.split == "auto" and data.file_type == "tfrecord":  # records are read whole
                object.__setattr__(self, name, dataclasses.replace(data, split="all"))
            elif data.split == "auto":
                split = ("train" if name == "train_data" else "validation") if one_file else "all"
                object.__setattr__(self, name, dataclasses.replace(data, split=split))
            elif len(sides) == 2 and not one_file and data.split != "all":
                other = sides["validation_data" if name == "train_data" else "train_data"]
                raise ValueError(
                    f"SentencePredictionConfig.{name}.split is {data.split!r}: it takes part of {data.input_path} "
                    f"although the other side reads another file ({other.input_path}); use split='auto' or "
                    f"'all' (with gin: TRAIN_SPLIT / EVAL_SPLIT = 'auto')")

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
        encoder = getattr(model, "checkpoint_items", {}).get("encoder")
        for data in (self.task_config.train_data, self.task_config.validation_data):
            if encoder is not None and data is not None and data.file_type == "tsv":  # records: no tokenizer
                rows = int(encoder.get_embedding_table().shape[0])
                pieces = tokenizer_loader.load_tokenizer(data.spm_model, data.vocab_file, data.lower_case).vocab_size
                field, path = ("spm_model", data.spm_model) if data.spm_model else ("vocab_file", data.vocab_file)
                if rows != pieces:
                    raise ValueError(f"The encoder's vocabulary has {rows} ids (BertEncoder.vocab_size) but the "
                                     f"tokenizer {path} has {pieces} pieces (ClassificationDataConfig.{field}): "
                                     f"give the encoder the tokenizer's size (with gin: VOCAB_SIZE = {pieces}), or "
                                     f"the tokenizer the encoder was pretrained with")
        return model

    def initialize(self, model: keras.Model):
        """Loads a pretraining checkpoint's encoder into the classifier's network (and, with init_cls_pooler,
        its `next_sentence.pooler_dense` into the head's inner dense)."""
        if not self.task_config.init_checkpoint:
            return
        items = {"encoder": model.checkpoint_items["encoder"]}
        required = ["encoder"]
        if self.task_config.init_cls_pooler:
            name = getattr(model, "head_name", "sentence_prediction") + ".pooler_dense"
            if name not in model.checkpoint_items:
                raise ValueError(f"init_cls_pooler=True needs a classification head with an inner dense ({name}); "
                                 f"the model's checkpoint items are {sorted(model.checkpoint_items)}")
            items["next_sentence.pooler_dense"] = model.checkpoint_items[name]
            required.append("next_sentence.pooler_dense")
        checkpoint_restore.restore_items(items, self.task_config.init_checkpoint, required=required)

    def build_inputs(self, params: ClassificationDataConfig, input_context: tf.distribute.InputContext | None = None):
        label_type = "float" if self.task_config.is_regression else "int"
        if params.file_type == "tfrecord":
            return classification_records.load_records(
                params.input_path, seq_len=params.seq_len, batch_size=params.global_batch_size,
                is_training=params.is_training, label_type=label_type, label_field=params.label_field,
                include_example_id=params.include_example_id, pad_to=params.pad_to, seed=params.seed,
                input_context=input_context, sharding=params.sharding)
        num_classes = None if self.task_config.is_regression else self.task_config.num_classes
        examples = classification_input.read_examples(params.input_path, label_type=label_type,
                                                      num_classes=num_classes)
        split = "all" if params.split == "auto" else params.split  # 'auto' outside this task's config: one file
        source = f"all of {params.input_path}"
        if split != "all":
            train, validation = classification_input.split_examples(examples, params.validation_fraction, params.seed)
            examples = train if split == "train" else validation
            source = f"the {split!r} part of {params.input_path} (validation_fraction {params.validation_fraction})"
        logging.info("%s data: %d examples, %s", "Training" if params.is_training else "Evaluation", len(examples),
                     source)
        return classification_input.build_dataset(
            examples, tokenizer_loader.load_tokenizer(params.spm_model, params.vocab_file, params.lower_case),
            seq_len=params.seq_len,
            batch_size=params.global_batch_size, is_training=params.is_training, pad_to=params.pad_to,
            bucket_boundaries=params.bucket_boundaries, label_type=label_type, seed=params.seed,
            input_context=input_context, sharding=params.sharding)

    def split_inputs(self, inputs):
        """(features, labels): labels under `label` or Model Garden's `label_ids`; a (features, labels)
        tuple stays as it is."""
        if isinstance(inputs, tuple) and len(inputs) == 2:
            return inputs
        key = LABEL_IDS if LABEL_IDS in inputs else features.LABEL
        features_only = {name: value for name, value in inputs.items() if name != key}
        return features_only, inputs[key]

    @staticmethod
    def _labels(labels):
        """The label tensor: `labels` itself, or its `label` / `label_ids` entry (Model Garden passes the batch)."""
        if isinstance(labels, dict):
            return labels[LABEL_IDS] if LABEL_IDS in labels else labels[features.LABEL]
        return labels

    def build_losses(self, labels, model_outputs, aux_losses=None) -> tf.Tensor:
        """Mean cross-entropy (classes) or squared error (regression), plus the auxiliary losses.

        Args:
          labels: int32 [batch] class ids or float32 [batch] targets, or a batch holding them under
            `label` / `label_ids` (int32 or float32 [batch] or [batch, 1]).
          model_outputs: float logits [batch, num_classes].
          aux_losses: auxiliary loss tensors, i.e. losses in keras.Model.
        """
        labels = tf.reshape(self._labels(labels), [-1])
        logits = tf.cast(model_outputs, tf.float32)
        if self.task_config.is_regression:
            per_example = tf.square(tf.cast(labels, tf.float32) - tf.squeeze(logits, axis=-1))
        else:
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        # The mean, and 0 (not NaN) for an empty batch: a multi-worker evaluation hands one to a replica
        # whose data ran out first, and a NaN would poison the averages even at weight 0.
        loss = tf.math.divide_no_nan(tf.reduce_sum(per_example), tf.cast(tf.size(per_example), tf.float32))
        if aux_losses:
            loss += tf.add_n([tf.cast(aux, tf.float32) for aux in aux_losses])
        return loss

    def build_metrics(self, training: bool = True) -> list:
        del training
        if self.task_config.is_regression:
            return [keras.metrics.MeanSquaredError(name="mean_squared_error")]
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def process_metrics(self, metrics, labels, model_outputs, **kwargs):
        labels = tf.reshape(self._labels(labels), [-1])
        predictions = tf.cast(model_outputs, tf.float32)
        if self.task_config.is_regression:  # [batch, 1] against [batch, 1]: one squared error per example, so
            labels = tf.reshape(tf.cast(labels, tf.float32), [-1, 1])  # a short last batch weighs its size
        for metric in metrics:
            metric.update_state(labels, predictions)

    def process_compiled_metrics(self, compiled_metrics, labels, model_outputs):
        compiled_metrics.update_state(tf.reshape(self._labels(labels), [-1]), tf.cast(model_outputs, tf.float32))

    def validation_step(self, inputs, model: keras.Model, metrics=None) -> dict:
        """Validation step; the logs carry `sentence_prediction` (float32 logits [batch, num_classes], [batch]
        for regression, or with metric_type='matthews_corrcoef' the predicted class ids int64 [batch, 1])
        and `labels` [batch] for aggregate_logs, as Model Garden's."""
        features_only, labels = self.split_inputs(inputs)
        outputs = self.inference_step(features_only, model)
        logs = {self.loss: self.build_losses(labels=labels, model_outputs=outputs, aux_losses=model.losses)}
        if metrics:
            self.process_metrics(metrics, labels, outputs)
        predictions = tf.cast(outputs, tf.float32)
        if self.task_config.is_regression:
            predictions = tf.squeeze(predictions, axis=-1)
        elif self.task_config.metric_type == "matthews_corrcoef":  # Model Garden's: one class id per example
            predictions = tf.expand_dims(tf.argmax(predictions, axis=-1), axis=1)
        logs["sentence_prediction"] = predictions
        logs["labels"] = tf.reshape(self._labels(labels), [-1])
        return logs

    def aggregate_logs(self, state=None, step_outputs=None):
        """Gathers the predictions and labels of every validation step on the host."""
        state = state if state is not None else {"predictions": [], "labels": []}
        state["predictions"].append(np.concatenate(_host_values(step_outputs["sentence_prediction"])))
        state["labels"].append(np.concatenate(_host_values(step_outputs["labels"])))
        return state

    def reduce_aggregated_logs(self, aggregated_logs, global_step=None) -> dict:
        """Metrics over the whole validation set: regression `pearson_correlation`, `spearman_correlation`;
        classification `cls_accuracy`; and the `metric_type` one."""
        if not aggregated_logs or not aggregated_logs["predictions"]:
            return {}
        predictions = np.concatenate(aggregated_logs["predictions"])
        labels = np.concatenate(aggregated_logs["labels"])
        if self.task_config.is_regression:
            logs = {"pearson_correlation": pearson(predictions, labels),
                    "spearman_correlation": pearson(_ranks(predictions), _ranks(labels))}
            if self.task_config.metric_type == "pearson_spearman_corr":
                logs["pearson_spearman_corr"] = (logs["pearson_correlation"] + logs["spearman_correlation"]) / 2
            return logs
        if predictions.ndim == 2 and predictions.shape[1] == 1:  # class ids (matthews_corrcoef), not logits
            predicted = predictions[:, 0].astype(np.int64)
        else:
            predicted = np.argmax(predictions, axis=-1)
        labels = labels.astype(np.int64)
        logs = {"cls_accuracy": float(np.mean(predicted == labels))}
        metric_type = self.task_config.metric_type
        if metric_type == "f1":
            logs["f1"] = binary_f1(predicted, labels)
        elif metric_type == "matthews_corrcoef":
            logs["matthews_corrcoef"] = matthews_corrcoef(predicted, labels, self.task_config.num_classes)
        elif metric_type == "pearson_spearman_corr":
            logs["pearson_spearman_corr"] = (pearson(predicted.astype(np.float64), labels.astype(np.float64))
                                             + pearson(_ranks(predicted), _ranks(labels))) / 2
        return logs


def predict(task: SentencePredictionTask, params: ClassificationDataConfig, model: keras.Model) -> list:
    """Predicts every example of `params` (read in order, once): Model Garden's `sentence_prediction.predict`.

    Returns:
      A list with one entry per example, in file order (sorted by `example_id` when the records carry it,
      as Model Garden's): the predicted class id (int64 scalar tensor) for classification, the predicted
      value (float32 scalar tensor) for regression.
    """
    if params.is_training:
        params = dataclasses.replace(params, is_training=False)  # one ordered pass, no shuffling
    step = tf.function(lambda inputs: task.inference_step(inputs, model))
    predictions, example_ids = [], []
    for batch in task.build_inputs(params):
        features_only, _ = task.split_inputs(batch)
        if classification_records.EXAMPLE_ID in features_only:
            example_ids.extend(features_only.pop(classification_records.EXAMPLE_ID).numpy().tolist())
        outputs = tf.cast(step(features_only), tf.float32)
        if task.task_config.is_regression:
            predictions.extend(tf.unstack(tf.reshape(outputs, [-1])))
        else:
            predictions.extend(tf.unstack(tf.argmax(outputs, axis=-1)))
    if example_ids:
        predictions = [prediction for _, prediction in sorted(zip(example_ids, predictions), key=lambda p: p[0])]
    return predictions


def binary_f1(predicted: np.ndarray, labels: np.ndarray) -> float:
    """F1 of class 1 (0.0 when there is no true or predicted positive)."""
    true_positive = float(np.sum((predicted == 1) & (labels == 1)))
    denominator = float(np.sum(predicted == 1) + np.sum(labels == 1))
    return 2 * true_positive / denominator if denominator else 0.0


def matthews_corrcoef(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Matthews correlation coefficient (multi-class, Gorodkin's form); 0.0 when undefined."""
    confusion = np.zeros([num_classes, num_classes], np.float64)
    np.add.at(confusion, (labels, predicted), 1.0)
    total, correct = confusion.sum(), np.trace(confusion)
    true_counts, predicted_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    numerator = correct * total - np.dot(true_counts, predicted_counts)
    denominator = np.sqrt((total ** 2 - np.dot(predicted_counts, predicted_counts))
                          * (total ** 2 - np.dot(true_counts, true_counts)))
    return float(numerator / denominator) if denominator > 0 else 0.0


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
