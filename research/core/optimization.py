"""Optimizers, learning-rate schedules and the precision policy, built from small typed configs.

`create_optimizer(optimizer_config, runtime_config=None, dp_config=None)` is what
`Task.create_optimizer` (Model Garden's signature) returns. The pieces:

* `WarmupDecaySchedule`: linear warmup, then polynomial, cosine or constant. As in Model Garden
  (`LinearWarmup` around `PolynomialDecay`/`CosineDecay`), the decay is counted from step 0, so
  `decay_steps` is the total number of training steps, and the warmup ramps linearly from 0 to the
  value the decay has reached at `warmup_steps` (exactly `learning_rate` for 'constant'), which keeps
  the curve continuous.
* `AdamW`, `Lamb`, `SGD`: Keras 3's optimizers with two additions (`_ResearchOptimizerMixin`):
  - Weight-decay exclusion by variable *path*. Keras 3 matches `exclude_from_weight_decay(var_names=...)`
    against `variable.name`, which is only the last path component: a LayerNormalization's variables
    are named `gamma`/`beta`, so `var_names=['LayerNorm', 'layer_norm']` never matched them (biases,
    named `bias`, were matched). Here each pattern is a case-insensitive regex searched in
    `variable.path` (e.g. `bert_encoder/embeddings/layer_norm/gamma`); the matching variables are
    handed to Keras' own `exclude_from_weight_decay(var_list=...)` when the optimizer is built.
    `exclude_layer_norm_variables(optimizer, model)` also excludes every variable of every
    `LayerNormalization` layer of a model whatever the layer is called.
  - Differential privacy as in Model Garden's `dp_config` ("clip + Gaussian noise on the aggregated
    gradient"): the gradients are clipped to global norm `clipping_norm` and Gaussian noise of stddev
    `noise_multiplier * clipping_norm` is added to each. Keras 3 optimizers have no
    `gradient_transformers`; the one place where the aggregated (all-reduced) gradient exists is the TF
    backend's `_all_reduce_sum_gradients`, called from `_backend_update_step`, so the transform wraps it
    (a wrapper around `apply` would see per-replica gradients under tf.distribute). The noise is
    stateless, seeded by (`seed` + variable index, iteration): every replica draws the same noise and a
    seeded run is reproducible. This is not per-example DP-SGD and gives no formal privacy guarantee.
  Keras' order of operations in `apply`: unscale (fixed loss scale), `global_clipnorm` clipping (on the
  per-replica gradient under tf.distribute), decoupled weight decay `var -= lr * rate * var`, all-reduce,
  DP clip and noise, then the update rule.
* float16 wraps the optimizer in `research.core.loss_scale.LossScaleOptimizer` (a Keras 3
  `LossScaleOptimizer` with Model Garden's `dynamic` / `initial_scale` / `dynamic_growth_steps`): dynamic for
  `loss_scale` None or 'dynamic', fixed at a numeric `loss_scale` (`dynamic=False`: every step's gradients
  are unscaled and applied, as with Keras 3's `loss_scale_factor`). Train steps call `optimizer.scale_loss(loss)`.
"""
import dataclasses
import math
import random
import re
from typing import Optional, Tuple, Union

import keras
import tensorflow as tf

from research import ops
from research.core import loss_scale

