"""Training speed and memory, this codebase against TensorFlow Model Garden, side by side.

    bash benchmarks/setup_model_garden.sh                     # once: .venv-mg with both codebases on TF 2.20
    .venv-mg/bin/python benchmarks/train_bench.py --configs tiny            # quick: a few minutes
    .venv-mg/bin/python benchmarks/train_bench.py --configs mlm_tiny,mlm_small,cls_tiny,cls_small --runs 2
    .venv-mg/bin/python benchmarks/train_bench.py --configs mlm_base --runs 1 --write_results

Configurations (batch 32, sequence 128, vocabulary 30522, AdamW with warmup then polynomial decay):
  mlm_tiny / mlm_small / mlm_base   masked-LM pretraining, 20 predictions per sequence, no
                                    next-sentence head, BERT tiny (2/128/2/512), small (4/512/8/2048),
                                    base (12/768/12/3072)
  cls_tiny / cls_small              2-class sentence classification (fine-tuning)
`--configs tiny` means mlm_tiny,cls_tiny (likewise small, base); `all` is every configuration.
Each runs in float32, then under `mixed_bfloat16` (`--precisions`).

How each side runs (one fresh subprocess per measurement, so that peak RSS is that run's own):
  * Model Garden: `official.nlp.tasks.masked_lm.MaskedLMTask` (`cls_heads=[]`) or
    `sentence_prediction.SentencePredictionTask`, `official.core.train_utils.create_trainer` (its
    Trainer, an Orbit StandardTrainer) and `trainer.train(steps)` (Orbit's loop); legacy AdamWeightDecay
    (the `adamw` of its OptimizationConfig) with global-norm clipping 1.0, polynomial warmup and decay;
    precision through `official.modeling.performance.set_mixed_precision_policy`.
  * Ours: what `python -m research.main` runs: the gin files gin/models/bert_<size>.gin +
    gin/tasks/{masked_lm,sentence_prediction}.gin + gin/runs/{pretrain,finetune}.gin, the strategy,
    precision, task and `train_lib.create_trainer` exactly as `launch.launch` builds them, then
    `Trainer.train(steps_per_loop)` (the call `train_lib.run_experiment` makes every loop; checkpoints
    and summaries, which it adds between loops, are left out on both sides).
  * Ours under XLA (`--frameworks ours,ours_xla`): the same, with `TrainerConfig.jit_compile = True`
    (each replica's step compiled by XLA, every op on its XLA path); runs without Model Garden.
Both read the SAME synthetic full-length records, written once into --data_dir: the same token ids as
unmasked `input_word_ids`/`input_type_ids` for ours (masked dynamically in our input pipeline) and as
pre-masked `input_ids, input_mask, segment_ids, masked_lm_positions, masked_lm_ids,
masked_lm_weights, next_sentence_labels` for Model Garden's pretraining reader; for classification,
a TSV of long Austen passages that ours tokenizes itself and the same ids as `input_ids, input_mask,
segment_ids, label_ids` records for Model Garden.

Measurements: each subprocess times `--loops` loops of `--steps` steps; the first loop (tracing,
warm-up) is dropped and the steady rate is examples / time of the others. Runs alternate
A B A B (`--runs` pairs). Reported per configuration: examples/s (min and median over runs), ours /
Model Garden (median), peak RSS (the child's ru_maxrss; max over runs) and its ratio, and achieved
training FLOP/s as a fraction of the matmul peak of the same precision (benchmarks/peak_flops.py,
measured in a subprocess before every configuration; the highest measurement of the run is used
for every row).

FLOP count (per training step, analytic, multiply-add = 2 FLOPs, backward = 2x forward):
  6 * T * P_mm                          T = batch * seq tokens; P_mm = weights of the encoder's
                                        matmuls: per layer 4 D^2 (Q, K, V, output) + 2 D I (FFN)
  + 12 * T * L * S * D                  attention scores Q K^T and probs @ V (2 * 2 S D per token per
                                        layer forward)
  + 6 * B * D^2                         the pooler (both compute it)
  MLM:  + 6 * N * (D^2 + D * V)         the head's transform and the tied vocabulary projection, over
                                        N = batch * 20 predicted positions (the nominal 20, padding
                                        included: Model Garden computes them, ours skips weight-0 rows)
  classifier: + 6 * B * D * 2           the output layer
Embedding lookups, layer norms, softmaxes, GELU and the optimizer are not counted.
This is the standard model's count, the same for both sides (model FLOPs). Ours executes fewer: its
last layer runs only where something reads it, the masked positions and [CLS] for MLM (BertPretrainer
masked_positions_only), [CLS] for the classifier, which skips 6 * B * (S - R) * (D^2 + 2 D I + 2 S D)
for R = 21 or 1 rows an example: MLM tiny 14%, small 13%, base 5% of the count; classifier tiny 39%,
small 19%, base 6%. The table shows both for ours: "model % of peak" (the standard count over the step
time, comparable with Model Garden's) and "executed % of peak" (the count minus what ours skips: what the
hardware did). A peak given with --peak_gflops is labelled typed in, not measured.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _report, peak_flops (not the repo's research/)

import _report  # noqa: E402

BATCH = 32
SEQ_LEN = 128
VOCAB = 30522
NUM_PREDICTIONS = 20
SHARDS = 4
NUM_RECORDS = 2048
MASK_ID, CLS_ID, SEP_ID, FIRST_PLAIN_ID = 4, 2, 3, 5  # our tokenizer's special ids

SIZES = {  # layers, hidden, heads, intermediate
    "tiny": (2, 128, 2, 512),
    "small": (4, 512, 8, 2048),
    "base": (12, 768, 12, 3072),
}
CONFIGS = {
    "mlm_tiny": ("mlm", "tiny"), "mlm_small": ("mlm", "small"), "mlm_base": ("mlm", "base"),
    "cls_tiny": ("cls", "tiny"), "cls_small": ("cls", "small"),
}
ALIASES = {
    "tiny": ["mlm_tiny", "cls_tiny"], "small": ["mlm_small", "cls_small"], "base": ["mlm_base"],
    "all": list(CONFIGS), "mlm": ["mlm_tiny", "mlm_small", "mlm_base"], "cls": ["cls_tiny", "cls_small"],
}
# (steps per loop, loops) per size by default: a loop of a few seconds on Model Garden.
DEFAULT_SCHEDULE = {"tiny": (20, 4), "small": (4, 3), "base": (2, 3)}
PRECISIONS = ("float32", "mixed_bfloat16")
FRAMEWORKS = ("ours", "mg", "ours_xla")
LABELS = {"ours": "ours", "mg": "Model Garden", "ours_xla": "ours, XLA"}


# ---------------------------------------------------------------------------------------------------
# FLOPs


def train_flops_per_step(task: str, size: str, batch: int = BATCH, seq_len: int = SEQ_LEN, vocab: int = VOCAB,
                         num_predictions: int = NUM_PREDICTIONS) -> float:
    layers, hidden, _, intermediate = SIZES[size]
    tokens = batch * seq_len
    matmul_params = layers * (4 * hidden * hidden + 2 * hidden * intermediate)
    flops = 6.0 * tokens * matmul_params + 12.0 * tokens * layers * seq_len * hidden + 6.0 * batch * hidden * hidden
    if task == "mlm":
        flops += 6.0 * batch * num_predictions * (hidden * hidden + hidden * vocab)
    else:
        flops += 6.0 * batch * hidden * 2
    return flops


def ours_executed_flops_per_step(task: str, size: str, batch: int = BATCH, seq_len: int = SEQ_LEN) -> float:
    """`train_flops_per_step` minus what ours skips: its last layer runs only at the R rows something reads
    (R = the predicted positions + [CLS] for MLM, [CLS] for the classifier), so the attention output
    projection, the FFN and the attention of S - R rows per example are not computed (Q, K, V are)."""
    layers, hidden, _, intermediate = SIZES[size]
    read_rows = NUM_PREDICTIONS + 1 if task == "mlm" else 1
    skipped = 6.0 * batch * (seq_len - read_rows) * (hidden * hidden + 2 * hidden * intermediate + 2 * seq_len * hidden)
    return train_flops_per_step(task, size, batch, seq_len) - skipped


# ---------------------------------------------------------------------------------------------------
# Synthetic data (written once by the parent, read by every child)


def _int_feature(values):
    import tensorflow as tf
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _float_feature(values):
    import tensorflow as tf
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _synthetic_ids(rng, num_records):
    """Full-length segment pairs: [CLS] a(63) [SEP] b(62) [SEP], no padding."""
    import numpy as np
    ids = rng.integers(FIRST_PLAIN_ID, VOCAB, size=(num_records, SEQ_LEN), dtype=np.int64)
    types = np.zeros_like(ids)
    ids[:, 0] = CLS_ID
    ids[:, 64] = SEP_ID
    ids[:, -1] = SEP_ID
    types[:, 65:] = 1
    return ids, types


def _premask(rng, ids):
    """BERT's static masking of one record: 15% of the plain tokens (19 here), 80/10/10, padded to 20."""
    import numpy as np
    candidates = np.flatnonzero(ids >= FIRST_PLAIN_ID)
    count = min(NUM_PREDICTIONS, max(1, int(round(len(candidates) * 0.15))))
    positions = np.sort(rng.choice(candidates, size=count, replace=False))
    masked = ids.copy()
    for position in positions:
        draw = rng.random()
        if draw < 0.8:
            masked[position] = MASK_ID
        elif draw < 0.9:
            masked[position] = rng.integers(FIRST_PLAIN_ID, VOCAB)
    pad = NUM_PREDICTIONS - count
    return (masked, np.pad(positions, (0, pad)), np.pad(ids[positions], (0, pad)),
            np.pad(np.ones(count), (0, pad)))


