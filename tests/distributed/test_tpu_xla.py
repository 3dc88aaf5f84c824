"""TPU readiness without a TPU: TPUStrategy from gin fails clearly here, `auto` picks the reference ops
(the masked-LM head: its chunked form) inside XLA, and the whole masked-LM train step compiles with
jit_compile=True (what a TPU compiles), holding no [positions, vocab] logits."""
import sys
from pathlib import Path

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from research import modeling
from research.core import distribute, optimization
from research.core.xla_memory import compiled_memory
from research.ops import backend
from research.tasks import masked_lm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks"))
from task_helpers import PREDICTIONS, SEQ_LEN, VOCAB, tiny_encoder, write_pretraining_records  # noqa: E402


def test_tpu_strategy_from_gin_names_the_address():
    gin.clear_config()
    try:
        gin.parse_config([
            "from __gin__ import dynamic_registration",
            "from research.core import distribute",
            "distribute.get_distribution_strategy.distribution_strategy = 'tpu'",
            "distribute.get_distribution_strategy.tpu_address = 'local'",
        ])
        with pytest.raises(RuntimeError, match=r"tpu_address='local'"):
            gin.get_configurable(distribute.get_distribution_strategy)()
    finally:
        gin.clear_config()


def test_main_flags_become_strategy_bindings():
    from research import main  # pylint: disable=import-outside-toplevel
    assert main.strategy_bindings(None, None) == []
    bindings = main.strategy_bindings("tpu", "local")
    assert "DISTRIBUTION_STRATEGY = 'tpu'" in bindings
    assert "distribute.get_distribution_strategy.tpu_address = 'local'" in bindings


def test_auto_backend_picks_the_reference_ops_inside_xla(native_library):
    choices = {}

    def probe(name):
        choices[name] = backend.resolve("Research>Probe", "auto")
        return tf.constant(0.0)

    tf.function(lambda: probe("xla"), jit_compile=True)()
    tf.function(lambda: probe("graph"))()
    assert choices["xla"] is None  # the reference twin
    assert choices["graph"] is native_library  # the native library (CPU, no XLA)
    with pytest.raises(ValueError, match="XLA"):
        tf.function(lambda: backend.resolve("Research>Probe", "native"), jit_compile=True)()


def _task(tmp_path):
    data = masked_lm.PretrainDataConfig(input_path=write_pretraining_records(tmp_path), global_batch_size=8,
                                        seq_len=SEQ_LEN, vocab_size=VOCAB, max_predictions_per_seq=PREDICTIONS,
                                        masking_backend="reference")
    # BertPretrainer's MaskedLMHead and its gather/fused-loss ops default to backend='auto'.
    config = masked_lm.MaskedLMConfig(model=lambda: modeling.BertPretrainer(tiny_encoder()), train_data=data)
    return masked_lm.MaskedLMTask(config)


@pytest.mark.slow
def test_whole_train_step_compiles_with_xla_and_matches_the_native_step(tmp_path, native_library):
    """Forward, fused MLM loss, backward and AdamW apply in one XLA cluster, with backend='auto'.

    The native (no-XLA) run from the same initial weights gives the same losses to 1e-4 relative: the
    reference twins compute the same math as the kernels, XLA only fuses and reorders float32 sums.
    """
    task = _task(tmp_path)
    batch = next(iter(task.build_inputs(task.task_config.train_data)))
    config = optimization.OptimizerConfig(type="adamw", learning_rate=1e-2, warmup_steps=0, decay="constant")
    losses = {}
    for name, jit in (("xla", True), ("native", False)):
        keras.utils.set_random_seed(5)
        model = task.build_model()
        optimizer = task.create_optimizer(config)
        step = tf.function(lambda inputs: task.train_step(inputs, model, optimizer), jit_compile=jit)
        losses[name] = [float(step(batch)[task.loss]) for _ in range(4)]
        if jit:  # really one XLA program: the compiled graph holds no native Research> op
            hlo = step.experimental_get_compiler_ir(batch)(stage="hlo")
            assert "Research" not in hlo and "custom-call" not in hlo.lower()
        else:  # and the other side really is the kernels' step
            graph_def = step.get_concrete_function(batch).graph.as_graph_def()
            types = {n.op for n in graph_def.node} | {n.op for f in graph_def.library.function for n in f.node_def}
            assert {"Research>SoftmaxXentChunk", "Research>GatherPositions", "Research>LayerNorm"} <= types
    assert all(np.isfinite(losses["xla"])) and losses["xla"][-1] < losses["xla"][0]
    np.testing.assert_allclose(losses["xla"], losses["native"], rtol=1e-4)


@pytest.mark.slow
def test_train_step_under_xla_holds_no_logits_with_the_chunked_head(tmp_path):
    """The compiled step (not run) of a pretrainer whose vocabulary dwarfs the rest: with `auto` XLA
    gets the chunked head, and its buffer assignment stays far below the [positions, vocab] logits
    that the explicit-logits head (backend='reference') allocates, twice (logits and their gradient)."""
    vocab = 30522
    batch_size = 512  # 2048 positions: 8 chunks of the head
    data = masked_lm.PretrainDataConfig(input_path=write_pretraining_records(tmp_path, num_examples=batch_size),
                                        global_batch_size=batch_size, seq_len=SEQ_LEN, vocab_size=vocab,
                                        max_predictions_per_seq=PREDICTIONS, masking_backend="reference")
    positions = batch_size * PREDICTIONS
    logits = 4 * positions * vocab
    config = optimization.OptimizerConfig(type="adamw", learning_rate=1e-2, warmup_steps=0, decay="constant")
    memory = {}
    for head_backend in ("auto", "reference"):
        keras.utils.set_random_seed(5)

        def pretrainer(head_backend=head_backend):
            encoder = tiny_encoder(vocab_size=vocab)
            head = modeling.MaskedLMHead(encoder.get_embedding_table(), backend=head_backend)
            return modeling.BertPretrainer(encoder, mlm_head=head)

        task = masked_lm.MaskedLMTask(masked_lm.MaskedLMConfig(model=pretrainer, train_data=data))
        batch = next(iter(task.build_inputs(data)))
        model = task.build_model()
        optimizer = task.create_optimizer(config)
        step = tf.function(lambda inputs: task.train_step(inputs, model, optimizer), jit_compile=True)
        step(batch)  # builds the optimizer's slots; the program measured is the steady-state step
        memory[head_backend] = compiled_memory(step, batch)
        if head_backend == "auto":
            hlo = step.experimental_get_compiler_ir(batch)(stage="hlo")
            assert "Research" not in hlo and f"[{positions},{vocab}]" not in hlo
    assert memory["reference"].temporaries >= 2 * logits
    assert memory["auto"].temporaries <= 0.35 * logits, (memory, logits)
