"""GPU readiness without a GPU: on a machine that reports a GPU (or TPU), `auto` runs the chunked masked-LM
head in plain TensorFlow ops (the kernels are CPU-only) and keeps the host-side masking kernel.

No GPU exists here, so the device list that the backend switch reads is faked: `tf.config.list_logical_devices`
answers as on a one-GPU machine. The kernels themselves are registered for DEVICE_CPU only, which the
registered-kernel query checks."""
import numpy as np
import pytest
import tensorflow as tf

from research import ops
from research.ops import backend
from research.ops._loader import LIBRARY


def _fake_accelerator(monkeypatch, kind):
    real = tf.config.list_logical_devices

    def list_logical_devices(device_type=None):
        if device_type == kind:
            return [tf.config.LogicalDevice(name=f"/device:{kind}:0", device_type=kind)]
        return real(device_type)

    monkeypatch.setattr(backend.tf.config, "list_logical_devices", list_logical_devices)


def _op_types(function, *args):
    graph = function.get_concrete_function(*args).graph
    types = {op.type for op in graph.get_operations()}
    for function_def in graph.as_graph_def().library.function:  # while-loop bodies, custom-gradient functions
        types |= {node.op for node in function_def.node_def}
    return types


def _head_and_masking():
    rng = np.random.RandomState(0)
    hidden, table = rng.randn(12, 8).astype(np.float32), rng.randn(40, 8).astype(np.float32)
    labels, weights = rng.randint(0, 40, 12).astype(np.int32), np.ones(12, np.float32)

    @tf.function
    def head(hidden, table):
        with tf.GradientTape() as tape:
            tape.watch([hidden, table])
            loss, _ = ops.masked_lm_loss(hidden, table, tf.zeros([40]), labels, weights)
        return loss, tape.gradient(tf.reduce_sum(loss), [hidden, table])

    @tf.function
    def masking(token_ids):
        return ops.mask_tokens(token_ids, tf.constant([1, 2], tf.int64), vocab_size=40, mask_token_id=4,
                               special_token_ids=[0, 2, 3], max_predictions_per_seq=3)

    return (head, (tf.constant(hidden), tf.constant(table))), (masking, (tf.constant(rng.randint(5, 40, (2, 10)),
                                                                                     tf.int32),))


@pytest.mark.parametrize("kind", ["GPU", "TPU"])
def test_auto_on_an_accelerator_runs_the_chunked_head_and_the_host_masking_kernel(kind, monkeypatch):
    assert LIBRARY.get() is not None, LIBRARY.unavailable_reason
    _fake_accelerator(monkeypatch, kind)
    assert backend.resolve("Research>SoftmaxXentChunk", "auto") is None
    assert backend.resolve("Research>MaskTokens", "auto", host_op=True) is LIBRARY.get()
    (head, head_args), (masking, masking_args) = _head_and_masking()
    head_ops = _op_types(head, *head_args)
    assert "Research>SoftmaxXentChunk" not in head_ops and head_ops & {"While", "StatelessWhile"}
    assert "SparseSoftmaxCrossEntropyWithLogits" in head_ops and "MatMul" in head_ops
    assert "Research>MaskTokens" in _op_types(masking, *masking_args)


def test_on_this_cpu_auto_runs_the_kernels():
    (head, head_args), (masking, masking_args) = _head_and_masking()
    assert "Research>SoftmaxXentChunk" in _op_types(head, *head_args)
    assert "Research>MaskTokens" in _op_types(masking, *masking_args)


def test_kernels_are_registered_for_the_cpu_only():
    from tensorflow.python.framework import kernels  # pylint: disable=import-outside-toplevel
    assert LIBRARY.get() is not None, LIBRARY.unavailable_reason
    for op_name in ("Research>SoftmaxXentChunk", "Research>MaskTokens", "Research>LayerNorm", "Research>Dropout"):
        devices = {kernel.device_type for kernel in kernels.get_registered_kernels_for_op(op_name).kernel}
        assert devices == {"CPU"}, (op_name, devices)
