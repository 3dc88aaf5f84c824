"""Tokenization, pretraining-record building and tf.data input pipelines."""
