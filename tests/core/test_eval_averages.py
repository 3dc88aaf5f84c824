"""Evaluation logs equal a hand computation over the whole evaluation set.

The tf.distribute iterator of a tf.function evaluation step runs the step once more, on an empty
batch, before it reports the end of the data: averages that count batches instead of what they hold
came out as true x n / (n + 1) (issue: held-out loss too low). Each case runs an evaluation set that is
a multiple of the batch and one that is not, through `Trainer.evaluate(-1)` as the run loop calls it.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

from research import modeling
from research.core import base_trainer, config_definitions
from research.data import features
from research.tasks import masked_lm, sentence_prediction

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks"))
from task_helpers import (PREDICTIONS, SEQ_LEN, VOCAB, constant_optimizer_config,  # noqa: E402
                          tiny_encoder, write_pretraining_records)

BATCH = 8
SPM_VOCAB = 150  # the shared tiny sentencepiece model's


def evaluate(task) -> dict:
    """`Trainer.evaluate(-1)` of a fresh model: one pass over the whole validation data."""
    config = config_definitions.ExperimentConfig(
        task=task.task_config,
        trainer=config_definitions.TrainerConfig(optimizer_config=constant_optimizer_config(), train_steps=1,
                                                 validation_steps=-1))
    model = task.build_model()
    optimizer = task.create_optimizer(config.trainer.optimizer_config, config.runtime)
    trainer = base_trainer.Trainer(config, task, model, optimizer, train=False, evaluate=True)
    return {name: float(value) for name, value in trainer.evaluate(-1).items()}, model


@pytest.mark.parametrize("num_examples", [24, 21, 5])  # 3 full batches; 2 full + 5; one partial batch
def test_masked_lm_eval_logs_are_whole_set_averages(tmp_path, num_examples):
    records = write_pretraining_records(tmp_path / "records", num_examples=num_examples)
    data = masked_lm.PretrainDataConfig(input_path=records, global_batch_size=BATCH, seq_len=SEQ_LEN,
                                        vocab_size=VOCAB, max_predictions_per_seq=PREDICTIONS, is_training=False)
    task = masked_lm.MaskedLMTask(masked_lm.MaskedLMConfig(
        model=lambda: modeling.BertPretrainer(encoder=tiny_encoder()), validation_data=data))
    logs, model = evaluate(task)

    loss_sum = weight_sum = correct_sum = 0.0
    batch_losses, batch_sizes = [], []
    for batch in task.build_inputs(data):  # the same masks: they are seeded by (seed, batch index)
        outputs = model(batch, training=False)
        weights = batch[features.MASKED_LM_WEIGHTS].numpy()
        loss_sum += float(np.sum(outputs["mlm_per_position_loss"]))
        weight_sum += float(weights.sum())
        correct_sum += float(np.sum((outputs["mlm_predicted_ids"].numpy() == batch[features.MASKED_LM_IDS].numpy())
                                    * weights))
        batch_losses.append(float(task.build_losses(batch, outputs)))
        batch_sizes.append(len(weights))
    assert sum(batch_sizes) == num_examples
    np.testing.assert_allclose(logs["lm_example_loss"], loss_sum / weight_sum, rtol=1e-5)
    np.testing.assert_allclose(logs["masked_lm_accuracy"], correct_sum / weight_sum, rtol=1e-6)
    # validation_loss: the task's per-batch loss, each batch weighing the examples it holds.
    np.testing.assert_allclose(logs["validation_loss"], np.average(batch_losses, weights=batch_sizes), rtol=1e-5)


@pytest.mark.parametrize("num_examples", [32, 27])
def test_classification_eval_logs_are_whole_set_averages(tmp_path, spm_model, num_examples):
    rng = np.random.RandomState(1)
    words = "good bad great awful fine dull fun boring sweet sour".split()
    tsv = tmp_path / "eval.tsv"
    tsv.write_text("".join(f"{i % 3}\t{' '.join(rng.choice(words, size=rng.randint(2, 8)))}\n"
                           for i in range(num_examples)), encoding="utf-8")
    data = sentence_prediction.ClassificationDataConfig(
        input_path=str(tsv), spm_model=str(spm_model), global_batch_size=BATCH, seq_len=16, split="all",
        is_training=False)
    task = sentence_prediction.SentencePredictionTask(sentence_prediction.SentencePredictionConfig(
        model=lambda: modeling.BertClassifier(tiny_encoder(vocab_size=SPM_VOCAB), num_classes=3, dropout_rate=0.0),
        num_classes=3, validation_data=data))
    logs, model = evaluate(task)

    labels, logits = [], []
    for batch in task.build_inputs(data):
        inputs, batch_labels = task.split_inputs(batch)
        logits.append(model(inputs, training=False).numpy())
        labels.append(batch_labels.numpy())
    labels, logits = np.concatenate(labels), np.concatenate(logits).astype(np.float64)
    assert len(labels) == num_examples
    log_probs = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(
        1, keepdims=True)
    np.testing.assert_allclose(logs["validation_loss"], -log_probs[np.arange(len(labels)), labels].mean(), rtol=1e-5)
    np.testing.assert_allclose(logs["accuracy"], (logits.argmax(1) == labels).mean(), rtol=1e-6)
