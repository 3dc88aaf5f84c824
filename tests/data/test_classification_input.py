"""Tests of research.data.classification_input on tiny TSV files and a tiny sentencepiece model."""
import re

import numpy as np
import pytest
import tensorflow as tf

from research.data import classification_input as ci
from research.data import features
from research.data.tokenizer import CLS_ID, PAD_ID, SEP_ID, Tokenizer, train_sentencepiece

WORDS = ("the film was good bad long short funny dull great awful and but not very quite a story "
         "actor plot music scene ending with it is this that of to in").split()


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    """A Tokenizer over a 48-piece unigram model trained on a few hundred synthetic sentences."""
    root = tmp_path_factory.mktemp("spm")
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, size=rng.integers(3, 15))) for _ in range(600)]
    (root / "corpus.txt").write_text("\n".join(lines) + "\n")
    return Tokenizer(train_sentencepiece(root / "corpus.txt", root / "tiny", vocab_size=48))


def write_tsv(tmp_path, rows, name="data.tsv"):
    path = tmp_path / name
    path.write_text("".join("\t".join(map(str, row)) + "\n" for row in rows), encoding="utf-8")
    return path


def batches(dataset, limit=None):
    """The dataset's batches as dicts of numpy arrays."""
    dataset = dataset if limit is None else dataset.take(limit)
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset]


def real(ids):
    """The non-padding ids of one row."""
    return [int(i) for i in ids if i != PAD_ID]


SINGLES = [(1, "the film was good"), (0, "a very dull plot"), (1, "great music"),
           (0, "this is not a good story and the ending is awful"), (1, "funny")]
PAIRS = [(0, "the film was good", "a very dull plot"), (1, "great music", "funny"),
         (2, "the actor", "this is not a good story and the ending is awful")]


def test_single_sentence_layout_and_shapes(tmp_path, tokenizer):
    examples = ci.read_examples(write_tsv(tmp_path, SINGLES), num_classes=2)
    (batch, *_) = batches(ci.build_dataset(examples, tokenizer, seq_len=16, batch_size=2))
    for name in (features.INPUT_WORD_IDS, features.INPUT_MASK, features.INPUT_TYPE_IDS):
        assert batch[name].shape == (2, 16) and batch[name].dtype == np.int32
    assert batch[features.LABEL].dtype == np.int32 and batch[features.LABEL].tolist() == [1, 0]
    for row, (_, text) in zip(batch[features.INPUT_WORD_IDS], SINGLES):
        assert real(row) == [CLS_ID, *tokenizer.encode(text), SEP_ID]
        assert tokenizer.decode(real(row)[1:-1]) == text
    np.testing.assert_array_equal(batch[features.INPUT_TYPE_IDS], 0)


def test_mask_is_ids_not_pad(tmp_path, tokenizer):
    examples = ci.read_examples(write_tsv(tmp_path, PAIRS))
    for pad_to in ci.PAD_TO:
        for batch in batches(ci.build_dataset(examples, tokenizer, seq_len=12, batch_size=2,
                                              pad_to=pad_to)):
            np.testing.assert_array_equal(batch[features.INPUT_MASK],
                                          batch[features.INPUT_WORD_IDS] != PAD_ID)


def test_pair_layout_and_type_ids(tmp_path, tokenizer):
    examples = ci.read_examples(write_tsv(tmp_path, PAIRS[:2]))
    (batch,) = batches(ci.build_dataset(examples, tokenizer, seq_len=32, batch_size=2))
    for ids, types, (_, a, b) in zip(batch[features.INPUT_WORD_IDS],
                                     batch[features.INPUT_TYPE_IDS], PAIRS):
        a, b = tokenizer.encode(a), tokenizer.encode(b)
        assert real(ids) == [CLS_ID, *a, SEP_ID, *b, SEP_ID]
        assert types.tolist() == [0] * (len(a) + 2) + [1] * (len(b) + 1) + [0] * (32 - len(a) - len(b) - 3)