def write_pretraining_records(data_dir: Path, seed: int = 0):
    import numpy as np
    import tensorflow as tf
    rng = np.random.default_rng(seed)
    ids, types = _synthetic_ids(rng, NUM_RECORDS)
    per_shard = NUM_RECORDS // SHARDS
    for shard in range(SHARDS):
        ours = tf.io.TFRecordWriter(str(data_dir / f"ours_mlm-{shard:05d}-of-{SHARDS:05d}"))
        mg = tf.io.TFRecordWriter(str(data_dir / f"mg_mlm-{shard:05d}-of-{SHARDS:05d}"))
        for i in range(shard * per_shard, (shard + 1) * per_shard):
            ours.write(tf.train.Example(features=tf.train.Features(feature={
                "input_word_ids": _int_feature(ids[i]), "input_type_ids": _int_feature(types[i]),
            })).SerializeToString())
            masked, positions, masked_ids, weights = _premask(rng, ids[i])
            mg.write(tf.train.Example(features=tf.train.Features(feature={
                "input_ids": _int_feature(masked), "input_mask": _int_feature(np.ones(SEQ_LEN)),
                "segment_ids": _int_feature(types[i]), "masked_lm_positions": _int_feature(positions),
                "masked_lm_ids": _int_feature(masked_ids), "masked_lm_weights": _float_feature(weights),
                "next_sentence_labels": _int_feature([0]),
            })).SerializeToString())
        ours.close()
        mg.close()


