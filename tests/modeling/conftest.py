"""Modeling-test fixtures: the float32 global policy and a fixed seed around every test."""
import keras
import pytest


@pytest.fixture(autouse=True)
def _float32_policy():
    """Every test starts and ends with the float32 global policy and a fixed seed."""
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(1)
    yield
    keras.mixed_precision.set_global_policy("float32")