def test_truncate_pair_shortens_the_longer_side_from_its_end():
    assert ci.truncate_pair([1, 2, 3, 4, 5], [6, 7], 4) == ([1, 2], [6, 7])
    assert ci.truncate_pair([1, 2], [3, 4, 5, 6], 3) == ([1, 2], [3])  # ties cut b
    assert ci.truncate_pair([1, 2, 3], [4, 5, 6, 7], 4) == ([1, 2], [4, 5])
    assert ci.truncate_pair([1, 2], [3, 4], 10) == ([1, 2], [3, 4])


def test_long_examples_are_truncated_to_seq_len(tmp_path, tokenizer):
    long_text = " ".join(WORDS)
    examples = ci.read_examples(write_tsv(tmp_path, [(0, long_text), (1, "funny")]))
    (batch,) = batches(ci.build_dataset(examples, tokenizer, seq_len=8, batch_size=2))
    assert real(batch[features.INPUT_WORD_IDS][0]) == [CLS_ID, *tokenizer.encode(long_text)[:6], SEP_ID]

    pairs = ci.read_examples(write_tsv(tmp_path, [(0, long_text, "great music")], "pairs.tsv"))
    (batch,) = batches(ci.build_dataset(pairs, tokenizer, seq_len=10, batch_size=1))
    a, b = ci.truncate_pair(tokenizer.encode(long_text), tokenizer.encode("great music"), 7)
    assert len(a) + len(b) == 7 and b == tokenizer.encode("great music")[:len(b)]
    assert real(batch[features.INPUT_WORD_IDS][0]) == [CLS_ID, *a, SEP_ID, *b, SEP_ID]


def test_pad_to_batch_pads_to_longest_in_batch(tmp_path, tokenizer):
    examples = ci.read_examples(write_tsv(tmp_path, SINGLES))
    lengths = [len(tokenizer.encode(text)) + 2 for _, text in SINGLES]
    got = batches(ci.build_dataset(examples, tokenizer, seq_len=64, batch_size=2, pad_to="batch"))
    assert [b[features.INPUT_WORD_IDS].shape for b in got] == [
        (2, max(lengths[0:2])), (2, max(lengths[2:4])), (1, lengths[4])]
    for b in got:
        shape = b[features.INPUT_WORD_IDS].shape
        assert b[features.INPUT_TYPE_IDS].shape == b[features.INPUT_MASK].shape == shape
        assert b[features.INPUT_MASK][:, -1].any()  # no all-padding column


def test_bucketing_groups_by_length_and_keeps_every_example(tmp_path, tokenizer):
    rows = [(i, text) for i, (_, text) in enumerate(SINGLES * 3)]
    examples = ci.read_examples(write_tsv(tmp_path, rows))
    dataset = ci.build_dataset(examples, tokenizer, seq_len=64, batch_size=2, pad_to="batch",
                               bucket_boundaries=[5, 9])
    got = batches(dataset)
    assert sorted(l for b in got for l in b[features.LABEL].tolist()) == list(range(len(rows)))
    for b in got:
        lengths = b[features.INPUT_MASK].sum(axis=1)
        assert b[features.INPUT_WORD_IDS].shape[1] == lengths.max()
        assert len({np.searchsorted([5, 9], n, side="right") for n in lengths}) == 1


def test_eval_keeps_every_example_exactly_once_in_order(tmp_path, tokenizer):
    rows = [(i, text) for i, (_, text) in enumerate(SINGLES * 2)]
    examples = ci.read_examples(write_tsv(tmp_path, rows), num_classes=len(rows))
    got = batches(ci.build_dataset(examples, tokenizer, seq_len=16, batch_size=3))
    assert [len(b[features.LABEL]) for b in got] == [3, 3, 3, 1]
    assert np.concatenate([b[features.LABEL] for b in got]).tolist() == list(range(len(rows)))


