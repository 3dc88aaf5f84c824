"""Generates the reference fixtures of tests/interop and tests/data/test_wordpiece.py.

Small random-weight BERT checkpoints in the three formats the importers read, with the outputs that
Hugging Face `transformers` computes on them, and the WordPiece ids that `transformers`' pure-Python
BertTokenizer gives the shipped texts. CI compares against the committed results without PyTorch.

It runs in three environments, one stage each, in this order (WORK is a scratch directory):

  python3 -m venv /tmp/hf && /tmp/hf/bin/pip install torch==2.13.0 transformers safetensors
  /tmp/hf/bin/python tools/make_interop_fixtures.py --stage=hf --work_dir=WORK --bert_vocab=VOCAB
      Hugging Face checkpoints (BertForMaskedLM uncased; a MiniLM-like BertModel, cased, with
      'gelu_new' and another layer-norm epsilon), the expected encoder/pooler/MLM outputs of each,
      the weights of the model that the next two stages write in TF formats, and the tokenizer
      fixture of VOCAB (BERT's uncased vocab.txt, kept gzipped in third_party/bert_vocab/) over third_party/.
  python tools/make_interop_fixtures.py --stage=tf1 --work_dir=WORK          (any TensorFlow 2)
      google-research/bert's TF1 checkpoint (bert_config.json, bert_model.ckpt.*, vocab.txt).
  python tools/make_interop_fixtures.py --stage=model_garden --work_dir=WORK  (tf-models-official)
      Model Garden's BertEncoderV2 + MaskedLM, saved as tf.train.Checkpoint(encoder=, masked_lm=), and its
      older functional BertEncoder alone, checked against the expected outputs in that environment.

Outputs go to tests/fixtures/interop/ (override with --output_dir).
"""
import argparse
import hashlib
import json
import os
import shutil

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 1234
# A tiny vocabulary whose special tokens are not at 0..4 nor at BERT's 0/100..103.
TINY_VOCAB = ["[PAD]", "the", "[UNK]", "a", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(45)] + \
    [f"##s{i}" for i in range(12)]
TINY_SIZES = dict(vocab_size=len(TINY_VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=24, max_position_embeddings=32, type_vocab_size=2)
# The models: (directory, HF class, activation, layer-norm epsilon, lower-case, prefix-less BertModel).
HF_MODELS = {
    "hf_bert_uncased": dict(masked_lm=True, hidden_act="gelu", layer_norm_eps=1e-12, do_lower_case=True),
    "hf_minilm_cased": dict(masked_lm=False, hidden_act="gelu_new", layer_norm_eps=1e-7, do_lower_case=False),
}
TF_SOURCE = dict(masked_lm=True, hidden_act="gelu_new", layer_norm_eps=1e-12, do_lower_case=True)
TOKENIZER_CHUNK = 64  # lines per hash in the tokenizer fixture
FULL_LINES = 40  # the first lines of each text, stored id by id


def inputs():
    """Two rows of 10 tokens, the second padded after 6; type ids 1 on the second half."""
    rng = np.random.default_rng(SEED)
    ids = rng.integers(7, len(TINY_VOCAB), size=(2, 10)).astype(np.int64)
    ids[:, 0] = TINY_VOCAB.index("[CLS]")
    ids[0, 9] = ids[1, 5] = TINY_VOCAB.index("[SEP]")
    ids[0, 3] = TINY_VOCAB.index("[MASK]")
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    ids[1, 6:] = 0
    types = np.zeros_like(ids)
    types[0, 5:] = 1
    types[1, 3:6] = 1
    return {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types}


def write_vocab(directory, tokens):
    with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(token + "\n" for token in tokens))


# ----------------------------------------------------------------------------------------------- hf
def hf_model(options, seed):
    import torch
    import transformers
    torch.manual_seed(seed)
    config = transformers.BertConfig(hidden_act=options["hidden_act"], layer_norm_eps=options["layer_norm_eps"],
                                     pad_token_id=TINY_VOCAB.index("[PAD]"), **TINY_SIZES)
    # BertForPreTraining: encoder, pooler and MLM head, the tensors of a published BERT checkpoint.
    model_class = transformers.BertForPreTraining if options["masked_lm"] else transformers.BertModel
    model = model_class(config).eval()
    with torch.no_grad():  # random, not the init's zeros/ones: every tensor must reach the outputs
        for name, parameter in model.named_parameters():
            parameter.copy_(torch.randn_like(parameter) * (0.5 if "LayerNorm" in name else 0.2)
                            + (1.0 if name.endswith("LayerNorm.weight") else 0.0))
    return model


