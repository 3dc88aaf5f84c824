"""Tests for research.core.optimization: schedules, optimizers, weight-decay exclusion, clipping, DP, loss scaling."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from research.core import optimization as opt_lib
from research.core.optimization import DifferentialPrivacyConfig, OptimizerConfig, RuntimeConfig



def _config(**overrides):
    """A constant learning rate with no decay, clipping or warmup, unless overridden."""
    kwargs = dict(learning_rate=1.0, decay="constant", weight_decay_rate=0.0, global_clipnorm=None, momentum=0.0)
    kwargs.update(overrides)
    return OptimizerConfig(**kwargs)


def _tiny_model():
    """Embedding -> LayerNormalization -> Dense, with non-zero beta and bias so that decay would show."""
    inputs = keras.Input((3,), dtype="int32")
    x = keras.layers.Embedding(7, 4, name="embedding")(inputs)
    x = keras.layers.LayerNormalization(name="layer_normalization")(x)
    x = keras.layers.LayerNormalization(name="ln")(x)  # named unlike the patterns
    outputs = keras.layers.Dense(2, name="dense")(x)
    model = keras.Model(inputs, outputs)
    for v in model.trainable_variables:
        v.assign(v + 0.5)
    return model


def _values(variables):
    return {v.path: v.numpy().copy() for v in variables}


# ---- schedule -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("decay, expected", [
    # lr=1, end=0.1, warmup=10, decay_steps=110, power=2: decayed(10) = 0.9 * (1 - 10/110)^2 + 0.1.
    ("polynomial", {0: 0.0, 5: 0.5 * (0.9 * (100 / 110) ** 2 + 0.1), 10: 0.9 * (100 / 110) ** 2 + 0.1,
                    60: 0.9 * (50 / 110) ** 2 + 0.1, 110: 0.1, 500: 0.1}),
    ("cosine", {0: 0.0, 10: 0.1 + 0.45 * (1 + math.cos(math.pi * 10 / 110)), 55: 0.55, 110: 0.1, 500: 0.1}),
    ("constant", {0: 0.0, 5: 0.5, 10: 1.0, 110: 1.0, 500: 1.0}),
])
def test_schedule_values(decay, expected):
    schedule = opt_lib.warmup_decay_schedule(OptimizerConfig(
        learning_rate=1.0, end_learning_rate=0.1, warmup_steps=10, decay_steps=110, decay=decay, power=2.0))
    graph_schedule = tf.function(schedule)
    for step, value in expected.items():
        assert float(schedule(step)) == pytest.approx(value, rel=1e-5, abs=1e-7), step
        assert float(graph_schedule(tf.constant(step, tf.int64))) == pytest.approx(value, rel=1e-5, abs=1e-7)
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(restored, opt_lib.WarmupDecaySchedule) and restored.get_config() == schedule.get_config()


def test_learning_rate_readable_through_wrappers():
    config = _config(learning_rate=1.0, warmup_steps=10)
    variable = keras.Variable(np.ones(3, np.float32))
    for runtime in (None, RuntimeConfig(mixed_precision_dtype="float16")):
        optimizer = opt_lib.create_optimizer(config, runtime)
        for _ in range(3):
            optimizer.apply([tf.ones(3)], [variable])
        assert opt_lib.current_learning_rate(optimizer) == pytest.approx(0.3)
        assert float(optimizer.learning_rate) == pytest.approx(0.3)


# ---- optimizers ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", opt_lib.OPTIMIZER_TYPES)
def test_each_optimizer_decreases_a_quadratic_loss(kind):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    x = tf.random.stateless_normal((16, 3), seed=(1, 2))
    y = tf.reduce_sum(x * [1.0, -2.0, 0.5], axis=1, keepdims=True)
    optimizer = opt_lib.create_optimizer(_config(type=kind, learning_rate=0.05, momentum=0.9))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(x) - y) ** 2)
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    losses = [float(step()) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("kind", opt_lib.OPTIMIZER_TYPES)
def test_weight_decay_skips_layer_norm_and_biases(kind):
    """Zero gradients: only decoupled weight decay can move a variable."""
    model = _tiny_model()
    variables = model.trainable_variables
    lr, rate = 0.5, 0.1
    for weight_decay_rate in (0.0, rate):
        before = _values(variables)
        optimizer = opt_lib.create_optimizer(_config(type=kind, learning_rate=lr, weight_decay_rate=weight_decay_rate))
        opt_lib.exclude_layer_norm_variables(optimizer, model)
        optimizer.apply([tf.zeros_like(v) for v in variables], variables)
        after = _values(variables)
        for path, value in before.items():
            decayed = weight_decay_rate > 0 and path in ("embedding/embeddings", "dense/kernel")
            expected = value * (1 - lr * rate) if decayed else value
            np.testing.assert_allclose(after[path], expected, rtol=1e-6, err_msg=f"{kind} {path}")


def test_path_patterns_alone_exclude_the_encoder_layer_norms_and_biases():
    """Keras matches var_names against variable.name ('gamma'); ours match variable.path."""
    from research.modeling.bert_encoder import BertEncoder
    encoder = BertEncoder(vocab_size=11, hidden_size=8, num_layers=1, num_attention_heads=2, intermediate_size=16,
                          max_sequence_length=8)
    variables = encoder.trainable_variables
    before = _values(variables)
    optimizer = opt_lib.create_optimizer(_config(learning_rate=0.5, weight_decay_rate=0.1))
    optimizer.apply([tf.zeros_like(v) for v in variables], variables)
    after = _values(variables)
    changed = {path for path in before if not np.allclose(before[path], after[path])}
    unchanged = set(before) - changed
    assert unchanged and all(p.endswith(("/gamma", "/beta", "/bias")) for p in unchanged), unchanged
    assert all("layer_norm" not in p and not p.endswith("bias") for p in changed), changed
    assert any(p.endswith("word_embeddings/embeddings") for p in changed)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adamw_fused_step_matches_keras_adamw(amsgrad):
    """Our AdamW takes each step in one fused kernel (decay included); Keras' AdamW is the reference for its values."""
    rng = np.random.RandomState(0)
    start = rng.randn(50, 7).astype(np.float32)
    grads = [tf.constant(rng.randn(50, 7).astype(np.float32)) for _ in range(6)]
    grads[2] = tf.IndexedSlices(grads[2][:3], tf.constant([4, 9, 1]), tf.constant([50, 7]))  # sparse rows
    results = []
    for cls in (opt_lib.AdamW, keras.optimizers.AdamW):
        variable = keras.Variable(start)
        optimizer = cls(learning_rate=1e-2, weight_decay=0.01, beta_1=0.8, beta_2=0.95, epsilon=1e-6,
                        amsgrad=amsgrad)
        step = tf.function(lambda g: optimizer.apply([g], [variable]), reduce_retracing=True)
        for grad in grads:
            step(grad)
        results.append(variable.numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-6)
    assert np.abs(results[0] - start).max() > 0.05


