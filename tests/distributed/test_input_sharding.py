"""Per-replica batches and per-worker shards of the inputs (the sharding policies); empty evaluation
batches; where each task writes."""
import contextlib
import dataclasses
import logging as python_logging
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from absl import logging

from core.toy_task import experiment_config
from distributed import harness
from research import modeling
from research.core import base_trainer, distribute
from research.data import classification_input
from research.data import tokenizer as tokenizer_lib
from research.tasks import masked_lm, sentence_prediction
from tasks.task_helpers import tiny_encoder


@contextlib.contextmanager
def absltest_logs():
    """Collects what absl logs inside the block (as `.text`)."""
    class Collector(python_logging.Handler):
        text = ""

        def emit(self, record):
            Collector.text += record.getMessage() + "\n"

    handler = Collector()
    logging.get_absl_logger().addHandler(handler)
    try:
        yield handler
    finally:
        logging.get_absl_logger().removeHandler(handler)


def _config(records, batch=4):
    return masked_lm.PretrainDataConfig(input_path=records, global_batch_size=batch, seq_len=16, vocab_size=60,
                                        max_predictions_per_seq=10, mask_rate=1.0, mask_prob=0.0, random_prob=0.0,
                                        shuffle_buffer_size=1)


def _task(records):
    return masked_lm.MaskedLMTask(masked_lm.MaskedLMConfig(model=lambda: None, train_data=_config(records)))


def test_per_replica_batch_is_global_over_replicas_and_workers_read_their_own_shard(tmp_path):
    records = harness.write_split_invariant_records(tmp_path)
    task = _task(records)
    # MirroredStrategy, 2 replicas, one input pipeline: batches of 2 alternating the shards.
    mirrored = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=2)
    batch = next(iter(task.build_inputs(task.task_config.train_data, input_context=mirrored)))
    ids = batch["masked_lm_ids"].numpy()
    assert ids.shape == (2, 10) and (ids[0] != ids[1]).any()
    # 2 workers x 1 replica: each pipeline reads one shard only, batches of 2.
    per_worker = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        ids = next(iter(task.build_inputs(task.task_config.train_data, input_context=context)))["masked_lm_ids"]
        assert ids.shape == (2, 10) and (ids.numpy()[0] == ids.numpy()[1]).all()
        per_worker.append(ids.numpy()[0])
    assert (per_worker[0] != per_worker[1]).any()
    # One device: the global batch holds both sequences twice, as the two workers together.
    ids = next(iter(task.build_inputs(task.task_config.train_data)))["masked_lm_ids"].numpy()
    assert ids.shape == (4, 10)
    assert sorted(map(tuple, ids.tolist())) == sorted(map(tuple, [*per_worker, *per_worker]))


def test_single_process_strategies_write_model_dir(tmp_path, monkeypatch):
    """No temporary directory is made: task_write_dir would make it under tempfile's directory."""
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))
    model_dir = tmp_path / "model"
    for strategy in (tf.distribute.get_strategy(), tf.distribute.OneDeviceStrategy("/cpu:0")):
        assert distribute.is_chief(strategy)
        assert distribute.task_write_dir(str(model_dir), strategy) == str(model_dir)
    assert not list(temp_root.iterdir())


# -- sharding policies (research/data/input_sharding.py) ---------------------------------------------

def _context(pipelines, index):
    return tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=index,
                                      num_replicas_in_sync=pipelines)


