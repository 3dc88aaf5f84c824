"""Gradient registrations of the native ops, imported exactly once, when the library loads.

Registering a name twice raises KeyError, so this module is the only place that does it.
"""
import tensorflow as tf

tf.no_gradient("Research>MaskTokens")
