"""Test-wide settings and shared fixtures: a small generated corpus and a tiny sentencepiece model."""
import os
import random

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any test imports TensorFlow

from research.data.tokenizer import train_sentencepiece  # noqa: E402

_WORDS = ("the quick brown fox jumps over lazy dog while emma walks through garden meadow and "
          "talks with harriet about weather letters visits dinner party music dancing horses "
          "carriage rain sunshine morning evening friend sister brother father mother house "
          "village church river bridge window door table chair book pen paper story novel "
          "happy sad proud humble clever rich poor young old gentle kind").split()


def make_corpus_text(num_documents, seed=0):
    """Returns plain text of `num_documents` paragraphs of 1-6 generated sentences, separated by
    blank lines, each paragraph's sentences wrapped over several lines."""
    rng = random.Random(seed)
    documents = []
    for _ in range(num_documents):
        sentences = []
        for _ in range(rng.randint(1, 6)):
            words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 14))]
            sentences.append(" ".join(words).capitalize() + rng.choice(".!?"))
        text = " ".join(sentences)
        lines, line = [], []
        for word in text.split():
            line.append(word)
            if len(line) == 9:
                lines.append(" ".join(line))
                line = []
        lines.append(" ".join(line))
        documents.append("\n".join(l for l in lines if l))
    return "\n\n".join(documents) + "\n"


@pytest.fixture(name="make_corpus_text", scope="session")
def fixture_make_corpus_text():
    """The generator above, for test modules (importing conftest by name is ambiguous)."""
    return make_corpus_text


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory):
    """Path of a generated corpus of 120 documents."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(make_corpus_text(120), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def spm_model(tmp_path_factory, corpus_file):
    """Path of a unigram sentencepiece model of 150 pieces trained on `corpus_file`."""
    prefix = tmp_path_factory.mktemp("spm") / "tiny"
    return train_sentencepiece([corpus_file], prefix, vocab_size=150)


WITHOUT_NATIVE_OPS_VARIABLE = "RESEARCH_TESTS_WITHOUT_NATIVE_OPS"


@pytest.fixture(name="native_library")
def fixture_native_library():
    """The loaded native kernels, for tests of backend='auto' (which would silently compare the
    reference twin with itself without them). A missing library fails the test, unless the run says it
    is a no-library run with RESEARCH_TESTS_WITHOUT_NATIVE_OPS=1, where such tests are skipped."""
    from research.ops._loader import LIBRARY

    library = LIBRARY.get()
    if library is None:
        if os.environ.get(WITHOUT_NATIVE_OPS_VARIABLE) == "1":
            pytest.skip(f"{WITHOUT_NATIVE_OPS_VARIABLE}=1: a run without the native kernels")
        pytest.fail(f"the native kernels did not load ({LIBRARY.unavailable_reason}); build them "
                    f"(`pip install .`, see the README), or set {WITHOUT_NATIVE_OPS_VARIABLE}=1 for a run that "
                    "means to test without them", pytrace=False)
    return library


@pytest.fixture(autouse=True)
def float32_policy_and_fixed_seed():
    """Every test starts with the float32 Keras policy and seed 1, and leaves the policy float32."""
    import keras  # imported here: collecting the data tests must not pay for Keras

    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(1)
    yield
    keras.mixed_precision.set_global_policy("float32")