def _records(directory, num_shards, per_shard):
    """Shards of `per_shard` distinct sequences each: sequence k of shard s starts [CLS] s*100 + k."""
    directory.mkdir(parents=True, exist_ok=True)
    for shard in range(num_shards):
        with tf.io.TFRecordWriter(str(directory / f"data-{shard:05d}.tfrecord")) as writer:
            for k in range(per_shard):
                ids = [2, 5 + shard * 20 + k] + [7] * 13 + [3]
                example = tf.train.Example(features=tf.train.Features(feature={
                    "input_word_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=ids)),
                    "input_type_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=[0] * 16))}))
                writer.write(example.SerializeToString())
    return str(directory / "data-*.tfrecord")


def _first_tokens(records, is_training, sharding, context, batches=None):
    config = dataclasses.replace(_config(records, batch=4), is_training=is_training, sharding=sharding)
    dataset = _task(records).build_inputs(config, input_context=context)
    if batches is not None:
        dataset = dataset.take(batches)
    return [int(token) for batch in dataset for token in batch["input_word_ids"][:, 1].numpy()]


@pytest.mark.parametrize("policy", ["auto", "element"])
def test_evaluation_with_fewer_files_than_workers_is_split_by_record(tmp_path, policy):
    records = _records(tmp_path, num_shards=1, per_shard=11)
    everything = _first_tokens(records, False, policy, None)
    assert sorted(everything) == list(range(5, 16))
    halves = [_first_tokens(records, False, policy, _context(2, index)) for index in range(2)]
    assert len(halves[0]) == 6 and len(halves[1]) == 5  # every other record, the first pipeline one more
    assert sorted(halves[0] + halves[1]) == sorted(everything)


def test_auto_splits_files_when_there_are_enough(tmp_path):
    records = _records(tmp_path, num_shards=2, per_shard=3)
    first, second = (_first_tokens(records, False, "auto", _context(2, index)) for index in range(2))
    assert first == [5, 6, 7] and second == [25, 26, 27]  # one whole file each


def test_training_with_fewer_files_than_workers_is_split_by_record_with_a_warning(tmp_path):
    records = _records(tmp_path, num_shards=1, per_shard=8)
    with absltest_logs() as logs:
        seen = [set(_first_tokens(records, True, "auto", _context(2, index), batches=4)) for index in range(2)]
    assert "every worker reads all of them and keeps every 2-th record" in logs.text
    assert seen[0] | seen[1] == set(range(5, 13)) and not seen[0] & seen[1]  # disjoint halves, each epoch


def test_chief_evaluates_everything_and_the_other_workers_nothing(tmp_path):
    records = _records(tmp_path, num_shards=3, per_shard=2)
    assert sorted(_first_tokens(records, False, "chief", _context(2, 0))) == [5, 6, 25, 26, 45, 46]
    assert _first_tokens(records, False, "chief", _context(2, 1)) == []


def test_bad_sharding_values_are_named(tmp_path):
    records = _records(tmp_path, num_shards=1, per_shard=2)
    with pytest.raises(ValueError, match=r"1 file\(s\) match .* fewer than the 2 input pipelines .*sharding='element'"):
        _first_tokens(records, False, "file", _context(2, 0))
    with pytest.raises(ValueError, match="PretrainDataConfig.sharding='chief' is for evaluation data only"):
        dataclasses.replace(_config(records), sharding="chief")
    with pytest.raises(ValueError, match=r"PretrainDataConfig.sharding must be one of .*got 'files'"):
        dataclasses.replace(_config(records), sharding="files")
    with pytest.raises(ValueError, match="ClassificationDataConfig.sharding='file' does not apply"):
        sentence_prediction.ClassificationDataConfig(input_path="x.tsv", spm_model="x.model", sharding="file")


def test_classification_examples_are_split_by_element_or_kept_on_the_chief(spm_model):
    examples = [classification_input.Example(label=i % 2, text_a=f"the dog {'and the fox ' * (i % 3)}")
                for i in range(7)]
    tokenizer = tokenizer_lib.Tokenizer(str(spm_model))

    def labels(sharding, context):
        dataset = classification_input.build_dataset(examples, tokenizer, seq_len=16, batch_size=2,
                                                     sharding=sharding, input_context=context)
        return sum(len(batch["label"]) for batch in dataset)

    assert [labels("auto", _context(2, i)) for i in range(2)] == [4, 3]
    assert [labels("chief", _context(2, i)) for i in range(2)] == [7, 0]
    assert labels("chief", None) == 7


# -- empty batches: what a worker whose evaluation data ran out gets -------------------------------

def _logs_with_and_without_an_empty_batch(task, validation):
    experiment = experiment_config(task=task.task_config)
    model = task.build_model()
    batches = task.build_inputs(validation)
    empty = batches.take(1).map(lambda batch: {name: value[:0] for name, value in batch.items()})
    logs = {}
    for name, dataset in (("plain", batches), ("with_empty", batches.concatenate(empty))):
        trainer = base_trainer.Trainer(experiment, task, model, task.create_optimizer(experiment.trainer.optimizer_config),
                                       train=False, validation_dataset=dataset)
        logs[name] = {key: float(value) for key, value in trainer.evaluate(-1).items()}
    return logs


def test_an_empty_evaluation_batch_changes_no_validation_log(tmp_path, spm_model):
    """MultiWorkerMirroredStrategy hands an empty batch to the replica whose input ran out first: the
    models must run on it and the logs must be those without it (no NaN from a mean over nothing)."""
    records = harness.write_split_invariant_records(tmp_path / "records", num_shards=2, per_shard=3)
    validation = dataclasses.replace(_config(records), is_training=False)
    pretraining = masked_lm.MaskedLMTask(masked_lm.MaskedLMConfig(
        model=lambda: modeling.BertPretrainer(tiny_encoder()), validation_data=validation))
    tsv = tmp_path / "reviews.tsv"
    tsv.write_text("".join(f"{i % 2}\tthe dog {'and the fox ' * (i % 3)}\n" for i in range(11)), encoding="utf-8")
    classification_data = sentence_prediction.ClassificationDataConfig(
        input_path=str(tsv), spm_model=str(spm_model), global_batch_size=4, seq_len=16, is_training=False)
    classification = sentence_prediction.SentencePredictionTask(sentence_prediction.SentencePredictionConfig(
        model=lambda: modeling.BertClassifier(tiny_encoder(vocab_size=150), num_classes=2, dropout_rate=0.0),
        validation_data=classification_data))
    for task, data, names in ((pretraining, validation, {"validation_loss", "masked_lm_accuracy", "lm_example_loss"}),
                              (classification, classification_data, {"validation_loss", "accuracy", "cls_accuracy"})):
        logs = _logs_with_and_without_an_empty_batch(task, data)
        assert set(logs["plain"]) == names
        for key, value in logs["plain"].items():
            assert np.isfinite(value) and logs["with_empty"][key] == pytest.approx(value, rel=1e-6), key
