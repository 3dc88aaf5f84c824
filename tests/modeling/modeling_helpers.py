"""Tiny models and batches shared by the modeling tests (imported as a sibling module)."""
import numpy as np

from research.data import features
from research.modeling import BertEncoder

VOCAB = 97
HIDDEN = 16
SEQ_LEN = 8
P = 3
# The modeling tests hold the models to the ops' contracts through the pure-TF twins; the ops' own
# tests hold the kernels to the twins.
BACKEND = "reference"



def tiny_encoder(**overrides):
    kwargs = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_layers=2, num_attention_heads=2, intermediate_size=32,
                  max_sequence_length=16, hidden_dropout_rate=0.0, attention_dropout_rate=0.0)
    kwargs.update(overrides)
    return BertEncoder(**kwargs)


def encoder_inputs(batch=2, seq_len=SEQ_LEN, lengths=(8, 5), seed=0):
    """Encoder inputs with row i real for its first lengths[i] tokens, padded (id 0) after."""
    rng = np.random.default_rng(seed)
    mask = (np.arange(seq_len)[None, :] < np.array(lengths)[:batch, None]).astype(np.int32)
    ids = rng.integers(5, VOCAB, size=(batch, seq_len)).astype(np.int32) * mask
    types = ((np.arange(seq_len)[None, :] >= seq_len // 2) * mask).astype(np.int32)
    return {features.INPUT_WORD_IDS: ids, features.INPUT_MASK: mask, features.INPUT_TYPE_IDS: types}


def pretraining_inputs(batch=2, seed=0):
    inputs = encoder_inputs(batch=batch, seed=seed)
    rng = np.random.default_rng(seed + 1)
    inputs[features.MASKED_LM_POSITIONS] = np.array([[1, 3, 6], [2, 4, 0]], np.int32)[:batch]
    inputs[features.MASKED_LM_IDS] = rng.integers(5, VOCAB, size=(batch, P)).astype(np.int32)
    inputs[features.MASKED_LM_WEIGHTS] = np.array([[1, 1, 1], [1, 1, 0]], np.float32)[:batch]
    return inputs
