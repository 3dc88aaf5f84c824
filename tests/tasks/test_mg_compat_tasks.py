"""MaskedLMTask and SentencePredictionTask behave as Model Garden documents them (issue items 4, 5, 9), and
a Model Garden experiment dict or YAML translates into our dataclasses."""
import numpy as np
import pytest
import tensorflow as tf

from research import modeling
from research.core import config_definitions, optimization
from research.data import features
from research.tasks import masked_lm, model_garden_config, sentence_prediction

from task_helpers import PREDICTIONS, SEQ_LEN, VOCAB, tiny_encoder, write_pretraining_records
from test_sentence_prediction import SPM_VOCAB, make_task as make_classification_task


def pretraining_task(tmp_path, init_checkpoint=""):
    data = masked_lm.PretrainDataConfig(input_path=write_pretraining_records(tmp_path, next_sentence=True),
                                        global_batch_size=4, seq_len=SEQ_LEN, vocab_size=VOCAB,
                                        max_predictions_per_seq=PREDICTIONS, use_next_sentence_label=True)
    heads = [modeling.ClassificationHead(inner_dim=8, num_classes=2, name="next_sentence")]
    config = masked_lm.MaskedLMConfig(model=lambda: modeling.BertPretrainer(tiny_encoder(), classification_heads=heads),
                                      train_data=data, init_checkpoint=init_checkpoint)
    return masked_lm.MaskedLMTask(config)


def test_masked_lm_restores_every_checkpoint_item_and_skips_an_empty_directory(tmp_path):
    source_task = pretraining_task(tmp_path / "a")
    source = source_task.build_model()
    tf.train.Checkpoint(model=source, **source.checkpoint_items).save(str(tmp_path / "ckpts" / "ckpt"))
    (tmp_path / "empty").mkdir()
    task = pretraining_task(tmp_path / "b", init_checkpoint=str(tmp_path / "empty"))
    model = task.build_model()
    task.initialize(model)  # no checkpoint in the directory: Model Garden logs and goes on
    task = pretraining_task(tmp_path / "c", init_checkpoint=str(tmp_path / "ckpts"))
    task.initialize(model)
    for name in ("encoder", "masked_lm", "next_sentence"):
        for restored, original in zip(model.checkpoint_items[name].weights, source.checkpoint_items[name].weights):
            np.testing.assert_array_equal(restored.numpy(), original.numpy())


def test_next_sentence_labels_of_shape_batch_by_one(tmp_path):
    task = pretraining_task(tmp_path)
    model = task.build_model()
    batch = next(iter(task.build_inputs(task.task_config.train_data)))
    column = {**batch, features.NEXT_SENTENCE_LABELS: batch[features.NEXT_SENTENCE_LABELS][:, None]}
    metrics = task.build_metrics()
    flat_logs = task.validation_step(batch, model)
    column_logs = task.validation_step(column, model, metrics=metrics)
    np.testing.assert_allclose(float(column_logs["loss"]), float(flat_logs["loss"]), rtol=1e-6)
    assert 0.0 <= float({m.name: m for m in metrics}["next_sentence_accuracy"].result()) <= 1.0


def test_masked_lm_build_model_params_and_scale_loss_default(tmp_path):
    task = masked_lm.MaskedLMTask(None)
    model = task.build_model(lambda: modeling.BertPretrainer(tiny_encoder()))
    assert isinstance(model, modeling.BertPretrainer)
    assert masked_lm.MaskedLMConfig(model=lambda: None, train_data=masked_lm.PretrainDataConfig()).scale_loss is False
    assert masked_lm.PretrainDataConfig(seq_len=64).seq_length == 64


def test_classification_logs_predictions_labels_and_model_garden_metrics(tmp_path, spm_model):
    task = make_classification_task(tmp_path, spm_model)
    model = task.build_model()
    config = task.task_config
    outputs = []
    for batch in task.build_inputs(config.validation_data):
        logs = task.validation_step(batch, model)
        assert logs["sentence_prediction"].shape == (batch[features.LABEL].shape[0], 2)
        outputs.append({k: (v,) for k, v in logs.items()})  # per-replica tuples, as the Trainer passes them
    state = None
    for step_outputs in outputs:
        state = task.aggregate_logs(state, step_outputs)
    predictions = np.concatenate([o["sentence_prediction"][0].numpy() for o in outputs]).argmax(-1)
    labels = np.concatenate([o["labels"][0].numpy() for o in outputs])
    reduced = task.reduce_aggregated_logs(state)
    assert reduced["cls_accuracy"] == pytest.approx(float(np.mean(predictions == labels)))