def hf_expected(model, options, directory):
    """Expected outputs of BertModel (and of BertForMaskedLM loaded from `directory`) on `inputs()`."""
    import torch
    import transformers
    feed = {k: torch.tensor(v) for k, v in inputs().items()}
    args = dict(input_ids=feed["input_word_ids"], attention_mask=feed["input_mask"],
                token_type_ids=feed["input_type_ids"])
    with torch.no_grad():
        bert = model.bert if options["masked_lm"] else model
        out = bert(**args)
        expected = {"sequence_output": out.last_hidden_state.numpy(),
                    "pooled_output": out.pooler_output.numpy()}
        if options["masked_lm"]:
            masked_lm = transformers.BertForMaskedLM.from_pretrained(directory).eval()
            expected["mlm_logits"] = masked_lm(**args).logits.numpy()
    return {**inputs(), **{k: v.astype(np.float32) for k, v in expected.items()}}


def stage_hf(args):
    import transformers
    out = args.output_dir
    for name, options in HF_MODELS.items():
        directory = os.path.join(out, name)
        os.makedirs(directory, exist_ok=True)
        model = hf_model(options, SEED + len(name))
        model.save_pretrained(directory, safe_serialization=True)
        write_vocab(directory, TINY_VOCAB)
        with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
            json.dump({"do_lower_case": options["do_lower_case"], "tokenizer_class": "BertTokenizer"}, f)
        np.savez_compressed(os.path.join(directory, "expected_outputs.npz"), **hf_expected(model, options, directory))
    # The weights that the tf1 and model_garden stages write in their formats, and their expected outputs.
    model = hf_model(TF_SOURCE, SEED + 7)
    os.makedirs(args.work_dir, exist_ok=True)
    model.save_pretrained(os.path.join(args.work_dir, "tf_source"), safe_serialization=True)
    np.savez(os.path.join(args.work_dir, "tf_source", "weights.npz"),
             **{name: value.numpy() for name, value in model.state_dict().items()})
    expected = hf_expected(model, TF_SOURCE, os.path.join(args.work_dir, "tf_source"))
    for name in ("tf1_bert", "model_garden_bert"):
        os.makedirs(os.path.join(out, name), exist_ok=True)
        np.savez_compressed(os.path.join(out, name, "expected_outputs.npz"), **expected)
    stage_tokenizer(args, transformers)


