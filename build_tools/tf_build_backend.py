"""PEP 517 backend: setuptools, plus the TensorFlow wheel that the C++ ops must be compiled against.

pip builds in an isolated environment where the TensorFlow the user installed is invisible, yet the
custom-op library only loads under the exact TensorFlow it was compiled for. So the build asks for
the TensorFlow distribution and version that the target interpreter already has, and falls back to
the newest supported release on a fresh environment (which is also what `pip install ".[cpu]"`
installs next to it). `RESEARCH_TF_REQUIREMENT` overrides the choice.
"""
import os
import subprocess
import sys

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (the PEP 517 hooks we do not override)

SUPPORTED_TENSORFLOW = ">=2.20,<2.22"
SUPPORTED_MINOR_VERSIONS = ((2, 20), (2, 21))
_DISTRIBUTIONS = ("tensorflow-cpu", "tensorflow", "tensorflow-intel")

_PROBE = """
import importlib.metadata as metadata
for name in {names!r}:
    try:
        print(name + "==" + metadata.version(name))
        break
    except metadata.PackageNotFoundError:
        pass
"""


def _installed_tensorflow():
    """Returns 'dist==version' for the TensorFlow of the target interpreter, or None.

    `-I` ignores PYTHONPATH and user site, which is how pip hides the target environment from the
    build environment; the interpreter itself is the target's.
    """
    probe = _PROBE.format(names=_DISTRIBUTIONS)
    try:
        result = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True,
                                timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = result.stdout.strip()
    if not line:
        return None
    major_minor = tuple(int(part) for part in line.split("==")[1].split(".")[:2])
    if not SUPPORTED_MINOR_VERSIONS[0] <= major_minor <= SUPPORTED_MINOR_VERSIONS[1]:
        return None  # pip will replace it with a supported release; build against that one
    return line


def _tensorflow_requirement():
    override = os.environ.get("RESEARCH_TF_REQUIREMENT")
    if override:
        return override
    return _installed_tensorflow() or "tensorflow-cpu" + SUPPORTED_TENSORFLOW


def get_requires_for_build_wheel(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings) + [_tensorflow_requirement()]


def get_requires_for_build_editable(config_settings=None):
    return _setuptools.get_requires_for_build_editable(config_settings) + [_tensorflow_requirement()]