def _spm_model(data_dir: Path) -> str:
    cached = REPO_ROOT / "cache" / "demo" / "austen_spm_8000.model"
    if cached.exists():
        return str(cached)
    from research.data import tokenizer
    return tokenizer.train_sentencepiece(str(REPO_ROOT / "third_party" / "austen" / "austen.txt"),
                                         str(data_dir / "spm"), vocab_size=8000)


def write_classification_data(data_dir: Path, seed: int = 0):
    """A TSV of long Austen passages (each > 128 tokens) for ours; the same ids as records for Model Garden."""
    import numpy as np
    import tensorflow as tf
    from research.data import classification_input
    from research.data.tokenizer import Tokenizer

    rng = np.random.default_rng(seed)
    words = (REPO_ROOT / "third_party" / "austen" / "austen.txt").read_text(encoding="utf-8").split()
    passages, start = [], 0
    while len(passages) < NUM_RECORDS // 2:
        passages.append(" ".join(words[start:start + 200]))
        start += 200
    labels = rng.integers(0, 2, size=len(passages))
    tsv = data_dir / "cls.tsv"
    tsv.write_text("".join(f"{label}\t{text}\n" for label, text in zip(labels, passages)), encoding="utf-8")
    spm_model = _spm_model(data_dir)
    examples = classification_input.read_examples(tsv, num_classes=2)
    word_ids, type_ids, lengths = classification_input.encode_examples(examples, Tokenizer(spm_model), SEQ_LEN)
    assert (lengths == SEQ_LEN).all(), "every passage must fill the sequence"
    with tf.io.TFRecordWriter(str(data_dir / "mg_cls-00000-of-00001")) as writer:
        for example, ids, types in zip(examples, word_ids, type_ids):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "input_ids": _int_feature(ids), "input_mask": _int_feature(np.ones(SEQ_LEN)),
                "segment_ids": _int_feature(types), "label_ids": _int_feature([example.label]),
            })).SerializeToString())
    (data_dir / "spm_model.txt").write_text(spm_model)


