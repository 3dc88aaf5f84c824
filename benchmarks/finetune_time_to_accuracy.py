"""Fine-tuning time to accuracy, this codebase against TensorFlow Model Garden, from the same pretrained encoder.

    bash benchmarks/setup_model_garden.sh        # once: .venv-mg with both codebases on TF 2.20
    cd /tmp && /work/main/.venv-mg/bin/python /work/main/benchmarks/finetune_time_to_accuracy.py \\
        [--runs 2] [--pretrained_dir runs/demo_pretrain] [--json_out F] [--write_results]
    ... --report_from F [--write_results]    # the table of a saved run, without running anything

Run it from outside the source tree (cwd /tmp) so that `research` is the copy installed in .venv-mg,
whose C++ kernels are built for its TensorFlow. It needs the demo's cache (cache/demo: the 8000-piece
sentencepiece model and the Austen pretraining records), which `python -m research.data.demo_data`
builds from a clone.

What it does:
  1. Pretraining (skipped with --pretrained_dir): gin/experiments/demo_pretrain.gin for
     --pretrain_steps steps (seed 0) into --work_dir, reused when already there.
  2. The same encoder for Model Garden: our BertEncoder (gin/models/bert_tiny.gin) is restored from the
     checkpoint and its weights are copied, by an explicit name mapping (`copy_encoder_weights`; our
     fused Q/K/V kernel is split into Model Garden's per-head EinsumDense kernels), into the encoder that
     Model Garden's `encoders.build_encoder` makes from the same sizes, saved as a checkpoint for its
     task's `init_checkpoint`. Before any timing the script ASSERTS that both encoders, dropout off,
     give the same sequence output (at the real tokens) and pooled output on held-out sentences, ours
     padded to the batch's longest sentence and Model Garden's to 128, within --tolerance (1e-5).
     GELU: our encoder uses the exact (erf) GELU and Model Garden's 'gelu' string is the tanh
     approximation, so Model Garden's encoder gets `hidden_activation='exact_gelu'`, a function
     registered as a Keras custom object. Both use layer-norm epsilon 1e-12 and mask padding keys with
     -1e9 before the softmax. What stays different: the classification heads are freshly initialized
     by each side's default (ours Glorot-uniform, Model Garden truncated-normal 0.02), and the AdamW
     implementations (ours Keras 3 AdamW, Model Garden its legacy AdamWeightDecay), configured alike.
  3. Data: the shipped movie-review sentences (third_party/movie_reviews), 20% held out by our seeded
     split (as gin/experiments/demo_finetune.gin does). Ours reads the TSV itself and pads each batch
     to its longest sentence (the gin default, PAD_TO='batch'); `ours_buckets` also batches training
     sentences of similar length together (`bucket_boundaries`), and `ours_buckets_loop` moreover runs
     the steps between evaluations in one tf.while_loop (TrainerConfig.use_tf_while_loop, as Model
     Garden's trainer does by default). For Model Garden the same split is tokenized by
     our tokenizer ([CLS] text [SEP], the same ids) into TFRecords of input_ids, input_mask,
     segment_ids, label_ids padded to its usual seq_length=128, the training records in a seeded
     shuffled order and read with a shuffle buffer of the whole split (its default of 100 records would
     see runs of one label: the file is partly sorted), as ours shuffles the whole split every epoch.
  4. Fine-tuning, each run of each side in its own subprocess, alternating A B / B A: batch 32, AdamW
     (weight decay 0.01 except layer norms and biases, epsilon 1e-6, global-norm clipping 1.0), learning
     rate 3e-4 after 100 linear warmup steps then linear decay to 0 at --steps, dropout 0.1 (encoder,
     attention and classifier head, as bert_tiny.gin and Model Garden's defaults), float32. Ours: the
     demo_finetune.gin experiment through `train_lib.create_trainer`, as `python -m research.main`
     builds it. Model Garden: `SentencePredictionTask` and `train_utils.create_trainer` (Orbit), as
     official/nlp/train.py builds them. At step 0 and every --eval_every steps both evaluate the whole held-out
     split with their own trainer's `evaluate` (accuracy over all 2014 sentences, batch 64). Run r
     seeds Keras (and so TensorFlow) with r on both sides: classifier head, dropout, data order.
     Each of our runs records a hash of the installed `research` package: when it changed during the
     measurement (someone reinstalled it), the table says so.

Measured per run: training wall seconds (the time inside `trainer.train`, tracing of the first
steps included; evaluation, model building, data loading and checkpoint restoring are NOT included
and are reported separately) until the first evaluation at >= 0.70 held-out accuracy, the examples
seen then, the accuracy after all --steps (the same number of examples on both sides), and the
steady training rate (examples/s over the evaluation intervals after the first). The table gives
medians over runs and the ratio Model Garden time / our time to 0.70 (target: >= 3x).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _report (not the repo's research/)

import _report  # noqa: E402

MOVIE_REVIEWS = REPO_ROOT / "third_party" / "movie_reviews" / "vader_movie_binary.tsv"
DEMO_CACHE = REPO_ROOT / "cache" / "demo"
SPM_MODEL = DEMO_CACHE / "austen_spm_8000.model"
PRETRAINING_RECORDS = DEMO_CACHE / "records_full_sentences_seq128_vocab8000"
VOCAB_SIZE = 8000
SEQ_LEN = 128
BATCH = 32
EVAL_BATCH = 64
LEARNING_RATE = 3e-4
WARMUP_STEPS = 100
VALIDATION_FRACTION = 0.2
SPLIT_SEED = 0  # the demo's split
TARGET_ACCURACY = 0.70
BUCKET_BOUNDARIES = (16, 24, 32, 40, 48, 64, 80, 96)
_BUCKETS = f"train/sentence_prediction.ClassificationDataConfig.bucket_boundaries = {BUCKET_BOUNDARIES}"
_WHILE_LOOP = "config_definitions.TrainerConfig.use_tf_while_loop = True"
# Our variants: the gin bindings each adds to gin/experiments/demo_finetune.gin.
OURS_BINDINGS = {"ours": [], "ours_buckets": [_BUCKETS], "ours_buckets_loop": [_BUCKETS, _WHILE_LOOP]}
FRAMEWORKS = (*OURS_BINDINGS, "mg")
LABELS = {"ours": "ours (pad to batch)", "ours_buckets": "ours (pad to batch, buckets)",
          "ours_buckets_loop": "ours (pad to batch, buckets, tf.while_loop)", "mg": "Model Garden (seq 128)"}


# ---------------------------------------------------------------------------------------------------
# Preparation (parent): the pretrained checkpoint, Model Garden's records, the converted encoder


def child_pretrain(args):
    """Runs gin/experiments/demo_pretrain.gin as `python -m research.main` would, on the cached demo records."""
    import gin
    from research.core import launch

    bindings = [f"TRAIN_DATA = {str(PRETRAINING_RECORDS / 'train-*.tfrecord')!r}",
                f"EVAL_DATA = {str(PRETRAINING_RECORDS / 'validation-*.tfrecord')!r}",
                f"MODEL_DIR = {args.model_dir!r}", f"TRAIN_STEPS = {args.steps}", "launch.launch.seed = 0"]
    gin.add_config_file_search_path(str(REPO_ROOT))
    gin.parse_config_files_and_bindings([str(REPO_ROOT / "gin" / "experiments" / "demo_pretrain.gin")], bindings,
                                        finalize_config=True)
    gin.get_configurable(launch.launch)(operative_config=gin.operative_config_str)


def pretrained_checkpoint(args) -> str:
    """--pretrained_dir, or a demo pretraining of --pretrain_steps steps in --work_dir (run once, then reused)."""
    import tensorflow as tf
    if args.pretrained_dir:
        return str(Path(args.pretrained_dir).resolve())
    model_dir = Path(args.work_dir) / f"pretrain_{args.pretrain_steps}"
    latest = tf.train.latest_checkpoint(str(model_dir))
    if latest and latest.endswith(f"-{args.pretrain_steps}"):
        print(f"pretrained encoder: reusing {latest}", flush=True)
        return str(model_dir)
    print(f"pretraining the demo encoder for {args.pretrain_steps} steps into {model_dir}", flush=True)
    start = time.perf_counter()
    command = [sys.executable, __file__, "--child", "pretrain", "--steps", str(args.pretrain_steps),
               "--model_dir", str(model_dir)]
    completed = subprocess.run(command, capture_output=True, text=True, cwd="/tmp",
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if completed.returncode != 0:
        raise RuntimeError(f"pretraining failed (exit {completed.returncode}):\n"
                           + "\n".join(completed.stderr.splitlines()[-30:]))
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return str(model_dir)


def demo_splits():
    """The demo's (train, validation) examples of the movie reviews and our tokenizer's encoding of both."""
    from research.data import classification_input
    from research.data.tokenizer import Tokenizer

    examples = classification_input.read_examples(MOVIE_REVIEWS, num_classes=2)
    splits = classification_input.split_examples(examples, VALIDATION_FRACTION, SPLIT_SEED)
    tokenizer = Tokenizer(str(SPM_MODEL))
    return [(split, classification_input.encode_examples(split, tokenizer, SEQ_LEN)) for split in splits]


def write_model_garden_records(work_dir: Path, splits) -> dict:
    """Writes the `demo_splits()`, our token ids padded to 128, as Model Garden's records."""
    import numpy as np
    import tensorflow as tf
    from research.data.tokenizer import PAD_ID

    def feature(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    paths, counts = {}, {}
    for name, (examples, (word_ids, type_ids, _)) in zip(("train", "validation"), splits):
        order = range(len(examples))
        if name == "train":
            order = np.random.default_rng(SPLIT_SEED).permutation(len(examples))
        paths[name] = str(work_dir / f"mg_{name}.tfrecord")
        with tf.io.TFRecordWriter(paths[name]) as writer:
            for i in order:
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    "input_ids": feature(word_ids[i]), "input_mask": feature(word_ids[i] != PAD_ID),
                    "segment_ids": feature(type_ids[i]), "label_ids": feature([examples[i].label]),
                })).SerializeToString())
        counts[name] = len(examples)
    return {"paths": paths, "counts": counts}


