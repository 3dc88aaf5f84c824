"""The pretraining tf.data pipeline: records of unmasked ids in, masked batches out."""
import numpy as np
import pytest
import tensorflow as tf

from research.data import features, pretrain_input
from research.data.tokenizer import CLS_ID, MASK_ID, PAD_ID, SEP_ID

SEQ_LEN = 16
VOCAB = 200


def write_shards(directory, num_shards=2, per_shard=10, seq_len=SEQ_LEN, next_sentence=False):
    """Writes shards whose example k holds id 5 + k at position 1, so examples can be told apart."""
    example_id = 0
    for shard in range(num_shards):
        path = directory / f"train-{shard:05d}-of-{num_shards:05d}.tfrecord"
        with tf.io.TFRecordWriter(str(path)) as writer:
            for _ in range(per_shard):
                ids = [CLS_ID, 5 + example_id] + list(range(10, 10 + seq_len - 6)) + [SEP_ID] + [PAD_ID] * 3
                feature = {features.INPUT_WORD_IDS: _int64(ids), features.INPUT_TYPE_IDS: _int64([0] * seq_len)}
                if next_sentence:
                    feature[features.NEXT_SENTENCE_LABELS] = _int64([example_id % 2])
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
                example_id += 1
    return str(directory / "train-*.tfrecord")


def original_ids(batch):
    """The batch's ids before masking: the masked positions get their masked_lm_ids back."""
    ids = batch[features.INPUT_WORD_IDS].numpy().copy()
    weights = batch[features.MASKED_LM_WEIGHTS].numpy()
    rows, slots = np.nonzero(weights)
    positions = batch[features.MASKED_LM_POSITIONS].numpy()[rows, slots]
    ids[rows, positions] = batch[features.MASKED_LM_IDS].numpy()[rows, slots]
    return ids


def _int64(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


MASKING = pretrain_input.MaskingConfig(vocab_size=VOCAB, max_predictions_per_seq=4)


def test_training_batches_have_every_feature_with_its_shape_and_dtype(tmp_path):
    pattern = write_shards(tmp_path)
    batch = next(iter(pretrain_input.pretrain_dataset(pattern, batch_size=4, seq_len=SEQ_LEN, masking=MASKING)))
    expected = {features.INPUT_WORD_IDS: (tf.int32, [4, SEQ_LEN]), features.INPUT_MASK: (tf.int32, [4, SEQ_LEN]),
                features.INPUT_TYPE_IDS: (tf.int32, [4, SEQ_LEN]), features.MASKED_LM_POSITIONS: (tf.int32, [4, 4]),
                features.MASKED_LM_IDS: (tf.int32, [4, 4]), features.MASKED_LM_WEIGHTS: (tf.float32, [4, 4])}
    assert set(batch) == set(expected)
    for name, (dtype, shape) in expected.items():
        assert batch[name].dtype == dtype and batch[name].shape.as_list() == shape, name
    np.testing.assert_array_equal(batch[features.INPUT_MASK].numpy()[:, -3:], 0)
    np.testing.assert_array_equal(batch[features.INPUT_MASK].numpy()[:, :-3], 1)
    # 11 candidates per row -> round(0.15 * 11) = 2 predictions.
    np.testing.assert_array_equal(batch[features.MASKED_LM_WEIGHTS].numpy().sum(1), 2)
    ids = batch[features.INPUT_WORD_IDS].numpy()
    positions = batch[features.MASKED_LM_POSITIONS].numpy()[:, :2]
    changed = ids[np.arange(4)[:, None], positions]
    assert np.all((changed == MASK_ID) | (changed >= 5))


def test_evaluation_reads_every_record_once_and_masks_deterministically(tmp_path):
    pattern = write_shards(tmp_path, num_shards=2, per_shard=5)
    def read():
        dataset = pretrain_input.pretrain_dataset(pattern, batch_size=4, seq_len=SEQ_LEN, masking=MASKING,
                                                  is_training=False, seed=3)
        return [batch for batch in dataset]
    first, second = read(), read()
    assert [len(b[features.INPUT_MASK]) for b in first] == [4, 4, 2]
    # Example k carries id 5 + k at position 1: one pass yields each of the 10 examples exactly once
    # (the two shards interleaved), and a second pass the same examples in the same order.
    example_ids = np.concatenate([original_ids(b)[:, 1] for b in first]) - 5
    np.testing.assert_array_equal(np.sort(example_ids), np.arange(10))
    np.testing.assert_array_equal(np.concatenate([original_ids(b)[:, 1] for b in second]) - 5, example_ids)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a[features.MASKED_LM_POSITIONS], b[features.MASKED_LM_POSITIONS])
        np.testing.assert_array_equal(a[features.INPUT_WORD_IDS], b[features.INPUT_WORD_IDS])


def test_training_masks_change_every_step_and_repeat_forever(tmp_path):
    pattern = write_shards(tmp_path, num_shards=1, per_shard=4)
    dataset = pretrain_input.pretrain_dataset(pattern, batch_size=4, seq_len=SEQ_LEN, masking=MASKING,
                                              shuffle_buffer_size=1)
    batches = list(dataset.take(6))
    positions = [b[features.MASKED_LM_POSITIONS].numpy() for b in batches]
    assert any(not np.array_equal(positions[0], p) for p in positions[1:])


