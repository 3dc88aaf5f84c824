"""Builds the C++ parts with CMake and ships them inside the `research` package.

Two artefacts come out of `CMakeLists.txt`:
  research/ops/libresearch_ops.so    every TensorFlow kernel under ops/ (loaded by tf.load_op_library)
  research/data/_native.<abi>.so     the pybind11 module of the pretraining-record builder
plus research/ops/_build_info.json, which records the TensorFlow version the kernels were built for.

Built products are cached under build/ops-cache/<key>/, the key a hash of every C++ source, the CMake
file, the TensorFlow version and flags, the Python extension suffix and RESEARCH_CMAKE_ARGS: a second
install of the same sources against the same TensorFlow (the README's test command after its demo
command, say) copies them instead of compiling again.

The wheel also carries the gin configurations (gin/) and the shipped corpora with their licenses
(third_party/) under research/_resources/, so that an installed package runs the experiments from any
directory (research/resources.py finds them there, or in the source tree of an editable install).

Environment knobs: RESEARCH_CMAKE_ARGS (extra `-D...` options, e.g. `-DRESEARCH_NATIVE_ARCH=ON` or
`-DRESEARCH_ASAN=ON`), RESEARCH_BUILD_JOBS (parallel compile jobs, default: CPU count),
RESEARCH_BUILD_CACHE=0 (always compile).
"""
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
OP_LIBRARY = "libresearch_ops.so"
BUILD_INFO = "_build_info.json"
CACHE_DIR = ROOT / "build" / "ops-cache"
RESOURCE_DIRS = ("gin", "third_party")  # shipped inside the wheel as research/_resources/<dir>


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


def _build_key(native_name: str) -> str:
    """A hash of everything the C++ products depend on (sources, CMake file, TensorFlow, Python ABI, options)."""
    import tensorflow as tf

    digest = hashlib.sha256()
    flags = [flag for flag in tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags()
             if not flag.startswith(("-I", "-L"))]  # the paths differ between pip's temporary build envs
    for part in (tf.__version__, " ".join(flags), native_name, os.environ.get("RESEARCH_CMAKE_ARGS", ""),
                 os.environ.get("CXX", ""), sys.version):
        digest.update(part.encode() + b"\0")
    sources = [ROOT / "CMakeLists.txt"] + sorted(path for path in (ROOT / "ops").rglob("*") if path.is_file())
    for path in sources:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


class CMakeBuild(build_ext):
    """Runs CMake once for all C++ targets (or reuses a cached build) and copies the products into the package."""

    def run(self):
        _check_tensorflow_importable()
        native_path = Path(self.get_ext_fullpath("research.data._native")).resolve()
        products = {OP_LIBRARY: "ops", BUILD_INFO: "ops", native_path.name: "native"}
        cached = CACHE_DIR / _build_key(native_path.name)
        if os.environ.get("RESEARCH_BUILD_CACHE", "1") != "0" and all((cached / name).exists() for name in products):
            print(f"research: reusing the C++ build in {cached} (same sources, TensorFlow and options)")
            self._install_products(cached, native_path)
            return
        build_dir = Path(self.build_temp).resolve() / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
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
        try:
            cached.mkdir(parents=True, exist_ok=True)
            for name in products:
                _install_file(build_dir / name, cached / name)
        except OSError as error:  # a read-only source tree: the build itself succeeded
            print(f"research: cannot cache the C++ build in {cached}: {error}")
        self._install_products(build_dir, native_path)

    def _install_products(self, source_dir: Path, native_path: Path) -> None:
        ops_dir = Path(self.get_ext_fullpath("research.ops._placeholder")).resolve().parent
        ops_dir.mkdir(parents=True, exist_ok=True)
        native_path.parent.mkdir(parents=True, exist_ok=True)
        _install_file(source_dir / OP_LIBRARY, ops_dir / OP_LIBRARY)
        _install_file(source_dir / BUILD_INFO, ops_dir / BUILD_INFO)
        _install_file(source_dir / native_path.name, native_path)

    def get_outputs(self):
        ops_dir = Path(self.get_ext_fullpath("research.ops._placeholder")).parent
        return [self.get_ext_fullpath("research.data._native"),
                str(ops_dir / OP_LIBRARY), str(ops_dir / BUILD_INFO)]


class BuildPyWithResources(build_py):
    """Also copies gin/ and third_party/ into the built package as research/_resources/."""

    def run(self):
        super().run()
        destination = Path(self.build_lib) / "research" / "_resources"
        for name in RESOURCE_DIRS:
            target = destination / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__"))


setup(
    ext_modules=[Extension("research.data._native", sources=[])],
    cmdclass={"build_ext": CMakeBuild, "build_py": BuildPyWithResources},
)