OPTIMIZER_TYPES = ("adamw", "lamb", "sgd")
DECAYS = ("polynomial", "cosine", "constant")
PRECISION_DTYPES = ("float32", "bfloat16", "float16")
_POLICY_NAMES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok, owner, field, value, must):
    if not ok:
        raise ValueError(f"{owner}.{field}={value!r} is invalid: it must be {must}.")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """The optimizer and its learning-rate schedule.

    type: 'adamw', 'lamb' or 'sgd' (with `momentum`).
    learning_rate, end_learning_rate, warmup_steps, decay_steps, decay, power: see `WarmupDecaySchedule`.
    warmup_fraction: when `warmup_steps` is None, the warmup is this fraction of `decay_steps` (rounded),
      so that changing the number of training steps alone keeps a valid schedule.
    weight_decay_rate: decoupled weight decay (`var -= lr * rate * var`) for every type; 0 disables it.
    beta_1, beta_2, epsilon: Adam/LAMB moments. momentum: SGD only.
    global_clipnorm: clip the gradients to this global norm before the update; None disables it.
    exclude_from_weight_decay: case-insensitive regexes searched in each variable's path.
    """
    type: str = "adamw"
    learning_rate: float = 1e-4
    end_learning_rate: float = 0.0
    warmup_steps: Optional[int] = 0
    decay_steps: int = 1
    warmup_fraction: Optional[float] = None
    decay: str = "polynomial"
    power: float = 1.0
    weight_decay_rate: float = 0.01
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-6
    momentum: float = 0.9
    global_clipnorm: Optional[float] = 1.0
    exclude_from_weight_decay: Tuple[str, ...] = ("LayerNorm", "layer_norm", "bias")

    def __post_init__(self):
        name = type(self).__name__
        _require(self.type in OPTIMIZER_TYPES, name, "type", self.type, f"one of {OPTIMIZER_TYPES}")
        _require(_is_number(self.learning_rate) and self.learning_rate > 0, name, "learning_rate",
                 self.learning_rate, "a finite number > 0")
        _require(_is_number(self.end_learning_rate) and 0 <= self.end_learning_rate <= self.learning_rate,
                 name, "end_learning_rate", self.end_learning_rate, "a number in [0, learning_rate]")
        _require(self.warmup_steps is None or (_is_int(self.warmup_steps) and self.warmup_steps >= 0), name,
                 "warmup_steps", self.warmup_steps, "None (then warmup_fraction decides) or an int >= 0")
        _require(_is_int(self.decay_steps) and self.decay_steps >= 1, name, "decay_steps", self.decay_steps,
                 "an int >= 1")
        _require(self.warmup_fraction is None or (_is_number(self.warmup_fraction) and 0 <= self.warmup_fraction < 1),
                 name, "warmup_fraction", self.warmup_fraction, "None or a number in [0, 1)")
        if self.warmup_steps is None:
            object.__setattr__(self, "warmup_steps", round((self.warmup_fraction or 0.0) * self.decay_steps))
        _require(self.decay in DECAYS, name, "decay", self.decay, f"one of {DECAYS}")
        if self.decay != "constant":
            _require(self.warmup_steps <= self.decay_steps, name, "warmup_steps", self.warmup_steps,
                     f"<= decay_steps ({self.decay_steps}) unless decay='constant' (with gin: lower WARMUP_STEPS, "
                     f"or unbind it, WARMUP_STEPS = None, to take WARMUP_FRACTION of the steps)")
        _require(_is_number(self.power) and self.power > 0, name, "power", self.power, "a number > 0")
        _require(_is_number(self.weight_decay_rate) and self.weight_decay_rate >= 0, name, "weight_decay_rate",
                 self.weight_decay_rate, "a number >= 0")
        for field in ("beta_1", "beta_2", "momentum"):
            value = getattr(self, field)
            _require(_is_number(value) and 0 <= value < 1, name, field, value, "a number in [0, 1)")
        _require(_is_number(self.epsilon) and self.epsilon > 0, name, "epsilon", self.epsilon, "a number > 0")
        _require(self.global_clipnorm is None or (_is_number(self.global_clipnorm) and self.global_clipnorm > 0),
                 name, "global_clipnorm", self.global_clipnorm, "None or a number > 0")
        patterns = self.exclude_from_weight_decay
        _require(isinstance(patterns, (tuple, list)) and all(isinstance(p, str) and p for p in patterns), name,
                 "exclude_from_weight_decay", patterns, "a tuple of non-empty strings")
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"{name}.exclude_from_weight_decay: {pattern!r} is not a regex ({e}).") from None
        object.__setattr__(self, "exclude_from_weight_decay", tuple(patterns))  # gin passes lists


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """How the run computes: the precision policy and its loss scaling.

    mixed_precision_dtype: 'float32', 'bfloat16' (no loss scaling needed) or 'float16'.
    loss_scale: None or 'dynamic' for a dynamic loss scale, or a fixed number > 0. Only float16 scales the
      loss; with the other dtypes it has no effect (as in Model Garden).
    """
    mixed_precision_dtype: str = "float32"
    loss_scale: Union[str, float, None] = None

    def __post_init__(self):
        name = type(self).__name__
        _require(self.mixed_precision_dtype in PRECISION_DTYPES, name, "mixed_precision_dtype",
                 self.mixed_precision_dtype, f"one of {PRECISION_DTYPES}")
        scale = self.loss_scale
        _require(scale is None or scale == "dynamic" or (_is_number(scale) and scale > 0), name, "loss_scale",
                 scale, "None, 'dynamic' or a number > 0")

    @property
    def policy_name(self):
        """The Keras dtype policy: 'float32', 'mixed_bfloat16' or 'mixed_float16'."""
        return _POLICY_NAMES[self.mixed_precision_dtype]


