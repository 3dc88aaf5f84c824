"""The bad-input table: each row feeds one kind of bad input and expects a clear error naming the culprit.

Every row runs in-process (no segfault means the test process survives); rows that write output check
that nothing complete-looking is left behind.
"""
import errno
import json
import os
import re

import gin
import pytest
import tensorflow as tf

from helpers import REPO, SEQ_LEN, int64_feature, write_id_records
from research import main as research_main
from research import modeling, ops
from research.core import config_definitions, launch, optimization
from research.data import build_pretraining_data as bpd
from research.data import classification_input, features, pretrain_input
from research.ops import _loader
from research.tasks import checkpoint_init

MASKING = pretrain_input.MaskingConfig(vocab_size=200, max_predictions_per_seq=4)


def first_batch(pattern, seq_len=SEQ_LEN, **kwargs):
    return next(iter(pretrain_input.pretrain_dataset(pattern, batch_size=2, seq_len=seq_len, masking=MASKING,
                                                     **kwargs)))


def write_records(path, examples):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for feature in examples:
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return str(path)


def ok_ids():
    return [2, 5] + [7] * (SEQ_LEN - 3) + [3]


def parse_gin_text(tmp, text, name="bad.gin"):
    path = tmp / name
    path.write_text(text)
    research_main.parse_gin([str(path)], [])


def parse_experiment(params):
    research_main.parse_gin([str(REPO / "gin/experiments/bert_base_pretrain.gin")], params)
    return gin.get_configurable(config_definitions.ExperimentConfig)()


_EXPERIMENT = ["TRAIN_DATA = '/x/*'", "EVAL_DATA = '/x/*'", "MODEL_DIR = '/tmp/x'", "TRAIN_STEPS = 3"]


def tiny_encoder(vocab=60, hidden=16, max_len=SEQ_LEN):
    return modeling.BertEncoder(vocab_size=vocab, hidden_size=hidden, num_layers=1, num_attention_heads=2,
                                intermediate_size=32, max_sequence_length=max_len)


def encoder_inputs(ids):
    ids = tf.constant(ids, tf.int32)
    return {features.INPUT_WORD_IDS: ids, features.INPUT_MASK: tf.ones_like(ids),
            features.INPUT_TYPE_IDS: tf.zeros_like(ids)}


# -- the rows: (name, function(tmp) raising, expected exception type(s), regex the message must match) ----------

def malformed_gin(tmp):
    parse_gin_text(tmp, "from __gin__ import dynamic_registration\nx = 1\ny = (2,\nz = ]\n")


def unknown_configurable(tmp):
    parse_gin_text(tmp, "no_such_module.Thing.value = 1\n", "unknown.gin")


def unknown_parameter(tmp):
    parse_experiment(_EXPERIMENT + ["optimization.OptimizerConfig.typo_rate = 1"])


def wrong_value_type(tmp):
    parse_experiment(_EXPERIMENT + ["TRAIN_STEPS = 'ten'"])


def missing_required(tmp):
    parse_experiment([p for p in _EXPERIMENT if not p.startswith("TRAIN_DATA")])


def missing_gin_file(tmp):
    research_main.parse_gin([str(tmp / "nope.gin")], [])


def nonexistent_glob(tmp):
    first_batch(str(tmp / "none-*.tfrecord"))


def empty_shard(tmp):
    (tmp / "train-0.tfrecord").write_bytes(b"")
    first_batch(str(tmp / "train-*.tfrecord"))


def corrupt_tfrecord(tmp):
    pattern = write_id_records(tmp, num_shards=1, per_shard=4)
    path = tmp / "train-00000-of-00001.tfrecord"
    data = bytearray(path.read_bytes())
    data[30:40] = b"\xff" * 10
    path.write_bytes(bytes(data))
    first_batch(pattern, is_training=False)


def truncated_tfrecord(tmp):
    pattern = write_id_records(tmp, num_shards=1, per_shard=4)
    path = tmp / "train-00000-of-00001.tfrecord"
    path.write_bytes(path.read_bytes()[:-7])
    list(pretrain_input.pretrain_dataset(pattern, batch_size=2, seq_len=SEQ_LEN, masking=MASKING, is_training=False))


def wrong_features(tmp):
    write_records(tmp / "r.tfrecord", [{"text_ids": int64_feature(ok_ids())}] * 2)
    first_batch(str(tmp / "r.tfrecord"))


def wrong_length(tmp):
    write_records(tmp / "r.tfrecord", [{features.INPUT_WORD_IDS: int64_feature(ok_ids()[:-2]),
                                        features.INPUT_TYPE_IDS: int64_feature([0] * SEQ_LEN)}] * 2)
    first_batch(str(tmp / "r.tfrecord"))


