"""The importers against Hugging Face `transformers`' outputs on the same weights (committed fixtures made by
tools/make_interop_fixtures.py: no PyTorch here), their output files, and their errors."""
import json
import os
import shutil
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

from research import modeling
from research.interop import import_checkpoint as importer
from research.interop.bert_weights import CheckpointImportError
from research.tasks import checkpoint_init

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "interop")
# directory -> (format detected, activation, layer-norm epsilon, lower_case, has masked-LM head)
SOURCES = {
    "hf_bert_uncased": ("hf", "gelu", 1e-12, True, True),
    "hf_minilm_cased": ("hf", "gelu_tanh", 1e-7, False, False),
    "tf1_bert": ("tf1", "gelu_tanh", 1e-12, True, True),
    "model_garden_bert": ("model_garden", "gelu_tanh", 1e-12, True, True),
    # The older functional BertEncoder, no head, no bert_config.json: sizes from the tensors' shapes.
    "model_garden_bert_v1": ("model_garden", "gelu_tanh", 1e-12, True, False),
}
TOLERANCE = 1e-5  # float32, absolute


def fixture(name):
    return os.path.join(FIXTURES, name)


def encoder_feed(expected):
    return {k: expected[k].astype(np.int32) for k in ("input_word_ids", "input_mask", "input_type_ids")}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_import_matches_transformers_outputs(tmp_path, name):
    source_format, activation, epsilon, lower_case, has_head = SOURCES[name]
    result = importer.import_checkpoint(fixture(name), str(tmp_path / "out"))
    config = result["config"]
    assert (result["format"], config.activation, config.layer_norm_epsilon, result["lower_case"],
            result["has_masked_lm"], result["has_pooler"]) == (source_format, activation, epsilon, lower_case,
                                                                has_head, True)
    expected = np.load(os.path.join(fixture(name), "expected_outputs.npz"))
    outputs = result["encoder"](encoder_feed(expected), training=False)
    # transformers computes every position, padding included: compare all of them.
    np.testing.assert_allclose(outputs["sequence_output"], expected["sequence_output"], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(outputs["pooled_output"], expected["pooled_output"], atol=TOLERANCE, rtol=0)
    if has_head:
        positions = np.tile(np.arange(expected["input_word_ids"].shape[1], dtype=np.int32)[None], [2, 1])
        logits = result["masked_lm"](outputs["sequence_output"], positions, output="logits")
        np.testing.assert_allclose(logits, expected["mlm_logits"], atol=TOLERANCE, rtol=0)


def test_written_gin_and_checkpoint_rebuild_the_encoder_for_init_checkpoint(tmp_path):
    """model.gin builds the same encoder, and INIT_CHECKPOINT's loader restores the written checkpoint."""
    result = importer.import_checkpoint(fixture("hf_minilm_cased"), str(tmp_path / "out"))
    gin.clear_config(clear_constants=True)
    try:
        gin.parse_config_file(result["gin_file"])
        encoder = gin.get_configurable(modeling.BertEncoder)()
        bindings = {name: gin.query_parameter(f"%{name}") for name in ("VOCAB_FILE", "LOWER_CASE", "INIT_CHECKPOINT")}
    finally:
        gin.clear_config(clear_constants=True)
    assert bindings == {"VOCAB_FILE": str(tmp_path / "out" / "vocab.txt"), "LOWER_CASE": False,
                        "INIT_CHECKPOINT": str(tmp_path / "out" / "ckpt")}
    assert (encoder.hidden_size, encoder.num_layers, encoder.layer_norm_epsilon) == (16, 2, 1e-7)
    classifier = modeling.BertClassifier(encoder, num_classes=2)
    checkpoint_init.restore_encoder(classifier, bindings["INIT_CHECKPOINT"])
    expected = np.load(os.path.join(fixture("hf_minilm_cased"), "expected_outputs.npz"))
    outputs = encoder(encoder_feed(expected), training=False)
    np.testing.assert_allclose(outputs["pooled_output"], expected["pooled_output"], atol=TOLERANCE, rtol=0)


def copy_hf_without(tmp_path, drop=(), config_changes=None):
    """A copy of the uncased HF fixture without the tensors `drop`, its config.json updated."""
    from safetensors.numpy import load_file, save_file
    directory = tmp_path / "source"
    shutil.copytree(fixture("hf_bert_uncased"), directory)
    tensors = load_file(directory / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if k not in drop}, directory / "model.safetensors")
    config = json.loads((directory / "config.json").read_text())
    config.update(config_changes or {})
    (directory / "config.json").write_text(json.dumps(config))
    return str(directory)


