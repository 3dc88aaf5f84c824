"""A WordPiece model out, end to end as a user runs it: import a BERT checkpoint (the tiny Hugging Face fixture,
vocabulary and ids unlike BERT's), fine-tune it for two steps and `--mode=export` it with research.main from a
working directory of relative paths; export the imported masked LM for fill-mask (with saved_model.export_model,
the function --mode=export calls). A process that never imports
`research` then classifies and fills masks on raw strings, as the in-process models do on the ids of
research.data.wordpiece."""
import json
import os
import subprocess
import sys
from pathlib import Path

import gin
import numpy as np
import pytest
import tensorflow as tf

from research import modeling
from research.core import launch
from research.data import classification_input, wordpiece
from research.export import saved_model
from research.interop import import_checkpoint as importer
from research.tasks import masked_lm

from export.test_saved_model import LOADER  # the plain-TensorFlow loader, shared

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "interop" / "hf_bert_uncased"
# The fixture's vocabulary: [PAD] the [UNK] a [CLS] [SEP] [MASK] w0..w44 ##s0..
TEXTS = ["The W1 w2s3 w4, a w5!", "w7 unknownword w9s1s2", "", "W3 " * 20, "ÀÉ w1"]
PAIRS = (["w1 w2", "the a"], ["w3s0 w4", "w40 w41 w42 w43 w44 w0 w1 w2 w3 w4 w5 w6 w7"])
MASKED = ["the [MASK] w2s1 w3", "[MASK] w4 [MASK]", "no mask w1"]
SEQ_LEN = 16
FINETUNE = ["TRAIN_TSV = 'reviews.tsv'", "EVAL_TSV = 'reviews.tsv'", f"SEQ_LEN = {SEQ_LEN}", "TRAIN_STEPS = 2",
            "STEPS_PER_LOOP = 1", "VALIDATION_INTERVAL = 2", "WARMUP_STEPS = 1", "GLOBAL_BATCH_SIZE = 4",
            "EVAL_BATCH_SIZE = 8"]


def run(module, *args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)  # hang guard only


def restore_run_model(run_dir):
    """The fine-tuned classifier of a run directory, rebuilt from its operative config (as research.predict)."""
    gin.clear_config(clear_constants=True)
    try:
        gin.parse_config_file(str(run_dir / launch.OPERATIVE_CONFIG_NAME))
        bindings = gin.get_bindings(launch.launch)
        config, task_class = bindings["config"], bindings["task_class"]
        task = task_class(config.task, logging_dir=None)
        return saved_model.restore_model(task, saved_model.resolve_checkpoint(str(run_dir))), config
    finally:
        gin.clear_config(clear_constants=True)


def model_inputs(word_ids, lengths):
    longest = int(lengths.max())
    return {"input_word_ids": word_ids[:, :longest], "input_mask": (np.arange(longest) < lengths[:, None]).astype(
        np.int32), "input_type_ids": np.zeros_like(word_ids[:, :longest])}


@pytest.fixture(scope="module", name="exported")
def fixture_exported(tmp_path_factory):
    work = tmp_path_factory.mktemp("user")
    # The import's command line is tested in tests/interop; here its function, whose models serve fill-mask below.
    result = importer.import_checkpoint(str(FIXTURE), str(work / "pretrained" / "tiny"))
    words = [f"w{i}" for i in range(20)]
    (work / "reviews.tsv").write_text("".join(f"{i % 2}\t{words[i % 20]} the {words[(3 * i) % 20]}s{i % 4} a\n"
                                              for i in range(40)), encoding="utf-8")
    gin_flags = ["--gin_file=finetune_pretrained", "--gin_file=pretrained/tiny/model.gin", "--model_dir=runs/tuned",
                 *[f"--gin_param={p}" for p in FINETUNE]]
    tuned = run("research.main", *gin_flags, cwd=work)
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    exported = run("research.main", *gin_flags, "--mode=export", cwd=work)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert f"saved model:      {work / 'runs' / 'tuned' / 'saved_model'}" in exported.stdout

    # Fill-mask: the imported encoder and masked-LM head, exported as --mode=export exports a pretrainer.
    pretrainer = modeling.BertPretrainer(result["encoder"], mlm_head=result["masked_lm"])
    data = masked_lm.PretrainDataConfig(input_path="unused-*", seq_len=SEQ_LEN, vocab_size=64,
                                        vocab_file=result["vocab_file"], lower_case=True)
    config = masked_lm.MaskedLMConfig(model=lambda: pretrainer, train_data=data)
    fill_mask_dir = saved_model.export_model(pretrainer, str(work / "fill_mask"), config, top_k=3)

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    loaded = subprocess.run([sys.executable, "-c", LOADER, "runs/tuned/saved_model", fill_mask_dir,
                             json.dumps([TEXTS, PAIRS, MASKED])], cwd=work, env=env, capture_output=True, text=True,
                            timeout=600)  # hang guard only
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    classifier, _ = restore_run_model(work / "runs" / "tuned")
    return {"work": work, "outputs": json.loads(loaded.stdout.splitlines()[-1]), "classifier": classifier,
            "pretrainer": pretrainer, "tokenizer": wordpiece.WordPieceTokenizer(result["vocab_file"], lower_case=True)}


