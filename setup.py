"""Builds the C++ parts with CMake and ships them inside the `research` package.

Two artefacts come out of `CMakeLists.txt`:
  research/ops/libresearch_ops.so    every TensorFlow kernel under ops/ (loaded by tf.load_op_library)
  research/data/_native.<abi>.so     the pybind11 module of the pretraining-record builder
plus research/ops/_build_info.json, which records the TensorFlow version the kernels were built for.

Environment knobs: RESEARCH_CMAKE_ARGS (extra `-D...` options, e.g. `-DRESEARCH_NATIVE_ARCH=ON` or
`-DRESEARCH_ASAN=ON`), RESEARCH_BUILD_JOBS (parallel compile jobs, default: CPU count).
"""
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
OP_LIBRARY = "libresearch_ops.so"
BUILD_INFO = "_build_info.json"


def _cmake_executable():
    try:
        import cmake  # the PyPI package declared in pyproject.toml's build requirements
        return str(Path(cmake.CMAKE_BIN_DIR) / "cmake")
    except ImportError:
        found = shutil.which("cmake")
        if not found:
            sys.exit("error: CMake is required to build the C++ ops (pip install cmake)")
        return found


def _check_tensorflow_importable():
    try:
        import tensorflow  # noqa: F401  (only to fail early with a readable message)
    except ImportError as error:
        sys.exit(
            "error: TensorFlow (2.20 or 2.21) must be importable to build the C++ ops: its headers and "
            f"libtensorflow_framework come from the wheel ({error}). With `pip install --no-build-isolation` "
            "install tensorflow-cpu first; with the default isolated build pip installs it by itself.")


def _install_file(source: Path, destination: Path) -> None:
    """Copies under a temporary name, then renames: a process that has the old library loaded keeps
    its (unlinked) file instead of crashing on one overwritten under it, as an in-place copy would."""
    temporary = destination.with_name(destination.name + ".tmp")
    shutil.copy2(source, temporary)
    os.replace(temporary, destination)


class CMakeBuild(build_ext):
    """Runs CMake once for all C++ targets and copies its products into the package tree."""

    def run(self):
        _check_tensorflow_importable()
        build_dir = Path(self.build_temp).resolve() / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
        native_path = Path(self.get_ext_fullpath("research.data._native")).resolve()
        cmake = _cmake_executable()
        configure = [
            cmake, "-S", str(ROOT), "-B", str(build_dir),
            f"-DPython_EXECUTABLE={sys.executable}",
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DRESEARCH_NATIVE_MODULE_NAME={native_path.name.split('.')[0]}",
            f"-DRESEARCH_NATIVE_SUFFIX={native_path.name[len('_native'):]}",
        ] + shlex.split(os.environ.get("RESEARCH_CMAKE_ARGS", ""))
        jobs = os.environ.get("RESEARCH_BUILD_JOBS", str(os.cpu_count() or 1))
        subprocess.run(configure, check=True)
        subprocess.run([cmake, "--build", str(build_dir), "--parallel", jobs], check=True)

        ops_dir = Path(self.get_ext_fullpath("research.ops._placeholder")).resolve().parent
        ops_dir.mkdir(parents=True, exist_ok=True)
        native_path.parent.mkdir(parents=True, exist_ok=True)
        _install_file(build_dir / OP_LIBRARY, ops_dir / OP_LIBRARY)
        _install_file(build_dir / BUILD_INFO, ops_dir / BUILD_INFO)
        _install_file(build_dir / native_path.name, native_path)

    def get_outputs(self):
        ops_dir = Path(self.get_ext_fullpath("research.ops._placeholder")).parent
        return [self.get_ext_fullpath("research.data._native"),
                str(ops_dir / OP_LIBRARY), str(ops_dir / BUILD_INFO)]


setup(
    ext_modules=[Extension("research.data._native", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
)