def test_training_shuffles_with_seed_repeats_and_keeps_static_batches(tmp_path, tokenizer):
    rows = [(i, text) for i, (_, text) in enumerate(SINGLES * 2)]
    examples = ci.read_examples(write_tsv(tmp_path, rows))

    def labels(seed):
        dataset = ci.build_dataset(examples, tokenizer, seq_len=16, batch_size=4, is_training=True, seed=seed)
        assert dataset.element_spec[features.INPUT_WORD_IDS].shape == (4, 16)
        return np.concatenate([b[features.LABEL] for b in batches(dataset, limit=10)]).tolist()

    first = labels(seed=1)
    assert first == labels(seed=1) and first != labels(seed=2)
    assert sorted(first[:10]) == list(range(10)) and first[:10] != list(range(10))
    assert len(first) == 40  # repeats


def test_float_labels_for_regression(tmp_path, tokenizer):
    examples = ci.read_examples(write_tsv(tmp_path, [(0.25, "good"), (-1.5, "bad")]), label_type="float")
    (batch,) = batches(ci.build_dataset(examples, tokenizer, seq_len=8, batch_size=2, label_type="float"))
    assert batch[features.LABEL].dtype == np.float32 and batch[features.LABEL].tolist() == [0.25, -1.5]


def test_input_context_shards_and_splits_the_batch(tmp_path, tokenizer):
    rows = [(i, text) for i, (_, text) in enumerate(SINGLES * 2)]
    examples = ci.read_examples(write_tsv(tmp_path, rows))
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
    got = batches(ci.build_dataset(examples, tokenizer, seq_len=16, batch_size=4, input_context=context))
    assert [b[features.LABEL].tolist() for b in got] == [[1, 3], [5, 7], [9]]


def test_load_dataset_reads_and_builds(tmp_path, tokenizer):
    path = write_tsv(tmp_path, SINGLES)
    got = batches(ci.load_dataset(path, tokenizer, num_classes=2, seq_len=16, batch_size=8))
    assert got[0][features.LABEL].tolist() == [label for label, _ in SINGLES]


def test_split_is_deterministic_disjoint_and_complete():
    examples = [ci.Example(i % 2, f"sentence {i}") for i in range(50)]
    train, validation = ci.split_examples(examples, validation_fraction=0.2, seed=3)
    assert (train, validation) == ci.split_examples(examples, validation_fraction=0.2, seed=3)
    assert len(validation) == 10 and len(train) == 40
    assert not {e.text_a for e in train} & {e.text_a for e in validation}
    assert sorted(train + validation, key=lambda e: int(e.text_a.split()[1])) == examples
    assert ci.split_examples(examples, seed=4)[1] != validation
    with pytest.raises(ValueError, match="validation_fraction"):
        ci.split_examples(examples, validation_fraction=1.0)
    with pytest.raises(ValueError, match="non-empty"):
        ci.split_examples(examples[:1])


@pytest.mark.parametrize("content, line, message", [
    ("1\tgood\n0\n", 2, "expected 2 .*got 1"),
    ("1\tgood\n0\ta\tb\tc\n", 2, "expected 2 tab-separated columns, got 4"),
    ("0\ta\tb\tc\n", 1, r"expected 2 \(label, text\) or 3 .*got 4"),
    ("1\tgood\n0\tbad\tworse\n", 2, "expected 2 tab-separated columns, got 3"),
    ("1\tgood\tbetter\n0\tbad\n", 2, "expected 3 tab-separated columns, got 2"),
    ("1\tgood\n\nx\tbad\n", 3, "label 'x' is not an int"),
    ("1.5\tgood\n", 1, "label '1.5' is not an int"),
    ("1\tgood\n2\tbad\n", 2, r"label 2 is outside \[0, 2\)"),
    ("-1\tbad\n", 1, r"label -1 is outside \[0, 2\)"),
])
def test_bad_lines_name_the_file_and_line(tmp_path, content, line, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(f"{path}, line {line}: ") + message):
        ci.read_examples(path, num_classes=2)