def prepare_data(data_dir: Path):
    data_dir.mkdir(parents=True, exist_ok=True)
    done = data_dir / "DONE"
    if done.exists():
        return
    write_pretraining_records(data_dir)
    write_classification_data(data_dir)
    done.write_text("ok\n")


# ---------------------------------------------------------------------------------------------------
# Children: one framework, one configuration, one precision


def _sync(logs) -> float:
    value = logs["training_loss"]
    return float(value.numpy() if hasattr(value, "numpy") else value)


def _count_params(model) -> int:
    """Trainable weights (the MLM head's tied table once)."""
    seen, total = set(), 0
    for variable in model.trainable_variables:
        key = id(getattr(variable, "value", variable))
        if key not in seen:
            seen.add(key)
            total += int(variable.shape.num_elements())
    return total


def build_ours(task, size, precision, data_dir: Path, steps, loops, model_dir, jit_compile=False):
    import gin
    from research.core import config_definitions, distribute, optimization, train_lib
    from research.tasks import masked_lm, sentence_prediction

    total_steps = steps * loops
    files = [REPO_ROOT / "gin" / "models" / f"bert_{size}.gin"]
    bindings = [f"VOCAB_SIZE = {VOCAB}", f"SEQ_LEN = {SEQ_LEN}", f"GLOBAL_BATCH_SIZE = {BATCH}",
                f"MODEL_DIR = {str(model_dir)!r}", f"TRAIN_STEPS = {total_steps}",
                f"WARMUP_STEPS = {max(1, total_steps // 10)}", f"STEPS_PER_LOOP = {steps}",
                f"PRECISION = {'bfloat16' if precision == 'mixed_bfloat16' else 'float32'!r}",
                f"config_definitions.TrainerConfig.jit_compile = {jit_compile}"]
    if task == "mlm":
        files += [REPO_ROOT / "gin" / "tasks" / "masked_lm.gin", REPO_ROOT / "gin" / "runs" / "pretrain.gin"]
        pattern = str(data_dir / "ours_mlm-*")
        bindings += [f"TRAIN_DATA = {pattern!r}", f"EVAL_DATA = {pattern!r}",
                     f"MAX_PREDICTIONS_PER_SEQ = {NUM_PREDICTIONS}", "LEARNING_RATE = 1e-4"]
        task_class = masked_lm.MaskedLMTask
    else:
        files += [REPO_ROOT / "gin" / "tasks" / "sentence_prediction.gin", REPO_ROOT / "gin" / "runs" / "finetune.gin"]
        tsv = str(data_dir / "cls.tsv")
        spm_model = (data_dir / "spm_model.txt").read_text().strip()
        bindings += [f"TRAIN_TSV = {tsv!r}", f"EVAL_TSV = {tsv!r}", f"SPM_MODEL = {spm_model!r}",
                     "NUM_CLASSES = 2", "LEARNING_RATE = 5e-5"]
        task_class = sentence_prediction.SentencePredictionTask
    gin.add_config_file_search_path(str(REPO_ROOT))
    gin.parse_config_files_and_bindings([str(f) for f in files], bindings, finalize_config=True)
    # What launch.launch does with these bindings, minus run_experiment's checkpoints and summaries.
    config = gin.get_configurable(config_definitions.ExperimentConfig)()
    strategy = gin.get_configurable(distribute.get_distribution_strategy)()
    optimization.set_precision_policy(config.runtime)
    task_object = task_class(config.task, logging_dir=str(model_dir))
    with strategy.scope():
        trainer = train_lib.create_trainer(config, task_object, train=True, evaluate=False)
    return (lambda: _sync(trainer.train(steps))), _count_params(trainer.model)


