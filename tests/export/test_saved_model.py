"""SavedModels on raw strings load and run in a process that never imports `research`, and give the
model's own outputs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from research import modeling
from research.core import config_definitions
from research.data import classification_input
from research.data import tokenizer as tokenizer_lib
from research.export import saved_model, serving
from research.ops import backend
from research.tasks import masked_lm, sentence_prediction
from tasks.task_helpers import tiny_encoder

SPM_VOCAB = 150
TEXTS = ["the quick brown fox", "emma walks through the garden and talks with harriet", "a", ""]
PAIRS = (["happy dog", "the river"], ["sad cat jumps over", "bridge"])
MASKED = ["the [MASK] brown fox", "[MASK] walks [MASK] the garden", "no mask at all"]

# Runs in a fresh interpreter without PYTHONPATH, from a temporary directory: plain TensorFlow only.
LOADER = r"""
import json, sys
import tensorflow as tf
classifier = tf.saved_model.load(sys.argv[1])
fill_mask = tf.saved_model.load(sys.argv[2])
texts, pairs, masked = json.loads(sys.argv[3])
out = {
    "classify": classifier.signatures["serving_default"](text=tf.constant(texts)),
    "pair": classifier.signatures["classify_pair"](text_a=tf.constant(pairs[0]), text_b=tf.constant(pairs[1])),
    "tokenize": classifier.signatures["tokenize"](text=tf.constant(texts)),
    "fill_mask": fill_mask.signatures["serving_default"](text=tf.constant(masked)),
}
result = {name: {key: value.numpy().tolist() for key, value in outputs.items()} for name, outputs in out.items()}
for outputs in result.values():
    for key, value in outputs.items():
        if isinstance(value, list) and value and isinstance(value[0], list) and value[0] and isinstance(value[0][0], list):
            outputs[key] = [[[v.decode() if isinstance(v, bytes) else v for v in row] for row in m] for m in value]
