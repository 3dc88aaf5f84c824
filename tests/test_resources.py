"""The shipped gin files and corpora are found from any directory, in a clone and in a built wheel."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from research import resources

REPO = Path(__file__).resolve().parents[1]


def test_a_bare_experiment_name_and_a_repo_relative_path_resolve_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = REPO / "gin" / "experiments" / "demo_pretrain.gin"
    for name in ("demo_pretrain", "demo_pretrain.gin", "gin/experiments/demo_pretrain.gin"):
        assert Path(resources.resolve_gin_file(name)).samefile(shipped)
    (tmp_path / "demo_pretrain.gin").write_text("# mine\n")
    assert resources.resolve_gin_file("demo_pretrain.gin") == "demo_pretrain.gin"  # a user's own file wins


def test_an_unknown_experiment_lists_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"'demo_pretrian'.*demo_finetune, demo_pretrain"):
        resources.resolve_gin_file("demo_pretrian")


def test_a_missing_shipped_file_names_where_it_was_looked_for():
    with pytest.raises(FileNotFoundError, match=r"third_party/nothing.txt is not among the shipped files \(looked in "):
        resources.resource_path("third_party/nothing.txt")


def test_the_built_package_carries_gin_files_and_corpora(tmp_path):
    """`setup.py build_py` (what a wheel is made of) copies gin/ and third_party/ into the package, and
    that copy alone resolves experiments, includes and the demo corpora."""
    build = tmp_path / "build"
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(build)], cwd=REPO, check=True,
                   capture_output=True)
    packaged = build / "research" / "_resources"
    assert (packaged / "gin" / "models" / "bert_tiny.gin").is_file()
    assert (packaged / "third_party" / "austen" / "LICENSE").is_file()
    assert (packaged / "third_party" / "austen" / "austen.txt").stat().st_size > 1_000_000
    probe = ("from research import resources; print(resources.resource_root()); "
             "print(resources.resolve_gin_file('demo_finetune'))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True,
                            env=dict(os.environ, PYTHONPATH=str(build)))
    root, experiment = result.stdout.split()
    assert Path(root) == packaged and Path(experiment) == packaged / "gin" / "experiments" / "demo_finetune.gin"
