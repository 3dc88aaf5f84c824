"""The format-independent middle of every importer: a BERT's sizes and its tensors in our layout.

Each source reader yields an `EncoderConfig` and a `BertWeights` whose names are ours (below) and whose
values are float32 numpy arrays already laid out as our layers hold them (dense kernels [in, out]);
each value remembers the source tensor it came from, so that errors name it.

Names, with H hidden, I intermediate, V vocabulary, P positions, T token types:
  embeddings/word [V, H], embeddings/position [P, H], embeddings/type [T, H],
  embeddings/norm/gamma [H], embeddings/norm/beta [H];
  layer_<i>/query/kernel [H, H] and /bias [H], likewise key and value;
  layer_<i>/attention_output/kernel [H, H], /bias [H]; layer_<i>/attention_norm/gamma, /beta [H];
  layer_<i>/intermediate/kernel [H, I], /bias [I]; layer_<i>/output/kernel [I, H], /bias [H];
  layer_<i>/output_norm/gamma, /beta [H];
  pooler/kernel [H, H], pooler/bias [H] (optional);
  masked_lm/transform/kernel [H, H], /bias [H]; masked_lm/transform_norm/gamma, /beta [H];
  masked_lm/output_bias [V] (optional, all five or none).
"""
import dataclasses
import os

import numpy as np

# Activations of the sources' configs -> ours: 'gelu' is exact (erf) GELU, 'gelu_tanh' its tanh approximation.
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                  "gelu_fast": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu", "tanh": "tanh"}
MASKED_LM_NAMES = ("masked_lm/transform/kernel", "masked_lm/transform/bias", "masked_lm/transform_norm/gamma",
                   "masked_lm/transform_norm/beta", "masked_lm/output_bias")
POOLER_NAMES = ("pooler/kernel", "pooler/bias")


class CheckpointImportError(ValueError):
    """A source that cannot be imported: the message names the file and the tensor or field at fault."""


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """The BertEncoder arguments that an import determines, checked on construction."""
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_sequence_length: int
    type_vocab_size: int
    activation: str
    layer_norm_epsilon: float
    hidden_dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1

    def __post_init__(self):
        for field in ("vocab_size", "hidden_size", "num_layers", "num_attention_heads", "intermediate_size",
                      "max_sequence_length", "type_vocab_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CheckpointImportError(f"model config: {field} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise CheckpointImportError(f"model config: hidden_size {self.hidden_size} is not a multiple of "
                               f"num_attention_heads {self.num_attention_heads}")
        if not self.layer_norm_epsilon > 0:
            raise CheckpointImportError(f"model config: layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon!r}")

    def encoder_kwargs(self):
        """Keyword arguments of `research.modeling.BertEncoder`."""
        return dataclasses.asdict(self)


def activation_from_hf(name, source):
    """Our activation for a Hugging Face `hidden_act`; CheckpointImportError naming it when we have none."""
    if name not in HF_ACTIVATIONS:
        raise CheckpointImportError(f"{source}: hidden_act {name!r} is not supported (supported: {sorted(HF_ACTIVATIONS)})")
    return HF_ACTIVATIONS[name]


class BertWeights:
    """Our-layout tensors of one model, each with the name of the source tensor it came from.

    `add(name, value, source_name)` stores float32 values; `get(name)` returns (value, source_name) and
    raises CheckpointImportError naming the source tensor a reader expected when it is missing.
    """

    def __init__(self, source):
        self.source = source
        self._values = {}
        self._missing = {}

    def add(self, name, value, source_name):
        self._values[name] = (np.asarray(value, dtype=np.float32), source_name)

    def add_missing(self, name, source_name):
        """Records that `name` would have come from `source_name`, which the source lacks."""
        self._missing[name] = source_name

    def has(self, name):
        return name in self._values

    def get(self, name):
        if name in self._values:
            return self._values[name]
        expected = self._missing.get(name, name)
        raise CheckpointImportError(f"{self.source}: missing tensor {expected!r} (needed for {name})")

    def has_pooler(self):
        return all(self.has(name) for name in POOLER_NAMES)

    def has_masked_lm(self):
        """True when the five masked-LM head tensors are all there; CheckpointImportError when only some are."""
        present = [name for name in MASKED_LM_NAMES if self.has(name)]
        if present and len(present) < len(MASKED_LM_NAMES):
            missing = [self._missing.get(name, name) for name in MASKED_LM_NAMES if not self.has(name)]
            raise CheckpointImportError(f"{self.source}: incomplete masked-LM head, missing tensor(s) {missing}")
        return bool(present)


def vocab_is_lower_case(vocab_file):
    """True when no token of `vocab_file` other than [XXX] specials holds an upper-case letter: an
    'uncased' vocabulary, which must be fed lower-cased text."""
    with open(vocab_file, encoding="utf-8") as f:
        for line in f:
            token = line.rstrip("\n")
            if not (token.startswith("[") and token.endswith("]")) and token != token.lower():
                return False
    return True


def find_file(directory, *names):
    """The first of `names` that exists in `directory`, or None."""
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None
