"""MaskedLMTask: loss against a hand computation, learning, metrics, fit, and encoder initialization."""
import dataclasses

import numpy as np
import keras
import pytest
import tensorflow as tf

from research import modeling
from research.core import base_task, base_trainer, config_definitions, optimization
from research.data import features
from research.tasks import masked_lm

from task_helpers import (PREDICTIONS, SEQ_LEN, VOCAB, constant_optimizer_config, tiny_encoder, train_steps,
                          write_pretraining_records)


def make_task(tmp_path, next_sentence=False, init_checkpoint="", hidden_size=16):
    data = masked_lm.PretrainDataConfig(input_path=write_pretraining_records(tmp_path, next_sentence=next_sentence),
                                        global_batch_size=8, seq_len=SEQ_LEN, vocab_size=VOCAB,
                                        max_predictions_per_seq=PREDICTIONS, use_next_sentence_label=next_sentence)
    heads = [modeling.ClassificationHead(num_classes=2, name="next_sentence")] if next_sentence else None
    config = masked_lm.MaskedLMConfig(
        model=lambda: modeling.BertPretrainer(tiny_encoder(hidden_size), classification_heads=heads),
        train_data=data, validation_data=data, init_checkpoint=init_checkpoint)
    return masked_lm.MaskedLMTask(config, logging_dir=str(tmp_path))


def first_batch(task):
    return next(iter(task.build_inputs(task.task_config.train_data)))


def test_loss_equals_a_hand_computation(tmp_path):
    task = make_task(tmp_path)
    model = task.build_model()
    batch = first_batch(task)
    weights = batch[features.MASKED_LM_WEIGHTS].numpy()
    weights[0, 0] = 0.0  # a padding-like position must not count
    batch = {**batch, features.MASKED_LM_WEIGHTS: tf.constant(weights)}
    outputs = model(batch, training=False)
    loss = float(task.build_losses(labels=batch, model_outputs=outputs))
    logits = model.masked_lm(outputs["sequence_output"], batch[features.MASKED_LM_POSITIONS],
                             output="logits").numpy().astype(np.float64)
    labels = batch[features.MASKED_LM_IDS].numpy()
    log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    per_position = log_z - np.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
    expected = (per_position * weights).sum() / (weights.sum() + 1e-5)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_loss_falls_on_a_fixed_batch(tmp_path):
    task = make_task(tmp_path)
    model = task.build_model()
    optimizer = task.create_optimizer(constant_optimizer_config(1e-2))
    losses = train_steps(task, model, optimizer, first_batch(task), 40)
    assert losses[-1] < 0.5 * losses[0], losses


def test_metrics_and_validation_step(tmp_path):
    task = make_task(tmp_path, next_sentence=True)
    model = task.build_model()
    metrics = task.build_metrics(training=False)
    assert {m.name for m in metrics} == {"masked_lm_accuracy", "lm_example_loss", "next_sentence_accuracy",
                                         "next_sentence_loss"}
    batch = first_batch(task)
    # Known predictions: the labels of every other masked slot are set to the model's own prediction (a
    # hit), and one hit gets weight 0 (it must not count), so the accuracy is neither 0 nor unweighted.
    predicted = model(batch, training=False)["mlm_predicted_ids"].numpy()
    ids, weights = batch[features.MASKED_LM_IDS].numpy().copy(), batch[features.MASKED_LM_WEIGHTS].numpy().copy()
    hit = (np.arange(ids.shape[1]) % 2 == 0)[None, :] & (weights > 0)
    ids[hit] = predicted[hit]
    weights[0, 0] = 0.0
    batch = {**batch, features.MASKED_LM_IDS: tf.constant(ids), features.MASKED_LM_WEIGHTS: tf.constant(weights)}
    logs = task.validation_step(batch, model, metrics=metrics)
    outputs = model(batch, training=False)
    mlm_only = masked_lm.masked_lm_loss(batch, outputs)
    assert float(logs["loss"]) > float(mlm_only)  # the next-sentence loss is added
    results = {m.name: float(m.result()) for m in metrics}
    logits = model.masked_lm(outputs["sequence_output"], batch[features.MASKED_LM_POSITIONS], output="logits").numpy()
    weights = batch[features.MASKED_LM_WEIGHTS].numpy()
    hits = (logits.argmax(-1) == batch[features.MASKED_LM_IDS].numpy()) * weights
    assert 0 < hits.sum() < weights.sum() and (hits > 0).sum() != (logits.argmax(-1) == ids).sum()
    np.testing.assert_allclose(results["masked_lm_accuracy"], hits.sum() / weights.sum(), rtol=1e-6)
    np.testing.assert_allclose(results["lm_example_loss"], float(mlm_only), rtol=1e-5)
    next_logits = outputs["next_sentence"].numpy().astype(np.float64)
    next_labels = batch[features.NEXT_SENTENCE_LABELS].numpy()
    np.testing.assert_allclose(results["next_sentence_accuracy"], np.mean(next_logits.argmax(-1) == next_labels),
                               rtol=1e-6)
    shifted = next_logits - next_logits.max(-1, keepdims=True)
    next_loss = np.log(np.exp(shifted).sum(-1)) - shifted[np.arange(len(next_labels)), next_labels]
    np.testing.assert_allclose(results["next_sentence_loss"], next_loss.mean(), rtol=1e-5)