def exact_gelu(x):
    """GELU with the erf, as our encoder's 'gelu' (Keras 3); Model Garden's 'gelu' is the tanh approximation."""
    import tensorflow as tf
    return tf.nn.gelu(x, approximate=False)


def register_exact_gelu():
    """Makes hidden_activation='exact_gelu' resolvable by Model Garden's `tf_utils.get_activation`."""
    import tf_keras
    tf_keras.utils.get_custom_objects()["exact_gelu"] = exact_gelu


def our_encoder():
    """Our BertEncoder as gin/models/bert_tiny.gin binds it (VOCAB_SIZE 8000, as the demo experiments)."""
    import gin
    from research import modeling

    gin.add_config_file_search_path(str(REPO_ROOT))
    gin.parse_config_files_and_bindings([str(REPO_ROOT / "gin" / "models" / "bert_tiny.gin")],
                                        [f"VOCAB_SIZE = {VOCAB_SIZE}"])
    encoder = gin.get_configurable(modeling.BertEncoder)()
    gin.clear_config()
    return encoder


def model_garden_encoder_config(encoder) -> dict:
    """Model Garden's BertEncoderConfig fields with our encoder's sizes, dropouts and (exact) GELU."""
    return {"vocab_size": encoder.vocab_size, "hidden_size": encoder.hidden_size, "num_layers": encoder.num_layers,
            "num_attention_heads": encoder.num_attention_heads, "intermediate_size": encoder.intermediate_size,
            "max_position_embeddings": encoder.max_sequence_length, "type_vocab_size": encoder.type_vocab_size,
            "dropout_rate": encoder.hidden_dropout_rate, "attention_dropout_rate": encoder.attention_dropout_rate,
            "hidden_activation": "exact_gelu"}