result["research_modules"] = sorted(m for m in sys.modules if m == "research" or m.startswith("research."))
print(json.dumps(result))
"""


def classifier_config(spm_model, tmp_path, num_classes=2):
    tsv = tmp_path / "data.tsv"
    tsv.write_text("0\tthe dog\n1\tthe cat\n", encoding="utf-8")
    data = sentence_prediction.ClassificationDataConfig(input_path=str(tsv), spm_model=str(spm_model), seq_len=16)
    return sentence_prediction.SentencePredictionConfig(
        model=lambda: modeling.BertClassifier(tiny_encoder(vocab_size=SPM_VOCAB), num_classes=num_classes),
        num_classes=num_classes, train_data=data)


def pretrainer_config(spm_model, tmp_path):
    data = masked_lm.PretrainDataConfig(input_path=str(tmp_path / "none-*"), seq_len=16, vocab_size=SPM_VOCAB,
                                        spm_model=str(spm_model))
    return masked_lm.MaskedLMConfig(model=lambda: modeling.BertPretrainer(tiny_encoder(vocab_size=SPM_VOCAB)),
                                    train_data=data)


@pytest.fixture(scope="module", name="exported")
def fixture_exported(spm_model, tmp_path_factory):
    """Exports a random tiny classifier and pretrainer, then runs LOADER on both in a clean subprocess."""
    tmp_path = tmp_path_factory.mktemp("export")
    classifier_cfg = classifier_config(spm_model, tmp_path)
    classifier = sentence_prediction.SentencePredictionTask(classifier_cfg).build_model()
    pretrainer_cfg = pretrainer_config(spm_model, tmp_path)
    pretrainer = masked_lm.MaskedLMTask(pretrainer_cfg).build_model()
    classifier_dir = saved_model.export_model(classifier, str(tmp_path / "classifier"), classifier_cfg)
    fill_mask_dir = saved_model.export_model(pretrainer, str(tmp_path / "fill_mask"), pretrainer_cfg, top_k=3)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", LOADER, classifier_dir, fill_mask_dir,
                             json.dumps([TEXTS, PAIRS, MASKED])], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)  # hang guard only
    assert result.returncode == 0, result.stderr[-3000:]
    return {"classifier": classifier, "pretrainer": pretrainer, "outputs": json.loads(result.stdout.splitlines()[-1]),
            "classifier_dir": classifier_dir, "fill_mask_dir": fill_mask_dir}


def test_loads_without_research(exported):
    assert exported["outputs"]["research_modules"] == []


def test_classifier_probabilities_equal_the_model_on_python_tokenized_input(exported, spm_model):
    examples = [classification_input.Example(0, text) for text in TEXTS]
    word_ids, type_ids, lengths = classification_input.encode_examples(examples, tokenizer_lib.Tokenizer(spm_model), 16)
    longest = int(lengths.max())
    inputs = {"input_word_ids": word_ids[:, :longest], "input_type_ids": type_ids[:, :longest],
              "input_mask": (word_ids[:, :longest] != 0).astype(np.int32)}
    logits = exported["classifier"](inputs, training=False).numpy()
    outputs = exported["outputs"]["classify"]
    np.testing.assert_allclose(outputs["logits"], logits, atol=1e-5)
    np.testing.assert_allclose(outputs["probabilities"], tf.nn.softmax(logits).numpy(), atol=1e-5)
    assert outputs["predicted_class"] == logits.argmax(-1).tolist()
    np.testing.assert_array_equal(exported["outputs"]["tokenize"]["input_word_ids"], inputs["input_word_ids"])


def test_classify_pair_uses_the_pair_layout(exported, spm_model):
    examples = [classification_input.Example(0, a, b) for a, b in zip(*PAIRS)]
    word_ids, type_ids, lengths = classification_input.encode_examples(examples, tokenizer_lib.Tokenizer(spm_model), 16)
    longest = int(lengths.max())
    inputs = {"input_word_ids": word_ids[:, :longest], "input_type_ids": type_ids[:, :longest],
              "input_mask": (word_ids[:, :longest] != 0).astype(np.int32)}
    np.testing.assert_allclose(exported["outputs"]["pair"]["logits"],
                               exported["classifier"](inputs, training=False).numpy(), atol=1e-5)


def test_fill_mask_gives_the_heads_top_candidates(exported, spm_model):
    outputs = exported["outputs"]["fill_mask"]
    assert outputs["num_masks"] == [1, 2, 0]
    sp = tokenizer_lib.Tokenizer(spm_model)
    pretrainer = exported["pretrainer"]
    ids = [tokenizer_lib.CLS_ID, *sp.encode("the "), tokenizer_lib.MASK_ID, *sp.encode(" brown fox"), tokenizer_lib.SEP_ID]
    position = ids.index(tokenizer_lib.MASK_ID)
    inputs = {"input_word_ids": np.array([ids], np.int32), "input_mask": np.ones([1, len(ids)], np.int32),
              "input_type_ids": np.zeros([1, len(ids)], np.int32)}
    hidden = pretrainer.encoder(inputs, training=False)["sequence_output"]
    logits = pretrainer.masked_lm(hidden, tf.constant([[position]]), output="logits", training=False).numpy()[0, 0]
    probabilities = tf.nn.softmax(logits).numpy()
    probabilities[[0, 2, 3, 4]] = -1  # [PAD], [CLS], [SEP], [MASK] are never proposed
    expected = np.argsort(-probabilities)[:3]
    assert outputs["top_ids"][0][0] == expected.tolist()
    np.testing.assert_allclose(outputs["top_scores"][0][0], probabilities[expected], atol=1e-6)
    assert outputs["top_tokens"][0][0] == [sp.id_to_piece(i) for i in expected]
    assert outputs["top_ids"][0][1] == [-1, -1, -1] and outputs["top_tokens"][2][0] == ["", "", ""]


def test_export_info_and_tokenizer_copy(exported, spm_model):
    extra = os.path.join(exported["classifier_dir"], saved_model.EXTRA_DIR)
    info = json.loads(open(os.path.join(extra, saved_model.INFO_FILE), encoding="utf-8").read())
    assert info["kind"] == "classifier" and info["num_classes"] == 2 and info["seq_len"] == 16
    assert info["signatures"] == ["classify_pair", "serving_default", "tokenize"]
    assert os.path.exists(os.path.join(extra, os.path.basename(str(spm_model))))


def test_graphs_traced_for_export_hold_no_native_op(spm_model, tmp_path):
    if backend.LIBRARY.get() is None:
        pytest.skip("the native library is not built here, so no graph could hold its ops")
    config = classifier_config(spm_model, tmp_path)
    model = sentence_prediction.SentencePredictionTask(config).build_model()
    native = saved_model.build_serving(model, config).classify.get_concrete_function()
    assert saved_model.native_ops(native)  # the check sees the kernels when they are there
    with backend.reference_only():
        exported = saved_model.build_serving(model, config).classify.get_concrete_function()
    assert not saved_model.native_ops(exported)


def test_a_native_backend_cannot_be_exported(spm_model, tmp_path):
    config = pretrainer_config(spm_model, tmp_path)
    pretrainer = modeling.BertPretrainer(tiny_encoder(vocab_size=SPM_VOCAB),
                                         mlm_head=None)
    pretrainer.masked_lm.backend = "native"
    with pytest.raises(ValueError, match="backend='native' inside research.ops.backend.reference_only"):
        saved_model.export_model(pretrainer, str(tmp_path / "out"), config)


def test_bad_configurations_are_named(spm_model, tmp_path):
    with pytest.raises(ValueError, match="ExportConfig.top_k"):
        saved_model.ExportConfig(top_k=0)
    with pytest.raises(ValueError, match="ExportConfig.seq_len"):
        saved_model.ExportConfig(seq_len=-1)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        saved_model.resolve_checkpoint(str(tmp_path), "best")
    config = classifier_config(spm_model, tmp_path)
    no_spm = sentence_prediction.SentencePredictionConfig(
        model=config.model, num_classes=2, train_data=None, validation_data=masked_lm.PretrainDataConfig(
            input_path="x", seq_len=16, vocab_size=SPM_VOCAB))
    with pytest.raises(ValueError, match="bind SPM_MODEL"):
        saved_model.build_serving(sentence_prediction.SentencePredictionTask(config).build_model(), no_spm)
    with pytest.raises(TypeError, match="cannot export a BertEncoder"):
        saved_model.build_serving(tiny_encoder(vocab_size=SPM_VOCAB), config)
    with pytest.raises(ValueError, match="top_k must be an int"):
        serving.FillMaskServing(None, None, saved_model.tokenizers.graph_tokenizer_for(str(spm_model)), 16, top_k=0)
    assert config_definitions.TrainerConfig(best_checkpoint_export_saved_model=True)
    with pytest.raises(ValueError, match="best_checkpoint_export_saved_model"):
        config_definitions.TrainerConfig(best_checkpoint_export_saved_model="yes")
