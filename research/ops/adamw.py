"""One AdamW step of a variable in one pass: `Research>ResourceApplyAdamW` and its twin.

    var -= var * decay                       (decoupled weight decay; decay=None: none)
    m += (grad - m) (1 - beta1);  v += (grad^2 - v) (1 - beta2)
    var -= lr sqrt(1 - beta2_power) / (1 - beta1_power) m / (sqrt(v) + epsilon)

Why a kernel: Keras' AdamW on TensorFlow decays every variable in a pass of its own (a multiply and an
assign_sub: the variable read twice, written once, and a temporary as large as the variable) before
the Adam update reads and writes it again; fused, the step is one pass over var, m, v and grad. The
twin is that sequence of TensorFlow ops (`assign_sub`, then `ResourceApplyAdam`), XLA-compilable; the
kernel rounds every operation as they do, so both give the same bits.
"""
import tensorflow as tf

from research.ops import backend as backend_lib

OP_NAME = "Research>ResourceApplyAdamW"


def apply_adamw(variable, m, v, grad, *, lr, beta1, beta2, epsilon, beta1_power, beta2_power, decay,
                backend: str = "auto"):
    """Updates the float32 resource variables `variable`, `m` and `v` in place (see the module doc).

    Args:
      variable, m, v: tf.Variable (resource) of one shape; m and v are Adam's first and second moments.
      grad: the gradient, dense, of the variable's shape.
      lr, beta1, beta2, epsilon, beta1_power, beta2_power, decay: scalars; beta*_power are beta*^t for
        the step t being taken; decay is the weight-decay factor (rate * learning rate), or None for a
        variable without weight decay.
      backend: 'auto', 'native' or 'reference' (see research/ops/backend.py).

    Returns:
      The update op (None when run eagerly).
    """
    if variable.dtype != tf.float32:
        raise TypeError(f"{OP_NAME}: the variable must be float32, got {variable.dtype.name}")
    scalars = [tf.cast(s, tf.float32) for s in (beta1_power, beta2_power, lr, beta1, beta2, epsilon)]
    grad = tf.cast(tf.convert_to_tensor(grad), tf.float32)
    library = backend_lib.resolve(OP_NAME, backend)
    if library is not None:
        # The kernel leaves the variable exactly as it is for a decay of 0 (var * 0 would turn inf into NaN).
        factor = tf.constant(0.0) if decay is None else tf.cast(decay, tf.float32)
        return library.research_resource_apply_adam_w(variable.handle, m.handle, v.handle, *scalars, factor, grad)
    beta1_power, beta2_power, lr, beta1, beta2, epsilon = scalars
    decayed = [] if decay is None else [variable.assign_sub(variable * tf.cast(decay, tf.float32))]
    with tf.control_dependencies(decayed):
        return tf.raw_ops.ResourceApplyAdam(var=variable.handle, m=m.handle, v=v.handle, beta1_power=beta1_power,
                                            beta2_power=beta2_power, lr=lr, beta1=beta1, beta2=beta2, epsilon=epsilon,
                                            grad=grad)
