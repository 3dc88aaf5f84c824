"""Dynamic masked-LM masking: `Research>MaskTokens` and its pure-TensorFlow reference twin.

Both implementations share one contract (values differ, distributions agree):
  * per row, `min(max_predictions_per_seq, max(1, round_half_up(mask_rate * candidates)))` positions
    are predicted, where candidates are the tokens that are neither special nor [MASK] (a row with no
    candidate predicts nothing);
  * without `word_starts` the positions are a uniform random subset of the candidates; with it, whole
    words are taken in a uniformly random order, a word being added when that brings the count
    strictly closer to the target without exceeding `max_predictions_per_seq`. A word starts at a
    candidate flagged in `word_starts` or following a non-candidate, and runs over the candidates
    that follow it unflagged;
  * each predicted token becomes [MASK] with `mask_prob`, a uniformly drawn non-special id with
    `random_prob`, and stays unchanged otherwise.
The twin is XLA-compilable, so it also serves under `jit_compile` and on TPU.
"""
import numpy as np
import tensorflow as tf

from research.data import features
from research.ops import backend as backend_lib


def _invalid(message: str) -> tf.errors.InvalidArgumentError:
    return tf.errors.InvalidArgumentError(None, None, message)


class _MaskingConfig:
    """The static arguments of `mask_tokens`, validated once for both implementations."""

    def __init__(self, vocab_size, mask_token_id, special_token_ids, max_predictions_per_seq, mask_rate,
                 mask_prob, random_prob):
        self.vocab_size = int(vocab_size)
        self.mask_token_id = int(mask_token_id)
        self.special_token_ids = [int(i) for i in special_token_ids]
        self.max_predictions_per_seq = int(max_predictions_per_seq)
        # The kernel holds the rates as float32 attributes; the twin uses the very same values.
        self.mask_rate = float(np.float32(mask_rate))
        self.mask_prob = float(np.float32(mask_prob))
        self.random_prob = float(np.float32(random_prob))
        self._validate()
        self.excluded_ids = sorted(set(self.special_token_ids) | {self.mask_token_id})
        self.num_replacements = self.vocab_size - len(self.excluded_ids)
        if self.random_prob > 0 and self.num_replacements == 0:
            raise _invalid(f"random_prob is {self.random_prob} but every id of vocab_size={self.vocab_size} is "
                           "special, so there is no id to draw a random replacement from")

    def _validate(self):
        if self.vocab_size < 1:
            raise _invalid(f"vocab_size must be >= 1, got {self.vocab_size}")
        if self.max_predictions_per_seq < 0:
            raise _invalid(f"max_predictions_per_seq must be >= 0, got {self.max_predictions_per_seq}")
        for name in ("mask_rate", "mask_prob", "random_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise _invalid(f"{name} must be in [0, 1], got {value}")
        if np.float32(self.mask_prob) + np.float32(self.random_prob) > np.float32(1.0):
            raise _invalid(f"mask_prob + random_prob must be <= 1, got {self.mask_prob} + {self.random_prob} = "
                           f"{self.mask_prob + self.random_prob}")
        if not 0 <= self.mask_token_id < self.vocab_size:
            raise _invalid(f"mask_token_id {self.mask_token_id} is outside [0, vocab_size={self.vocab_size})")
        for index, token_id in enumerate(self.special_token_ids):
            if not 0 <= token_id < self.vocab_size:
                raise _invalid(f"special_token_ids[{index}] = {token_id} is outside [0, vocab_size={self.vocab_size})")
            if token_id == self.mask_token_id:
                raise _invalid(f"special_token_ids[{index}] = {token_id} is the mask_token_id; [MASK] is never "
                               "selected nor drawn as a random replacement on its own, so list only the other "
                               "special ids")


def mask_tokens(token_ids, seed, *, vocab_size, mask_token_id, special_token_ids, max_predictions_per_seq,
                mask_rate=0.15, mask_prob=0.8, random_prob=0.1, word_starts=None, backend="auto"):
    """Masks a batch of token ids for masked-LM training.

    Args:
      token_ids: int32 [batch, seq_len], unmasked ids padded with a special id (the pad id must be
        among `special_token_ids`).
      seed: int64 [2], stateless seed: the same seed gives the same result; change it every step.
      vocab_size: ids must lie in [0, vocab_size).
      mask_token_id: the [MASK] id; must not be listed in `special_token_ids`.
      special_token_ids: ids never predicted nor drawn as random replacements ([PAD], [CLS], ...).
      max_predictions_per_seq: P, the width of the prediction outputs.
      mask_rate: fraction of the candidate tokens to predict.
      mask_prob: probability that a predicted token becomes [MASK].
      random_prob: probability that it becomes a random non-special id.
      word_starts: optional bool [batch, seq_len]; when given, whole words are masked together.
      backend: 'auto', 'native' or 'reference' (see research/ops/backend.py).

    Returns:
      A dict of `input_word_ids` int32 [batch, seq_len], `masked_lm_positions` int32 [batch, P]
      (ascending, unique, 0-padded), `masked_lm_ids` int32 [batch, P] (original ids, 0-padded) and
      `masked_lm_weights` float32 [batch, P] (1.0 for real predictions, 0.0 for padding).

    Raises:
      InvalidArgumentError: ids outside [0, vocab_size), rank other than 2, rates outside [0, 1],
        mask_prob + random_prob > 1, a bad mask or special id.
    """
    config = _MaskingConfig(vocab_size, mask_token_id, special_token_ids, max_predictions_per_seq, mask_rate,
                            mask_prob, random_prob)
    token_ids = tf.convert_to_tensor(token_ids, dtype=tf.int32, name="token_ids")
    if token_ids.shape.rank is not None and token_ids.shape.rank != 2:
        raise _invalid(f"token_ids must be rank 2 [batch, seq_len], got shape {token_ids.shape}")
    seed = tf.convert_to_tensor(seed, dtype=tf.int64, name="seed")
    if word_starts is not None:
        word_starts = tf.convert_to_tensor(word_starts, dtype=tf.bool, name="word_starts")
    library = backend_lib.resolve("Research>MaskTokens", backend, host_op=True)
    if library is None:
        outputs = _mask_tokens_reference(token_ids, seed, word_starts, config)
    else:
        outputs = library.research_mask_tokens(
            token_ids, seed, [] if word_starts is None else [word_starts], vocab_size=config.vocab_size,
            mask_token_id=config.mask_token_id, special_token_ids=config.special_token_ids,
            max_predictions_per_seq=config.max_predictions_per_seq, mask_rate=config.mask_rate,
            mask_prob=config.mask_prob, random_prob=config.random_prob)
    names = (features.INPUT_WORD_IDS, features.MASKED_LM_POSITIONS, features.MASKED_LM_IDS,
             features.MASKED_LM_WEIGHTS)
    return dict(zip(names, outputs))


def _check_ids_in_range(token_ids, vocab_size):
    """An assertion naming the first id outside [0, vocab_size) and its [row, col]."""
    bad = tf.logical_or(token_ids < 0, token_ids >= vocab_size)
    seq_len = tf.maximum(tf.shape(token_ids, out_type=tf.int64)[1], 1)
    # A trailing sentinel keeps argmax and gather defined on empty batches.
    flat_bad = tf.concat([tf.reshape(tf.cast(bad, tf.int32), [-1]), [0]], axis=0)
    flat_ids = tf.concat([tf.reshape(token_ids, [-1]), [0]], axis=0)
    first = tf.argmax(flat_bad, output_type=tf.int64)
    return tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(bad)),
        [f"token_ids outside [0, vocab_size={vocab_size}): first at [row, col] =", first // seq_len,
         first % seq_len, "value", tf.gather(flat_ids, first)])


