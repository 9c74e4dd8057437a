"""What sits where a run folder or a cache writes its files: folders, FIFOs, links as locks; and hostile histories.

Before: a folder named ``last.pt`` (or ``history.json``) failed a training run only at its first save, with a
bare ``IsADirectoryError`` (a cache build's ``index.json``: after reading every file); ``resume`` with a FIFO as
``last.pt`` started the run afresh without a word; a link as ``.fit.lock`` or the cache's ``.lock`` raised
"Too many levels of symbolic links" (a traceback from ``python -m musicvae_course.train``). ``load_history``
read a 3 GB sparse ``history.json`` whole (12 s, 3 GB, then ``MemoryError``) and raised ``RecursionError`` or
``UnicodeDecodeError`` naming no file.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from midi_corpus import _write_notes
from tiny_rolls import tiny_segments

from musicvae_course.core.checkpoint import CheckpointError
from musicvae_course.core.data import PianoRollDataset, build_dataset
from musicvae_course.train import cli, history
from musicvae_course.train.history import load_history
from musicvae_course.train.run_folder import RUN_FILES, RunFolder


def _run_folder(path) -> RunFolder:
    return RunFolder(path, every_s=3600.0, config={})


@pytest.mark.parametrize("name", RUN_FILES)
def test_a_folder_where_a_run_file_goes_is_refused_when_the_run_opens(tmp_path, name):
    (tmp_path / "run" / name).mkdir(parents=True)
    with pytest.raises(FileExistsError, match=rf"{name}: a folder where the run's file goes .*remove it"):
        _run_folder(tmp_path / "run").open(resume=False, overwrite=True)


def test_resuming_from_a_fifo_named_last_pt_is_refused_not_started_afresh(tmp_path):
    (tmp_path / "run").mkdir()
    os.mkfifo(tmp_path / "run" / "last.pt")
    with pytest.raises(CheckpointError, match=r"last\.pt: not a regular file: a FIFO"):
        _run_folder(tmp_path / "run").open(resume=True, overwrite=False)
    assert _run_folder(tmp_path / "run2").open(resume=True, overwrite=False) is None  # no run yet: a fresh start


def test_a_fifo_named_last_pt_without_resume_is_replaced_by_the_run(tmp_path):
    (tmp_path / "run").mkdir()
    os.mkfifo(tmp_path / "run" / "last.pt")
    assert _run_folder(tmp_path / "run").open(resume=False, overwrite=False) is None


@pytest.mark.parametrize("kind", ["link", "dangling link", "folder"])
def test_a_lock_file_that_is_not_a_file_is_named_and_what_it_points_at_is_untouched(tmp_path, kind):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    lock = tmp_path / "run" / ".fit.lock"
    lock.parent.mkdir()
    {"link": lambda: lock.symlink_to(victim), "dangling link": lambda: lock.symlink_to(tmp_path / "nothing"),
     "folder": lock.mkdir}[kind]()  # fmt: skip
    what = "a folder" if kind == "folder" else "a symbolic link"
    with pytest.raises(FileExistsError, match=rf"\.fit\.lock: {what} where the lock file goes"):
        _run_folder(tmp_path / "run").open(resume=False, overwrite=False)
    assert victim.read_text() == "precious" and not (tmp_path / "nothing").exists()


def test_the_training_command_reports_a_linked_lock_in_one_line(tmp_path, capsys):
    data = PianoRollDataset(tiny_segments(16), np.arange(16) // 2, [f"{i}.mid" for i in range(8)]).save_npz(
        tmp_path / "d.npz"
    )
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".fit.lock").symlink_to(tmp_path / "elsewhere")
    argv = ["--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", "--latent-dim", "4"]
    assert cli.main(argv + ["--threads", "1", "--no-progress"]) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ".fit.lock: a symbolic link where the lock file goes" in err
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(3):
        _write_notes(folder / f"piece_{i}.mid", [(60 + i, 0, 480), (64 + i, 480, 1440), (67, 1440, 3840)])
    return folder


@pytest.mark.parametrize("name, kind", [(".lock", "link"), (".lock", "folder"), ("index.json", "folder")])
def test_a_cache_with_a_link_or_folder_in_the_way_is_named_before_any_file_is_read(corpus, tmp_path, name, kind):
    cache = tmp_path / "cache"
    cache.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (cache / name).symlink_to(victim) if kind == "link" else (cache / name).mkdir()
    what = "a symbolic link" if kind == "link" else "a folder"
    with pytest.raises(FileExistsError, match=rf"cache/{name}: {what} where the .* goes .*remove it"):
        build_dataset(corpus, cache_dir=cache, workers=0, progress=False, reader=_no_reading)
    assert victim.read_text() == "precious"


def _no_reading(path):  # the build must stop before it reads a file
    raise AssertionError(f"{path} was read")


def test_a_fifo_as_skipped_csv_is_replaced_by_the_build(corpus, tmp_path):
    (tmp_path / "cache").mkdir()
    os.mkfifo(tmp_path / "cache" / "skipped.csv")
    ds = build_dataset(corpus, cache_dir=tmp_path / "cache", workers=0, progress=False)
    assert len(ds.files) == 3 and (tmp_path / "cache" / "skipped.csv").is_file()


def _history(path, kind) -> None:
    if kind == "deep":
        path.write_text("[" * 200_000 + "]" * 200_000)
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe[{}]")
    elif kind == "sparse":
        with open(path, "wb") as handle:
            handle.truncate(100_000)  # over the limit lowered below: read whole before
    else:
        path.write_text("[{} ")


@pytest.mark.parametrize(
    "kind, words",
    [("deep", "RecursionError"), ("binary", "UnicodeDecodeError"), ("sparse", "LimitError"), ("cut", "JSONDecode")],
)
def test_a_hostile_history_is_refused_naming_the_file(tmp_path, monkeypatch, kind, words):
    monkeypatch.setattr(history, "MAX_HISTORY_BYTES", 50_000 if kind == "sparse" else 1_000_000, raising=False)
    _history(tmp_path / "history.json", kind)
    with pytest.raises(ValueError, match=rf"history\.json: not a training history \({words}"):
        load_history(tmp_path)


def test_a_history_path_that_is_a_device_is_named_as_such():
    with pytest.raises(ValueError, match=r"/dev/zero: not a training history .*character device"):
        load_history("/dev/zero")