def test_adamw_sums_duplicate_sparse_rows_before_the_step():
    """A row repeated in an IndexedSlices gradient (a token seen twice) counts with its summed gradient,
    as in TensorFlow's and Model Garden's Adam. (Keras' own AdamW squares the slices before summing them.)"""
    rows = tf.constant(np.random.RandomState(1).randn(3, 7).astype(np.float32))
    sparse = tf.IndexedSlices(rows, tf.constant([4, 9, 4]), tf.constant([50, 7]))
    results = []
    for grad in (sparse, tf.convert_to_tensor(sparse)):
        variable = keras.Variable(np.ones([50, 7], np.float32))
        optimizer = opt_lib.AdamW(learning_rate=1e-2, weight_decay=0.01)
        optimizer.apply([grad], [variable])
        optimizer.apply([grad], [variable])
        results.append(variable.numpy())
    np.testing.assert_array_equal(results[0], results[1])


def test_global_clipnorm_limits_the_update():
    grad = tf.constant([6.0, 8.0])  # norm 10
    for clipnorm, norm in ((None, 10.0), (1.0, 1.0)):
        variable = keras.Variable(np.zeros(2, np.float32))
        opt_lib.create_optimizer(_config(type="sgd", global_clipnorm=clipnorm)).apply([grad], [variable])
        assert np.linalg.norm(variable.numpy()) == pytest.approx(norm, rel=1e-5)


