"""Custom TensorFlow kernels (C++, built from ops/) and their pure-TensorFlow reference twins.

Importing this package checks that the native library, when present, was built for the installed
TensorFlow; the library itself loads lazily, on the first op that asks for it.
"""
from research.ops._loader import TensorFlowVersionMismatchError, check_tensorflow_version
from research.ops.adamw import apply_adamw
from research.ops.attention_softmax import attention_softmax
from research.ops.backend import BACKENDS
from research.ops.dropout import dropout
from research.ops.gather_positions import gather_positions
from research.ops.gelu import bias_gelu, gelu
from research.ops.layer_norm import layer_norm
from research.ops.mask_tokens import mask_tokens
from research.ops.masked_lm_loss import masked_lm_loss
from research.ops.split_heads import merge_heads, split_heads

check_tensorflow_version()

__all__ = [
    "BACKENDS", "TensorFlowVersionMismatchError", "apply_adamw", "attention_softmax", "bias_gelu", "dropout",
    "gather_positions", "gelu", "layer_norm", "mask_tokens", "masked_lm_loss", "merge_heads", "split_heads",
]
