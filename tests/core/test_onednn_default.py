"""Importing `research` turns TensorFlow's oneDNN on unless the user chose otherwise.

TensorFlow itself enables oneDNN only on CPUs with AVX-512 VNNI, BF16 or AMX; on others (AMD Zen 3)
the masked-LM head loses its in-place table accumulation and training runs ~1.5x slower. The `unset`
case can fail only on such a CPU (on one with VNNI TensorFlow turns oneDNN on by itself); the `off`
case holds that the user's choice wins everywhere. Each case runs in a fresh interpreter: the variable
is read once, when TensorFlow is first imported.
"""
import os
import subprocess
import sys

import pytest

_PROBE = ("import research, tensorflow\n"
          "from tensorflow.python.util import _pywrap_util_port\n"
          "print(_pywrap_util_port.IsMklEnabled())\n")


def _onednn_enabled(**variables):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env.update(variables, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("variables, expected", [
    ({}, "True"),
    ({"TF_ENABLE_ONEDNN_OPTS": "1"}, "True"),
    ({"TF_ENABLE_ONEDNN_OPTS": "0"}, "False"),
], ids=["unset", "on", "off"])
def test_research_turns_onednn_on_unless_the_user_set_it(variables, expected):
    assert _onednn_enabled(**variables) == expected