def stage_tokenizer(args, transformers):
    """Ids of transformers' pure-Python BertTokenizer over the shipped texts, uncased and cased."""
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy
    texts = shipped_texts()
    fixture = {"transformers_version": transformers.__version__, "chunk_lines": TOKENIZER_CHUNK,
               "full_lines": FULL_LINES, "vocab_sha256": sha256_file(args.bert_vocab), "texts": {}}
    for lower_case in (True, False):
        tokenizer = BertTokenizerLegacy(args.bert_vocab, do_lower_case=lower_case)
        for text_name, lines in texts.items():
            ids = [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(line)) for line in lines]
            key = f"{text_name}/{'uncased' if lower_case else 'cased'}"
            fixture["texts"][key] = {"lines": len(lines), "tokens": sum(map(len, ids)),
                                     "chunk_sha256": chunk_hashes(ids), "first_lines": ids[:FULL_LINES]}
            print(f"{key}: {len(lines)} lines, {sum(map(len, ids))} tokens")
    path = os.path.join(args.output_dir, "wordpiece_ids.json")
    with open(path, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
    import gzip
    with open(args.bert_vocab, "rb") as src, gzip.GzipFile(
            os.path.join(REPO, "third_party", "bert_vocab", "uncased_vocab.txt.gz"), "wb", mtime=0) as dst:
        shutil.copyfileobj(src, dst)


def shipped_texts():
    """{'austen': its lines, 'movie_reviews': the text column}: what the tokenizer fixture covers."""
    with open(os.path.join(REPO, "third_party/austen/austen.txt"), encoding="utf-8") as f:
        austen = [line.rstrip("\n") for line in f]
    with open(os.path.join(REPO, "third_party/movie_reviews/vader_movie_binary.tsv"), encoding="utf-8") as f:
        reviews = [line.rstrip("\n").split("\t", 1)[1] for line in f if line.strip()]
    return {"austen": austen, "movie_reviews": reviews}


def chunk_hashes(ids_per_line, chunk=TOKENIZER_CHUNK):
    """sha256 (hex, first 16 chars) of each run of `chunk` lines' ids, lines separated by -1, int32."""
    hashes = []
    for start in range(0, len(ids_per_line), chunk):
        flat = []
        for ids in ids_per_line[start:start + chunk]:
            flat.extend(ids)
            flat.append(-1)
        hashes.append(hashlib.sha256(np.asarray(flat, np.int32).tobytes()).hexdigest()[:16])
    return hashes


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# -------------------------------------------------------------------------------------- tf formats
def tf_source_weights(work_dir):
    """The tf_source model's HF tensors as float32 numpy, keyed without the 'bert.' prefix."""
    tensors = dict(np.load(os.path.join(work_dir, "tf_source", "weights.npz")))
    return {name[len("bert."):] if name.startswith("bert.") else name: value for name, value in tensors.items()}


def bert_config_json():
    return {"vocab_size": TINY_SIZES["vocab_size"], "hidden_size": TINY_SIZES["hidden_size"],
            "num_hidden_layers": TINY_SIZES["num_hidden_layers"],
            "num_attention_heads": TINY_SIZES["num_attention_heads"],
            "intermediate_size": TINY_SIZES["intermediate_size"], "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": TINY_SIZES["max_position_embeddings"],
            "type_vocab_size": TINY_SIZES["type_vocab_size"], "initializer_range": 0.02}


def stage_tf1(args):
    """google-research/bert's variable names and [in, out] kernels, saved by a TF1 Saver."""
    import tensorflow as tf
    w = tf_source_weights(args.work_dir)
    t = lambda name: w[name].T  # noqa: E731  torch Linear [out, in] -> TF kernel [in, out]
    variables = {
        "bert/embeddings/word_embeddings": w["embeddings.word_embeddings.weight"],
        "bert/embeddings/token_type_embeddings": w["embeddings.token_type_embeddings.weight"],
        "bert/embeddings/position_embeddings": w["embeddings.position_embeddings.weight"],
        "bert/embeddings/LayerNorm/gamma": w["embeddings.LayerNorm.weight"],
        "bert/embeddings/LayerNorm/beta": w["embeddings.LayerNorm.bias"],
        "bert/pooler/dense/kernel": t("pooler.dense.weight"),
        "bert/pooler/dense/bias": w["pooler.dense.bias"],
        "cls/predictions/transform/dense/kernel": t("cls.predictions.transform.dense.weight"),
        "cls/predictions/transform/dense/bias": w["cls.predictions.transform.dense.bias"],
        "cls/predictions/transform/LayerNorm/gamma": w["cls.predictions.transform.LayerNorm.weight"],
        "cls/predictions/transform/LayerNorm/beta": w["cls.predictions.transform.LayerNorm.bias"],
        "cls/predictions/output_bias": w["cls.predictions.bias"],
        "cls/seq_relationship/output_weights": np.zeros((2, TINY_SIZES["hidden_size"]), np.float32),
        "cls/seq_relationship/output_bias": np.zeros((2,), np.float32),
    }
    for i in range(TINY_SIZES["num_hidden_layers"]):
        hf, tf1 = f"encoder.layer.{i}.", f"bert/encoder/layer_{i}/"
        for hf_name, tf1_name in [("attention.self.query", "attention/self/query"),
                                  ("attention.self.key", "attention/self/key"),
                                  ("attention.self.value", "attention/self/value"),
                                  ("attention.output.dense", "attention/output/dense"),
                                  ("intermediate.dense", "intermediate/dense"),
                                  ("output.dense", "output/dense")]:
            variables[tf1 + tf1_name + "/kernel"] = t(hf + hf_name + ".weight")
            variables[tf1 + tf1_name + "/bias"] = w[hf + hf_name + ".bias"]
        for hf_name, tf1_name in [("attention.output.LayerNorm", "attention/output/LayerNorm"),
                                  ("output.LayerNorm", "output/LayerNorm")]:
            variables[tf1 + tf1_name + "/gamma"] = w[hf + hf_name + ".weight"]
            variables[tf1 + tf1_name + "/beta"] = w[hf + hf_name + ".bias"]
    directory = os.path.join(args.output_dir, "tf1_bert")
    os.makedirs(directory, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        tf_vars = [tf.compat.v1.get_variable(name, initializer=tf.constant(value.astype(np.float32)))
                   for name, value in sorted(variables.items())]
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver(tf_vars).save(session, os.path.join(directory, "bert_model.ckpt"),
                                                   write_meta_graph=False, write_state=False)
    with open(os.path.join(directory, "bert_config.json"), "w") as f:
        json.dump(bert_config_json(), f, indent=2)
    write_vocab(directory, TINY_VOCAB)


def _model_garden_encoder(functional):
    """Model Garden's BertEncoderV2 (functional=False) or the older functional BertEncoder, with the
    tf_source weights and GELU's tanh approximation; returns (encoder, masked_lm, feed, positions)."""
    import tensorflow as tf
    from official.nlp.modeling import layers, networks
    s = TINY_SIZES
    gelu_tanh = lambda x: tf.keras.activations.gelu(x, approximate=True)  # noqa: E731
    common = dict(vocab_size=s["vocab_size"], hidden_size=s["hidden_size"], num_layers=s["num_hidden_layers"],
                  num_attention_heads=s["num_attention_heads"], max_sequence_length=s["max_position_embeddings"],
                  type_vocab_size=s["type_vocab_size"])
    if functional:
        encoder = networks.BertEncoder(intermediate_size=s["intermediate_size"], activation=gelu_tanh, dict_outputs=True,
                                       **common)
    else:
        encoder = networks.BertEncoderV2(inner_dim=s["intermediate_size"], inner_activation=gelu_tanh, **common)
    feed = {k: tf.constant(v, tf.int32) for k, v in inputs().items()}
    encoder(feed)
    mlm = layers.MaskedLM(embedding_table=encoder.get_embedding_table(), activation=gelu_tanh)
    positions = tf.tile(tf.range(10)[None], [2, 1])
    mlm(encoder(feed)["sequence_output"], positions)
    return encoder, mlm, feed, positions


def _assign_model_garden(encoder, mlm, w):
    """Copies the tf_source weights `w` (HF names) into Model Garden's layers (both encoder classes)."""
    s = TINY_SIZES
    heads, head_size = s["num_attention_heads"], s["hidden_size"] // s["num_attention_heads"]
    t = lambda name: w[name].T  # noqa: E731
    encoder._embedding_layer.embeddings.assign(w["embeddings.word_embeddings.weight"])
    encoder._position_embedding_layer._position_embeddings.assign(w["embeddings.position_embeddings.weight"])
    encoder._type_embedding_layer.embeddings.assign(w["embeddings.token_type_embeddings.weight"])
    encoder._embedding_norm_layer.gamma.assign(w["embeddings.LayerNorm.weight"])
    encoder._embedding_norm_layer.beta.assign(w["embeddings.LayerNorm.bias"])
    for i, block in enumerate(encoder._transformer_layers):
        hf = f"encoder.layer.{i}."
        attention = block._attention_layer
        for dense, part in [(attention._query_dense, "query"), (attention._key_dense, "key"),
                            (attention._value_dense, "value")]:
            dense.kernel.assign(t(hf + f"attention.self.{part}.weight").reshape(-1, heads, head_size))
            dense.bias.assign(w[hf + f"attention.self.{part}.bias"].reshape(heads, head_size))
        attention._output_dense.kernel.assign(t(hf + "attention.output.dense.weight").reshape(heads, head_size, -1))
        attention._output_dense.bias.assign(w[hf + "attention.output.dense.bias"])
        block._attention_layer_norm.gamma.assign(w[hf + "attention.output.LayerNorm.weight"])
        block._attention_layer_norm.beta.assign(w[hf + "attention.output.LayerNorm.bias"])
        block._intermediate_dense.kernel.assign(t(hf + "intermediate.dense.weight"))
        block._intermediate_dense.bias.assign(w[hf + "intermediate.dense.bias"])
        block._output_dense.kernel.assign(t(hf + "output.dense.weight"))
        block._output_dense.bias.assign(w[hf + "output.dense.bias"])
        block._output_layer_norm.gamma.assign(w[hf + "output.LayerNorm.weight"])
        block._output_layer_norm.beta.assign(w[hf + "output.LayerNorm.bias"])
    encoder._pooler_layer.kernel.assign(t("pooler.dense.weight"))
    encoder._pooler_layer.bias.assign(w["pooler.dense.bias"])
    mlm.dense.kernel.assign(t("cls.predictions.transform.dense.weight"))
    mlm.dense.bias.assign(w["cls.predictions.transform.dense.bias"])
    mlm.layer_norm.gamma.assign(w["cls.predictions.transform.LayerNorm.weight"])
    mlm.layer_norm.beta.assign(w["cls.predictions.transform.LayerNorm.bias"])
    mlm.bias.assign(w["cls.predictions.bias"])


def stage_model_garden(args):
    """Model Garden encoders holding the tf_source weights, checked against the expected outputs:
    model_garden_bert: BertEncoderV2 + MaskedLM as tf.train.Checkpoint(encoder=, masked_lm=), bert_config.json;
    model_garden_bert_v1: the functional BertEncoder alone, without bert_config.json (sizes from the shapes)."""
    import tensorflow as tf
    w = tf_source_weights(args.work_dir)
    expected = np.load(os.path.join(args.output_dir, "model_garden_bert", "expected_outputs.npz"))
    for name, functional in (("model_garden_bert", False), ("model_garden_bert_v1", True)):
        encoder, mlm, feed, positions = _model_garden_encoder(functional)
        _assign_model_garden(encoder, mlm, w)
        outputs = encoder(feed)
        logits = mlm(outputs["sequence_output"], positions)
        for output, value in [("sequence_output", outputs["sequence_output"]),
                              ("pooled_output", outputs["pooled_output"]), ("mlm_logits", logits)]:
            difference = np.abs(np.asarray(value) - expected[output])
            mask = np.asarray(inputs()["input_mask"], bool) if output != "pooled_output" else np.ones(2, bool)
            print(f"{name} vs transformers, {output}: max |difference| {difference[mask].max():.2e}")
            assert difference[mask].max() < 1e-5, output
        directory = os.path.join(args.output_dir, name)
        os.makedirs(directory, exist_ok=True)
        write_vocab(directory, TINY_VOCAB)
        if functional:
            tf.train.Checkpoint(encoder=encoder).write(os.path.join(directory, "bert_model.ckpt"))
            np.savez_compressed(os.path.join(directory, "expected_outputs.npz"),
                                **{k: v for k, v in expected.items() if k != "mlm_logits"})
        else:
            tf.train.Checkpoint(encoder=encoder, masked_lm=mlm).write(os.path.join(directory, "bert_model.ckpt"))
            with open(os.path.join(directory, "bert_config.json"), "w") as f:
                json.dump(bert_config_json(), f, indent=2)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, choices=["hf", "tf1", "model_garden"])
    parser.add_argument("--work_dir", required=True, help="scratch directory shared by the stages")
    parser.add_argument("--output_dir", default=os.path.join(REPO, "tests", "fixtures", "interop"))
    parser.add_argument("--bert_vocab", help="BERT's uncased vocab.txt (stage hf): the tokenizer fixture's vocabulary")
    args = parser.parse_args()
    os.makedirs(args.output_dir, exist_ok=True)
    if args.stage == "hf" and not args.bert_vocab:
        parser.error("--stage=hf needs --bert_vocab")
    {"hf": stage_hf, "tf1": stage_tf1, "model_garden": stage_model_garden}[args.stage](args)


if __name__ == "__main__":
    main()