def test_bad_float_labels(tmp_path):
    for text in ("abc", "nan", "inf"):
        path = write_tsv(tmp_path, [(0.5, "good"), (text, "bad")])
        with pytest.raises(ValueError, match=re.escape(f"{path}, line 2: label '{text}'")):
            ci.read_examples(path, label_type="float")


def test_empty_file_raises(tmp_path):
    for content in ("", "\n\n"):
        path = tmp_path / "empty.tsv"
        path.write_text(content)
        with pytest.raises(ValueError, match=re.escape(f"{path}: no examples")):
            ci.read_examples(path)


def test_bad_options_raise(tmp_path, tokenizer):
    examples = ci.read_examples(write_tsv(tmp_path, SINGLES))
    pairs = ci.read_examples(write_tsv(tmp_path, PAIRS, "pairs.tsv"))
    bad = [
        (dict(pad_to="longest"), "pad_to"),
        (dict(pad_to="max", bucket_boundaries=[8]), "bucket_boundaries only"),
        (dict(pad_to="batch", bucket_boundaries=[8, 4]), "strictly increase"),
        (dict(pad_to="batch", seq_len=16, bucket_boundaries=[32]), "strictly increase"),
        (dict(seq_len=2), "seq_len must be at least 3"),
        (dict(label_type="str"), "label_type"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            ci.build_dataset(examples, tokenizer, **{"seq_len": 16, **kwargs})
    with pytest.raises(ValueError, match="seq_len must be at least 5"):
        ci.build_dataset(pairs, tokenizer, seq_len=4)
    with pytest.raises(ValueError, match="no examples"):
        ci.build_dataset([], tokenizer)
    with pytest.raises(ValueError, match="num_classes"):
        ci.read_examples(tmp_path / "data.tsv", label_type="float", num_classes=2)


class _BertIds:
    """A stand-in tokenizer with BERT uncased's special ids: words map to 1000 + their index."""
    pad_id, unk_id, cls_id, sep_id, mask_id = 0, 100, 101, 102, 103

    def encode(self, text):
        return [1000 + WORDS.index(word) for word in text.split()]


def test_special_ids_come_from_the_tokenizer(tmp_path):
    examples = ci.read_examples(write_tsv(tmp_path, PAIRS[:2]), num_classes=3)
    (batch,) = batches(ci.build_dataset(examples, _BertIds(), seq_len=12, batch_size=2, pad_to="max"))
    first = [1000 + WORDS.index(w) for w in "the film was good".split()]
    second = [1000 + WORDS.index(w) for w in "a very dull plot".split()]
    np.testing.assert_array_equal(batch[features.INPUT_WORD_IDS][0], [101, *first, 102, *second, 102, 0])
    np.testing.assert_array_equal(batch[features.INPUT_MASK][1], [1] * 6 + [0] * 6)


def test_wordpiece_vocab_file_builds_bert_batches(tmp_path):
    """A WordPiece vocab.txt (BERT's layout: [PAD]=0, [UNK]=100 ...) through the loader, as the task does."""
    from research.data import tokenizer_loader
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = tokenizer_loader.load_tokenizer(vocab_file=str(tmp_path / "vocab.txt"), lower_case=True)
    examples = ci.read_examples(write_tsv(tmp_path, [(1, "The film was GOOD"), (0, "zebra")]), num_classes=2)
    (batch,) = batches(ci.build_dataset(examples, tokenizer, seq_len=8, batch_size=2, pad_to="batch"))
    word = {w: 104 + i for i, w in enumerate(WORDS)}
    np.testing.assert_array_equal(batch[features.INPUT_WORD_IDS],
                                  [[101, word["the"], word["film"], word["was"], word["good"], 102],
                                   [101, 100, 102, 0, 0, 0]])
    np.testing.assert_array_equal(batch[features.INPUT_MASK][1], [1, 1, 1, 0, 0, 0])