def test_input_context_gives_each_pipeline_its_own_shards_and_replica_batch(tmp_path):
    pattern = write_shards(tmp_path, num_shards=2, per_shard=6)
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                             num_replicas_in_sync=2)
        dataset = pretrain_input.pretrain_dataset(pattern, batch_size=6, seq_len=SEQ_LEN, masking=MASKING,
                                                  is_training=False, input_context=context)
        batches = list(dataset)
        assert all(b[features.INPUT_WORD_IDS].shape[0] == 3 for b in batches)
        seen.append({int(i) for b in batches for i in original_ids(b)[:, 1]})
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 12


def test_next_sentence_labels_and_whole_word_masking(tmp_path):
    """Records are [CLS] (5 + k) 10 11 ... 19 [SEP] [PAD]x3 with next-sentence label k % 2. With even ids
    flagged as word starts, the words are {1}, {2, 3}, {4, 5}, ..., {10, 11} (position 1 follows [CLS]);
    the target of round(0.15 * 11) = 2 predictions is met by one two-token word, or by word {1} alone
    (a two-token word after it would overshoot to 3, no closer to 2)."""
    pattern = write_shards(tmp_path, next_sentence=True)
    table = np.zeros(VOCAB, bool)
    table[::2] = True
    dataset = pretrain_input.pretrain_dataset(pattern, batch_size=4, seq_len=SEQ_LEN, masking=MASKING,
                                              use_next_sentence_label=True, word_start_table=table)
    whole_words = {(1,)} | {(p, p + 1) for p in range(2, 12, 2)}
    for batch in dataset.take(10):
        labels = batch[features.NEXT_SENTENCE_LABELS].numpy()
        assert labels.shape == (4,)
        np.testing.assert_array_equal(labels, (original_ids(batch)[:, 1] - 5) % 2)
        weights = batch[features.MASKED_LM_WEIGHTS].numpy()
        positions = batch[features.MASKED_LM_POSITIONS].numpy()
        for row in range(4):
            masked = tuple(sorted(positions[row][weights[row] > 0].tolist()))
            assert masked in whole_words, f"row {row} masks positions {masked}, not one whole word"


def test_missing_files_name_the_pattern(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        pretrain_input.pretrain_dataset(str(tmp_path / "nothing-here*"), batch_size=2, seq_len=SEQ_LEN,
                                        masking=MASKING)


def test_records_of_another_length_fail_naming_the_feature(tmp_path):
    pattern = write_shards(tmp_path, seq_len=SEQ_LEN)
    # The first record is checked when the dataset is built: the error names the file and the feature.
    with pytest.raises(ValueError, match=r"train-00000-of-00002\.tfrecord: feature 'input_word_ids' .*16 int64 "
                                         r"values, expected 20"):
        pretrain_input.pretrain_dataset(pattern, batch_size=2, seq_len=SEQ_LEN + 4, masking=MASKING)


def test_ids_beyond_the_vocabulary_fail_naming_the_value(tmp_path):
    pattern = write_shards(tmp_path)
    small = pretrain_input.MaskingConfig(vocab_size=12, max_predictions_per_seq=4)
    dataset = pretrain_input.pretrain_dataset(pattern, batch_size=2, seq_len=SEQ_LEN, masking=small)
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside \\[0, vocab_size=12\\)"):
        next(iter(dataset))


class _BertIds:
    """BERT uncased's special ids, for MaskingConfig.for_tokenizer."""
    pad_id, unk_id, cls_id, sep_id, mask_id, vocab_size = 0, 100, 101, 102, 103, 200


def test_masking_takes_the_special_ids_from_the_tokenizer(tmp_path):
    masking = pretrain_input.MaskingConfig.for_tokenizer(_BertIds(), max_predictions_per_seq=6, mask_rate=0.5,
                                                         mask_prob=1.0, random_prob=0.0)
    assert (masking.vocab_size, masking.mask_token_id, masking.pad_token_id, masking.special_token_ids) == (
        200, 103, 0, (0, 100, 101, 102))
    path = tmp_path / "train-00000-of-00001.tfrecord"
    ids = [101, 100, 7, 8, 9, 10, 11, 102, 12, 13, 102, 0, 0, 0, 0, 0]
    with tf.io.TFRecordWriter(str(path)) as writer:
        feature = {features.INPUT_WORD_IDS: _int64(ids), features.INPUT_TYPE_IDS: _int64([0] * SEQ_LEN)}
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    batch = next(iter(pretrain_input.pretrain_dataset(str(path), batch_size=1, seq_len=SEQ_LEN, masking=masking,
                                                      is_training=False)))
    weights = batch[features.MASKED_LM_WEIGHTS].numpy()[0]
    positions = batch[features.MASKED_LM_POSITIONS].numpy()[0][weights > 0]
    assert len(positions) == 4 and set(np.array(ids)[positions]) <= {7, 8, 9, 10, 11, 12, 13}  # never 0/100/101/102
    np.testing.assert_array_equal(batch[features.INPUT_WORD_IDS].numpy()[0][positions], 103)
    np.testing.assert_array_equal(batch[features.INPUT_MASK].numpy()[0], [1] * 11 + [0] * 5)