def test_missing_tensor_is_named(tmp_path):
    source = copy_hf_without(tmp_path, drop=["bert.encoder.layer.1.intermediate.dense.weight"])
    with pytest.raises(CheckpointImportError, match=r"missing tensor 'bert\.encoder\.layer\.1\.intermediate\.dense"
                                                    r"\.weight'"):
        importer.import_checkpoint(source, str(tmp_path / "out"))


def test_misshaped_tensor_is_named_with_both_shapes(tmp_path):
    source = copy_hf_without(tmp_path, config_changes={"intermediate_size": 30})
    with pytest.raises(CheckpointImportError, match=r"'bert\.encoder\.layer\.0\.intermediate\.dense\.weight' has "
                                                    r"shape \(16, 24\), expected \(16, 30\)"):
        importer.import_checkpoint(source, str(tmp_path / "out"))


def test_more_layers_than_the_config_says_is_an_error(tmp_path):
    source = copy_hf_without(tmp_path, config_changes={"num_hidden_layers": 1})
    with pytest.raises(CheckpointImportError, match="num_hidden_layers=1"):
        importer.import_checkpoint(source, str(tmp_path / "out"))


def test_unsupported_activation_and_architecture_are_named(tmp_path):
    with pytest.raises(CheckpointImportError, match="hidden_act 'quick_gelu'"):
        importer.import_checkpoint(copy_hf_without(tmp_path, config_changes={"hidden_act": "quick_gelu"}),
                                   str(tmp_path / "out"))
    shutil.rmtree(tmp_path / "source")
    with pytest.raises(CheckpointImportError, match="position_embedding_type 'relative_key'"):
        importer.import_checkpoint(copy_hf_without(tmp_path, config_changes={"position_embedding_type": "relative_key"}),
                                   str(tmp_path / "out"))


def test_missing_pooler_is_reported_and_left_to_fine_tuning(tmp_path):
    source = copy_hf_without(tmp_path, drop=["bert.pooler.dense.weight", "bert.pooler.dense.bias"])
    result = importer.import_checkpoint(source, str(tmp_path / "out"))
    assert not result["has_pooler"] and result["has_masked_lm"]
    assert "pooler: NOT in the source" in open(result["gin_file"]).read()


def test_incomplete_masked_lm_head_is_an_error(tmp_path):
    source = copy_hf_without(tmp_path, drop=["cls.predictions.bias"])
    with pytest.raises(CheckpointImportError, match="incomplete masked-LM head.*cls.predictions.bias"):
        importer.import_checkpoint(source, str(tmp_path / "out"))


def test_tf1_missing_variable_is_named(tmp_path):
    """A TF1 checkpoint lacking the pooler kernel of google-research/bert's names."""
    source = tmp_path / "tf1"
    shutil.copytree(fixture("tf1_bert"), source)
    reader = tf.train.load_checkpoint(str(source / "bert_model.ckpt"))
    kept = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != "bert/encoder/layer_0/attention/self/key/kernel"}
    for path in source.glob("bert_model.ckpt*"):
        path.unlink()
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.get_variable(name, initializer=tf.constant(value)) for name, value in kept.items()]
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver(variables).save(session, str(source / "bert_model.ckpt"), write_meta_graph=False,
                                                     write_state=False)
    with pytest.raises(CheckpointImportError, match="missing tensor 'bert/encoder/layer_0/attention/self/key/kernel'"):
        importer.import_checkpoint(str(source), str(tmp_path / "out"))


def test_unknown_directory_and_bad_format_are_named(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing")
    with pytest.raises(ValueError, match="none of the formats.*notes.txt"):
        importer.import_checkpoint(str(tmp_path), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="format must be"):
        importer.import_checkpoint(fixture("tf1_bert"), str(tmp_path / "out"), source_format="onnx")


@pytest.mark.slow
def test_command_line_with_relative_paths_from_another_directory(tmp_path):
    shutil.copytree(fixture("tf1_bert"), tmp_path / "google_release")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    completed = subprocess.run(
        [sys.executable, "-m", "research.interop.import_checkpoint", "--source=google_release", "--output_dir=imported",
         "--lower_case=false"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "google-research/bert TF1 checkpoint: 2 layers" in completed.stdout
    text = (tmp_path / "imported" / "model.gin").read_text()
    assert f"INIT_CHECKPOINT = '{tmp_path / 'imported' / 'ckpt'}'" in text and "LOWER_CASE = False" in text
    assert (tmp_path / "imported" / "vocab.txt").read_text() == (tmp_path / "google_release" / "vocab.txt").read_text()
