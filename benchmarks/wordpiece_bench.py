"""WordPiece tokenization speed on the shipped Austen text: ours (Hugging Face `tokenizers`, host side) beside
our in-graph WordPieceGraphTokenizer (plain TensorFlow ops, what an exported SavedModel runs), tensorflow-text's
FastBertTokenizer (in-graph) and, when given, the project's sentencepiece tokenizer.

    python benchmarks/wordpiece_bench.py [--rounds=3] [--lines=0] [--graph_batch=4096]
        [--spm_model=cache/demo/spm.model]

Each round runs every tokenizer once over the same lines, in turn, so that the machine's load falls on all
of them alike; the median of the rounds is reported with the ratio to ours. tensorflow-text is optional
(`pip install --no-deps tensorflow-text==<your TF's minor>`): skipped with a note when it does not import.
Also reports whether the in-graph tokenizers' ids equal ours line for line (what an in-graph export computes).
The in-graph tokenizers get --graph_batch lines per call, as a server would batch them.
"""
import argparse
import gzip
import os
import shutil
import statistics
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def austen_lines(limit):
    with open(os.path.join(REPO, "third_party", "austen", "austen.txt"), encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    return lines[:limit] if limit else lines


def bert_vocab(directory):
    path = os.path.join(directory, "vocab.txt")
    with gzip.open(os.path.join(REPO, "third_party", "bert_vocab", "uncased_vocab.txt.gz"), "rb") as src, \
            open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return path


def batched(graph, batch):
    """callable(lines) -> list of id lists, calling the tf.function `graph` on `batch` lines at a time."""
    import tensorflow as tf

    def tokenize(lines):
        ids = []
        for start in range(0, len(lines), batch):
            ids.extend(graph(tf.constant(lines[start:start + batch])).to_list())
        return ids
    return tokenize


def make_candidates(vocab_file, spm_model, graph_batch):
    """{name: callable(lines) -> list of id lists}, and notes on what was skipped."""
    import tensorflow as tf

    from research.data import wordpiece
    from research.export.wordpiece_graph import WordPieceGraphTokenizer
    ours = wordpiece.WordPieceTokenizer(vocab_file, lower_case=True)
    candidates = {"ours: tokenizers (Rust, encode_batch)": ours.encode_batch}
    in_graph = WordPieceGraphTokenizer(vocab_file, lower_case=True)
    graph = tf.function(in_graph.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
    candidates["ours in graph: WordPieceGraphTokenizer (plain TF, tf.function)"] = batched(graph, graph_batch)
    notes = []
    try:
        import tensorflow_text as tf_text
    except ImportError as error:
        notes.append(f"tensorflow-text skipped: {error}")
    else:
        fast = tf_text.FastBertTokenizer(ours.vocab(), token_out_type=tf.int64, lower_case_nfd_strip_accents=True)
        # fast.tokenize: RaggedTensor int64 [batch, (tokens)]
        tf_text_tokenize = batched(tf.function(fast.tokenize), graph_batch)

        candidates[f"tensorflow-text {tf_text.__version__} FastBertTokenizer (tf.function)"] = tf_text_tokenize
    if spm_model:
        from research.data import tokenizer
        candidates["sentencepiece (research.data.tokenizer, other vocabulary)"] = tokenizer.Tokenizer(spm_model).encode_batch
    return candidates, notes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lines", type=int, default=0, help="use only the first N non-empty lines (0: all)")
    parser.add_argument("--graph_batch", type=int, default=4096, help="lines per call of the in-graph tokenizers")
    parser.add_argument("--spm_model", default="", help="also time this sentencepiece model")
    args = parser.parse_args()
    lines = austen_lines(args.lines)
    with tempfile.TemporaryDirectory() as scratch:
        candidates, notes = make_candidates(bert_vocab(scratch), args.spm_model, args.graph_batch)
    for note in notes:
        print(note)
    outputs, seconds = {}, {name: [] for name in candidates}
    for name, tokenize in candidates.items():  # warm-up: tracing, thread pools
        outputs[name] = tokenize(lines[:256])
    for round_index in range(args.rounds):
        for name, tokenize in candidates.items():
            start = time.perf_counter()
            outputs[name] = tokenize(lines)
            seconds[name].append(time.perf_counter() - start)
        print(f"round {round_index + 1}/{args.rounds} done")
    ours_name = next(iter(candidates))
    ours_ids = outputs[ours_name]
    print(f"\n{len(lines)} lines of third_party/austen/austen.txt, BERT uncased vocabulary, "
          f"{args.rounds} alternated rounds, median seconds")
    print(f"{'tokenizer':<62} {'seconds':>8} {'tokens/s':>11} {'vs ours':>8}  ids equal ours")
    base = statistics.median(seconds[ours_name])
    for name in candidates:
        median = statistics.median(seconds[name])
        tokens = sum(map(len, outputs[name]))
        if name.startswith("sentencepiece"):
            equal = "n/a (other vocabulary)"
        else:
            differing = sum(a != b for a, b in zip(outputs[name], ours_ids))
            equal = "all lines" if differing == 0 else f"{differing} of {len(lines)} lines differ"
        print(f"{name:<62} {median:8.2f} {tokens / median:11,.0f} {base / median:7.2f}x  {equal}")


if __name__ == "__main__":
    main()