def build_model_garden_encoder(fields: dict):
    from official.nlp.configs import encoders
    register_exact_gelu()
    return encoders.build_encoder(encoders.EncoderConfig(type="bert", bert=encoders.BertEncoderConfig(**fields)))


def copy_encoder_weights(ours, mg) -> int:
    """Assigns our encoder's weights to Model Garden's BertEncoder by name; returns the variables copied.

    Our attention has one Dense `qkv` [hidden, 3 * hidden] whose output is read as
    [3, heads, head_size]; Model Garden has EinsumDense query/key/value kernels [hidden, heads, head_size]
    (biases [heads, head_size]) and an attention_output kernel [heads, head_size, hidden].
    """
    heads, head_size = ours.num_attention_heads, ours.hidden_size // ours.num_attention_heads
    mg_variables = {v.name.split(":")[0]: v for v in mg.weights}
    embeddings = ours.embeddings
    values = {
        "word_embeddings/embeddings": embeddings.word_embeddings.embeddings,
        "position_embedding/embeddings": embeddings.position_embeddings,
        "type_embeddings/embeddings": embeddings.type_embeddings.embeddings,
        "embeddings/layer_norm/gamma": embeddings.layer_norm.gamma,
        "embeddings/layer_norm/beta": embeddings.layer_norm.beta,
        "pooler_transform/kernel": ours.pooler.kernel,
        "pooler_transform/bias": ours.pooler.bias,
    }
    values = {name: value.numpy() for name, value in values.items()}
    for i, block in enumerate(ours.transformer_layers):
        prefix = f"transformer/layer_{i}/"
        kernel = block.attention.qkv.kernel.numpy().reshape(ours.hidden_size, 3, heads, head_size)
        bias = block.attention.qkv.bias.numpy().reshape(3, heads, head_size)
        for j, part in enumerate(("query", "key", "value")):
            values[f"{prefix}self_attention/{part}/kernel"] = kernel[:, j]
            values[f"{prefix}self_attention/{part}/bias"] = bias[j]
        values[f"{prefix}self_attention/attention_output/kernel"] = (
            block.attention.output_dense.kernel.numpy().reshape(heads, head_size, ours.hidden_size))
        values[f"{prefix}self_attention/attention_output/bias"] = block.attention.output_dense.bias.numpy()
        for ours_layer, mg_name in ((block.attention_norm, "self_attention_layer_norm"),
                                    (block.output_norm, "output_layer_norm")):
            values[f"{prefix}{mg_name}/gamma"] = ours_layer.gamma.numpy()
            values[f"{prefix}{mg_name}/beta"] = ours_layer.beta.numpy()
        for ours_layer, mg_name in ((block.intermediate, "intermediate"), (block.ffn_output, "output")):
            values[f"{prefix}{mg_name}/kernel"] = ours_layer.kernel.numpy()
            values[f"{prefix}{mg_name}/bias"] = ours_layer.bias.numpy()
    missing = sorted(set(mg_variables) - set(values))
    unknown = sorted(set(values) - set(mg_variables))
    if missing or unknown:
        raise ValueError(f"weight mapping incomplete: Model Garden variables without a value {missing}, "
                         f"mapped names Model Garden lacks {unknown}")
    for name, value in values.items():
        mg_variables[name].assign(value)
    return len(values)


