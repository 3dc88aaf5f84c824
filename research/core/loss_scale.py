"""Keras 3's `LossScaleOptimizer` with Model Garden's (Keras 2) `dynamic` switch.

Model Garden builds its float16 optimizer as Keras 2's `tf.keras.mixed_precision.LossScaleOptimizer(
optimizer, dynamic=..., initial_scale=..., dynamic_growth_steps=...)` and code written for it reads those
attributes back. Keras 3's class always adjusts its scale and refuses `dynamic=False` (it points to the
inner optimizer's `loss_scale_factor` instead). `LossScaleOptimizer` here is a Keras 3 optimizer (a
subclass of `keras.optimizers.LossScaleOptimizer`) that answers Model Garden's reads with Keras 2's
meaning:

  dynamic=True   Keras 3's dynamic loss scale: the scale starts at `initial_scale` (2**15), a step whose
                 gradients are not finite is skipped and halves it, `dynamic_growth_steps` (2000) finite
                 steps in a row double it.
  dynamic=False  a fixed scale: the loss is multiplied by `initial_scale` and every step's gradients are
                 divided by it and applied, finite or not (what Keras 2's fixed scale and Keras 3's
                 `loss_scale_factor` both do); `dynamic_growth_steps` is None.

`loss_scale` is Keras 2's name for the current scale (a float32 scalar tensor once built).
"""
import keras
from keras import ops

DEFAULT_INITIAL_SCALE = 2.0 ** 15
DEFAULT_GROWTH_STEPS = 2000


@keras.saving.register_keras_serializable(package="research")
class LossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """A loss-scale optimizer, dynamic (Keras 3's) or fixed (`dynamic=False`); see the module docstring.

    Args:
      inner_optimizer: the `keras.optimizers.Optimizer` that applies the unscaled gradients.
      dynamic: adjust the scale (True) or keep `initial_scale` (False).
      initial_scale: the (starting) scale, a number > 0; default 2**15.
      dynamic_growth_steps: with dynamic=True, finite steps before the scale doubles (default 2000); must
        be None with dynamic=False (as in Keras 2).
      name: the optimizer's name.
    """

    def __init__(self, inner_optimizer, dynamic=True, initial_scale=DEFAULT_INITIAL_SCALE,
                 dynamic_growth_steps=None, name=None, **kwargs):
        if not isinstance(dynamic, bool):
            raise ValueError(f"LossScaleOptimizer dynamic must be True or False, got {dynamic!r}")
        if not isinstance(initial_scale, (int, float)) or isinstance(initial_scale, bool) or initial_scale <= 0:
            raise ValueError(f"LossScaleOptimizer initial_scale must be a number > 0, got {initial_scale!r}")
        if not dynamic and dynamic_growth_steps is not None:
            raise ValueError(f"LossScaleOptimizer dynamic_growth_steps={dynamic_growth_steps!r} needs dynamic=True "
                             "(a fixed scale never grows): leave it None")
        super().__init__(inner_optimizer, initial_scale=float(initial_scale),
                         dynamic_growth_steps=dynamic_growth_steps or DEFAULT_GROWTH_STEPS, name=name, **kwargs)
        self.dynamic = dynamic
        if not dynamic:
            self.dynamic_growth_steps = None

    @property
    def loss_scale(self):
        """The current scale: float32 scalar tensor once built, else `initial_scale` (Keras 2's name)."""
        return ops.convert_to_tensor(self.dynamic_scale) if self.built else self.initial_scale

    def _unscaled(self, grads, trainable_variables):
        variables = trainable_variables or self._trainable_variables
        return [g if g is None or self._overwrite_variable_with_gradient(v) else ops.divide(g, self.dynamic_scale)
                for g, v in zip(grads, variables)]

    def apply(self, grads, trainable_variables=None):
        if self.dynamic:
            return super().apply(grads, trainable_variables)
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
            self.built = True
        return self.inner_optimizer.apply(self._unscaled(grads, trainable_variables), trainable_variables)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        if not self.dynamic:
            raise NotImplementedError("LossScaleOptimizer(dynamic=False) has no stateless_apply (the JAX path): "
                                      "set loss_scale_factor on the inner optimizer instead")
        return super().stateless_apply(optimizer_variables, grads, trainable_variables)

    def get_config(self):
        config = super().get_config()
        config["dynamic"] = self.dynamic
        return config