@pytest.mark.slow
def test_loads_without_research_and_records_the_tokenizer(exported):
    assert exported["outputs"]["research_modules"] == []
    extra = exported["work"] / "runs" / "tuned" / "saved_model" / saved_model.EXTRA_DIR
    info = json.loads((extra / saved_model.INFO_FILE).read_text(encoding="utf-8"))
    assert (info["tokenizer"], info["lower_case"], info["strip_accents"], info["seq_len"]) == (
        "WordPieceGraphTokenizer", True, True, SEQ_LEN)
    assert (extra / "vocab.txt").read_text() == (FIXTURE / "vocab.txt").read_text()


@pytest.mark.slow
def test_classifier_equals_the_fine_tuned_model_on_python_tokenized_text(exported):
    tokenizer = exported["tokenizer"]
    word_ids, _, lengths = classification_input.encode_examples(
        [classification_input.Example(0, text) for text in TEXTS], tokenizer, SEQ_LEN)
    inputs = model_inputs(word_ids, lengths)
    outputs = exported["outputs"]
    np.testing.assert_array_equal(outputs["tokenize"]["input_word_ids"], inputs["input_word_ids"])
    np.testing.assert_array_equal(outputs["tokenize"]["input_mask"], inputs["input_mask"])
    assert tokenizer.unk_id in inputs["input_word_ids"][1] and inputs["input_word_ids"][2, :2].tolist() == [4, 5]
    logits = exported["classifier"](inputs, training=False).numpy()
    np.testing.assert_allclose(outputs["classify"]["logits"], logits, atol=1e-5)
    np.testing.assert_allclose(outputs["classify"]["probabilities"], tf.nn.softmax(logits).numpy(), atol=1e-5)
    assert outputs["classify"]["predicted_class"] == logits.argmax(-1).tolist()

    pair_ids, pair_types, pair_lengths = classification_input.encode_examples(
        [classification_input.Example(0, a, b) for a, b in zip(*PAIRS)], tokenizer, SEQ_LEN)
    pair_inputs = model_inputs(pair_ids, pair_lengths)
    pair_inputs["input_type_ids"] = pair_types[:, :int(pair_lengths.max())]
    np.testing.assert_allclose(outputs["pair"]["logits"], exported["classifier"](pair_inputs, training=False).numpy(),
                               atol=1e-5)


@pytest.mark.slow
def test_fill_mask_equals_the_imported_masked_lm(exported):
    tokenizer, pretrainer = exported["tokenizer"], exported["pretrainer"]
    outputs = exported["outputs"]["fill_mask"]
    assert outputs["num_masks"] == [1, 2, 0]
    special = [tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id]
    for row, text in enumerate(MASKED[:2]):
        ids = [tokenizer.cls_id, *tokenizer.encode(text), tokenizer.sep_id]
        positions = [i for i, token in enumerate(ids) if token == tokenizer.mask_id]
        inputs = {"input_word_ids": np.array([ids], np.int32), "input_mask": np.ones([1, len(ids)], np.int32),
                  "input_type_ids": np.zeros([1, len(ids)], np.int32)}
        hidden = pretrainer.encoder(inputs, training=False)["sequence_output"]
        logits = pretrainer.masked_lm(hidden, tf.constant([positions]), output="logits", training=False).numpy()[0]
        for mask, mask_logits in enumerate(logits):
            probabilities = tf.nn.softmax(mask_logits).numpy()
            probabilities[special] = -1  # never proposed
            expected = np.argsort(-probabilities)[:3]
            assert outputs["top_ids"][row][mask] == expected.tolist()
            np.testing.assert_allclose(outputs["top_scores"][row][mask], probabilities[expected], atol=1e-6)
            assert outputs["top_tokens"][row][mask] == [tokenizer.id_to_piece(i) for i in expected]
    assert outputs["top_ids"][2] == [[-1, -1, -1]] * 2 and outputs["top_tokens"][2] == [["", "", ""]] * 2
