"""Where the shipped configurations (gin/) and corpora (third_party/) are, installed or in a clone.

A wheel carries them inside the package as `research/_resources/` (setup.py copies them there); a
clone or an editable install has them at the root of the source tree. Either way `resource_root()`
names the one directory that holds both, so the experiments run from any working directory.
"""
import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_CANDIDATES = (_PACKAGE_DIR / "_resources", _PACKAGE_DIR.parent)
EXPERIMENTS_DIR = "gin/experiments"


def resource_root() -> Path:
    """The directory holding `gin/` and `third_party/`: the installed package's, else the source tree's."""
    for candidate in _CANDIDATES:
        if (candidate / "gin").is_dir() and (candidate / "third_party").is_dir():
            return candidate
    raise FileNotFoundError(
        "The shipped gin files and corpora are missing: looked for gin/ and third_party/ in "
        + " and ".join(str(candidate) for candidate in _CANDIDATES)
        + ". Reinstall the package (pip install .) or run from a clone of the repository.")


def resource_path(relative: str) -> Path:
    """A shipped file, e.g. 'third_party/austen/austen.txt'; FileNotFoundError names where it was looked for."""
    path = resource_root() / relative
    if not path.exists():
        raise FileNotFoundError(f"{relative} is not among the shipped files (looked in {resource_root()})")
    return path


def experiment_names() -> list[str]:
    """The shipped experiments, e.g. ['bert_base_pretrain', 'demo_finetune', 'demo_pretrain']."""
    return sorted(path.stem for path in (resource_root() / EXPERIMENTS_DIR).glob("*.gin"))


def resolve_gin_file(name: str) -> str:
    """The gin file a `--gin_file` value names.

    In order: an existing path (relative to the working directory, or absolute); a path relative to the
    shipped files (`gin/experiments/demo_pretrain.gin` from any directory); a shipped experiment's
    bare name, with or without `.gin` (`demo_pretrain`).

    Raises:
      FileNotFoundError: none of those exists; the message lists the shipped experiments.
    """
    if os.path.exists(name):
        return name
    root = resource_root()
    stem = name[:-len(".gin")] if name.endswith(".gin") else name
    for candidate in (root / name, root / EXPERIMENTS_DIR / f"{stem}.gin"):
        if candidate.is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"--gin_file {name!r} is neither a file (relative to {os.getcwd()}) nor a shipped experiment; "
        f"shipped experiments: {', '.join(experiment_names())} (e.g. --gin_file=demo_pretrain.gin)")
