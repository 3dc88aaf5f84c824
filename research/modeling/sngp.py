"""SNGP: Model Garden's `GaussianProcessClassificationHead` (spectral-normalized neural Gaussian process).

Liu et al., "Simple and Principled Uncertainty Estimation with Deterministic Deep Learning via Distance
Awareness" (NeurIPS 2020). The head is a `ClassificationHead` whose inner dense is spectrally normalized
(`SpectralNormDense`) and whose output dense is a random-feature Gaussian process
(`RandomFeatureGaussianProcess`); at inference its logits are mean-field adjusted by the GP's predictive
variance (`mean_field_logits`, when `temperature` is set). Model Garden's arguments and defaults, for the
Gaussian process with custom random features (Model Garden's default; its other random-feature layer is a
Keras 2 layer that Keras 3 does not have).

Shapes: features float [batch, seq_len, hidden] (the [CLS] token is used) or, with inner_dim=0, already
pooled [batch, hidden]; logits float32 [batch, num_classes]; the covariance float32 [batch, batch].
"""
import math

import keras
import tensorflow as tf

from research.modeling import layers
from research.modeling.heads import ClassificationHead

LIKELIHOODS = ("gaussian", "binary_logistic", "poisson")
# Model Garden's keyword arguments of the two parts, with its defaults for this head.
SPEC_NORM_DEFAULTS = {"iteration": 1, "norm_multiplier": 0.99}
GP_DEFAULTS = {"num_inducing": 1024, "normalize_input": True, "gp_cov_momentum": 0.999, "gp_cov_ridge_penalty": 1.0,
               "scale_random_features": False, "l2_regularization": 1e-6, "gp_cov_likelihood": "gaussian",
               "return_gp_cov": True, "return_random_features": False, "use_custom_random_features": True,
               "custom_random_features_initializer": "random_normal", "custom_random_features_activation": None}


def mean_field_logits(logits, covariance_matrix=None, mean_field_factor=1.0):
    """logits / sqrt(1 + factor * variance): the mean-field approximation of the posterior mean's softmax.

    Args:
      logits: float [batch, num_classes].
      covariance_matrix: float [batch, batch] (its diagonal is each example's variance), or None (variance 1).
      mean_field_factor: the factor; None or < 0 returns the logits unchanged.
    """
    if mean_field_factor is None or mean_field_factor < 0:
        return logits
    variances = 1.0 if covariance_matrix is None else tf.linalg.diag_part(covariance_matrix)
    scale = tf.sqrt(1.0 + variances * mean_field_factor)
    if len(logits.shape) > 1 and covariance_matrix is not None:
        scale = tf.expand_dims(scale, axis=-1)
    return logits / scale


@keras.saving.register_keras_serializable(package="research")
class SpectralNormDense(keras.layers.Dense):
    """A Dense layer whose kernel W is used as W * min(1, norm_multiplier / sigma), sigma W's largest singular
    value estimated by power iteration (`iteration` steps per training call, its vector kept between calls)."""

    def __init__(self, units, iteration=1, norm_multiplier=0.99, **kwargs):
        super().__init__(units, **kwargs)
        if not isinstance(iteration, int) or iteration < 1:
            raise ValueError(f"SpectralNormDense iteration must be an int >= 1, got {iteration!r}")
        self.iteration = iteration
        self.norm_multiplier = norm_multiplier

    def build(self, input_shape):
        super().build(input_shape)
        self.u = self.add_weight(shape=(1, self.units), initializer=keras.initializers.RandomNormal(),
                                 trainable=False, name="sn_u", dtype="float32")

    def normalized_kernel(self, training=None):
        """The kernel scaled so that its spectral norm is at most norm_multiplier (float32 [in, units])."""
        w = tf.cast(self.kernel, tf.float32)
        u = tf.convert_to_tensor(self.u)
        for _ in range(self.iteration):
            v = tf.math.l2_normalize(tf.matmul(u, w, transpose_b=True))
            u = tf.math.l2_normalize(tf.matmul(v, w))
        if training:
            self.u.assign(u)
        sigma = tf.reshape(tf.matmul(tf.matmul(v, w), u, transpose_b=True), [])
        return w * tf.minimum(1.0, self.norm_multiplier / sigma)

    def call(self, inputs, training=None):
        kernel = tf.cast(self.normalized_kernel(training), self.compute_dtype)
        outputs = tf.matmul(inputs, kernel)
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs

    def get_config(self):
        return {**super().get_config(), "iteration": self.iteration, "norm_multiplier": self.norm_multiplier}


