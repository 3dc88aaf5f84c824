"""The op-library loader: version check at import, logged fallback when the library is missing."""
import json
import os
import subprocess
import sys

import tensorflow as tf

PROBE = """
import tensorflow as tf
from research import ops
out = ops.mask_tokens([[2, 7, 8, 3]], [1, 1], vocab_size=10, mask_token_id=4, special_token_ids=[0, 2, 3],
                      max_predictions_per_seq=2)
print("weights", out["masked_lm_weights"].numpy().sum())
try:
    ops.mask_tokens([[2, 7, 8, 3]], [1, 1], vocab_size=10, mask_token_id=4, special_token_ids=[0, 2, 3],
                    max_predictions_per_seq=2, backend="native")
except RuntimeError as error:
    print("native refused:", error)
"""


def _run_python(code, library_dir):
    env = dict(os.environ, RESEARCH_OPS_LIBRARY_DIR=str(library_dir), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_library_built_for_another_tensorflow_fails_at_import_with_both_versions(tmp_path):
    (tmp_path / "_build_info.json").write_text(json.dumps({"tensorflow_version": "2.19.0"}))
    (tmp_path / "libresearch_ops.so").write_bytes(b"not a library")
    result = _run_python("import research.ops", tmp_path)
    assert result.returncode != 0
    assert "TensorFlowVersionMismatchError" in result.stderr
    assert "built for TensorFlow 2.19.0" in result.stderr
    assert f"TensorFlow {tf.__version__} is installed" in result.stderr
    assert "pip install" in result.stderr


def test_missing_library_falls_back_to_reference_with_a_logged_reason(tmp_path):
    result = _run_python(PROBE, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "weights 1.0" in result.stdout
    assert "native kernels unavailable" in result.stderr
    assert "libresearch_ops.so does not exist" in result.stderr
    assert "native refused: Research>MaskTokens: backend='native' but the native kernels are unavailable" in result.stdout


def test_unloadable_library_falls_back_to_reference(tmp_path):
    (tmp_path / "_build_info.json").write_text(json.dumps({"tensorflow_version": tf.__version__}))
    (tmp_path / "libresearch_ops.so").write_bytes(b"not a library")
    result = _run_python(PROBE, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "could not be loaded" in result.stderr
    assert "weights 1.0" in result.stdout
