"""Configuration mistakes a user makes with their own data fail before training, naming both sides."""
import json

import pytest

from research import modeling
from research.tasks import masked_lm, sentence_prediction

from task_helpers import PREDICTIONS, SEQ_LEN, VOCAB, tiny_encoder, write_pretraining_records

SPM_VOCAB = 150  # the shared tiny sentencepiece model's


def mlm_task(records, data_vocab=VOCAB, model_vocab=VOCAB):
    data = masked_lm.PretrainDataConfig(input_path=records, global_batch_size=4, seq_len=SEQ_LEN,
                                        vocab_size=data_vocab, max_predictions_per_seq=PREDICTIONS)
    return masked_lm.MaskedLMTask(masked_lm.MaskedLMConfig(
        model=lambda: modeling.BertPretrainer(encoder=tiny_encoder(vocab_size=model_vocab)), train_data=data))


@pytest.mark.parametrize("configured", [VOCAB - 10, 30522])  # smaller: a graph error at step 1; larger: silent
def test_records_built_with_another_vocabulary_size_are_refused_naming_both(tmp_path, configured):
    records = write_pretraining_records(tmp_path / "records")
    (tmp_path / "records" / "metadata.json").write_text(json.dumps({"vocab_size": VOCAB}))
    with pytest.raises(ValueError) as error:
        mlm_task(records, data_vocab=configured, model_vocab=configured).build_model()
    message = str(error.value)
    assert f"vocabulary of {VOCAB} ids ({tmp_path / 'records' / 'metadata.json'})" in message
    assert f"PretrainDataConfig.vocab_size is {configured}: set it to {VOCAB}" in message


def test_an_encoder_vocabulary_unlike_the_data_is_refused(tmp_path):
    records = write_pretraining_records(tmp_path / "records")
    with pytest.raises(ValueError, match=rf"encoder's vocabulary has 80 ids .* the data's has {VOCAB}"):
        mlm_task(records, model_vocab=80).build_model()
    mlm_task(records).build_model()  # matching sizes, no metadata.json: nothing to refuse


def classification_config(tmp_path, spm_model, train_tsv, eval_tsv, train_split="auto", eval_split="auto",
                          encoder_vocab=SPM_VOCAB):
    def data(path, split, is_training):
        return sentence_prediction.ClassificationDataConfig(
            input_path=str(path), spm_model=str(spm_model), global_batch_size=4, seq_len=16, split=split,
            validation_fraction=0.25, is_training=is_training)
    return sentence_prediction.SentencePredictionConfig(
        model=lambda: modeling.BertClassifier(tiny_encoder(vocab_size=encoder_vocab), num_classes=2),
        train_data=data(train_tsv, train_split, True), validation_data=data(eval_tsv, eval_split, False))


def write_tsv(path, rows):
    path.write_text("".join(f"{i % 2}\tgood fun story number {i}\n" for i in range(rows)), encoding="utf-8")
    return path


def count_examples(task, data):
    return sum(int(batch["label"].shape[0]) for batch in task.build_inputs(
        sentence_prediction.ClassificationDataConfig(**{**data.__dict__, "is_training": False})))


def test_one_file_is_split_and_two_files_are_each_read_whole(tmp_path, spm_model, caplog):
    train, test = write_tsv(tmp_path / "train.tsv", 40), write_tsv(tmp_path / "test.tsv", 12)
    one = classification_config(tmp_path, spm_model, train, train)
    assert (one.train_data.split, one.validation_data.split) == ("train", "validation")
    task = sentence_prediction.SentencePredictionTask(one)
    assert (count_examples(task, one.train_data), count_examples(task, one.validation_data)) == (30, 10)

    two = classification_config(tmp_path, spm_model, train, test)
    assert (two.train_data.split, two.validation_data.split) == ("all", "all")
    task = sentence_prediction.SentencePredictionTask(two)
    with caplog.at_level("INFO"):
        assert (count_examples(task, two.train_data), count_examples(task, two.validation_data)) == (40, 12)
    assert f"40 examples, all of {train}" in caplog.text and f"12 examples, all of {test}" in caplog.text


def test_an_explicit_split_of_one_of_two_files_is_refused(tmp_path, spm_model):
    train, test = write_tsv(tmp_path / "train.tsv", 40), write_tsv(tmp_path / "test.tsv", 12)
    with pytest.raises(ValueError, match=r"train_data.split is 'train': it takes part of .*train.tsv although the "
                                         r"other side reads another file \(.*test.tsv\)"):
        classification_config(tmp_path, spm_model, train, test, train_split="train", eval_split="validation")


def test_a_tokenizer_unlike_the_encoder_vocabulary_is_refused(tmp_path, spm_model):
    train = write_tsv(tmp_path / "train.tsv", 40)
    config = classification_config(tmp_path, spm_model, train, train, encoder_vocab=8000)
    with pytest.raises(ValueError, match=rf"encoder's vocabulary has 8000 ids .* has {SPM_VOCAB} pieces"):
        sentence_prediction.SentencePredictionTask(config).build_model()