def test_global_clipnorm_matches_keras_with_sparse_gradients():
    rng = np.random.RandomState(3)
    dense = tf.constant(rng.randn(5, 3).astype(np.float32))
    sparse = tf.IndexedSlices(tf.constant(rng.randn(2, 3).astype(np.float32)), tf.constant([0, 4]), tf.constant([6, 3]))
    results = []
    for cls in (opt_lib.SGD, keras.optimizers.SGD):
        variables = [keras.Variable(np.zeros([5, 3], np.float32)), keras.Variable(np.zeros([6, 3], np.float32))]
        cls(learning_rate=1.0, global_clipnorm=0.5).apply([dense, sparse], variables)
        results.append([v.numpy() for v in variables])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


# ---- differential privacy -----------------------------------------------------------------------------------

def _dp_update(noise_multiplier, seed=3, grads=(tf.fill((100, 100), 1.0), tf.fill((4,), 1.0))):
    """One SGD step at lr 1 from zero: the update is minus the (clipped, noised) gradient."""
    variables = [keras.Variable(np.zeros(g.shape, np.float32)) for g in grads]
    optimizer = opt_lib.create_optimizer(_config(type="sgd"), dp_config=DifferentialPrivacyConfig(
        clipping_norm=0.5, noise_multiplier=noise_multiplier, seed=seed))
    tf.function(lambda: optimizer.apply(list(grads), variables))()  # also checks graph mode
    return [-v.numpy() for v in variables]


def test_dp_clips_the_aggregated_gradient_to_clipping_norm():
    update = _dp_update(noise_multiplier=0.0)
    assert math.sqrt(sum(np.sum(u ** 2) for u in update)) == pytest.approx(0.5, rel=1e-5)
    np.testing.assert_allclose(update[0], update[0].flat[0])  # the direction is kept


def test_dp_noise_is_seeded_gaussian_of_stddev_multiplier_times_norm():
    clean = _dp_update(noise_multiplier=0.0)
    noisy = _dp_update(noise_multiplier=2.0)
    np.testing.assert_array_equal(noisy[0], _dp_update(noise_multiplier=2.0)[0])  # reproducible
    assert not np.allclose(noisy[0], _dp_update(noise_multiplier=2.0, seed=4)[0])
    noise = noisy[0] - clean[0]
    assert np.std(noise) == pytest.approx(2.0 * 0.5, rel=0.05)
    assert abs(np.mean(noise)) < 0.05
    assert not np.allclose(noisy[1], clean[1])  # every gradient gets noise


# ---- precision ----------------------------------------------------------------------------------------------

def test_float16_dynamic_loss_scale():
    optimizer = opt_lib.create_optimizer(_config(type="sgd"), RuntimeConfig(mixed_precision_dtype="float16"))
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(optimizer.inner_optimizer, opt_lib.SGD)
    scale = float(optimizer.scale_loss(1.0))
    assert scale == 2.0 ** 15
    variable = keras.Variable(np.zeros(2, np.float32))
    optimizer.apply([tf.constant([1.0, 2.0]) * scale], [variable])  # gradients of the scaled loss
    np.testing.assert_allclose(variable.numpy(), [-1.0, -2.0])


def test_fixed_loss_scale_and_bfloat16():
    optimizer = opt_lib.create_optimizer(_config(type="sgd"),
                                         RuntimeConfig(mixed_precision_dtype="float16", loss_scale=128))
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) and not optimizer.dynamic  # Model Garden's
    assert float(optimizer.scale_loss(1.0)) == 128.0
    variable = keras.Variable(np.zeros(2, np.float32))
    optimizer.apply([tf.constant([128.0, 256.0])], [variable])
    np.testing.assert_allclose(variable.numpy(), [-1.0, -2.0])
    bf16 = opt_lib.create_optimizer(_config(), RuntimeConfig(mixed_precision_dtype="bfloat16"))
    assert not isinstance(bf16, keras.optimizers.LossScaleOptimizer) and bf16.loss_scale_factor is None


def test_set_precision_policy():
    assert opt_lib.set_precision_policy(RuntimeConfig(mixed_precision_dtype="bfloat16")) == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert RuntimeConfig(mixed_precision_dtype="float16").policy_name == "mixed_float16"
    assert opt_lib.set_precision_policy(None) == "float32"


