"""The embedded demo: built once from the shipped Austen text, then reused from the cache."""
import numpy as np
import pytest

from research.data import demo_data, features, pretrain_input


@pytest.mark.slow
def test_demo_records_are_built_once_cached_and_feed_the_pipeline(tmp_path):
    first = demo_data.prepare_pretraining_demo(str(tmp_path), vocab_size=2000, seq_len=64, shards=2)
    counts = first["metadata"]["counts"]
    assert counts["train_examples"] > 1000 and counts["validation_examples"] > 10
    # One document per chapter: 269 headings, the text before each book's first chapter joining the
    # previous book's last one (the first book's title page is a document of its own).
    assert first["metadata"]["document_boundary"] == "separator" and counts["documents"] == 270
    stamp = (tmp_path / "records_full_sentences_seq64_vocab2000" / "metadata.json").stat().st_mtime_ns
    again = demo_data.prepare_pretraining_demo(str(tmp_path), vocab_size=2000, seq_len=64, shards=2)
    assert again["metadata"] == first["metadata"]
    assert (tmp_path / "records_full_sentences_seq64_vocab2000" / "metadata.json").stat().st_mtime_ns == stamp
    masking = pretrain_input.MaskingConfig(vocab_size=2000, max_predictions_per_seq=10)
    batch = next(iter(pretrain_input.pretrain_dataset(again["validation_pattern"], batch_size=8, seq_len=64,
                                                      masking=masking, is_training=False)))
    assert batch[features.INPUT_WORD_IDS].shape == (8, 64)
    assert np.all(batch[features.MASKED_LM_WEIGHTS].numpy().sum(axis=1) >= 1)