def build_model_garden(task, size, precision, data_dir: Path, steps, loops, model_dir):
    import tensorflow as tf
    from official.core import config_definitions as cfg
    from official.core import train_utils
    from official.common import distribute_utils
    from official.modeling import optimization, performance
    from official.nlp.configs import bert, encoders
    from official.nlp.data import pretrain_dataloader, sentence_prediction_dataloader
    from official.nlp.tasks import masked_lm, sentence_prediction

    layers, hidden, heads, intermediate = SIZES[size]
    total_steps = steps * loops
    encoder = encoders.EncoderConfig(type="bert", bert=encoders.BertEncoderConfig(
        vocab_size=VOCAB, hidden_size=hidden, num_layers=layers, num_attention_heads=heads,
        intermediate_size=intermediate, hidden_activation="gelu", dropout_rate=0.1, attention_dropout_rate=0.1,
        max_position_embeddings=512, type_vocab_size=2))
    if task == "mlm":
        task_config = masked_lm.MaskedLMConfig(
            model=bert.PretrainerConfig(encoder=encoder, cls_heads=[]),
            train_data=pretrain_dataloader.BertPretrainDataConfig(
                input_path=str(data_dir / "mg_mlm-*"), global_batch_size=BATCH, is_training=True,
                seq_length=SEQ_LEN, max_predictions_per_seq=NUM_PREDICTIONS, use_next_sentence_label=False))
        task_class, learning_rate = masked_lm.MaskedLMTask, 1e-4
    else:
        task_config = sentence_prediction.SentencePredictionConfig(
            model=sentence_prediction.ModelConfig(num_classes=2, use_encoder_pooler=True, encoder=encoder),
            train_data=sentence_prediction_dataloader.SentencePredictionDataConfig(
                input_path=str(data_dir / "mg_cls-*"), global_batch_size=BATCH, is_training=True,
                seq_length=SEQ_LEN))
        task_class, learning_rate = sentence_prediction.SentencePredictionTask, 5e-5
    optimizer_config = optimization.OptimizationConfig({
        "optimizer": {"type": "adamw", "adamw": {
            "weight_decay_rate": 0.01, "epsilon": 1e-6, "exclude_from_weight_decay": ["LayerNorm", "layer_norm", "bias"],
            "gradient_clip_norm": 1.0}},
        "learning_rate": {"type": "polynomial", "polynomial": {
            "initial_learning_rate": learning_rate, "end_learning_rate": 0.0, "decay_steps": total_steps, "power": 1.0}},
        "warmup": {"type": "polynomial", "polynomial": {"warmup_steps": max(1, total_steps // 10)}},
    })
    params = cfg.ExperimentConfig(
        task=task_config,
        trainer=cfg.TrainerConfig(optimizer_config=optimizer_config, train_steps=total_steps, steps_per_loop=steps,
                                  checkpoint_interval=total_steps, summary_interval=total_steps,
                                  validation_interval=total_steps),
        runtime=cfg.RuntimeConfig(mixed_precision_dtype="bfloat16" if precision == "mixed_bfloat16" else "float32"))
    # What official/nlp/train.py does: strategy, precision policy, task, then train_lib's trainer.
    strategy = distribute_utils.get_distribution_strategy(distribution_strategy="one_device", num_gpus=0)
    if params.runtime.mixed_precision_dtype:
        performance.set_mixed_precision_policy(params.runtime.mixed_precision_dtype)
    with strategy.scope():
        task_object = task_class(params.task, logging_dir=str(model_dir))
        trainer = train_utils.create_trainer(params, task_object, train=True, evaluate=False)
    num_steps = tf.constant(steps, tf.int32)
    return (lambda: _sync(trainer.train(num_steps))), _count_params(trainer.model)


def child_main(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    task, size = CONFIGS[args.config]
    builders = {"ours": build_ours, "mg": build_model_garden,
                "ours_xla": lambda *a: build_ours(*a, jit_compile=True)}
    builder = builders[args.framework]
    with tempfile.TemporaryDirectory(prefix=f"train_bench_{args.framework}_") as model_dir:
        start = time.perf_counter()
        run_loop, num_params = builder(task, size, args.precision, Path(args.data_dir), args.steps, args.loops,
                                       Path(model_dir))
        build_seconds = time.perf_counter() - start
        loop_seconds, losses = [], []
        for _ in range(args.loops):
            start = time.perf_counter()
            losses.append(run_loop())
            loop_seconds.append(time.perf_counter() - start)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("RESULT " + json.dumps({
        "framework": args.framework, "config": args.config, "precision": args.precision, "steps": args.steps,
        "loop_seconds": loop_seconds, "losses": losses, "build_seconds": build_seconds,
        "peak_rss_mb": rss_kb / 1024.0, "params": num_params}), flush=True)


# ---------------------------------------------------------------------------------------------------
# Parent


def run_child(framework, config, precision, steps, loops, data_dir, timeout):
    arguments = [__file__, "--child", "--framework", framework, "--config", config, "--precision", precision,
                 "--steps", steps, "--loops", loops, "--data_dir", data_dir]
    return _report.run_child_result(arguments, timeout=timeout, what=f"{framework} {config} {precision}")


def steady_rate(result) -> float:
    measured = result["loop_seconds"][1:]
    return BATCH * result["steps"] * len(measured) / sum(measured)


def expand_configs(text):
    names = []
    for item in text.split(","):
        item = item.strip()
        for name in ALIASES.get(item, [item]):
            if name not in CONFIGS:
                raise SystemExit(f"unknown configuration {name!r}; choose from {sorted(CONFIGS)} or {sorted(ALIASES)}")
            if name not in names:
                names.append(name)
    return names


def measure_peaks():
    completed = subprocess.run([sys.executable, str(Path(__file__).with_name("peak_flops.py")), "--json"],
                               capture_output=True, text=True, timeout=600, cwd="/tmp",
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    return json.loads(completed.stdout.strip().splitlines()[-1])


def parse_peaks(text):
    """--peak_gflops 'float32=217,bfloat16=408' as {dtype: GFLOP/s}; '' as {}."""
    return {dtype: float(value) for dtype, value in (item.split("=") for item in text.split(","))} if text else {}


def highest_peaks(peaks, measured):
    """The higher of two peak measurements per dtype: a busy host measures a peak below the real one."""
    return {dtype: max(peaks.get(dtype, 0.0), value) for dtype, value in measured.items()}


def summarize(config, precision, results, peaks):
    task, size = CONFIGS[config]
    row = {"config": config, "precision": precision}
    for framework in FRAMEWORKS:
        runs = [r for r in results if r["framework"] == framework]
        if not runs:
            continue
        rates = [steady_rate(r) for r in runs]
        row[framework] = {"min": min(rates), "median": statistics.median(rates),
                          "rss_mb": max(r["peak_rss_mb"] for r in runs), "params": runs[0]["params"], "rates": rates}
    if "ours" in row and "mg" in row:
        row["speed_ratio"] = row["ours"]["median"] / row["mg"]["median"]
        row["rss_ratio"] = row["ours"]["rss_mb"] / row["mg"]["rss_mb"]
    if "ours" in row and "ours_xla" in row:
        row["xla_speed_ratio"] = row["ours_xla"]["median"] / row["ours"]["median"]
        row["xla_rss_ratio"] = row["ours_xla"]["rss_mb"] / row["ours"]["rss_mb"]
    set_peak_fractions([row], peaks)
    return row


def set_peak_fractions(rows, peaks):
    """Each side's training FLOP/s as a fraction of `peaks` (GFLOP/s per dtype): `peak_fraction` counts the
    standard model's FLOPs (model FLOP/s), `executed_peak_fraction` the FLOPs the side executes."""
    for row in rows:
        task, size = CONFIGS[row["config"]]
        peak = peaks["bfloat16" if row["precision"] == "mixed_bfloat16" else "float32"] * 1e9
        executed = {"ours": ours_executed_flops_per_step(task, size)}
        for framework in FRAMEWORKS:
            if framework in row:
                steps_per_second = row[framework]["median"] / BATCH
                row[framework]["peak_fraction"] = steps_per_second * train_flops_per_step(task, size) / peak
                row[framework]["executed_peak_fraction"] = (
                    steps_per_second * executed.get(framework, train_flops_per_step(task, size)) / peak)


MEASURED = "measured: 2048^3 matmuls, highest of the run"
TYPED_IN = "typed in with --peak_gflops, not measured"


def describe_peaks(peaks, sources):
    """The peak line: each dtype's GFLOP/s and where the figure comes from."""
    return "matmul peak: " + ", ".join(
        f"{dtype} {peaks[dtype]:.0f} GFLOP/s ({sources.get(dtype, 'source not recorded in the saved run')})"
        for dtype in ("float32", "bfloat16") if dtype in peaks)

def format_table(rows, peaks, sources):
    """The markdown table; `sources` says per dtype where the peak figure comes from (MEASURED, TYPED_IN)."""
    lines = [
        describe_peaks(peaks, sources),
        "",
        "| config | precision | ours ex/s min / median | MG ex/s min / median | ours / MG | ours peak RSS MB | "
        "MG peak RSS MB | RSS ours / MG | ours model % of peak | ours executed % of peak | MG % of peak |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ours, mg = row.get("ours"), row.get("mg")

        def rates(side):
            return "-" if not side else f"{side['min']:.1f} / {side['median']:.1f}"

        def rss(side):
            return "-" if not side else f"{side['rss_mb']:.0f}"

        def peak(side, key="peak_fraction"):
            return "-" if not side else f"{100 * side[key]:.0f}%"

        lines.append(f"| {row['config']} | {row['precision']} | {rates(ours)} | {rates(mg)} "
                     f"| {row.get('speed_ratio', float('nan')):.2f}x | {rss(ours)} | {rss(mg)} "
                     f"| {row.get('rss_ratio', float('nan')):.2f}x | {peak(ours)} | "
                     f"{peak(ours, 'executed_peak_fraction')} | {peak(mg)} |")
    # Cross-precision ratios: ours in bf16 against MG in float32.
    by_key = {(r["config"], r["precision"]): r for r in rows}
    extra = []
    for row in rows:
        if row["precision"] != "mixed_bfloat16" or "ours" not in row:
            continue
        base = by_key.get((row["config"], "float32"))
        if base and "mg" in base:
            extra.append(f"{row['config']}: ours mixed_bfloat16 / Model Garden float32 = "
                         f"{row['ours']['median'] / base['mg']['median']:.2f}x (medians of two separate "
                         f"measurements: only meaningful when the host's load did not change between them)")
    if extra:
        lines += [""] + ["- " + e for e in extra]
    lines += ["", "Model % of peak: the standard model's FLOPs (the docstring's count, the same for both sides) per "
                  "second over the peak; executed % of peak: the FLOPs the side runs (ours skips its last layer "
                  "outside the rows read; Model Garden runs the whole count, so its two are equal)."]
    if any("ours_xla" in row for row in rows):
        lines += ["", format_xla_table(rows)]
    return "\n".join(lines)


def format_xla_table(rows):
    """Ours with the step compiled by XLA (TrainerConfig.jit_compile=True) beside ours as configured."""
    lines = ["Our step under XLA (`TrainerConfig.jit_compile = True`: every op's XLA path) against our default "
             "(native kernels, no XLA), runs alternating in the same invocation:", "",
             "| config | precision | native ex/s min / median | XLA ex/s min / median | XLA / native | "
             "native peak RSS MB | XLA peak RSS MB |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        ours, xla = row.get("ours"), row.get("ours_xla")
        if not xla:
            continue

        def rates(side):
            return "-" if not side else f"{side['min']:.1f} / {side['median']:.1f}"
        native_rss = ours["rss_mb"] if ours else float("nan")
        lines.append(f"| {row['config']} | {row['precision']} | {rates(ours)} | {rates(xla)} "
                     f"| {row.get('xla_speed_ratio', float('nan')):.2f}x | {native_rss:.0f} | {xla['rss_mb']:.0f} |")
    return "\n".join(lines)


def report_from_json(args):
    """Renders (and with --write_results records) the table of earlier runs saved with --json_out."""
    rows, peaks, sources, runs = [], {}, {}, []
    for path in args.report_from.split(","):
        saved = json.loads(Path(path).read_text())
        for dtype, value in saved["peaks"].items():
            if value >= peaks.get(dtype, 0.0):
                peaks[dtype] = value
                sources[dtype] = saved.get("peak_sources", {}).get(dtype, "source not recorded in the saved run")
        rows += saved["rows"]
        command = f"`{saved['command']}`" if "command" in saved else "command not recorded"
        runs.append(f"{Path(path).name}: {_report.describe_machine(saved.get('machine'))}; {command}")
    typed = parse_peaks(args.peak_gflops)
    peaks.update(typed)
    sources.update({dtype: f"{TYPED_IN} (given when rendering)" for dtype in typed})
    set_peak_fractions(rows, peaks)
    table = format_table(rows, peaks, sources)
    print(table)
    if args.write_results:
        body = (f"Runs saved with --json_out and rendered with `--report_from` ({'; '.join(runs)}); batch {BATCH}, "
                f"seq {SEQ_LEN}, vocab {VOCAB}, {NUM_PREDICTIONS} predictions; runs alternate ours / Model Garden, "
                f"first loop excluded; FLOPs counted as in the script's docstring.\n\n{table}\n")
        _report.write_section("Training against Model Garden (benchmarks/train_bench.py)", body)


def parent_main(args):
    configs = expand_configs(args.configs)
    precisions = [p.strip() for p in args.precisions.split(",")]
    for precision in precisions:
        if precision not in PRECISIONS:
            raise SystemExit(f"unknown precision {precision!r}; choose from {PRECISIONS}")
    frameworks = [f.strip() for f in args.frameworks.split(",")]
    for framework in frameworks:
        if framework not in FRAMEWORKS:
            raise SystemExit(f"unknown framework {framework!r}; choose from {FRAMEWORKS}")
    data_dir = Path(args.data_dir)
    print(f"data: {data_dir}", flush=True)
    prepare_data(data_dir)
    given = parse_peaks(args.peak_gflops)
    machine = _report.machine_record()
    command = "python benchmarks/train_bench.py " + " ".join(sys.argv[1:])
    peaks = {}
    sources = {dtype: TYPED_IN if dtype in given else MEASURED for dtype in ("float32", "bfloat16")}
    rows = []
    for config in configs:
        # Measured again before every configuration, the highest figure kept: the host's load changes
        # within minutes, and a peak measured in a busy moment would inflate every % of peak.
        measured = measure_peaks()
        peaks = highest_peaks(peaks, measured)
        peaks.update(given)  # a quiet-machine figure from the command line wins
        print(f"matmul peak measured now: {measured}; used: {peaks}", flush=True)
        set_peak_fractions(rows, peaks)
        size = CONFIGS[config][1]
        steps, loops = DEFAULT_SCHEDULE[size]
        steps, loops = args.steps or steps, args.loops or loops
        for precision in precisions:
            results = []
            for run in range(args.runs):
                order = frameworks if run % 2 == 0 or args.no_swap else frameworks[::-1]
                for framework in order:
                    try:
                        result = run_child(framework, config, precision, steps, loops, data_dir, args.timeout)
                    except (RuntimeError, subprocess.TimeoutExpired) as error:  # report it, go on with the rest
                        print(f"  {config} {precision} run {run + 1} {LABELS[framework]} FAILED: {error}", flush=True)
                        continue
                    results.append(result)
                    print(f"  {config} {precision} run {run + 1} {LABELS[framework]:12s} "
                          f"{steady_rate(result):7.1f} ex/s  loops(s) "
                          f"{' '.join(f'{s:.2f}' for s in result['loop_seconds'])}  "
                          f"peak RSS {result['peak_rss_mb']:.0f} MB  loss {result['losses'][-1]:.3f}", flush=True)
            rows.append(summarize(config, precision, results, peaks))
            print(format_table(rows[-1:], peaks, sources).split("\n", 2)[2], flush=True)
            if args.json_out:  # after every row, so that an interrupted run keeps what it measured
                Path(args.json_out).write_text(json.dumps({"peaks": peaks, "peak_sources": sources, "rows": rows,
                                                           "machine": machine, "command": command}, indent=1))
    table = format_table(rows, peaks, sources)
    print()
    print(table)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"peaks": peaks, "peak_sources": sources, "rows": rows,
                                                   "machine": machine, "command": command}, indent=1))
    if args.write_results:
        body = (f"{_report.describe_machine(machine)}; `{command}`; batch {BATCH}, seq {SEQ_LEN}, vocab {VOCAB}, "
                f"{NUM_PREDICTIONS} predictions; {args.runs} run(s) per side alternating, first loop excluded; "
                f"FLOPs counted as in the script's docstring.\n\n{table}\n")
        _report.write_section("Training against Model Garden (benchmarks/train_bench.py)", body)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="tiny", help="comma-separated configurations or aliases (tiny, small, "
                                                          "base, mlm, cls, all)")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--frameworks", default="ours,mg", help="from ours, mg, ours_xla (ours with the step under "
                                                                "XLA), alternated in this order, then reversed")
    parser.add_argument("--runs", type=int, default=2, help="runs per framework, alternating")
    parser.add_argument("--steps", type=int, default=0, help="steps per loop (0: per-size default)")
    parser.add_argument("--loops", type=int, default=0, help="loops per run, the first excluded (0: default)")
    parser.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(), "train_bench_data"))
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--no_swap", action="store_true", help="always run in --frameworks order")
    parser.add_argument("--json_out", default="")
    parser.add_argument("--peak_gflops", default="", help="e.g. float32=217,bfloat16=408: use these peaks for the "
                                                          "%% of peak columns instead of the highest figure measured during the run")
    parser.add_argument("--write_results", action="store_true", help="write the table into benchmarks/RESULTS.md")
    parser.add_argument("--report_from", default="", help="comma-separated --json_out files: print (and with "
                                                          "--write_results record) their table; runs nothing")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--framework", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
    elif args.report_from:
        report_from_json(args)
    else:
        if args.loops == 1:
            raise SystemExit("--loops must be >= 2 (the first loop is excluded)")
        parent_main(args)


if __name__ == "__main__":
    main()