def max_output_differences(ours, mg, validation) -> dict:
    """Max |ours - Model Garden| of sequence (real tokens) and pooled outputs on 64 held-out sentences.

    Ours sees the batch padded to its longest sentence (as it trains), Model Garden all 128 positions.
    """
    import numpy as np
    from research.data.tokenizer import PAD_ID

    word_ids, type_ids, lengths = (array[:EVAL_BATCH] for array in validation)
    mask = (word_ids != PAD_ID).astype(np.int32)
    longest = int(lengths.max())
    ours_out = ours({"input_word_ids": word_ids[:, :longest], "input_mask": mask[:, :longest],
                     "input_type_ids": type_ids[:, :longest]}, training=False)
    mg_out = mg({"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}, training=False)
    real = mask[:, :longest, None].astype(bool)
    sequence = np.abs(ours_out["sequence_output"].numpy() - mg_out["sequence_output"].numpy()[:, :longest])
    pooled = np.abs(ours_out["pooled_output"].numpy() - mg_out["pooled_output"].numpy())
    return {"sequence_output": float(np.where(real, sequence, 0.0).max()), "pooled_output": float(pooled.max())}


def convert_encoder(pretrained: str, work_dir: Path, validation, tolerance: float) -> dict:
    """Restores our pretrained encoder, copies it into Model Garden's, asserts equal outputs, saves it."""
    import tensorflow as tf
    from research.tasks import checkpoint_init

    ours = our_encoder()
    checkpoint_init.restore_encoder(types.SimpleNamespace(checkpoint_items={"encoder": ours}), pretrained)
    fields = model_garden_encoder_config(ours)
    mg = build_model_garden_encoder(fields)
    copied = copy_encoder_weights(ours, mg)
    differences = max_output_differences(ours, mg, validation)
    assert max(differences.values()) <= tolerance, (
        f"the encoders disagree after copying the weights: max |difference| {differences} > {tolerance}")
    prefix = tf.train.Checkpoint(encoder=mg).write(str(work_dir / "mg_init" / "encoder"))
    return {"checkpoint": prefix, "encoder_fields": fields, "variables": copied, "differences": differences}


def installed_fingerprint() -> str:
    """A short hash of the files of the `research` package this interpreter imports (the installed copy)."""
    import hashlib
    import research
    root = Path(research.__file__).parent
    digest = hashlib.sha1()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------
# Children: one fine-tuning run of one framework


def build_ours(args, model_dir: str):
    """Our trainer for the demo_finetune.gin experiment, with the benchmark's schedule and files."""
    import gin
    from research.core import config_definitions, distribute, optimization, train_lib
    from research.tasks import sentence_prediction

    bindings = [f"SPM_MODEL = {str(SPM_MODEL)!r}", f"TRAIN_TSV = {str(MOVIE_REVIEWS)!r}",
                f"EVAL_TSV = {str(MOVIE_REVIEWS)!r}", f"INIT_CHECKPOINT = {args.pretrained!r}",
                f"MODEL_DIR = {model_dir!r}", f"TRAIN_STEPS = {args.steps}", f"STEPS_PER_LOOP = {args.eval_every}",
                f"VALIDATION_INTERVAL = {args.eval_every}", f"LEARNING_RATE = {LEARNING_RATE}",
                f"WARMUP_STEPS = {WARMUP_STEPS}", f"GLOBAL_BATCH_SIZE = {BATCH}", f"EVAL_BATCH_SIZE = {EVAL_BATCH}",
                f"SEQ_LEN = {SEQ_LEN}", f"VALIDATION_FRACTION = {VALIDATION_FRACTION}", "PAD_TO = 'batch'",
                *OURS_BINDINGS[args.framework]]
    gin.add_config_file_search_path(str(REPO_ROOT))
    gin.parse_config_files_and_bindings([str(REPO_ROOT / "gin" / "experiments" / "demo_finetune.gin")], bindings,
                                        finalize_config=True)
    config = gin.get_configurable(config_definitions.ExperimentConfig)()
    strategy = gin.get_configurable(distribute.get_distribution_strategy)()
    optimization.set_precision_policy(config.runtime)
    task = sentence_prediction.SentencePredictionTask(config.task, logging_dir=model_dir)
    with strategy.scope():
        trainer = train_lib.create_trainer(config, task, train=True, evaluate=True)
    # The whole split in a step count (a tf.while_loop cannot run 'until exhausted'): no bucketing at evaluation.
    eval_steps = math.ceil(json.loads(Path(args.prepared).read_text())["records"]["counts"]["validation"] / EVAL_BATCH)
    return trainer, (lambda: trainer.evaluate(eval_steps))


def build_model_garden(args, model_dir: str):
    """Model Garden's SentencePredictionTask trainer, built as official/nlp/train.py builds it."""
    import tensorflow as tf
    from official.common import distribute_utils
    from official.core import config_definitions as cfg
    from official.core import train_utils
    from official.modeling import optimization
    from official.nlp.configs import encoders
    from official.nlp.data import sentence_prediction_dataloader
    from official.nlp.tasks import sentence_prediction

    prepared = json.loads(Path(args.prepared).read_text())
    register_exact_gelu()
    encoder = encoders.EncoderConfig(type="bert", bert=encoders.BertEncoderConfig(**prepared["encoder_fields"]))

    def data(split, is_training):
        return sentence_prediction_dataloader.SentencePredictionDataConfig(
            input_path=prepared["records"]["paths"][split], global_batch_size=BATCH if is_training else EVAL_BATCH,
            is_training=is_training, seq_length=SEQ_LEN, drop_remainder=is_training, seed=SPLIT_SEED,
            shuffle_buffer_size=prepared["records"]["counts"]["train"])

    task_config = sentence_prediction.SentencePredictionConfig(
        init_checkpoint=prepared["checkpoint"],
        model=sentence_prediction.ModelConfig(num_classes=2, use_encoder_pooler=True, encoder=encoder),
        train_data=data("train", True), validation_data=data("validation", False))
    optimizer_config = optimization.OptimizationConfig({
        "optimizer": {"type": "adamw", "adamw": {
            "weight_decay_rate": 0.01, "epsilon": 1e-6, "gradient_clip_norm": 1.0,
            "exclude_from_weight_decay": ["LayerNorm", "layer_norm", "bias"]}},
        "learning_rate": {"type": "polynomial", "polynomial": {
            "initial_learning_rate": LEARNING_RATE, "end_learning_rate": 0.0, "decay_steps": args.steps,
            "power": 1.0}},
        "warmup": {"type": "polynomial", "polynomial": {"warmup_steps": WARMUP_STEPS}},
    })
    params = cfg.ExperimentConfig(
        task=task_config,
        trainer=cfg.TrainerConfig(optimizer_config=optimizer_config, train_steps=args.steps,
                                  steps_per_loop=args.eval_every, validation_interval=args.eval_every,
                                  validation_steps=-1, checkpoint_interval=args.steps, summary_interval=args.steps),
        runtime=cfg.RuntimeConfig(mixed_precision_dtype="float32"))
    strategy = distribute_utils.get_distribution_strategy(distribution_strategy="one_device", num_gpus=0)
    with strategy.scope():
        task = sentence_prediction.SentencePredictionTask(params.task, logging_dir=model_dir)
        trainer = train_utils.create_trainer(params, task, train=True, evaluate=True)
    return trainer, (lambda: trainer.evaluate(tf.constant(-1, tf.int32)))


def _host_float(value) -> float:
    return float(value.numpy() if hasattr(value, "numpy") else value)


def child_finetune(args):
    """One run: build, restore the pretrained encoder, then train --eval_every steps and evaluate, to --steps.

    Prints `RESULT {json}` with the setup seconds and, per evaluation, the steps, the training seconds so
    far, the held-out accuracy and that evaluation's seconds.
    """
    if args.framework == "mg":
        import tf_keras
        tf_keras.utils.set_random_seed(args.seed)
    else:
        import keras
        keras.utils.set_random_seed(args.seed)
    import tensorflow as tf
    builder = build_model_garden if args.framework == "mg" else build_ours
    accuracy_key = "cls_accuracy" if args.framework == "mg" else "accuracy"
    research_install = None if args.framework == "mg" else installed_fingerprint()
    with tempfile.TemporaryDirectory(prefix=f"finetune_tta_{args.framework}_") as model_dir:
        start = time.perf_counter()
        trainer, evaluate = builder(args, model_dir)
        trainer.initialize()  # the task loads the pretrained encoder (init_checkpoint)
        setup_seconds = time.perf_counter() - start
        curve, chunk_seconds, train_seconds = [], [], 0.0
        for step in range(0, args.steps + 1, args.eval_every):
            if step:
                start = time.perf_counter()
                loss = _host_float(trainer.train(tf.constant(args.eval_every, tf.int32))["training_loss"])
                chunk_seconds.append(time.perf_counter() - start)
                train_seconds += chunk_seconds[-1]
            start = time.perf_counter()
            accuracy = _host_float(evaluate()[accuracy_key])
            curve.append({"step": step, "train_seconds": train_seconds, "accuracy": accuracy,
                          "eval_seconds": time.perf_counter() - start})
            print(f"  step {step:5d}  train {train_seconds:7.1f} s  accuracy {accuracy:.4f}", file=sys.stderr,
                  flush=True)
    print("RESULT " + json.dumps({"framework": args.framework, "seed": args.seed, "setup_seconds": setup_seconds,
                                  "chunk_seconds": chunk_seconds, "curve": curve, "final_loss": loss,
                                  "eval_every": args.eval_every, "research_install": research_install}), flush=True)


# ---------------------------------------------------------------------------------------------------
# Parent


def run_child(framework, seed, args, prepared_path, pretrained):
    arguments = [__file__, "--child", "finetune", "--framework", framework, "--seed", seed, "--steps", args.steps,
                 "--eval_every", args.eval_every, "--prepared", prepared_path, "--pretrained", pretrained]
    return _report.run_child_result(arguments, timeout=args.timeout, what=framework)


def run_summary(result) -> dict:
    """Time to the target (training seconds, None if never reached), examples then, final accuracy, steady rate."""
    reached = next((point for point in result["curve"] if point["accuracy"] >= TARGET_ACCURACY), None)
    steady = result["chunk_seconds"][1:]
    return {
        "seconds_to_target": reached["train_seconds"] if reached else None,
        "examples_to_target": reached["step"] * BATCH if reached else None,
        "final_accuracy": result["curve"][-1]["accuracy"],
        "steady_rate": BATCH * result["eval_every"] * len(steady) / sum(steady) if steady else float("nan"),
        "setup_seconds": result["setup_seconds"],
        "eval_seconds": sum(point["eval_seconds"] for point in result["curve"]),
        "evaluations": len(result["curve"]),
    }


def _median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(value, spec, missing="not reached"):
    return missing if value is None else format(value, spec)


def format_table(summaries: dict, failures: dict) -> str:
    """One row per framework: medians over runs (and every run's value) and Model Garden's time / this one's.

    `failures` counts each framework's runs that crashed or timed out (not in the medians), in table order.
    """
    mg_time = _median_or_none([s["seconds_to_target"] for s in summaries.get("mg", [])])
    lines = [f"| framework | runs reaching {TARGET_ACCURACY:.2f} / completed "
             f"| train s to {TARGET_ACCURACY:.2f}, median (each run) | examples seen then "
             f"| final accuracy, median (each run) | steady ex/s | setup s | eval s (count) | MG time / this |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for framework, failed_runs in failures.items():
        failed = f", {failed_runs} failed" if failed_runs else ""
        rows = summaries.get(framework)
        if not rows:
            lines.append(f"| {LABELS[framework]} | 0/0{failed} | - | - | - | - | - | - | - |")
            continue
        seconds = [s["seconds_to_target"] for s in rows]
        median_seconds = _median_or_none(seconds)
        ratio = mg_time / median_seconds if mg_time and median_seconds else None
        lines.append(
            f"| {LABELS[framework]} | {sum(s is not None for s in seconds)}/{len(rows)}{failed} "
            f"| {_fmt(median_seconds, '.1f')} ({', '.join(_fmt(s, '.1f', '-') for s in seconds)}) "
            f"| {_fmt(_median_or_none([s['examples_to_target'] for s in rows]), '.0f', '-')} "
            f"| {statistics.median(s['final_accuracy'] for s in rows):.4f} "
            f"({', '.join(format(s['final_accuracy'], '.4f') for s in rows)}) "
            f"| {statistics.median(s['steady_rate'] for s in rows):.0f} "
            f"| {statistics.median(s['setup_seconds'] for s in rows):.1f} "
            f"| {statistics.median(s['eval_seconds'] for s in rows):.1f} ({rows[0]['evaluations']}) "
            f"| {_fmt(ratio, '.2f', '-')}{'x' if ratio else ''} |")
    return "\n".join(lines)


def prepare(args) -> tuple[Path, str, dict]:
    """Pretrained checkpoint, Model Garden's records and converted encoder; writes them to work_dir/prepared.json."""
    for required in (SPM_MODEL, PRETRAINING_RECORDS, MOVIE_REVIEWS):
        if not required.exists():
            raise SystemExit(f"{required} is missing: build the demo cache from a clone with "
                             f"`python -m research.data.demo_data` (cache/demo)")
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    pretrained = pretrained_checkpoint(args)
    splits = demo_splits()
    prepared = convert_encoder(pretrained, work_dir, splits[1][1], args.tolerance)
    prepared["records"] = write_model_garden_records(work_dir, splits)
    print(f"encoder copied into Model Garden's ({prepared['variables']} variables); max |ours - Model Garden| "
          f"{prepared['differences']} (tolerance {args.tolerance})", flush=True)
    prepared_path = work_dir / "prepared.json"
    prepared_path.write_text(json.dumps(prepared, indent=1))
    return prepared_path, pretrained, prepared


def parent_main(args):
    frameworks = [f.strip() for f in args.frameworks.split(",")]
    unknown = sorted(set(frameworks) - set(FRAMEWORKS))
    if unknown:
        raise SystemExit(f"unknown frameworks {unknown}; choose from {FRAMEWORKS}")
    prepared_path, pretrained, prepared = prepare(args)
    machine = _report.machine_record()
    command = "python benchmarks/finetune_time_to_accuracy.py " + " ".join(sys.argv[1:])
    installs = {installed_fingerprint()}
    results = {framework: [] for framework in frameworks}
    failures = {framework: 0 for framework in frameworks}
    for run in range(args.runs):
        for framework in (frameworks if run % 2 == 0 else frameworks[::-1]):
            print(f"run {run + 1} {LABELS[framework]} ...", flush=True)
            try:
                result = run_child(framework, run, args, prepared_path, pretrained)
            except (RuntimeError, subprocess.TimeoutExpired) as error:  # report it, go on with the rest
                print(f"  FAILED: {error}", flush=True)
                failures[framework] += 1
                continue
            results[framework].append(result)
            if result["research_install"]:  # our runs (Model Garden's do not import our package)
                installs.add(result["research_install"])
            summary = run_summary(result)
            reached = (f"{summary['seconds_to_target']:.1f} s, {summary['examples_to_target']} examples"
                       if summary["seconds_to_target"] is not None else "not reached")
            print(f"  to {TARGET_ACCURACY:.2f}: {reached}; final accuracy "
                  f"{summary['final_accuracy']:.4f}; steady {summary['steady_rate']:.0f} ex/s; "
                  f"accuracy every {args.eval_every} steps: "
                  f"{' '.join(format(p['accuracy'], '.3f') for p in result['curve'])}; "
                  f"research install {result['research_install'] or '-'}", flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "prepared": prepared, "results": results, "failures": failures, "installs": sorted(installs),
            "settings": settings(args), "machine": machine, "command": command}, indent=1))
    report(settings(args), prepared, results, failures, installs, args.write_results,
           _report.describe_machine(machine), f"`{command}`")


def settings(args) -> dict:
    """What the report says about how the runs were made."""
    source = (f"{args.pretrained_dir}" if args.pretrained_dir else
              f"gin/experiments/demo_pretrain.gin, {args.pretrain_steps} steps, seed 0")
    return {"runs": args.runs, "steps": args.steps, "eval_every": args.eval_every, "pretrained": source}


def settings_from_results(results, failures) -> dict:
    """The settings a saved run's results themselves show: runs per side (completed + failed), steps
    (the last evaluated step) and the evaluation interval; the pretrained encoder is not in them."""
    rows = [r for side in results.values() for r in side]
    runs = {len(side) + failures.get(framework, 0) for framework, side in results.items()}
    steps = {r["curve"][-1]["step"] for r in rows if r["curve"]}
    every = {r["eval_every"] for r in rows}
    show = lambda values: str(values.pop()) if len(values) == 1 else " / ".join(map(str, sorted(values)))  # noqa: E731
    return {"runs": show(runs), "steps": show(steps), "eval_every": show(every),
            "pretrained": "not recorded in the saved run"}


def report(run_settings, prepared, results, failures, installs, write_results, machine, command):
    """Prints the table and, with write_results, records it in RESULTS.md.

    Args:
      run_settings: `settings()` of the measured run.
      machine: `_report.describe_machine()` of the machine and date of the measurement.
      command: how the figures were made (the measuring command, or it and the rendering one)."""
    summaries = {f: [run_summary(r) for r in rows] for f, rows in results.items() if rows}
    table = format_table(summaries, failures)
    if len(installs) > 1:
        table += (f"\n\nWARNING: the installed `research` package changed during this measurement ({len(installs)} "
                  f"versions: {', '.join(sorted(installs))}); our runs are not all of the same code.")
    print()
    print(table)
    if write_results:
        differences = prepared["differences"]
        steps = run_settings["steps"]
        examples = f"{int(steps) * BATCH} examples" if str(steps).isdigit() else "examples: steps x batch"
        body = (f"{machine}; {command}; pretrained encoder: {run_settings['pretrained']}; "
                f"{run_settings['runs']} run(s) per side, alternating, each in its own process; {steps} steps of "
                f"batch {BATCH} ({examples}), lr {LEARNING_RATE} (warmup {WARMUP_STEPS}, linear "
                f"decay), held-out accuracy on {prepared['records']['counts']['validation']} sentences every "
                f"{run_settings['eval_every']} steps. Seconds are training only (inside `trainer.train`, first-step "
                f"tracing included); evaluation, setup (model, data, checkpoint restore) are excluded and listed "
                f"apart. Encoder mapping checked before timing: max |ours - Model Garden| sequence output "
                f"{differences['sequence_output']:.2e}, pooled {differences['pooled_output']:.2e}. "
                f"Target: Model Garden time / ours >= 3x.\n\n{table}\n")
        _report.write_section("Fine-tuning time to accuracy (benchmarks/finetune_time_to_accuracy.py)", body)


def report_from_json(args):
    """Renders a --json_out file from what it saved alone: its settings (or, in files saved before they
    were, what its results show), its machine and date, and its command; never this process's flags."""
    saved = json.loads(Path(args.report_from).read_text())
    results = saved["results"]
    failures = saved.get("failures", {framework: 0 for framework in results})
    installs = set(saved.get("installs", [r["research_install"] for rows in results.values() for r in rows
                                          if r["research_install"]]))
    run_settings = saved.get("settings") or settings_from_results(results, failures)
    measured_by = f"measured by `{saved['command']}`" if "command" in saved else "measuring command not recorded"
    command = f"{measured_by}, rendered from {Path(args.report_from).name} with `--report_from`"
    report(run_settings, saved["prepared"], results, failures, installs, args.write_results,
           _report.describe_machine(saved.get("machine")), command)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="runs per framework, alternating")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                        help=f"comma-separated, from {FRAMEWORKS} (in this order, then reversed)")
    parser.add_argument("--steps", type=int, default=1500, help="fine-tuning steps (the demo's 1500)")
    parser.add_argument("--eval_every", type=int, default=50, help="evaluation cadence in steps, both sides")
    parser.add_argument("--pretrained_dir", default="", help="an existing pretraining model_dir or checkpoint "
                                                             "(ours); default: pretrain --pretrain_steps steps")
    parser.add_argument("--pretrain_steps", type=int, default=2000)
    parser.add_argument("--work_dir", default=os.path.join(tempfile.gettempdir(), "finetune_time_to_accuracy"))
    parser.add_argument("--tolerance", type=float, default=1e-5, help="max |ours - Model Garden| encoder outputs")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per fine-tuning run")
    parser.add_argument("--json_out", default="", help="also save every run's curve here")
    parser.add_argument("--write_results", action="store_true", help="write the table into benchmarks/RESULTS.md")
    parser.add_argument("--report_from", default="", help="a --json_out file: print (and with --write_results "
                                                          "record) its table; runs nothing")
    parser.add_argument("--child", choices=("pretrain", "finetune"), help=argparse.SUPPRESS)
    parser.add_argument("--framework", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--model_dir", help=argparse.SUPPRESS)
    parser.add_argument("--prepared", help=argparse.SUPPRESS)
    parser.add_argument("--pretrained", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "pretrain":
        child_pretrain(args)
    elif args.child == "finetune":
        child_finetune(args)
    elif args.report_from:
        report_from_json(args)
    else:
        if args.eval_every < 1 or args.steps < max(args.eval_every, WARMUP_STEPS) or args.steps % args.eval_every:
            raise SystemExit(f"--steps must be a multiple of --eval_every and at least {WARMUP_STEPS} (the warmup)")
        parent_main(args)


if __name__ == "__main__":
    main()
