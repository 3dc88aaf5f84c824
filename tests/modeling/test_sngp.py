"""Model Garden's SNGP head (GaussianProcessClassificationHead) and its two parts."""
import numpy as np
import pytest
import tensorflow as tf

from research import modeling
from research.modeling import sngp


def _encoder():
    return modeling.BertEncoder(vocab_size=30, hidden_size=16, num_layers=1, num_attention_heads=2, inner_dim=32)


def _inputs(batch=3, seq=5):
    ids = tf.constant(np.arange(batch * seq).reshape(batch, seq) % 30, tf.int32)
    return {"input_word_ids": ids, "input_mask": tf.ones_like(ids), "input_type_ids": tf.zeros_like(ids)}


@pytest.mark.parametrize("inner_dim", [0, 8])
def test_head_in_a_bert_classifier_and_its_config_round_trip(inner_dim):
    head = modeling.GaussianProcessClassificationHead(inner_dim=inner_dim, num_classes=3, num_inducing=32)
    # As in Model Garden: the encoder's pooled output for inner_dim=0, the sequence output for an inner dense.
    model = modeling.BertClassifier(_encoder(), num_classes=3, cls_head=head, use_encoder_pooler=not inner_dim)
    logits = model(_inputs(), training=False)
    assert logits.shape == (3, 3) and logits.dtype == tf.float32
    clone = modeling.BertClassifier.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert isinstance(clone.classifier, modeling.GaussianProcessClassificationHead)
    assert clone.classifier.gp_layer_kwargs["num_inducing"] == 32
    if inner_dim:
        assert isinstance(head.dense, sngp.SpectralNormDense)
    assert all(layer.built for layer in head._flatten_layers())  # no leftover output dense


def test_training_updates_the_precision_and_inference_gives_the_covariance():
    head = modeling.GaussianProcessClassificationHead(inner_dim=0, num_classes=2, num_inducing=16, gp_cov_momentum=-1,
                                                      temperature=2.0)
    features = tf.random.stateless_normal([4, 6], seed=[1, 2])
    head(features, training=False)
    gp = head.out_proj
    np.testing.assert_allclose(gp.precision_matrix.numpy(), np.eye(16))  # ridge * I before training
    train_logits, identity = head(features, training=True, return_covmat=True)
    np.testing.assert_allclose(identity.numpy(), np.eye(4))  # Model Garden returns I while training
    phi = gp.random_feature(gp.input_norm(features))
    np.testing.assert_allclose(gp.precision_matrix.numpy(), np.eye(16) + phi.numpy().T @ phi.numpy(), rtol=1e-4,
                               atol=1e-4)  # momentum < 0: the exact sum
    logits, covariance = head(features, training=False, return_covmat=True)
    expected_cov = phi.numpy() @ np.linalg.inv(gp.precision_matrix.numpy()) @ phi.numpy().T
    np.testing.assert_allclose(covariance.numpy(), expected_cov, rtol=1e-3, atol=1e-4)
    raw = gp(features, training=False)[0]
    np.testing.assert_allclose(train_logits.numpy(), raw.numpy(), rtol=1e-5)  # training: raw logits
    adjusted = raw.numpy() / np.sqrt(1.0 + 2.0 * np.diag(expected_cov))[:, None]
    np.testing.assert_allclose(logits.numpy(), adjusted, rtol=1e-3, atol=1e-5)  # mean-field at inference
    head.reset_covariance_matrix()
    np.testing.assert_allclose(gp.precision_matrix.numpy(), np.eye(16))


def test_spectral_norm_caps_the_kernel_norm_at_the_multiplier():
    dense = sngp.SpectralNormDense(4, iteration=30, norm_multiplier=0.9)
    dense.build((None, 6))
    dense.kernel.assign(10.0 * tf.random.stateless_normal([6, 4], seed=[3, 4]))
    capped = dense.normalized_kernel(training=True).numpy()
    assert np.linalg.norm(capped, 2) == pytest.approx(0.9, rel=1e-3)
    small = 0.01 * tf.random.stateless_normal([6, 4], seed=[5, 6])
    dense.kernel.assign(small)
    np.testing.assert_allclose(dense.normalized_kernel(training=True).numpy(), small.numpy(), rtol=1e-6)
    x = tf.ones([2, 6])
    np.testing.assert_allclose(dense(x).numpy(), x.numpy() @ small.numpy() + dense.bias.numpy(), rtol=1e-5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="use_custom_random_features=False"):
        modeling.GaussianProcessClassificationHead(inner_dim=0, num_classes=2, use_custom_random_features=False)
    with pytest.raises(ValueError, match="gp_cov_likelihood must be one of"):
        sngp.RandomFeatureGaussianProcess(2, gp_cov_likelihood="student_t")
    with pytest.raises(ValueError, match="iteration must be an int >= 1, got 0"):
        sngp.SpectralNormDense(2, iteration=0)
    with pytest.raises(ValueError, match="Unrecognized keyword arguments"):
        modeling.GaussianProcessClassificationHead(inner_dim=0, num_classes=2, num_inducting=8)


def test_mean_field_logits_without_covariance_is_temperature_scaling():
    logits = tf.constant([[2.0, -2.0]])
    np.testing.assert_allclose(sngp.mean_field_logits(logits, None, 3.0).numpy(), [[1.0, -1.0]])
    assert sngp.mean_field_logits(logits, None, None) is logits

