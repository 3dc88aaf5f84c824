"""TrainerConfig.jit_compile: each replica's train step compiled by XLA, for both tasks, on every op's XLA path."""
import sys
from pathlib import Path

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from research import modeling
from research.core import base_trainer, config_definitions, optimization
from research.tasks import masked_lm, sentence_prediction

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks"))
from task_helpers import (PREDICTIONS, SEQ_LEN, VOCAB, constant_optimizer_config, tiny_encoder,  # noqa: E402
                          write_pretraining_records)


def test_jit_compile_must_be_a_bool():
    with pytest.raises(ValueError, match=r"TrainerConfig.jit_compile must be True or False, got 'yes'"):
        config_definitions.TrainerConfig(jit_compile="yes")
    assert config_definitions.TrainerConfig().jit_compile is False


def test_jit_compile_is_bound_by_gin():
    gin.clear_config()
    try:
        gin.parse_config(["from __gin__ import dynamic_registration",
                          "from research.core import config_definitions",
                          "config_definitions.TrainerConfig.jit_compile = True"])
        assert gin.get_configurable(config_definitions.TrainerConfig)().jit_compile is True
    finally:
        gin.clear_config()


def _mlm_task(tmp_path):
    data = masked_lm.PretrainDataConfig(input_path=write_pretraining_records(tmp_path), global_batch_size=8,
                                        seq_len=SEQ_LEN, vocab_size=VOCAB, max_predictions_per_seq=PREDICTIONS)
    return masked_lm.MaskedLMTask(masked_lm.MaskedLMConfig(model=lambda: modeling.BertPretrainer(tiny_encoder()),
                                                           train_data=data))


def _classifier_task(tmp_path, spm_model):
    tsv = tmp_path / "data.tsv"
    rng = np.random.RandomState(0)
    words = "good bad great awful fine dull fun boring".split()
    tsv.write_text("".join(f"{i % 2}\t{' '.join(rng.choice(words, size=rng.randint(2, 8)))}\n" for i in range(32)))
    data = sentence_prediction.ClassificationDataConfig(input_path=str(tsv), spm_model=str(spm_model),
                                                        global_batch_size=8, seq_len=SEQ_LEN)
    config = sentence_prediction.SentencePredictionConfig(
        model=lambda: modeling.BertClassifier(tiny_encoder(vocab_size=150), num_classes=2, dropout_rate=0.0),
        num_classes=2, train_data=data)
    return sentence_prediction.SentencePredictionTask(config)


def _train(task, batch, jit_compile, steps=3):
    """Training losses of `steps` Trainer.train(1) calls on one fixed batch, from the same initial weights."""
    keras.utils.set_random_seed(7)
    trainer_config = config_definitions.TrainerConfig(optimizer_config=constant_optimizer_config(1e-2),
                                                      jit_compile=jit_compile)
    config = config_definitions.ExperimentConfig(task=task.task_config, trainer=trainer_config,
                                                 runtime=optimization.RuntimeConfig())
    model = task.build_model()
    optimizer = task.create_optimizer(trainer_config.optimizer_config, config.runtime)
    trainer = base_trainer.Trainer(config, task, model, optimizer, evaluate=False,
                                   train_dataset=tf.data.Dataset.from_tensors(batch).repeat())
    losses = [float(trainer.train(1)["training_loss"]) for _ in range(steps)]
    return trainer, losses


@pytest.mark.parametrize("task_name", ["masked_lm", "sentence_prediction"])
def test_xla_step_trains_like_the_native_step(task_name, tmp_path, spm_model):
    task = _mlm_task(tmp_path) if task_name == "masked_lm" else _classifier_task(tmp_path, spm_model)
    batch = next(iter(task.build_inputs(task.task_config.train_data)))
    trainer, xla_losses = _train(task, batch, jit_compile=True)
    _, native_losses = _train(task, batch, jit_compile=False)
    assert all(np.isfinite(xla_losses)) and xla_losses[-1] < xla_losses[0]
    np.testing.assert_allclose(xla_losses, native_losses, rtol=1e-4)
    # Really compiled: one XLA program per replica step, holding no native Research> kernel.
    compiled_step = trainer._replica_train_step  # pylint: disable=protected-access
    hlo = compiled_step.experimental_get_compiler_ir(batch)(stage="hlo")
    assert "Research" not in hlo and "custom-call" not in hlo.lower()
    assert int(trainer.global_step.numpy()) == 3