def _mask_tokens_reference(token_ids, seed, word_starts, config):
    """Pure-TensorFlow twin of the kernel (XLA-compilable). Shapes as in `mask_tokens`."""
    with tf.control_dependencies([_check_ids_in_range(token_ids, config.vocab_size)]):
        token_ids = tf.identity(token_ids)
    if word_starts is not None:
        tf.debugging.assert_equal(tf.shape(word_starts), tf.shape(token_ids),
                                  message="word_starts must have the shape of token_ids")
    batch, seq_len = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
    num_predictions = config.max_predictions_per_seq
    selection_seed, decision_seed, replacement_seed = tf.unstack(tf.random.split(seed, num=3))

    excluded_table = np.zeros([config.vocab_size], dtype=bool)
    excluded_table[config.excluded_ids] = True
    is_candidate = tf.logical_not(tf.gather(tf.constant(excluded_table), token_ids))
    candidates = tf.reduce_sum(tf.cast(is_candidate, tf.int64), axis=1)
    rounded = tf.cast(tf.floor(config.mask_rate * tf.cast(candidates, tf.float64) + 0.5), tf.int64)
    wanted = tf.where(candidates > 0, tf.minimum(tf.cast(num_predictions, tf.int64), tf.maximum(rounded, 1)), 0)

    if word_starts is None:
        selected = _select_uniform_subset(is_candidate, wanted, selection_seed)
    else:
        selected = _select_whole_words(is_candidate, word_starts, wanted, num_predictions, selection_seed)

    # Ascending selected positions first, then sentinels, cut to P slots.
    positions_1d = tf.range(seq_len)[tf.newaxis, :]
    order_key = tf.where(selected, positions_1d, seq_len + positions_1d)
    order_key = tf.concat([tf.sort(order_key, axis=1), tf.fill([batch, num_predictions], 2 * seq_len)], axis=1)
    slots = order_key[:, :num_predictions]
    valid = slots < seq_len
    positions = tf.where(valid, slots, 0)
    # An extra column gives padding slots somewhere harmless to read from and write to.
    widened = tf.concat([token_ids, tf.zeros([batch, 1], tf.int32)], axis=1)
    original = tf.gather(widened, positions, batch_dims=1)

    uniform = tf.random.stateless_uniform([batch, num_predictions], seed=decision_seed)
    replacement = _random_replacements([batch, num_predictions], replacement_seed, config)
    new_values = tf.where(uniform < config.mask_prob, config.mask_token_id,
                          tf.where(uniform < config.mask_prob + config.random_prob, replacement, original))
    scatter_columns = tf.where(valid, positions, seq_len)
    rows = tf.broadcast_to(tf.range(batch)[:, tf.newaxis], [batch, num_predictions])
    masked = tf.tensor_scatter_nd_update(widened, tf.stack([rows, scatter_columns], axis=-1), new_values)
    return (masked[:, :seq_len], positions, tf.where(valid, original, 0), tf.cast(valid, tf.float32))