def ids_beyond_vocab_in_records(tmp):
    ids = ok_ids()
    ids[3] = 500
    write_records(tmp / "r.tfrecord", [{features.INPUT_WORD_IDS: int64_feature(ids),
                                        features.INPUT_TYPE_IDS: int64_feature([0] * SEQ_LEN)}] * 2)
    first_batch(str(tmp / "r.tfrecord"))


def ids_beyond_vocab_in_encoder(tmp):
    tiny_encoder(vocab=60)(encoder_inputs([[2, 61, 3, 0]]))


def mask_tokens_id_beyond_vocab(backend):
    def row(tmp):
        ops.mask_tokens(tf.constant([[2, 70, 3]]), tf.constant([1, 2], tf.int64), vocab_size=60, mask_token_id=4,
                        special_token_ids=(0, 1, 2, 3), max_predictions_per_seq=2, backend=backend)
    return row


def mask_tokens_bad_seed(tmp):
    ops.mask_tokens(tf.constant([[2, 7, 3]]), tf.constant([1, 2, 3], tf.int64), vocab_size=60, mask_token_id=4,
                    special_token_ids=(0, 1, 2, 3), max_predictions_per_seq=2)


def mask_tokens_bad_rate(tmp):
    ops.mask_tokens(tf.constant([[2, 7, 3]]), tf.constant([1, 2], tf.int64), vocab_size=60, mask_token_id=4,
                    special_token_ids=(0, 1, 2, 3), max_predictions_per_seq=2, mask_rate=1.5)


def gather(positions, backend):
    def row(tmp):
        ops.gather_positions(tf.zeros([2, 5, 3]), tf.constant(positions, tf.int32), backend=backend)
    return row


def gather_rank_mismatch(tmp):
    ops.gather_positions(tf.zeros([2, 5]), tf.constant([[1, 2], [0, 1]]), backend="native")


def mlm_loss_label(label, backend):
    def row(tmp):
        ops.masked_lm_loss(tf.zeros([3, 8]), tf.zeros([50, 8]), tf.zeros([50]), tf.constant([1, label, 2]),
                           tf.ones([3]), backend=backend)
    return row


def mlm_loss_shape_mismatch(tmp):
    ops.masked_lm_loss(tf.zeros([3, 8]), tf.zeros([50, 7]), tf.zeros([50]), tf.constant([1, 2, 3]), tf.ones([3]),
                       backend="native")


def mlm_loss_bias_mismatch(tmp):
    ops.masked_lm_loss(tf.zeros([3, 8]), tf.zeros([50, 8]), tf.zeros([49]), tf.constant([1, 2, 3]), tf.ones([3]),
                       backend="native")


def seq_len_over_max(tmp):
    tiny_encoder(max_len=8)(encoder_inputs([[2] + [7] * 10 + [3]]))


def builder(text_bytes):
    def row(tmp):
        (tmp / "in.txt").write_bytes(text_bytes)
        out = tmp / "out"
        out.mkdir()
        bpd.build_pretraining_data(str(tmp / "in.txt"), _spm(tmp), str(out), seq_len=32)
    return row


def _spm(tmp):
    from research.data.tokenizer import train_sentencepiece
    corpus = tmp / "corpus.txt"
    corpus.write_text("\n".join(f"the quick brown fox {w} jumps over lazy dog {w}" for w in
                                ["emma", "harriet", "garden", "meadow", "river", "bridge", "story", "party"] * 20))
    return str(train_sentencepiece([corpus], tmp / "spm", vocab_size=40))


def disk_full(tmp):
    """The disk fills while the builder writes its record files (the packed parts of its shards)."""
    (tmp / "in.txt").write_text("Emma walks home. The dog runs.\n\nHarriet reads a story.\n")
    out = tmp / "out"
    out.mkdir()
    real_open = open

    def full_disk_open(path, mode="r", *args, **kwargs):
        if "w" in mode and os.path.basename(str(path)).startswith(".tmp-part-"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, mode, *args, **kwargs)

    bpd.open = full_disk_open  # the builder module's own `open`, the one its writes go through
    try:
        bpd.build_pretraining_data(str(tmp / "in.txt"), _spm(tmp), str(out), seq_len=32, workers=1)
    finally:
        del bpd.open


def label_outside_classes(tmp):
    (tmp / "train.tsv").write_text("1\tgood movie\n0\tbad movie\n3\tugly movie\n")
    classification_input.read_examples(str(tmp / "train.tsv"), num_classes=2)


def init_checkpoint_other_architecture(tmp):
    other = tiny_encoder(hidden=8)
    other(encoder_inputs([[2, 7, 3]]))
    path = tf.train.Checkpoint(encoder=other).write(str(tmp / "other" / "ckpt"))
    model = modeling.BertPretrainer(encoder=tiny_encoder(hidden=16))
    model(encoder_inputs([[2, 7, 3]]) | {features.MASKED_LM_POSITIONS: tf.constant([[1]]),
                                         features.MASKED_LM_IDS: tf.constant([[7]]),
                                         features.MASKED_LM_WEIGHTS: tf.constant([[1.0]])})
    checkpoint_init.restore_encoder(model, path)


