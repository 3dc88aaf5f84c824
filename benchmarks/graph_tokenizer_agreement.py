"""The in-graph sentencepiece tokenizer (research/export/sentencepiece_graph.py) against sentencepiece.

    python benchmarks/graph_tokenizer_agreement.py [--spm_model=cache/demo/austen_spm_8000.model]
        [--max_austen_lines=0]

Tokenizes every non-empty line of the shipped Austen text and every shipped movie-review sentence with
both, and prints, per corpus, how many texts get identical ids, how many ids differ, one differing
example, and texts/s of each (both measured in this run, alternated by batch). Without --spm_model it
uses the demo's model (built and cached on first use).
"""
import time

import sentencepiece as spm
import tensorflow as tf
from absl import app, flags

from research.data import demo_data
from research.export.sentencepiece_graph import SentencepieceGraphTokenizer

_SPM_MODEL = flags.DEFINE_string("spm_model", "", "A unigram sentencepiece model; '' means the demo's.")
_MAX_AUSTEN_LINES = flags.DEFINE_integer("max_austen_lines", 0, "Only the first N Austen lines (0: all).")
_BATCH = 256


def corpora() -> dict:
    austen = [line.strip() for line in open(demo_data.AUSTEN_TEXT, encoding="utf-8") if line.strip()]
    if _MAX_AUSTEN_LINES.value:
        austen = austen[:_MAX_AUSTEN_LINES.value]
    reviews = [line.rstrip("\n").split("\t", 1)[1] for line in open(demo_data.MOVIE_REVIEWS_TSV, encoding="utf-8")
               if line.strip()]
    return {"austen lines": austen, "movie-review sentences": reviews}


def compare(name, texts, processor, graph_tokenize):
    spm_seconds = graph_seconds = 0.0
    expected, got = [], []
    for start in range(0, len(texts), _BATCH):
        batch = texts[start:start + _BATCH]
        begin = time.perf_counter()
        expected += processor.encode(batch)
        spm_seconds += time.perf_counter() - begin
        begin = time.perf_counter()
        got += graph_tokenize(tf.constant(batch)).to_list()
        graph_seconds += time.perf_counter() - begin
    same = sum(g == e for g, e in zip(got, expected))
    tokens = sum(len(e) for e in expected)
    print(f"{name}: {same} of {len(texts)} texts identical ({100.0 * same / len(texts):.3f}%), {tokens} tokens; "
          f"sentencepiece {len(texts) / spm_seconds:.0f} texts/s, in-graph {len(texts) / graph_seconds:.0f} texts/s "
          f"(ratio {spm_seconds / graph_seconds:.3f})")
    for text, g, e in zip(texts, got, expected):
        if g != e:
            print(f"  first difference: {text!r}\n    sentencepiece {processor.id_to_piece(e)}\n"
                  f"    in-graph      {processor.id_to_piece(g)}")
            break


def main(argv):
    del argv
    model = _SPM_MODEL.value or demo_data.demo_spm_model()
    processor = spm.SentencePieceProcessor(model_file=model)
    graph_tokenize = tf.function(SentencepieceGraphTokenizer(model).tokenize,
                                 input_signature=[tf.TensorSpec([None], tf.string)])
    print(f"model {model}; batches of {_BATCH} texts; the host may be shared (rates are indicative)")
    for name, texts in corpora().items():
        compare(name, texts, processor, graph_tokenize)


if __name__ == "__main__":
    app.run(main)
