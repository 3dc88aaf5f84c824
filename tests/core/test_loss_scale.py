"""Model Garden's float16 optimizer reads (Keras 2's LossScaleOptimizer attributes) on our Keras 3 optimizer."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from research.core import loss_scale, optimization
from research.core.optimization import OptimizerConfig, RuntimeConfig

SGD = OptimizerConfig(type="sgd", learning_rate=1.0, decay="constant", weight_decay_rate=0.0, global_clipnorm=None)


def _float16(scale):
    return optimization.create_optimizer(SGD, RuntimeConfig(mixed_precision_dtype="float16", loss_scale=scale))


@pytest.mark.parametrize("scale", [None, "dynamic"])
def test_dynamic_loss_scale_answers_model_gardens_reads(scale):
    optimizer = _float16(scale)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert optimizer.dynamic is True
    assert optimizer.initial_scale == 2.0 ** 15 and optimizer.dynamic_growth_steps == 2000
    assert float(optimizer.loss_scale) == 2.0 ** 15


@pytest.mark.parametrize("scale", [128, 256.0])
def test_fixed_loss_scale_answers_model_gardens_reads(scale):
    optimizer = _float16(scale)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert optimizer.dynamic is False
    assert optimizer.initial_scale == scale and optimizer.dynamic_growth_steps is None
    assert float(optimizer.scale_loss(1.0)) == scale


def test_fixed_scale_never_changes_and_applies_every_step():
    optimizer = loss_scale.LossScaleOptimizer(keras.optimizers.SGD(learning_rate=1.0), dynamic=False,
                                              initial_scale=4.0)
    variable = keras.Variable(np.zeros(2, np.float32))
    apply = tf.function(lambda grads: optimizer.apply(grads, [variable]))
    for _ in range(3):  # a dynamic scale would grow or shrink; a fixed one divides by 4 every time
        apply([tf.constant([4.0, 8.0])])
    np.testing.assert_allclose(variable.numpy(), [-3.0, -6.0])
    apply([tf.constant([np.inf, 0.0])])  # not finite: applied anyway (Keras 2's fixed scale), scale kept
    assert np.isneginf(variable.numpy()[0]) and variable.numpy()[1] == -6.0
    assert float(optimizer.loss_scale) == 4.0 and int(optimizer.iterations.numpy()) == 4


def test_dynamic_scale_still_halves_and_skips_on_overflow():
    optimizer = loss_scale.LossScaleOptimizer(keras.optimizers.SGD(learning_rate=1.0), initial_scale=8.0,
                                              dynamic_growth_steps=2)
    variable = keras.Variable(np.zeros(1, np.float32))
    optimizer.apply([tf.constant([np.nan])], [variable])
    assert float(optimizer.loss_scale) == 4.0 and variable.numpy()[0] == 0.0  # skipped, halved
    optimizer.apply([tf.constant([4.0])], [variable])
    optimizer.apply([tf.constant([4.0])], [variable])
    assert float(optimizer.loss_scale) == 8.0 and variable.numpy()[0] == -2.0  # two finite steps: doubled


def test_bad_arguments_are_named():
    inner = keras.optimizers.SGD()
    with pytest.raises(ValueError, match="dynamic_growth_steps=10 needs dynamic=True"):
        loss_scale.LossScaleOptimizer(inner, dynamic=False, initial_scale=2.0, dynamic_growth_steps=10)
    with pytest.raises(ValueError, match="initial_scale must be a number > 0, got 0"):
        loss_scale.LossScaleOptimizer(inner, initial_scale=0)
    with pytest.raises(ValueError, match="dynamic must be True or False, got 'no'"):
        loss_scale.LossScaleOptimizer(inner, dynamic="no")


def test_config_round_trip_keeps_dynamic():
    optimizer = _float16(128)
    clone = loss_scale.LossScaleOptimizer.from_config(optimizer.get_config())
    assert (clone.dynamic, clone.initial_scale, clone.dynamic_growth_steps) == (False, 128.0, None)
    assert isinstance(clone.inner_optimizer, optimization.SGD)