@dataclasses.dataclass(frozen=True)
class DifferentialPrivacyConfig:
    """Clip the aggregated gradient to global norm `clipping_norm`, add N(0, (noise_multiplier * clipping_norm)^2).

    seed: the noise seed; None draws one when the optimizer is created.
    """
    clipping_norm: float = 1.0
    noise_multiplier: float = 1.0
    seed: Optional[int] = None

    def __post_init__(self):
        name = type(self).__name__
        _require(_is_number(self.clipping_norm) and self.clipping_norm > 0, name, "clipping_norm",
                 self.clipping_norm, "a number > 0")
        _require(_is_number(self.noise_multiplier) and self.noise_multiplier >= 0, name, "noise_multiplier",
                 self.noise_multiplier, "a number >= 0")
        _require(self.seed is None or (_is_int(self.seed) and 0 <= self.seed < 2**31), name, "seed", self.seed,
                 "None or an int in [0, 2**31)")


@keras.saving.register_keras_serializable(package="research")
class WarmupDecaySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0, then polynomial, cosine or constant decay; float32 learning rate per step.

    decayed(step), with t = min(step, decay_steps) / decay_steps:
      polynomial: (learning_rate - end_learning_rate) * (1 - t) ** power + end_learning_rate
      cosine:     end_learning_rate + (learning_rate - end_learning_rate) * (1 + cos(pi * t)) / 2
      constant:   learning_rate
    lr(step) = decayed(warmup_steps) * step / warmup_steps while step < warmup_steps, else decayed(step).
    Called with an int or float step (a scalar tensor or the optimizer's `iterations`), also in tf.function.
    """

    def __init__(self, learning_rate, end_learning_rate=0.0, warmup_steps=0, decay_steps=1, decay="polynomial",
                 power=1.0):
        # The checks are OptimizerConfig's, so errors name the same fields.
        OptimizerConfig(learning_rate=learning_rate, end_learning_rate=end_learning_rate,
                        warmup_steps=warmup_steps, decay_steps=decay_steps, decay=decay, power=power)
        self.learning_rate = float(learning_rate)
        self.end_learning_rate = float(end_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = int(decay_steps)
        self.decay = decay
        self.power = float(power)

    def _decayed(self, step):
        if self.decay == "constant":
            return tf.fill(tf.shape(step), tf.constant(self.learning_rate, tf.float32))
        t = tf.minimum(step, float(self.decay_steps)) / float(self.decay_steps)
        span = self.learning_rate - self.end_learning_rate
        if self.decay == "polynomial":
            return span * tf.pow(1.0 - t, self.power) + self.end_learning_rate
        return self.end_learning_rate + span * 0.5 * (1.0 + tf.cos(math.pi * t))

    def __call__(self, step):
        step = tf.maximum(tf.cast(tf.convert_to_tensor(step), tf.float32), 0.0)
        lr = self._decayed(step)
        if self.warmup_steps > 0:
            warmup_end = self._decayed(tf.constant(float(self.warmup_steps)))
            lr = tf.where(step < self.warmup_steps, warmup_end * step / float(self.warmup_steps), lr)
        return lr

    def get_config(self):
        return {"learning_rate": self.learning_rate, "end_learning_rate": self.end_learning_rate,
                "warmup_steps": self.warmup_steps, "decay_steps": self.decay_steps, "decay": self.decay,
                "power": self.power}


def warmup_decay_schedule(config):
    """The `WarmupDecaySchedule` of an `OptimizerConfig`."""
    return WarmupDecaySchedule(learning_rate=config.learning_rate, end_learning_rate=config.end_learning_rate,
                               warmup_steps=config.warmup_steps, decay_steps=config.decay_steps,
                               decay=config.decay, power=config.power)


def _variable_path(variable):
    path = getattr(variable, "path", None) or variable.name  # a raw tf.Variable has no path
    return path[:-2] if path.endswith(":0") else path


def _scale_gradient(gradient, scale):
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values * tf.cast(scale, gradient.dtype), gradient.indices,
                                gradient.dense_shape)
    return gradient * tf.cast(scale, gradient.dtype)


class _ResearchOptimizerMixin:
    """Path-based weight-decay exclusion and the DP gradient transform; mixed into Keras 3 optimizers.

    exclude_from_weight_decay_patterns: case-insensitive regexes searched in `variable.path`.
    dp_clipping_norm: None disables DP; else the global norm the aggregated gradient is clipped to.
    dp_noise_multiplier, dp_seed: noise stddev is dp_noise_multiplier * dp_clipping_norm; the stateless seed.
    """

    def __init__(self, *args, exclude_from_weight_decay_patterns=(), dp_clipping_norm=None,
                 dp_noise_multiplier=0.0, dp_seed=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.exclude_from_weight_decay_patterns = tuple(exclude_from_weight_decay_patterns)
        self._excluded_keys = set()  # _var_key()s of variables excluded by exclude_from_weight_decay(var_list)
        self.dp_clipping_norm = None if dp_clipping_norm is None else float(dp_clipping_norm)
        self.dp_noise_multiplier = float(dp_noise_multiplier)
        if self.dp_clipping_norm is not None:
            if not hasattr(super(), "_all_reduce_sum_gradients"):
                raise NotImplementedError("DP needs Keras' TensorFlow-backend `_all_reduce_sum_gradients` hook, "
                                          "which this Keras version does not have.")
            if dp_seed is None:
                dp_seed = random.SystemRandom().randrange(2**31)
        self.dp_seed = dp_seed
        self._decay_waits_for = []  # set by _clip_gradients for the _apply_weight_decay that follows it

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Add variables, and regexes searched (case-insensitively) in variable paths, to the exclusions.

        Unlike Keras' method, calls accumulate, and `var_names` match `variable.path`, not only its name.
        Must be called before the optimizer is built.
        """
        if self.built:
            raise ValueError("exclude_from_weight_decay() must be called before the optimizer is built.")
        self._excluded_keys.update(self._var_key(v) for v in var_list or ())
        self.exclude_from_weight_decay_patterns += tuple(var_names or ())

    def _is_excluded(self, variable):
        if self._var_key(variable) in self._excluded_keys:
            return True
        path = _variable_path(variable)
        return any(re.search(p, path, re.IGNORECASE) for p in self.exclude_from_weight_decay_patterns)

    def build(self, variables):
        if not self.built:
            excluded = [v for v in variables if self._is_excluded(v)]
            super().exclude_from_weight_decay(var_list=excluded)
        super().build(variables)

    def _clip_gradients(self, grads):
        """Keras' global-norm clipping with the norm from fused L2Loss ops (one read per gradient, where
        Keras' square-then-sum writes a squared copy of every gradient first); other clippings are Keras'.

        Keras calls it just before the weight decay; the gradients it returns are what the decay waits for.
        """
        if not (self.global_clipnorm and self.global_clipnorm > 0) or (self.clipnorm and self.clipnorm > 0):
            grads = super()._clip_gradients(grads)
        else:
            norm = tf.linalg.global_norm([g for g in grads if g is not None])
            # Keras' formula: min(1, clip / norm), and NaN when the norm is not finite.
            scale = self.global_clipnorm * tf.minimum(1.0 / norm, 1.0 / self.global_clipnorm) + (norm - norm)
            grads = [None if g is None else _scale_gradient(g, scale) for g in grads]
        self._decay_waits_for = [g.values if isinstance(g, tf.IndexedSlices) else g for g in grads if g is not None]
        return grads

    def _apply_weight_decay(self, variables):
        """Keras' decoupled decay `var -= var * rate * lr`, with rate * lr multiplied first: one pass over each
        variable and one temporary instead of two (Keras multiplies the variable by each scalar in turn)."""
        if self.weight_decay is None:
            return

        def decay(variable):
            if self._use_weight_decay(variable):
                # Not before the gradients exist: the decay depends on no gradient, so the executor would
                # otherwise run it during the forward pass, while the step still holds the weights' values
                # for its backward pass, and every decayed variable would be copied (copy-on-write).
                with tf.control_dependencies(self._decay_waits_for):
                    factor = tf.cast(self.weight_decay, variable.dtype) * tf.cast(self.learning_rate, variable.dtype)
                    variable.assign_sub(variable * factor)

        def distributed_decay(distribution, variables):
            for variable in variables:
                if isinstance(variable, keras.Variable):
                    variable = variable.value
                distribution.extended.update(variable, decay, group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(distributed_decay, self._distribution_strategy, variables)

    def _all_reduce_sum_gradients(self, grads_and_vars):
        """Keras' all-reduce, then (with DP) clip the summed gradients to a global norm and add noise."""
        grads_and_vars = super()._all_reduce_sum_gradients(grads_and_vars)
        if self.dp_clipping_norm is None:
            return grads_and_vars
        grads_and_vars = list(grads_and_vars)
        present = [i for i, (g, _) in enumerate(grads_and_vars) if g is not None]
        clipped, _ = tf.clip_by_global_norm([tf.convert_to_tensor(grads_and_vars[i][0]) for i in present],
                                            self.dp_clipping_norm)
        stddev = self.dp_noise_multiplier * self.dp_clipping_norm
        step = tf.cast(self.iterations, tf.int64)
        for i, grad in zip(present, clipped):
            if stddev > 0:
                seed = tf.stack([tf.constant(self.dp_seed + i, tf.int64), step])
                grad = grad + tf.random.stateless_normal(tf.shape(grad), seed, stddev=stddev, dtype=grad.dtype)
            grads_and_vars[i] = (grad, grads_and_vars[i][1])
        return grads_and_vars

    def get_config(self):
        config = super().get_config()
        config.update(exclude_from_weight_decay_patterns=list(self.exclude_from_weight_decay_patterns),
                      dp_clipping_norm=self.dp_clipping_norm, dp_noise_multiplier=self.dp_noise_multiplier,
                      dp_seed=self.dp_seed)
        return config


def _local_variable(variable):
    """The tf.Variable behind a Keras variable (or a tf.Variable / distributed variable's local component itself)."""
    if isinstance(variable, keras.Variable):
        return variable.value
    return variable


@keras.saving.register_keras_serializable(package="research")
class AdamW(_ResearchOptimizerMixin, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with path-based weight-decay exclusion and optional DP (see the module doc).

    Each float32 variable takes its whole step, weight decay included, in one pass:
    `research.ops.apply_adamw` (`Research>ResourceApplyAdamW`, or its twin: the decay, then TensorFlow's
    fused `ResourceApplyAdam`). Keras' formula (var -= var * rate * lr; m += (g - m)(1 - beta_1);
    v += (g^2 - v)(1 - beta_2); var -= alpha m / (sqrt(v) + epsilon), alpha = lr sqrt(1 - beta_2^t) /
    (1 - beta_1^t)) otherwise takes about ten element-wise ops, each reading and writing the whole
    variable (BERT tiny: a tenth of a training step). AMSGrad and other variable dtypes keep Keras' own
    update and decay.
    """

    def _fuses_update(self, variable):
        return not self.amsgrad and variable.dtype == tf.float32

    def _apply_weight_decay(self, variables):
        super()._apply_weight_decay([v for v in variables if not self._fuses_update(v)])

    def update_step(self, gradient, variable, learning_rate):
        if not self._fuses_update(variable):
            return super().update_step(gradient, variable, learning_rate)
        step = tf.cast(self.iterations + 1, tf.float32)
        index = self._get_variable_index(variable)
        decay = None
        if self.weight_decay is not None and self._use_weight_decay(variable):
            decay = tf.cast(self.weight_decay, tf.float32) * tf.cast(learning_rate, tf.float32)
        ops.apply_adamw(_local_variable(variable), _local_variable(self._momentums[index]),
                        _local_variable(self._velocities[index]), gradient, lr=learning_rate, beta1=self.beta_1,
                        beta2=self.beta_2, epsilon=self.epsilon, beta1_power=tf.pow(tf.cast(self.beta_1, tf.float32), step),
                        beta2_power=tf.pow(tf.cast(self.beta_2, tf.float32), step), decay=decay)


@keras.saving.register_keras_serializable(package="research")
class Lamb(_ResearchOptimizerMixin, keras.optimizers.Lamb):
    """`keras.optimizers.Lamb` with path-based weight-decay exclusion and optional DP.

    Keras' LAMB applies weight decay decoupled (`var -= lr * rate * var`, before the step), not inside the
    trust ratio as in the LAMB paper and Model Garden's LAMB.
    """


@keras.saving.register_keras_serializable(package="research")
class SGD(_ResearchOptimizerMixin, keras.optimizers.SGD):
    """`keras.optimizers.SGD` (momentum) with path-based weight-decay exclusion and optional DP."""


def _innermost(optimizer):
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    return optimizer


def exclude_layer_norm_variables(optimizer, model):
    """Exclude every variable of every `keras.layers.LayerNormalization` in `model` from weight decay.

    For models whose layer-norm layers are not named like the patterns. Call before the optimizer is built
    (before its first `apply` or `build`); a `LossScaleOptimizer` is unwrapped.
    """
    layers = [layer for layer in model._flatten_layers(include_self=True, recursive=True)
              if isinstance(layer, keras.layers.LayerNormalization)]
    _innermost(optimizer).exclude_from_weight_decay(var_list=[v for layer in layers for v in layer.weights])


def create_optimizer(optimizer_config, runtime_config=None, dp_config=None):
    """Builds the optimizer of Model Garden's `Task.create_optimizer`.

    Args:
      optimizer_config: an `OptimizerConfig`.
      runtime_config: a `RuntimeConfig` or None (float32). float16 wraps the optimizer in a
        `loss_scale.LossScaleOptimizer`: dynamic (`loss_scale` None or 'dynamic') or fixed at a numeric
        `loss_scale`, as Model Garden's. The global dtype policy is not touched: see `set_precision_policy`.
      dp_config: a `DifferentialPrivacyConfig` or None.

    Returns:
      A `keras.optimizers.Optimizer` whose learning rate follows `warmup_decay_schedule(optimizer_config)`.
    """
    config = optimizer_config
    if not isinstance(config, OptimizerConfig):
        raise TypeError(f"optimizer_config must be an OptimizerConfig, got {type(config).__name__}.")
    runtime_config = runtime_config or RuntimeConfig()
    float16 = runtime_config.mixed_precision_dtype == "float16"
    kwargs = dict(learning_rate=warmup_decay_schedule(config), global_clipnorm=config.global_clipnorm,
                  exclude_from_weight_decay_patterns=config.exclude_from_weight_decay, name=config.type)
    if dp_config is not None:
        kwargs.update(dp_clipping_norm=dp_config.clipping_norm, dp_noise_multiplier=dp_config.noise_multiplier,
                      dp_seed=dp_config.seed)
    weight_decay = config.weight_decay_rate
    if config.type == "adamw":
        optimizer = AdamW(weight_decay=weight_decay, beta_1=config.beta_1, beta_2=config.beta_2,
                          epsilon=config.epsilon, **kwargs)
    elif config.type == "lamb":
        optimizer = Lamb(weight_decay=weight_decay or None, beta_1=config.beta_1, beta_2=config.beta_2,
                         epsilon=config.epsilon, **kwargs)
    else:
        optimizer = SGD(weight_decay=weight_decay or None, momentum=config.momentum, **kwargs)
    if float16 and _is_number(runtime_config.loss_scale):
        optimizer = loss_scale.LossScaleOptimizer(optimizer, dynamic=False, initial_scale=runtime_config.loss_scale)
    elif float16:
        optimizer = loss_scale.LossScaleOptimizer(optimizer, dynamic=True)
    return optimizer


def current_learning_rate(optimizer):
    """The learning rate at the optimizer's current iteration as a Python float (eager only), for logging.

    Handles schedules, plain values and `LossScaleOptimizer` wrappers.
    """
    return float(keras.ops.convert_to_numpy(_innermost(optimizer).learning_rate))


def set_precision_policy(runtime_config=None):
    """Sets the Keras global dtype policy from a `RuntimeConfig` (None: float32); returns the policy name."""
    name = (runtime_config or RuntimeConfig()).policy_name
    keras.mixed_precision.set_global_policy(name)
    return name