@pytest.mark.parametrize("metric_type", ["f1", "matthews_corrcoef"])
def test_metric_type(tmp_path, spm_model, metric_type):
    task = make_classification_task(tmp_path, spm_model)
    config = sentence_prediction.SentencePredictionConfig(**{**task.task_config.__dict__, "metric_type": metric_type})
    task = sentence_prediction.SentencePredictionTask(config)
    predictions = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    labels = np.array([1, 0, 0, 0, 1])
    reduced = task.reduce_aggregated_logs({"predictions": [predictions], "labels": [labels]})
    # By hand: tp=2, fp=1, fn=0, tn=2.
    expected = {"f1": 2 * 2 / (3 + 2), "matthews_corrcoef": (2 * 2 - 1 * 0) / np.sqrt(3 * 2 * 2 * 3)}[metric_type]
    assert reduced[metric_type] == pytest.approx(expected)
    with pytest.raises(ValueError, match="SentencePredictionConfig.metric_type"):
        sentence_prediction.SentencePredictionConfig(**{**config.__dict__, "metric_type": "auc"})


def test_label_ids_key_and_predict(tmp_path, spm_model):
    task = make_classification_task(tmp_path, spm_model)
    model = task.build_model()
    batch = next(iter(task.build_inputs(task.task_config.validation_data)))
    renamed = {("label_ids" if k == features.LABEL else k): v for k, v in batch.items()}
    np.testing.assert_allclose(float(task.validation_step(renamed, model)["loss"]),
                               float(task.validation_step(batch, model)["loss"]), rtol=1e-6)
    predictions = sentence_prediction.predict(task, task.task_config.validation_data, model)
    assert len(predictions) == 10 and all(p.dtype == tf.int64 for p in predictions)  # 25% of 40 rows


def test_init_cls_pooler_restores_the_head_dense_from_next_sentence(tmp_path, spm_model):
    pretrainer = modeling.BertPretrainer(tiny_encoder(vocab_size=SPM_VOCAB), classification_heads=[
        modeling.ClassificationHead(inner_dim=16, num_classes=2, name="next_sentence")])
    pretrainer(pretrainer.inputs)
    path = tf.train.Checkpoint(**pretrainer.checkpoint_items).save(str(tmp_path / "pretrained" / "ckpt"))
    task = make_classification_task(tmp_path, spm_model)
    config = sentence_prediction.SentencePredictionConfig(**{
        **task.task_config.__dict__, "init_checkpoint": path, "init_cls_pooler": True,
        "model": lambda: modeling.BertClassifier(tiny_encoder(vocab_size=SPM_VOCAB), num_classes=2,
                                                 use_encoder_pooler=False)})
    task = sentence_prediction.SentencePredictionTask(config)
    model = task.build_model()
    task.initialize(model)
    source = pretrainer.checkpoint_items["next_sentence.pooler_dense"].kernel.numpy()
    np.testing.assert_array_equal(model.checkpoint_items["sentence_prediction.pooler_dense"].kernel.numpy(), source)


_YAML = """
task:
  init_checkpoint: ''
  model:
    encoder:
      type: bert
      bert: {vocab_size: 60, hidden_size: 16, num_layers: 1, num_attention_heads: 2, intermediate_size: 32,
             max_position_embeddings: 64, dropout_rate: 0.0, hidden_activation: gelu}
    cls_heads: [{inner_dim: 16, num_classes: 2, name: next_sentence}]
  train_data: {input_path: 'records/train-*', global_batch_size: 8, seq_length: 16, max_predictions_per_seq: 3}
  scale_loss: false
trainer:
  train_steps: 100
  steps_per_loop: 10
  validation_steps: 5
  optimizer_config:
    optimizer: {type: adamw, adamw: {weight_decay_rate: 0.01, exclude_from_weight_decay: [LayerNorm, bias]}}
    learning_rate: {type: polynomial, polynomial: {initial_learning_rate: 1.0e-4, decay_steps: 100,
                                                   end_learning_rate: 0.0}}
    warmup: {type: polynomial, polynomial: {warmup_steps: 10, power: 1}}
runtime:
  mixed_precision_dtype: bfloat16
  distribution_strategy: mirrored
"""


