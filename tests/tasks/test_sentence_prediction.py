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
    correct = total = 0
    for validation_batch in task.build_inputs(task.task_config.validation_data):
        task.validation_step(validation_batch, model, metrics=metrics)
        logits = model({k: v for k, v in validation_batch.items() if k != features.LABEL}, training=False).numpy()
        correct += int((logits.argmax(-1) == validation_batch[features.LABEL].numpy()).sum())
        total += len(logits)
    assert metrics[0].name == "accuracy" and total == 10
    assert float(metrics[0].result()) == pytest.approx(correct / total, abs=1e-7)


class FixedLogits:
    """A stand-in model whose outputs are known: the next array of `logits` at each call."""

    def __init__(self, *logits):
        self.logits = list(logits)
        self.losses = []

    def __call__(self, inputs, training=False):
        return tf.constant(self.logits.pop(0), tf.float32)


def test_classification_metrics_and_loss_equal_a_hand_computation_on_known_predictions(tmp_path, spm_model):
    task = make_task(tmp_path, spm_model, num_classes=3)
    labels = [np.array([0, 1, 2, 2]), np.array([1, 0])]
    logits = [np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.5, 0.0], [0.0, 0.0, 4.0]]),  # 3 of 4 right
              np.array([[0.0, 0.0, 1.0], [5.0, 1.0, 1.0]])]  # 1 of 2 right
    model, metrics = FixedLogits(*logits), task.build_metrics(training=False)
    for batch_labels in labels:
        batch = {features.INPUT_WORD_IDS: tf.zeros([len(batch_labels), 4], tf.int32),
                 features.LABEL: tf.constant(batch_labels, tf.int32)}
        logs = task.validation_step(batch, model, metrics=metrics)
    assert float(metrics[0].result()) == pytest.approx(4 / 6, abs=1e-7)
    last = logits[1] - logits[1].max(-1, keepdims=True)
    cross_entropy = np.log(np.exp(last).sum(-1)) - last[np.arange(2), labels[1]]
    assert float(logs[task.loss]) == pytest.approx(cross_entropy.mean(), rel=1e-6)


def test_regression_reports_mse_pearson_and_spearman(tmp_path, spm_model):
    task = make_task(tmp_path, spm_model, num_classes=1)
    model = task.build_model()
    metrics = task.build_metrics(training=False)
    state = None
    for batch in task.build_inputs(task.task_config.validation_data):
        state = task.aggregate_logs(state, task.validation_step(batch, model, metrics=metrics))
    reduced = task.reduce_aggregated_logs(state)
    predictions, labels = np.concatenate(state["predictions"]), np.concatenate(state["labels"])
    assert len(labels) == 10 and len(np.unique(predictions)) == 10 and len(np.unique(labels)) == 10  # no ties
    np.testing.assert_allclose(reduced["pearson_correlation"], np.corrcoef(predictions, labels)[0, 1], rtol=1e-4)
    ranks = [np.argsort(np.argsort(values)) for values in (predictions, labels)]  # tie-free ranks
    np.testing.assert_allclose(reduced["spearman_correlation"], np.corrcoef(*ranks)[0, 1], rtol=1e-6)
    assert metrics[0].name == "mean_squared_error"
    np.testing.assert_allclose(float(metrics[0].result()), np.mean((predictions - labels) ** 2), rtol=1e-5)


def test_correlations_equal_a_hand_computation_on_known_predictions(tmp_path, spm_model):
    task = make_task(tmp_path, spm_model, num_classes=1)
    state = {"predictions": [np.array([0.1, 0.4, 0.35]), np.array([0.8, 0.8])],
             "labels": [np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0])]}
    reduced = task.reduce_aggregated_logs(state)
    # Spearman by hand: prediction ranks 0, 2, 1, 3.5, 3.5 (the tie shares ranks 3 and 4), label ranks 0-4.
    np.testing.assert_allclose(reduced["spearman_correlation"],
                               np.corrcoef([0, 2, 1, 3.5, 3.5], [0, 1, 2, 3, 4])[0, 1], rtol=1e-12)
    np.testing.assert_allclose(reduced["pearson_correlation"],
                               np.corrcoef([0.1, 0.4, 0.35, 0.8, 0.8], [1, 2, 3, 4, 5])[0, 1], rtol=1e-12)


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


def test_classification_learns_what_generalizes_to_held_out_sentences(tmp_path, spm_model):
    """Trained on 160 sentences whose label is their words' sentiment, the classifier labels 40 other
    sentences far above the majority class (0.5) and above itself untrained: learning, not memorising."""
    rng = np.random.RandomState(7)
    positive, negative = ["good", "great", "fine", "fun", "sweet"], ["bad", "awful", "dull", "boring", "sour"]
    rows = [(label, " ".join(rng.choice(positive if label else negative, size=rng.randint(3, 7))))
            for label in [i % 2 for i in range(200)]]
    tsv = write_tsv(tmp_path / "sentiment.tsv", rows)

    def data(split, is_training):
        return sentence_prediction.ClassificationDataConfig(
            input_path=tsv, spm_model=str(spm_model), global_batch_size=16, seq_len=16, split=split,
            validation_fraction=0.2, is_training=is_training)
    config = sentence_prediction.SentencePredictionConfig(
        model=lambda: modeling.BertClassifier(tiny_encoder(vocab_size=SPM_VOCAB), num_classes=2, dropout_rate=0.0),
        num_classes=2, train_data=data("train", True), validation_data=data("validation", False))
    task = sentence_prediction.SentencePredictionTask(config)
    model = task.build_model()

    def held_out_accuracy():
        metrics = task.build_metrics(training=False)
        for batch in task.build_inputs(config.validation_data):
            task.validation_step(batch, model, metrics=metrics)
        return float(metrics[0].result())

    untrained = held_out_accuracy()
    optimizer = task.create_optimizer(constant_optimizer_config(1e-2))
    step = tf.function(lambda inputs: task.train_step(inputs, model, optimizer))
    for batch in task.build_inputs(config.train_data).take(80):
        step(batch)
    trained = held_out_accuracy()
    assert trained >= 0.9 and trained >= untrained + 0.2, (untrained, trained)