def test_optimizer_config_round_trips():
    optimizer = opt_lib.create_optimizer(OptimizerConfig(warmup_steps=2, decay_steps=10),
                                         dp_config=DifferentialPrivacyConfig(seed=5))
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is opt_lib.AdamW
    assert restored.get_config() == optimizer.get_config()


# ---- validation ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, kwargs, field", [
    (OptimizerConfig, dict(type="adam"), "type"),
    (OptimizerConfig, dict(learning_rate=0.0), "learning_rate"),
    (OptimizerConfig, dict(end_learning_rate=1.0), "end_learning_rate"),
    (OptimizerConfig, dict(warmup_steps=-1), "warmup_steps"),
    (OptimizerConfig, dict(warmup_steps=5, decay_steps=2), "warmup_steps"),
    (OptimizerConfig, dict(decay_steps=0), "decay_steps"),
    (OptimizerConfig, dict(decay_steps=2.5), "decay_steps"),
    (OptimizerConfig, dict(decay="linear"), "decay"),
    (OptimizerConfig, dict(power=0), "power"),
    (OptimizerConfig, dict(weight_decay_rate=-0.1), "weight_decay_rate"),
    (OptimizerConfig, dict(beta_1=1.0), "beta_1"),
    (OptimizerConfig, dict(beta_2=-0.1), "beta_2"),
    (OptimizerConfig, dict(epsilon=0), "epsilon"),
    (OptimizerConfig, dict(momentum=1.5), "momentum"),
    (OptimizerConfig, dict(global_clipnorm=0.0), "global_clipnorm"),
    (OptimizerConfig, dict(exclude_from_weight_decay="bias"), "exclude_from_weight_decay"),
    (OptimizerConfig, dict(exclude_from_weight_decay=("(",)), "exclude_from_weight_decay"),
    (RuntimeConfig, dict(mixed_precision_dtype="float64"), "mixed_precision_dtype"),
    (RuntimeConfig, dict(mixed_precision_dtype="float16", loss_scale=-1), "loss_scale"),
    (RuntimeConfig, dict(loss_scale="static"), "loss_scale"),
    (DifferentialPrivacyConfig, dict(clipping_norm=0), "clipping_norm"),
    (DifferentialPrivacyConfig, dict(noise_multiplier=-1), "noise_multiplier"),
    (DifferentialPrivacyConfig, dict(seed=1.5), "seed"),
])
def test_bad_config_raises_naming_the_field(cls, kwargs, field):
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        cls(**kwargs)


def test_good_configs_and_list_patterns():
    config = OptimizerConfig(exclude_from_weight_decay=["bias"], global_clipnorm=None)
    assert config.exclude_from_weight_decay == ("bias",)
    assert RuntimeConfig(mixed_precision_dtype="float16", loss_scale="dynamic").loss_scale == "dynamic"
    with pytest.raises(TypeError, match="OptimizerConfig"):
        opt_lib.create_optimizer({"type": "adamw"})


def test_warmup_fraction_follows_the_number_of_steps_unless_warmup_steps_is_given():
    config = opt_lib.OptimizerConfig(warmup_steps=None, warmup_fraction=0.06, decay_steps=5000)
    assert config.warmup_steps == 300
    assert opt_lib.OptimizerConfig(warmup_steps=None, warmup_fraction=0.06, decay_steps=100).warmup_steps == 6
    assert opt_lib.OptimizerConfig(warmup_steps=7, warmup_fraction=0.06, decay_steps=100).warmup_steps == 7
    assert opt_lib.OptimizerConfig(warmup_steps=None, decay_steps=100).warmup_steps == 0
    with pytest.raises(ValueError, match=r"warmup_fraction=1.5 is invalid: it must be None or a number in \[0, 1\)"):
        opt_lib.OptimizerConfig(warmup_steps=None, warmup_fraction=1.5, decay_steps=100)
    with pytest.raises(ValueError, match=r"warmup_steps=300 is invalid: .*WARMUP_STEPS = None"):
        opt_lib.OptimizerConfig(warmup_steps=300, decay_steps=100)
