"""BertEncoder, BertPretrainer and BertClassifier take Model Garden's keywords and give its outputs
(issue items 6-8 and 11), on tiny models."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from research import modeling
from research.data import features

VOCAB, HIDDEN, SEQ = 40, 16, 7


def encoder(**kwargs):
    args = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_layers=2, num_attention_heads=2, inner_dim=24,
                max_sequence_length=16, output_dropout=0.0, attention_dropout=0.0)
    return modeling.BertEncoder(**{**args, **kwargs})


def inputs(batch=2, seed=0):
    rng = np.random.RandomState(seed)
    return {features.INPUT_WORD_IDS: tf.constant(rng.randint(1, VOCAB, size=(batch, SEQ)), tf.int32),
            features.INPUT_MASK: tf.constant(np.ones((batch, SEQ)), tf.int32),
            features.INPUT_TYPE_IDS: tf.constant(rng.randint(0, 3, size=(batch, SEQ)), tf.int32)}


@pytest.fixture(autouse=True)
def float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_model_garden_keywords_and_our_aliases_build_the_same_encoder():
    theirs = encoder(inner_dim=24, inner_activation="relu", output_dropout=0.0, attention_dropout=0.0)
    ours = modeling.BertEncoder(vocab_size=VOCAB, hidden_size=HIDDEN, num_layers=2, num_attention_heads=2,
                                intermediate_size=24, activation="relu", hidden_dropout_rate=0.0,
                                attention_dropout_rate=0.0, max_sequence_length=16)
    assert [v.shape for v in theirs.weights] == [v.shape for v in ours.weights]
    assert modeling.BertEncoder(vocab_size=VOCAB).type_vocab_size == 16  # Model Garden's default
    config = theirs.get_config()
    assert config["inner_dim"] == 24 and config["output_dropout"] == 0.0
    rebuilt = modeling.BertEncoder.from_config(config, custom_objects={})
    assert [v.shape for v in rebuilt.weights] == [v.shape for v in theirs.weights]


def test_list_outputs_and_return_options():
    net = encoder(dict_outputs=False, return_all_encoder_outputs=True, return_attention_scores=True)
    all_outputs, pooled, scores = net(inputs())
    assert len(all_outputs) == 2 and all_outputs[-1].shape == (2, SEQ, HIDDEN) and pooled.shape == (2, HIDDEN)
    assert len(scores) == 2 and scores[0].shape == (2, 2, SEQ, SEQ)
    np.testing.assert_allclose(tf.reduce_sum(scores[0], -1).numpy(), 1.0, rtol=1e-5)  # probabilities
    sequence, pooled = encoder(dict_outputs=False)(inputs())
    assert sequence.shape == (2, SEQ, HIDDEN)
    outputs = encoder(return_word_embeddings=True)(inputs())
    assert outputs["word_embeddings"].shape == (2, SEQ, HIDDEN)


def test_dict_and_list_forms_agree():
    dict_net, list_net = encoder(), encoder(dict_outputs=False)
    list_net.set_weights(dict_net.get_weights())
    batch = inputs()
    sequence, pooled = list_net(batch)
    np.testing.assert_array_equal(sequence.numpy(), dict_net(batch)["sequence_output"].numpy())
    np.testing.assert_array_equal(pooled.numpy(), dict_net(batch)["pooled_output"].numpy())


def test_output_range_is_the_full_output_sliced():
    full, ranged = encoder(), encoder(output_range=3)
    ranged.set_weights(full.get_weights())
    batch = inputs()
    expected = full(batch)
    got = ranged(batch)
    assert got["sequence_output"].shape == (2, 3, HIDDEN)
    np.testing.assert_allclose(got["sequence_output"].numpy(), expected["sequence_output"][:, :3].numpy(), atol=1e-5)
    np.testing.assert_allclose(got["pooled_output"].numpy(), expected["pooled_output"].numpy(), atol=1e-5)


def test_embedding_width_factorizes_the_embeddings():
    net = encoder(embedding_width=8)
    assert net.get_embedding_table().shape == (VOCAB, 8) and hasattr(net, "_embedding_projection")
    assert net(inputs())["sequence_output"].shape == (2, SEQ, HIDDEN)
    pretrainer = modeling.BertPretrainer(net)  # the tied head reads hidden 16, projects onto the width-8 table
    batch = {**inputs(), features.MASKED_LM_POSITIONS: tf.constant([[1, 2], [3, 4]])}
    assert pretrainer(batch)["mlm_logits"].shape == (2, 2, VOCAB)


def test_embedding_layer_and_input_word_embeddings():
    shared = keras.layers.Embedding(VOCAB, HIDDEN, name="shared")
    net = encoder(embedding_layer=shared)
    assert net.get_embedding_layer() is shared and net.get_embedding_table() is shared.embeddings
    batch = inputs()
    from_ids = net(batch)["sequence_output"]
    embedded = net.get_embedding_layer()(batch[features.INPUT_WORD_IDS])
    from_embeddings = net({**{k: v for k, v in batch.items() if k != features.INPUT_WORD_IDS},
                           "input_word_embeddings": embedded})["sequence_output"]
    np.testing.assert_allclose(from_embeddings.numpy(), from_ids.numpy(), atol=1e-6)


def test_norm_first_is_a_pre_layer_norm_block():
    post, pre = encoder(), encoder(norm_first=True)
    pre.set_weights(post.get_weights())
    assert not np.allclose(pre(inputs())["sequence_output"].numpy(), post(inputs())["sequence_output"].numpy())
    block = pre.transformer_layers[0]
    x = tf.random.stateless_normal([2, SEQ, HIDDEN], seed=[1, 2])
    mask = inputs()[features.INPUT_MASK]
    attended = x + block.attention(block.attention_norm(x), mask)
    expected = attended + block.ffn_output(block.intermediate(block.output_norm(attended)))
    np.testing.assert_allclose(block(x, mask).numpy(), expected.numpy(), atol=1e-5)


def test_heads_that_do_not_divide_the_hidden_size():
    net = encoder(num_attention_heads=5, return_attention_scores=True)  # 16 // 5 = 3 per head, as Model Garden
    outputs = net(inputs())
    assert outputs["sequence_output"].shape == (2, SEQ, HIDDEN) and outputs["attention_scores"][0].shape[1] == 5


def test_attributes_inputs_and_build_twice():
    net = encoder()
    assert net.pooler_layer is net.pooler and isinstance(net.pooler_layer, keras.layers.Dense)
    assert len(net.transformer_layers) == 2
    count = len(net.weights)
    net.build(inputs())
    assert len(net.weights) == count
    symbolic = net(net.inputs)
    assert symbolic["sequence_output"].shape == (None, None, HIDDEN)
    assert modeling.BertEncoderV2 is modeling.BertEncoder


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_layer_outputs_are_float32_under_a_mixed_policy(policy):
    keras.mixed_precision.set_global_policy(policy)
    outputs = encoder()(inputs())
    assert outputs["sequence_output"].dtype == tf.float32
    assert all(output.dtype == tf.float32 for output in outputs["encoder_outputs"])
    assert outputs["pooled_output"].dtype == keras.mixed_precision.global_policy().compute_dtype


def test_pretrainer_model_garden_keywords_and_logits_outputs():
    net = encoder()
    head = modeling.ClassificationHead(inner_dim=8, num_classes=2, name="next_sentence")
    model = modeling.BertPretrainer(encoder_network=net, mlm_activation="relu",
                                    mlm_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                                    classification_heads=[head])
    assert model.masked_lm.activation is keras.activations.relu
    batch = {**inputs(), features.MASKED_LM_POSITIONS: tf.constant([[1, 2], [3, 4]])}
    outputs = model(batch)
    assert set(outputs) == {"sequence_output", "pooled_output", "encoder_outputs", "mlm_logits", "next_sentence"}
    assert outputs["mlm_logits"].shape == (2, 2, VOCAB) and outputs["next_sentence"].shape == (2, 2)
    assert "mlm_logits" not in model(inputs())  # no positions, no logits (Model Garden's)
    # With the labels, the fused training form: the logits' cross-entropy, never the logits.
    ids = tf.constant([[5, 6], [7, 8]])
    fused = model({**batch, features.MASKED_LM_IDS: ids})
    expected = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=outputs["mlm_logits"])
    np.testing.assert_allclose(fused["mlm_per_position_loss"].numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    predictions = modeling.BertPretrainer(net, mlm_output="predictions")(batch)["mlm_logits"]
    np.testing.assert_allclose(tf.reduce_logsumexp(predictions, -1).numpy(), 0.0, atol=1e-5)


def test_pretrainer_customized_masked_lm_and_config_round_trip():
    net = encoder()
    custom = modeling.MaskedLM(embedding_table=net.get_embedding_table(), activation="tanh")
    model = modeling.BertPretrainerV2(encoder_network=net, customized_masked_lm=custom)
    assert model.masked_lm is custom
    rebuilt = modeling.BertPretrainer.from_config(model.get_config(), custom_objects={})
    assert rebuilt.get_config()["customized_masked_lm"]["config"]["activation"] == "tanh"
    with pytest.raises(ValueError, match="encoder_network"):
        modeling.BertPretrainer()


def test_pretraining_trains_every_variable_it_reports():
    """The encoder's pooler feeds no pretraining loss: it is not reported as trainable, so no optimizer
    builds slots for it or warns that it has no gradient (issue 18 item 11)."""
    net = encoder()
    model = modeling.BertPretrainer(net, masked_positions_only=True)
    batch = {**inputs(), features.MASKED_LM_POSITIONS: tf.constant([[1, 2], [3, 4]]),
             features.MASKED_LM_IDS: tf.constant([[5, 6], [7, 8]])}
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(batch, training=True)["mlm_per_position_loss"])
    gradients = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in gradients)
    pooler_ids = {id(v) for v in net.pooler_layer.weights}
    assert not pooler_ids & {id(v) for v in model.trainable_variables}
    assert pooler_ids <= {id(v) for v in model.weights}  # still part of the model and its checkpoints


def test_classifier_accepts_a_list_output_encoder():
    model = modeling.BertClassifier(encoder(dict_outputs=False), num_classes=3)
    batch = inputs()
    logits = model([batch[features.INPUT_WORD_IDS], batch[features.INPUT_MASK], batch[features.INPUT_TYPE_IDS]])
    assert logits.shape == (2, 3)
    rebuilt = modeling.BertClassifier.from_config(model.get_config(), custom_objects={})
    assert rebuilt.get_config()["num_classes"] == 3


def test_multi_cls_heads_share_one_inner_dense():
    heads = modeling.MultiClsHeads(inner_dim=5, cls_list=[("foo", 2), ("bar", 3)])
    model = modeling.BertPretrainer(encoder_network=encoder(), classification_heads=[heads])
    outputs = model({**inputs(), features.MASKED_LM_POSITIONS: tf.constant([[1, 2], [3, 4]])})
    assert outputs["foo"].shape == (2, 2) and outputs["bar"].shape == (2, 3)
    cls = outputs["sequence_output"][:, 0, :]
    shared = heads.dense(cls)
    np.testing.assert_allclose(outputs["bar"].numpy(), heads.out_projs[1](shared).numpy(), atol=1e-6)
    assert f"{heads.name}.pooler_dense" in model.checkpoint_items
    with pytest.raises(ValueError, match="unique"):
        modeling.MultiClsHeads(inner_dim=5, cls_list=[("foo", 2), ("foo", 3)])


def test_classifier_without_the_encoder_pooler_trains_every_variable_it_reports():
    model = modeling.BertClassifier(encoder(), num_classes=2, use_encoder_pooler=False)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(inputs(), training=True))
    assert all(g is not None for g in tape.gradient(loss, model.trainable_variables))
    with_pooler = modeling.BertClassifier(encoder(), num_classes=2)
    assert {id(v) for v in with_pooler.network.pooler_layer.weights} <= {id(v) for v in with_pooler.trainable_variables}