def test_experiment_yaml_translates_to_our_dataclasses():
    config = model_garden_config.experiment_config(_YAML)
    assert isinstance(config.task, masked_lm.MaskedLMConfig)
    data = config.task.train_data
    assert (data.input_path, data.seq_len, data.max_predictions_per_seq, data.vocab_size) == ("records/train-*", 16, 3, 60)
    assert data.use_next_sentence_label  # Model Garden's default
    optimizer = config.trainer.optimizer_config
    assert (optimizer.type, optimizer.learning_rate, optimizer.warmup_steps, optimizer.decay_steps) == \
        ("adamw", 1e-4, 10, 100)
    assert optimizer.exclude_from_weight_decay == ("LayerNorm", "bias") and optimizer.global_clipnorm == 1.0
    assert (config.trainer.train_steps, config.trainer.steps_per_loop) == (100, 10)
    assert config.runtime == optimization.RuntimeConfig(mixed_precision_dtype="bfloat16")
    model = config.task.model()
    assert isinstance(model, modeling.BertPretrainer) and model.encoder.hidden_size == 16
    assert [head.name for head in model.classification_heads] == ["next_sentence"]
    assert model.encoder.type_vocab_size == 2  # BertEncoderConfig's default, not the class's 16


def test_translation_names_what_it_cannot_honour():
    with pytest.raises(ValueError, match="tfds_name"):
        model_garden_config.experiment_config({"task": {"train_data": {"tfds_name": "glue/cola"}}})
    with pytest.raises(ValueError, match="learning_rate type 'stepwise'"):
        model_garden_config.optimizer_config({"learning_rate": {"type": "stepwise", "stepwise": {}}})
    with pytest.raises(ValueError, match="only a linear warmup from 0"):
        model_garden_config.optimizer_config({"learning_rate": {"type": "constant"},
                                              "warmup": {"type": "linear", "linear": {"warmup_learning_rate": 0.1}}})
    with pytest.raises(ValueError, match="encoder type 'albert'"):
        model_garden_config.build_encoder({"type": "albert", "albert": {}})
    with pytest.raises(ValueError, match="task must be one of"):
        model_garden_config.experiment_config({"task": {}}, task="question_answering")


def test_sentence_prediction_and_trainer_translation(tmp_path):
    config = model_garden_config.experiment_config({
        "task": {"model": {"num_classes": 3, "encoder": {"type": "bert", "bert": {"vocab_size": 60, "num_layers": 1,
                                                                                   "hidden_size": 16,
                                                                                   "num_attention_heads": 2}}},
                 "train_data": {"input_path": "train.tsv", "spm_model": "spm.model", "seq_length": 32},
                 "metric_type": "matthews_corrcoef"},
        "trainer": {"train_tf_while_loop": True, "eval_tf_while_loop": False,
                    "optimizer_config": {"optimizer": {"type": "sgd", "sgd": {"momentum": 0.9}},
                                         "learning_rate": {"type": "cosine", "cosine": {
                                             "initial_learning_rate": 0.1, "decay_steps": 50, "alpha": 0.1}}}}})
    assert isinstance(config.task, sentence_prediction.SentencePredictionConfig)
    assert config.task.num_classes == 3 and config.task.metric_type == "matthews_corrcoef"
    assert config.task.train_data.seq_len == 32
    assert config.trainer.loop_options("train") == (True, True) and config.trainer.loop_options("eval") == (True, False)
    optimizer = config.trainer.optimizer_config
    assert (optimizer.type, optimizer.momentum, optimizer.decay) == ("sgd", 0.9, "cosine")
    assert optimizer.end_learning_rate == pytest.approx(0.01)
    model = config.task.model()
    assert isinstance(model, modeling.BertClassifier) and not model.use_encoder_pooler
    assert isinstance(config_definitions.ExperimentConfig().task, config_definitions.TaskConfig)
