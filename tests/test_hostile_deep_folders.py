"""Folders nested deeper than Python's recursion limit, and deeper than the system's path length limit.

Python 3.11's ``os.walk`` recursed once per level: a corpus folder 1,200 levels deep raised ``RecursionError``
from ``build_dataset`` and from ``load_dataset``'s look for MIDI files (23 s each, resolving every level again).
"""

from __future__ import annotations

import os
import sys

import pytest
from midi_corpus import _write_notes

from musicvae_course.core.data import build_dataset, load_dataset
from musicvae_course.core.file_lists import list_midi_files

DEPTH = sys.getrecursionlimit() + 200


def _nest(top, depth: int, name: str = "d") -> str:
    """``top/d/d/.../d`` ``depth`` levels deep, made level by level (``os.makedirs`` recurses too)."""
    path = os.fspath(top)
    for _ in range(depth):
        path = os.path.join(path, name)
        os.mkdir(path)
    return path


def _unnest(top, depth: int, name: str = "d") -> None:
    """Remove what ``_nest`` made, deepest first (``shutil.rmtree`` recurses too, so tmp_path's cleanup would fail)."""
    path = os.path.join(os.fspath(top), *[name] * depth)
    for entry in os.listdir(path):
        os.unlink(os.path.join(path, entry))
    for _ in range(depth):
        os.rmdir(path)
        path = os.path.dirname(path)


@pytest.fixture
def deep(tmp_path):
    top = tmp_path / "corpus"
    top.mkdir()
    bottom = _nest(top, DEPTH)
    _write_notes(os.path.join(bottom, "deep.mid"), [(60, 0, 480), (64, 480, 1920)])
    _write_notes(top / "top.mid", [(62, 0, 960)])
    yield top
    _unnest(top, DEPTH)


def test_a_folder_deeper_than_the_recursion_limit_is_listed(deep):
    found = list_midi_files(deep)
    assert [p.name for p in found] == ["deep.mid", "top.mid"]
    assert len(found[0].parts) > DEPTH


def test_a_build_reads_the_deepest_file(deep):
    ds = build_dataset(deep, workers=0, progress=False)
    assert sorted(os.path.basename(f) for f in ds.files) == ["deep.mid", "top.mid"]


def test_load_dataset_hint_looks_into_a_deep_folder(deep, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a dataset cache"):
        load_dataset(deep / "d")


def test_folders_past_the_path_length_limit_are_reported(tmp_path):
    top = tmp_path / "long"
    top.mkdir()
    name = "x" * 200
    depth = os.pathconf(top, "PC_PATH_MAX") // 200 + 2  # made with relative paths: each mkdir is short
    here = os.getcwd()
    os.chdir(top)
    try:
        for _ in range(depth):
            os.mkdir(name)
            os.chdir(name)
        _write_notes("far.mid", [(60, 0, 480)])
    finally:
        os.chdir(here)
    with pytest.raises(FileNotFoundError, match=r"no \.mid.*1 folder\(s\) could not be listed.*: folder not readable"):
        build_dataset(top, workers=0, progress=False)
    os.chdir(top)
    try:  # remove it the same way, deepest first
        for _ in range(depth):
            os.chdir(name)
        os.unlink("far.mid")
        for _ in range(depth):
            os.chdir("..")
            os.rmdir(name)
    finally:
        os.chdir(here)
