"""A Gin-configured TensorFlow research codebase for BERT-style language models.

Importing the package turns TensorFlow's oneDNN optimizations on (`TF_ENABLE_ONEDNN_OPTS=1`) unless
the variable is already set. TensorFlow enables them by itself only on CPUs with AVX-512 VNNI, BF16 or
AMX; elsewhere (AMD Zen 3, older Intel) its matrix products run on Eigen, the demo pretraining trains
~1.5x slower (3.0-3.7 against 4.9-6.5 steps/s on a 2-core Zen 3) and the masked-LM head cannot add its
table gradient into the accumulator in place (research/ops/masked_lm_loss.py). The variable is read
once, when TensorFlow is first imported, so this only takes effect if `research` is imported first;
set `TF_ENABLE_ONEDNN_OPTS=0` to keep oneDNN off.
"""
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