def test_fit_runs_through_process_compiled_metrics(tmp_path):
    task = make_task(tmp_path)
    model = task.build_model()
    base_task.compile_model(model, task, task.create_optimizer(constant_optimizer_config()),
                            metrics=[keras.metrics.Accuracy(name="masked_lm_accuracy")])
    batches = list(task.build_inputs(task.task_config.train_data).take(3))
    dataset = tf.data.Dataset.from_tensors(batches[0]).concatenate(
        tf.data.Dataset.from_tensors(batches[1])).concatenate(tf.data.Dataset.from_tensors(batches[2]))
    history = model.fit(dataset, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    # With the weights fit left, evaluate's compiled accuracy and loss are the hand computation's.
    results = model.evaluate(dataset, verbose=0, return_dict=True)
    hits = weights = losses = 0.0
    for batch in batches:
        outputs = model(batch, training=False)
        predicted = outputs["mlm_predicted_ids"].numpy()
        batch_weights = batch[features.MASKED_LM_WEIGHTS].numpy()
        hits += ((predicted == batch[features.MASKED_LM_IDS].numpy()) * batch_weights).sum()
        weights += batch_weights.sum()
        losses += float(task.build_losses(labels=batch, model_outputs=outputs))
    np.testing.assert_allclose(results["masked_lm_accuracy"], hits / weights, rtol=1e-6)
    np.testing.assert_allclose(results["loss"], losses / len(batches), rtol=1e-5)


def test_initialize_restores_the_encoder_and_names_mismatches(tmp_path):
    source_task = make_task(tmp_path / "a")
    source = source_task.build_model()
    batch = first_batch(source_task)
    source(batch)
    path = tf.train.Checkpoint(**source.checkpoint_items).write(str(tmp_path / "pretrained" / "ckpt"))

    task = make_task(tmp_path / "b", init_checkpoint=path)
    model = task.build_model()
    model(batch)
    task.initialize(model)
    for restored, original in zip(model.encoder.weights, source.encoder.weights):
        np.testing.assert_array_equal(restored.numpy(), original.numpy())

    other = make_task(tmp_path / "c", init_checkpoint=path, hidden_size=24)
    other_model = other.build_model()
    other_model(batch)
    with pytest.raises(ValueError, match="does not fit the model's .*encoder"):
        other.initialize(other_model)


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="MaskedLMConfig.model"):
        masked_lm.MaskedLMConfig(model=None, train_data=make_task(tmp_path).task_config.train_data)
    with pytest.raises(ValueError, match="PretrainDataConfig.max_predictions_per_seq"):
        masked_lm.PretrainDataConfig(input_path="x", max_predictions_per_seq=0)
    empty = masked_lm.PretrainDataConfig()  # Model Garden fills paths later: an empty one fails when used
    with pytest.raises(ValueError, match="PretrainDataConfig.input_path"):
        make_task(tmp_path).build_inputs(empty)


def _evaluated_by_the_trainer(tmp_path, num_examples):
    """(Trainer.evaluate(-1) logs, hand computation) over a held-out set of `num_examples` records in
    batches of 8. The hand computation: masked_lm_accuracy is hits over masked positions of the whole set."""
    records = write_pretraining_records(tmp_path / "held_out", num_examples=num_examples, seed=3)
    held_out = masked_lm.PretrainDataConfig(input_path=records, global_batch_size=8, seq_len=SEQ_LEN,
                                            vocab_size=VOCAB, max_predictions_per_seq=PREDICTIONS, is_training=False)
    task = make_task(tmp_path)
    task = masked_lm.MaskedLMTask(dataclasses.replace(task.task_config, validation_data=held_out))
    trainer_config = config_definitions.TrainerConfig(optimizer_config=constant_optimizer_config(), train_steps=1,
                                                      validation_steps=-1)
    config = config_definitions.ExperimentConfig(task=task.task_config, trainer=trainer_config,
                                                 runtime=optimization.RuntimeConfig())
    model = task.build_model()
    trainer = base_trainer.Trainer(config, task, model, task.create_optimizer(trainer_config.optimizer_config))
    logs = {name: float(value) for name, value in trainer.evaluate(-1).items() if np.ndim(value) == 0}
    batches, hits, weights = 0, 0.0, 0.0
    for batch in task.build_inputs(held_out):
        outputs = model(batch, training=False)
        batches += 1
        batch_weights = batch[features.MASKED_LM_WEIGHTS].numpy()
        hits += ((outputs["mlm_predicted_ids"].numpy() == batch[features.MASKED_LM_IDS].numpy()) * batch_weights).sum()
        weights += batch_weights.sum()
    assert batches == -(-num_examples // 8)
    return logs, {"masked_lm_accuracy": hits / weights}


# The losses of the same evaluations are held to a hand computation in tests/core/test_eval_averages.py.
@pytest.mark.parametrize("num_examples", [20, 24])  # a partial last batch, and a multiple of the batch
def test_trainer_evaluation_accuracy_equals_a_hand_computation(tmp_path, num_examples):
    logs, expected = _evaluated_by_the_trainer(tmp_path, num_examples)
    np.testing.assert_allclose(logs["masked_lm_accuracy"], expected["masked_lm_accuracy"], rtol=1e-6)
