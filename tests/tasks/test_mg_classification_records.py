"""Model Garden's sentence-prediction TFRecords (input_ids / input_mask / segment_ids / label_ids) read by our
classification input and task, from a Model Garden data config translated by model_garden_config."""
import numpy as np
import pytest
import tensorflow as tf

from research import modeling
from research.data import classification_records
from research.tasks import model_garden_config, sentence_prediction

SEQ = 8
ENCODER = {"type": "bert", "bert": {"vocab_size": 50, "hidden_size": 16, "num_layers": 1, "num_attention_heads": 2,
                                    "intermediate_size": 32}}


def write_records(path, num_examples, label_type="int", label_field="label_ids", lengths=None, example_ids=None):
    """Records as Model Garden's classifier data writers make them; example i has ids 10 + i, real length
    lengths[i] (default SEQ), label i % 3 (or i / 10 as a float)."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(num_examples):
            length = SEQ if lengths is None else lengths[i]
            ids = [10 + i] * length + [0] * (SEQ - length)
            feature = {"input_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=ids)),
                       "input_mask": tf.train.Feature(int64_list=tf.train.Int64List(value=[1] * length + [0] * (SEQ - length))),
                       "segment_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=[0] * SEQ)),
                       "example_id": tf.train.Feature(int64_list=tf.train.Int64List(
                           value=[i if example_ids is None else example_ids[i]]))}
            feature[label_field] = (tf.train.Feature(float_list=tf.train.FloatList(value=[i / 10]))
                                    if label_type == "float"
                                    else tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 3])))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return str(path)


def test_records_become_our_batches_with_model_gardens_names_mapped(tmp_path):
    path = write_records(tmp_path / "train.tf_record", 5, label_field="my_label", lengths=[3, 5, 2, 8, 1])
    dataset = classification_records.load_records(path, seq_len=SEQ, batch_size=4, label_field="my_label",
                                                  include_example_id=True)
    batches = list(dataset)
    assert [int(b["label"].shape[0]) for b in batches] == [4, 1]  # evaluation: one pass, last partial batch kept
    first = batches[0]
    assert sorted(first) == ["example_id", "input_mask", "input_type_ids", "input_word_ids", "label"]
    assert all(first[name].dtype == tf.int32 for name in first)
    np.testing.assert_array_equal(first["input_word_ids"][1], [11] * 5 + [0] * 3)
    np.testing.assert_array_equal(first["label"], [0, 1, 2, 0])
    np.testing.assert_array_equal(first["example_id"], [0, 1, 2, 3])
    trimmed = next(iter(classification_records.load_records(path, seq_len=SEQ, batch_size=3, pad_to="batch",
                                                            label_field="my_label")))
    assert trimmed["input_word_ids"].shape == (3, 5)  # the batch's longest example (5 of 8 tokens)


def test_training_records_repeat_into_full_batches_and_float_labels_parse(tmp_path):
    path = write_records(tmp_path / "train.tf_record", 5, label_type="float")
    batches = list(classification_records.load_records(path, seq_len=SEQ, batch_size=8, is_training=True,
                                                       label_type="float").take(2))
    assert [b["label"].shape for b in batches] == [(8,), (8,)] and batches[0]["label"].dtype == tf.float32


def test_bad_reader_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"No classification TFRecord file matches '.*missing\*'"):
        classification_records.load_records(str(tmp_path / "missing*"))
    with pytest.raises(ValueError, match="label_type must be one of"):
        classification_records.record_spec(SEQ, label_type="str")


def _task(tmp_path, num_classes, metric_type="accuracy", **data):
    path = write_records(tmp_path / "data.tf_record", 10, label_type="float" if num_classes == 1 else "int")
    data = {"input_path": path, "seq_length": SEQ, "global_batch_size": 4, **data}
    config = model_garden_config.sentence_prediction_config(
        {"model": {"encoder": ENCODER, "num_classes": num_classes}, "train_data": data, "metric_type": metric_type})
    return sentence_prediction.SentencePredictionTask(config), config


def test_a_model_garden_data_config_without_spm_model_reads_its_records(tmp_path):
    task, config = _task(tmp_path, 3, metric_type="matthews_corrcoef", label_type="int")
    assert (config.train_data.file_type, config.train_data.split, config.train_data.pad_to) == ("tfrecord", "all", "max")
    model = task.build_model()  # no tokenizer: the vocabulary check does not apply
    batch = next(iter(task.build_inputs(config.train_data)))
    logs = task.validation_step(batch, model, metrics=task.build_metrics())
    # Model Garden's matthews_corrcoef logs: one predicted class id per example.
    assert logs["sentence_prediction"].shape == (4, 1) and logs["sentence_prediction"].dtype == tf.int64
    state = task.aggregate_logs(step_outputs=logs)
    reduced = task.reduce_aggregated_logs(task.aggregate_logs(state, logs))
    predicted, labels = logs["sentence_prediction"].numpy()[:, 0], logs["labels"].numpy()
    assert reduced["cls_accuracy"] == pytest.approx(np.mean(predicted == labels))
    assert -1.0 <= reduced["matthews_corrcoef"] <= 1.0


def test_predict_returns_one_prediction_per_record_sorted_by_example_id(tmp_path):
    task, _ = _task(tmp_path, 1)
    model = task.build_model()
    shuffled = write_records(tmp_path / "test.tf_record", 6, label_type="float", example_ids=[5, 3, 1, 0, 4, 2])
    params = model_garden_config.classification_data_config(
        {"input_path": shuffled, "seq_length": SEQ, "global_batch_size": 4, "is_training": False,
         "drop_remainder": False, "include_example_id": True, "label_type": "float"})
    predictions = sentence_prediction.predict(task, params, model)
    assert len(predictions) == 6 and all(p.dtype == tf.float32 and p.shape == () for p in predictions)
    # Record k (ids 10 + k) has example_id [5, 3, 1, 0, 4, 2][k]: sorted order is records 3, 2, 5, 1, 4, 0.
    inputs = {"input_word_ids": tf.constant([[10 + k] * SEQ for k in (3, 2, 5, 1, 4, 0)], tf.int32),
              "input_mask": tf.ones([6, SEQ], tf.int32), "input_type_ids": tf.zeros([6, SEQ], tf.int32)}
    expected = tf.reshape(model(inputs, training=False), [-1]).numpy()
    np.testing.assert_allclose([float(p) for p in predictions], expected, rtol=1e-5, atol=1e-6)


def test_translation_refuses_what_it_cannot_honour(tmp_path):
    with pytest.raises(ValueError, match="drop_remainder=True for evaluation data"):
        model_garden_config.classification_data_config({"input_path": "x", "is_training": False})
    with pytest.raises(ValueError, match="file_type 'tfds' has no counterpart"):
        model_garden_config.classification_data_config({"input_path": "x", "file_type": "tfds"})
    with pytest.raises(ValueError, match="label_type is 'float' but num_classes=3 means 'int'"):
        _task(tmp_path, 3, label_type="float")
    with pytest.raises(ValueError, match="include_example_id needs file_type='tfrecord'"):
        sentence_prediction.ClassificationDataConfig(input_path="a.tsv", spm_model="m", include_example_id=True)
    with pytest.raises(ValueError, match="file_type='tfrecord' reads tokenized records: leave spm_model"):
        sentence_prediction.ClassificationDataConfig(input_path="a", spm_model="m", file_type="tfrecord")
    with pytest.raises(ValueError, match="split='train' only splits a TSV"):
        sentence_prediction.ClassificationDataConfig(input_path="a", file_type="tfrecord", split="train")


def test_translated_model_config_answers_model_gardens_reads():
    config = model_garden_config.masked_lm_config({"model": {"encoder": {"type": "bert", "bert": {"num_layers": 1}}},
                                                   "train_data": {"input_path": "x.tfrecord"}})
    encoder = config.model.encoder.get()
    assert config.model.encoder.type == "bert"
    assert (encoder.vocab_size, encoder.num_layers, encoder.hidden_size) == (30522, 1, 768)  # defaults filled in
    with pytest.raises(AttributeError, match="read-only"):
        config.model.encoder = {}
    with pytest.raises(AttributeError, match="no field 'num_classes'"):
        _ = config.model.num_classes
    classifier = model_garden_config.sentence_prediction_config(
        {"model": {"encoder": ENCODER, "num_classes": 4}, "train_data": {"input_path": "x.tsv", "spm_model": "m"}})
    assert classifier.model.num_classes == 4 and classifier.model.encoder.get().hidden_size == 16
    assert isinstance(classifier.model(), modeling.BertClassifier)