def init_checkpoint_missing(tmp):
    checkpoint_init.restore_encoder(None, str(tmp / "nothing-here"))


def model_dir_not_writable(tmp):
    (tmp / "locked").write_text("a file where a directory should be")  # chmod does not stop root
    launch._check_writable(str(tmp / "locked" / "run"))


def op_library_for_another_tf(tmp):
    (tmp / _loader.BUILD_INFO_NAME).write_text(json.dumps({"tensorflow_version": "2.0.0"}))
    _loader.check_tensorflow_version(tmp)


def trainer_config(field, value):
    def row(tmp):
        config_definitions.TrainerConfig(**{field: value})
    return row


def optimizer_type(tmp):
    optimization.OptimizerConfig(type="sgdx")


def data_config_batch(tmp):
    from research.tasks import masked_lm
    masked_lm.PretrainDataConfig(input_path="/x/*", global_batch_size=0)


def bad_mode(tmp):
    launch.launch(task_class=object, config=None, mode="fit", model_dir=str(tmp))


InvalidArgument = tf.errors.InvalidArgumentError
ROWS = [
    ("malformed gin", malformed_gin, SyntaxError, r"Failed to parse token 'z' \(bad\.gin, line 4\)"),
    ("unknown configurable", unknown_configurable, ValueError,
     r"No configurable matching 'no_such_module\.Thing'.*unknown\.gin\", line 1"),
    ("unknown parameter", unknown_parameter, ValueError,
     r"'optimization\.OptimizerConfig' doesn't have a parameter named 'typo_rate'"),
    ("wrong value type", wrong_value_type, ValueError, r"OptimizerConfig\.decay_steps='ten' is invalid: it must be an int"),
    ("missing %gin.REQUIRED", missing_required, ValueError, r"TRAIN_DATA/macro\.value set to `%gin\.REQUIRED` but not "
     r"subsequently overridden"),
    ("gin file does not exist", missing_gin_file, research_main.UsageError,
     r"--gin_file '.*/nope\.gin' is neither a file \(relative to .*\) nor a shipped experiment"),
    ("nonexistent data glob", nonexistent_glob, FileNotFoundError, r"no pretraining records match '.*/none-\*\.tfrecord'"),
    ("empty shard", empty_shard, ValueError, r"every shard matching '.*/train-\*\.tfrecord' is empty \(0 bytes\): "
     r".*/train-0\.tfrecord"),
    ("corrupt TFRecord", corrupt_tfrecord, ValueError,
     r"train-00000-of-00001\.tfrecord: cannot read the first record: corrupted record at \d+"),
    # The reader reports the offset but not the file: tf.data's TFRecordDataset does not say which one.
    ("truncated TFRecord", truncated_tfrecord, tf.errors.DataLossError, r"truncated record at \d+"),
    ("records with the wrong features", wrong_features, ValueError,
     r"r\.tfrecord: the first record has no feature 'input_word_ids' \(it has \['text_ids'\]\)"),
    ("records of the wrong length", wrong_length, ValueError,
     r"r\.tfrecord: feature 'input_word_ids' of the first record holds 14 int64 values, expected 16"),
    ("ids >= vocab in the records", ids_beyond_vocab_in_records, InvalidArgument,
     r"token_ids\[0, 3\] = 500 is outside \[0, vocab_size=200\)"),
    ("ids >= vocab into the encoder", ids_beyond_vocab_in_encoder, InvalidArgument, r"indices\[0,1\] = 61 is not in \[0, 60\)"),
    ("mask_tokens id >= vocab (native)", mask_tokens_id_beyond_vocab("native"), InvalidArgument,
     r"token_ids\[0, 1\] = 70 is outside \[0, vocab_size=60\)"),
    ("mask_tokens id >= vocab (reference)", mask_tokens_id_beyond_vocab("reference"), InvalidArgument,
     r"token_ids outside \[0, vocab_size=60\): first at \[row, col\] ='\s+0\s+1\s+b'value'\s+70$"),
    ("mask_tokens seed of the wrong shape", mask_tokens_bad_seed, InvalidArgument,
     r"seed must be int64 \[2\], got shape \[3\]"),
    ("mask_tokens mask_rate > 1", mask_tokens_bad_rate, InvalidArgument, r"mask_rate must be in \[0, 1\], got 1\.5"),
    ("negative position (native)", gather([[1, -1], [0, 1]], "native"), InvalidArgument,
     r"positions\[0, 1\] = -1 is outside \[0, seq_len=5\)"),
    ("negative position (reference)", gather([[1, -1], [0, 1]], "reference"), InvalidArgument,
     r"indices\[0,1\] = -1 is not in \[0, 5\)"),
    ("position >= seq_len (native)", gather([[1, 5], [0, 1]], "native"), InvalidArgument,
     r"positions\[0, 1\] = 5 is outside \[0, seq_len=5\)"),
    ("position >= seq_len (reference)", gather([[1, 5], [0, 1]], "reference"), InvalidArgument,
     r"indices\[0,1\] = 5 is not in \[0, 5\)"),
    ("gather of a rank-2 sequence", gather_rank_mismatch, InvalidArgument,
     r"sequence must be rank 3 \[batch, seq_len, hidden\], got shape \(2, 5\)"),
    ("MLM label >= vocab (native)", mlm_loss_label(50, "native"), InvalidArgument,
     r"labels outside \[0, vocab_size ='\s+50\s+b'\): first at row'\s+1\s+b'value'\s+50$"),
    ("MLM label < 0 (reference)", mlm_loss_label(-3, "reference"), InvalidArgument,
     r"labels outside \[0, vocab_size ='\s+50\s+b'\): first at row'\s+1\s+b'value'\s+-3$"),
    ("MLM hidden/table width mismatch", mlm_loss_shape_mismatch, ValueError,
     r"hidden is \[N, 8\] but embedding_table is \[50, 7\]"),
    ("MLM bias/table size mismatch", mlm_loss_bias_mismatch, ValueError,
     r"output_bias has 49 entries but embedding_table has 50 rows"),
    ("seq_len > max_sequence_length", seq_len_over_max, ValueError, r"input seq_len 12 exceeds max_sequence_length 8"),
    ("builder: empty text", builder(b""), ValueError,
     r"no tokens in the input \(1 files matching '.*/in\.txt', 0 lines not valid UTF-8\)"),
    ("builder: non-UTF-8 text", builder(b"caf\xe9 ol\xe9\n\xff\xfe bad bytes\n"), ValueError,
     r"no tokens in the input \(1 files matching '.*/in\.txt', 2 lines not valid UTF-8\)"),
    ("disk full while writing records", disk_full, OSError, r"No space left on device: '.*/out/\.tmp-part-train-00000"),
    ("label outside num_classes", label_outside_classes, ValueError, r"train\.tsv, line 3: label 3 is outside \[0, 2\)"),
    ("init_checkpoint of another architecture", init_checkpoint_other_architecture, ValueError,
     r"init_checkpoint .*/other/ckpt does not fit the model's \['encoder'\].*shape \(8,\).*shape \(16,\)"),
    ("init_checkpoint that does not exist", init_checkpoint_missing, FileNotFoundError,
     r"init_checkpoint '.*/nothing-here' holds no checkpoint"),
    ("model_dir not writable", model_dir_not_writable, PermissionError,
     r"model_dir '.*/locked/run' is not writable: .*/locked is not a directory"),
    ("op library built for another TF", op_library_for_another_tf, _loader.TensorFlowVersionMismatchError,
     r"built for TensorFlow 2\.0\.0, but TensorFlow " + re.escape(tf.__version__) + " is installed"),
    ("TrainerConfig.steps_per_loop = 0", trainer_config("steps_per_loop", 0), ValueError,
     r"TrainerConfig\.steps_per_loop must be an int >= 1, got 0"),
    ("TrainerConfig.recovery_max_trials = -1", trainer_config("recovery_max_trials", -1), ValueError,
     r"TrainerConfig\.recovery_max_trials must be an int >= 0, got -1"),
    ("unknown optimizer type", optimizer_type, ValueError, r"OptimizerConfig\.type='sgdx' is invalid: it must be one of"),
    ("global_batch_size = 0", data_config_batch, ValueError, r"PretrainDataConfig\.global_batch_size must be an int >= 1, got 0"),
    ("unknown mode", bad_mode, ValueError, r"mode must be one of \(.*\), got 'fit'"),
]


@pytest.fixture(autouse=True)
def _clear_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.mark.parametrize("name,make_fault,error,pattern", ROWS, ids=[row[0] for row in ROWS])
def test_bad_input_fails_clearly(tmp_path, name, make_fault, error, pattern):
    with pytest.raises(error) as raised:
        make_fault(tmp_path)
    message = f"{type(raised.value).__name__}: {raised.value}"
    assert re.search(pattern, message, re.S), f"{name}: the error does not name the culprit: {message[:800]}"
    for leftover in tmp_path.rglob("*"):  # nothing half-written may look complete
        assert not leftover.name.startswith(".tmp-"), leftover
    if name.startswith(("builder", "disk full")):
        assert not [p for p in (tmp_path / "out").iterdir()], list((tmp_path / "out").iterdir())