@keras.saving.register_keras_serializable(package="research")
class RandomFeatureGaussianProcess(keras.layers.Layer):
    """A Gaussian process output layer by random features: [logits, covariance(, features)].

    features phi = activation(x W + b) (W ~ custom_random_features_initializer, b ~ U(0, 2 pi), both fixed;
    activation cos unless given), times sqrt(2 / num_inducing) with scale_random_features; logits =
    phi @ beta (a trainable dense, L2-regularized). The posterior precision P of beta starts at
    ridge * I; each training call updates it with the batch's phi^T phi (a moving average with momentum
    > 0, else summed; under a 'binary_logistic' / 'poisson' likelihood weighted by the Laplace factor) and
    returns the identity as covariance; other calls return ridge * phi P^-1 phi^T [batch, batch].
    Computations are float32.
    """

    def __init__(self, units, num_inducing=1024, normalize_input=False, gp_cov_momentum=0.999,
                 gp_cov_ridge_penalty=1.0, scale_random_features=True, l2_regularization=1e-6,
                 gp_cov_likelihood="gaussian", return_gp_cov=True, return_random_features=False,
                 use_custom_random_features=True, custom_random_features_initializer="random_normal",
                 custom_random_features_activation=None, kernel_initializer="glorot_uniform", **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if not use_custom_random_features:
            raise ValueError("RandomFeatureGaussianProcess use_custom_random_features=False (Keras 2's "
                             "RandomFourierFeatures layer) has no Keras 3 counterpart: use True")
        if gp_cov_likelihood not in LIKELIHOODS:
            raise ValueError(f"gp_cov_likelihood must be one of {LIKELIHOODS}, got {gp_cov_likelihood!r}")
        self.units, self.num_inducing, self.normalize_input = units, num_inducing, normalize_input
        self.gp_cov_momentum, self.gp_cov_ridge_penalty = gp_cov_momentum, gp_cov_ridge_penalty
        self.scale_random_features, self.l2_regularization = scale_random_features, l2_regularization
        self.gp_cov_likelihood, self.return_gp_cov = gp_cov_likelihood, return_gp_cov
        self.return_random_features = return_random_features
        self.custom_random_features_initializer = keras.initializers.get(custom_random_features_initializer)
        self.custom_random_features_activation = custom_random_features_activation
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.input_norm = keras.layers.LayerNormalization(name="gp_input_normalization") if normalize_input else None
        self.random_feature = keras.layers.Dense(
            num_inducing, activation=custom_random_features_activation or tf.math.cos,
            kernel_initializer=self.custom_random_features_initializer,
            bias_initializer=keras.initializers.RandomUniform(0.0, 2.0 * math.pi), trainable=False,
            name="gp_random_feature")
        self.output_dense = keras.layers.Dense(units, use_bias=False, kernel_initializer=self.kernel_initializer,
                                               kernel_regularizer=keras.regularizers.L2(l2_regularization),
                                               name="gp_output_weights")

    def build(self, input_shape):
        width = int(input_shape[-1])
        if self.input_norm is not None:
            self.input_norm.build((None, width))
        self.random_feature.build((None, width))
        self.output_dense.build((None, self.num_inducing))
        self.output_bias = self.add_weight(shape=(self.units,), initializer="zeros", trainable=False,
                                           name="gp_output_bias")
        if self.return_gp_cov:
            self.precision_matrix = self.add_weight(
                shape=(self.num_inducing, self.num_inducing),
                initializer=keras.initializers.Identity(self.gp_cov_ridge_penalty), trainable=False,
                name="gp_precision_matrix")
        self.built = True

    def reset_covariance_matrix(self):
        """Puts the precision back to ridge * I (at the start of an epoch, as in Model Garden)."""
        self.precision_matrix.assign(self.gp_cov_ridge_penalty * tf.eye(self.num_inducing))

    def _update_precision(self, phi, logits):
        if self.gp_cov_likelihood == "binary_logistic":
            phi = tf.sqrt(tf.sigmoid(logits) * (1.0 - tf.sigmoid(logits))) * phi
        elif self.gp_cov_likelihood == "poisson":
            phi = tf.sqrt(tf.exp(logits)) * phi
        batch = tf.matmul(phi, phi, transpose_a=True)
        if self.gp_cov_momentum > 0:
            batch = batch / tf.cast(tf.shape(phi)[0], tf.float32)
            updated = self.gp_cov_momentum * self.precision_matrix + (1.0 - self.gp_cov_momentum) * batch
        else:
            updated = self.precision_matrix + batch
        self.precision_matrix.assign(updated)

    def call(self, inputs, training=None):
        x = tf.cast(inputs, tf.float32)
        if self.input_norm is not None:
            x = self.input_norm(x)
        phi = self.random_feature(x)
        if self.scale_random_features:
            phi = phi * math.sqrt(2.0 / self.num_inducing)
        logits = self.output_dense(phi) + self.output_bias
        outputs = [logits]
        if self.return_gp_cov:
            if training:
                self._update_precision(phi, logits)
                outputs.append(tf.eye(tf.shape(phi)[0]))
            else:
                covariance = tf.linalg.inv(self.precision_matrix)
                outputs.append(tf.matmul(phi, tf.matmul(covariance, phi, transpose_b=True))
                               * self.gp_cov_ridge_penalty)
        if self.return_random_features:
            outputs.append(phi)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        config.update(units=self.units, num_inducing=self.num_inducing, normalize_input=self.normalize_input,
                      gp_cov_momentum=self.gp_cov_momentum, gp_cov_ridge_penalty=self.gp_cov_ridge_penalty,
                      scale_random_features=self.scale_random_features, l2_regularization=self.l2_regularization,
                      gp_cov_likelihood=self.gp_cov_likelihood, return_gp_cov=self.return_gp_cov,
                      return_random_features=self.return_random_features,
                      custom_random_features_initializer=keras.initializers.serialize(
                          self.custom_random_features_initializer),
                      custom_random_features_activation=self.custom_random_features_activation,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


@keras.saving.register_keras_serializable(package="research")
class GaussianProcessClassificationHead(ClassificationHead):
    """Model Garden's SNGP head: a ClassificationHead with a spectrally normalized inner dense and a Gaussian
    process output.

    call(features, training=None, return_covmat=False) -> float32 logits [batch, num_classes]: raw in
    training; otherwise mean-field adjusted by the GP variance when `temperature` is set; with
    return_covmat=True (and the GP), (logits, covariance float32 [batch, batch]).

    Args:
      inner_dim, num_classes, cls_token_idx, activation, dropout_rate, initializer: as ClassificationHead.
      use_spec_norm: spectrally normalize the inner dense (`iteration`, `norm_multiplier` in kwargs).
      use_gp_layer: a RandomFeatureGaussianProcess instead of the output dense (its arguments, see
        GP_DEFAULTS, in kwargs).
      temperature: the mean-field factor at inference; None: no adjustment.
    """

    def __init__(self, inner_dim=None, num_classes=None, cls_token_idx=0, activation="tanh", dropout_rate=0.0,
                 initializer="glorot_uniform", use_spec_norm=True, use_gp_layer=True, temperature=None, **kwargs):
        self.spec_norm_kwargs = {name: kwargs.pop(name, default) for name, default in SPEC_NORM_DEFAULTS.items()}
        self.gp_layer_kwargs = {name: kwargs.pop(name, default) for name, default in GP_DEFAULTS.items()}
        super().__init__(inner_dim=inner_dim, num_classes=num_classes, cls_token_idx=cls_token_idx,
                         activation=activation, dropout_rate=dropout_rate, initializer=initializer, **kwargs)
        self.use_spec_norm, self.use_gp_layer, self.temperature = use_spec_norm, use_gp_layer, temperature
        if use_gp_layer:
            self._tracker.untrack(self.out_proj)  # ClassificationHead's output dense, replaced by the GP
            self.out_proj = RandomFeatureGaussianProcess(
                num_classes, kernel_initializer=layers.clone_initializer(self.initializer), name="logits",
                **self.gp_layer_kwargs)

    def build(self, input_shape):
        width = int(input_shape[-1])
        if self.inner_dim != 0:
            units = width if self.inner_dim is None else self.inner_dim
            dense_kwargs = dict(activation=self.activation, kernel_initializer=layers.clone_initializer(self.initializer),
                                dtype=self.dtype_policy, name="pooler_dense")
            self.dense = (SpectralNormDense(units, **self.spec_norm_kwargs, **dense_kwargs) if self.use_spec_norm
                          else keras.layers.Dense(units, **dense_kwargs))
            self.dense.build((None, width))
            width = units
        self.out_proj.build((None, width))
        self.built = True

    def call(self, features, training=None, return_covmat=False):
        x = features
        if self.dense is not None:
            x = self.dropout(self.dense(features[:, self.cls_token_idx, :], training=training), training=training)
        covariance = None
        if self.use_gp_layer:
            outputs = self.out_proj(x, training=training)
            logits = outputs[0]
            covariance = outputs[1] if self.gp_layer_kwargs["return_gp_cov"] else None
        else:
            logits = tf.cast(self.out_proj(x), tf.float32)
        if not training:
            logits = mean_field_logits(logits, covariance, mean_field_factor=self.temperature)
        if return_covmat and covariance is not None:
            return logits, covariance
        return logits

    def reset_covariance_matrix(self):
        """Resets the Gaussian process's precision (Model Garden calls it at each epoch's start)."""
        if self.use_gp_layer and self.gp_layer_kwargs["return_gp_cov"]:
            self.out_proj.reset_covariance_matrix()

    def get_config(self):
        config = super().get_config()
        gp_kwargs = dict(self.gp_layer_kwargs, custom_random_features_initializer=keras.initializers.serialize(
            keras.initializers.get(self.gp_layer_kwargs["custom_random_features_initializer"])))
        config.update(use_spec_norm=self.use_spec_norm, use_gp_layer=self.use_gp_layer, temperature=self.temperature,
                      **self.spec_norm_kwargs, **gp_kwargs)
        return config
