#!/usr/bin/env bash
# Creates a virtualenv holding Model Garden (tf-models-official 2.20.0 on tensorflow-cpu 2.20.0) AND our
# package, compiled against that same TensorFlow, so that benchmarks/train_bench.py can run both
# codebases on one TensorFlow in one environment.
#
#   bash benchmarks/setup_model_garden.sh [VENV_DIR]      (default: .venv-mg at the repo root)
#
# Then:  VENV_DIR/bin/python benchmarks/train_bench.py --configs tiny
#
# Why the --no-deps steps: tf-keras, tensorflow-text and tf-models-official declare `tensorflow`, not
# `tensorflow-cpu`, and would pull in a second TensorFlow. Their real runtime needs are listed by hand.
# Our package is installed with `pip install .` (not --no-deps): the in-tree build backend
# (build_tools/tf_build_backend.py) builds the C++ kernels in an isolated env pinned to the TensorFlow
# installed here (2.20.0), which is the only TensorFlow the kernels may be loaded into.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-mg}"
PYTHON="${PYTHON:-python3.11}"
TF_VERSION="2.20.0"

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "== creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off)

# setuptools < 81: tensorflow-hub (imported by Model Garden's NLP tasks) still imports pkg_resources.
"${PIP[@]}" --upgrade pip wheel "setuptools<81"
echo "== TensorFlow $TF_VERSION (cpu)"
"${PIP[@]}" "tensorflow-cpu==$TF_VERSION"

echo "== Model Garden and its TensorFlow-pinned siblings (no deps: they declare 'tensorflow')"
"${PIP[@]}" --no-deps tf-keras==2.20.1 tensorflow-text==2.20.1 tf-models-official==2.20.0
"${PIP[@]}" --no-deps tensorflow-hub==0.16.1 tensorflow-model-optimization==0.8.1

echo "== Model Garden's runtime needs"
"${PIP[@]}" gin-config pyyaml psutil py-cpuinfo scipy pandas tf_slim sentencepiece immutabledict \
  dm-tree tensorflow-datasets mock scikit-learn seqeval sacrebleu pycocotools matplotlib \
  opencv-python-headless Cython

echo "== our package, C++ kernels built against TensorFlow $TF_VERSION"
# A non-editable install builds in a fresh temporary tree; make sure the installed TF stays the same.
"${PIP[@]}" "$ROOT" "tensorflow-cpu==$TF_VERSION"

echo "== check"
cd /tmp  # import the installed package, not the source tree
"$VENV/bin/python" - <<'EOF'
import json, importlib.resources as res
import tensorflow as tf
import official.nlp  # noqa: F401
from official.nlp.tasks import masked_lm, sentence_prediction  # noqa: F401
import research.ops  # noqa: F401  (raises when the kernels were built for another TensorFlow)
from research.ops._loader import LIBRARY
info = json.loads((res.files("research.ops") / "_build_info.json").read_text())
assert tf.__version__ == "2.20.0", tf.__version__
assert LIBRARY.get() is not None, LIBRARY.unavailable_reason
from research.data import _native  # noqa: F401
print("ok: TensorFlow", tf.__version__, "| Model Garden importable | native kernels loaded, built for TF",
      info["tensorflow_version"])
EOF
