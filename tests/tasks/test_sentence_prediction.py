"""SentencePredictionTask: classification and regression, inputs from a TSV, encoder initialization."""
import numpy as np
import pytest
import tensorflow as tf

from research import modeling
from research.data import features
from research.tasks import sentence_prediction

from task_helpers import constant_optimizer_config, tiny_encoder, train_steps

SPM_VOCAB = 150  # the shared tiny sentencepiece model's
WORDS = "good bad great awful fine dull fun boring sweet sour".split()


def write_tsv(path, rows):
    path.write_text("".join("\t".join(map(str, row)) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def make_task(tmp_path, spm_model, num_classes=2, rows=None, init_checkpoint=""):
    rng = np.random.RandomState(0)
    if rows is None:
        rows = [(i % num_classes if num_classes > 1 else round(float(rng.rand()), 3),
                 " ".join(rng.choice(WORDS, size=rng.randint(2, 8)))) for i in range(40)]
    tsv = write_tsv(tmp_path / "data.tsv", rows)
    data = sentence_prediction.ClassificationDataConfig(input_path=tsv, spm_model=str(spm_model), global_batch_size=8,
                                                        seq_len=16, split="train", validation_fraction=0.25)
    validation = sentence_prediction.ClassificationDataConfig(input_path=tsv, spm_model=str(spm_model),
                                                              global_batch_size=8, seq_len=16, split="validation",
                                                              validation_fraction=0.25, is_training=False)
    config = sentence_prediction.SentencePredictionConfig(
        model=lambda: modeling.BertClassifier(tiny_encoder(vocab_size=SPM_VOCAB), num_classes=num_classes, dropout_rate=0.0),
        num_classes=num_classes, train_data=data, validation_data=validation, init_checkpoint=init_checkpoint)
    return sentence_prediction.SentencePredictionTask(config)


def test_classification_learns_a_fixed_batch_and_reports_accuracy(tmp_path, spm_model):
    task = make_task(tmp_path, spm_model)
    model = task.build_model()
    batch = next(iter(task.build_inputs(task.task_config.train_data)))
    assert set(batch) == {features.INPUT_WORD_IDS, features.INPUT_MASK, features.INPUT_TYPE_IDS, features.LABEL}
    losses = train_steps(task, model, task.create_optimizer(constant_optimizer_config(1e-2)), batch, 30)
    assert losses[-1] < 0.3 * losses[0], losses
    metrics = task.build_metrics(training=False)
    for validation_batch in task.build_inputs(task.task_config.validation_data):
        task.validation_step(validation_batch, model, metrics=metrics)
    assert metrics[0].name == "accuracy" and 0.0 <= float(metrics[0].result()) <= 1.0


def test_regression_reports_mse_pearson_and_spearman(tmp_path, spm_model):
    task = make_task(tmp_path, spm_model, num_classes=1)
    model = task.build_model()
    metrics = task.build_metrics(training=False)
    state = None
    for batch in task.build_inputs(task.task_config.validation_data):
        state = task.aggregate_logs(state, task.validation_step(batch, model, metrics=metrics))
    reduced = task.reduce_aggregated_logs(state)
    predictions, labels = np.concatenate(state["predictions"]), np.concatenate(state["labels"])
    assert len(labels) == 10
    np.testing.assert_allclose(reduced["pearson_correlation"], np.corrcoef(predictions, labels)[0, 1], rtol=1e-4)
    assert -1.0 <= reduced["spearman_correlation"] <= 1.0
    assert metrics[0].name == "mean_squared_error"


def test_spearman_uses_average_ranks_for_ties():
    a = np.array([1.0, 2.0, 2.0, 3.0])
    b = np.array([10.0, 20.0, 30.0, 40.0])
    ranks_a = sentence_prediction._ranks(a)
    np.testing.assert_array_equal(ranks_a, [0.0, 1.5, 1.5, 3.0])
    np.testing.assert_allclose(sentence_prediction.pearson(ranks_a, sentence_prediction._ranks(b)), 0.9486833, rtol=1e-6)


def test_labels_outside_num_classes_name_the_line(tmp_path, spm_model):
    task = make_task(tmp_path, spm_model, rows=[(0, "good"), (1, "bad"), (5, "fine"), (0, "dull")])
    with pytest.raises(ValueError, match="line 3"):
        task.build_inputs(task.task_config.train_data)


def test_initialize_loads_a_pretraining_checkpoint_encoder(tmp_path, spm_model):
    pretrainer = modeling.BertPretrainer(tiny_encoder(vocab_size=SPM_VOCAB))
    path = tf.train.Checkpoint(**pretrainer.checkpoint_items).write(str(tmp_path / "pretrained" / "ckpt"))
    task = make_task(tmp_path, spm_model, init_checkpoint=str(tmp_path / "pretrained"))
    model = task.build_model()
    task.initialize(model)
    for restored, original in zip(model.checkpoint_items["encoder"].weights, pretrainer.encoder.weights):
        np.testing.assert_array_equal(restored.numpy(), original.numpy())
    assert path.startswith(str(tmp_path))


def test_config_errors_name_the_field(tmp_path, spm_model):
    with pytest.raises(ValueError, match="SentencePredictionConfig.num_classes"):
        sentence_prediction.SentencePredictionConfig(model=lambda: None, num_classes=0,
                                                     train_data=make_task(tmp_path, spm_model).task_config.train_data)
    with pytest.raises(ValueError, match="ClassificationDataConfig.split"):
        sentence_prediction.ClassificationDataConfig(input_path="x", spm_model="y", split="test")