def _select_uniform_subset(is_candidate, wanted, seed):
    """bool [batch, seq_len]: a uniform subset of `wanted` candidates per row."""
    keys = tf.random.stateless_uniform(tf.shape(is_candidate), seed=seed)
    keys = tf.where(is_candidate, keys, 2.0)  # non-candidates rank after every candidate
    rank = tf.argsort(tf.argsort(keys, axis=1, stable=True), axis=1, stable=True)
    return tf.logical_and(is_candidate, tf.cast(rank, tf.int64) < wanted[:, tf.newaxis])


def _select_whole_words(is_candidate, word_starts, wanted, max_predictions, seed):
    """bool [batch, seq_len]: whole words taken greedily in a random order (see module docstring)."""
    batch, seq_len = tf.shape(is_candidate)[0], tf.shape(is_candidate)[1]
    previous_candidate = tf.pad(is_candidate[:, :-1], [[0, 0], [1, 0]], constant_values=False)
    starts = tf.logical_and(is_candidate, tf.logical_or(word_starts, tf.logical_not(previous_candidate)))
    word_index = tf.cumsum(tf.cast(starts, tf.int32), axis=1) - 1  # [batch, seq_len]
    num_words = tf.reduce_sum(tf.cast(starts, tf.int32), axis=1)
    flat_word = tf.where(is_candidate, word_index + seq_len * tf.range(batch)[:, tf.newaxis], batch * seq_len)
    word_lengths = tf.math.unsorted_segment_sum(tf.ones([batch * seq_len], tf.int32), tf.reshape(flat_word, [-1]),
                                                batch * seq_len + 1)[:-1]
    word_lengths = tf.cast(tf.reshape(word_lengths, [batch, seq_len]), tf.int64)

    keys = tf.random.stateless_uniform([batch, seq_len], seed=seed)
    keys = tf.where(tf.range(seq_len)[tf.newaxis, :] < num_words[:, tf.newaxis], keys, 2.0)
    order = tf.argsort(keys, axis=1, stable=True)  # word indices in the random visiting order
    lengths_in_order = tf.gather(word_lengths, order, batch_dims=1)
    in_range = tf.range(seq_len)[tf.newaxis, :] < num_words[:, tf.newaxis]

    def visit(step, total, taken):
        length = lengths_in_order[:, step]
        following = total + length
        take = (in_range[:, step] & (total < wanted) & (following <= max_predictions)
                & (tf.abs(following - wanted) < wanted - total))
        taken = taken.write(step, take)
        return step + 1, tf.where(take, following, total), taken

    _, _, taken = tf.while_loop(
        lambda step, *_: step < seq_len, visit,
        (tf.constant(0), tf.zeros([batch], tf.int64), tf.TensorArray(tf.bool, size=seq_len)))
    taken_in_order = tf.transpose(taken.stack())  # [batch, seq_len], indexed by visiting step
    taken_by_word = tf.gather(taken_in_order, tf.argsort(order, axis=1, stable=True), batch_dims=1)
    return tf.logical_and(is_candidate, tf.gather(taken_by_word, tf.maximum(word_index, 0), batch_dims=1))


def _random_replacements(shape, seed, config):
    """int32 `shape`: ids drawn uniformly among the non-excluded ones."""
    drawn = tf.random.stateless_uniform(shape, seed=seed, minval=0, maxval=max(config.num_replacements, 1),
                                        dtype=tf.int32)
    for excluded in config.excluded_ids:  # step over each excluded id, in ascending order
        drawn = drawn + tf.cast(drawn >= excluded, tf.int32)
    return drawn
