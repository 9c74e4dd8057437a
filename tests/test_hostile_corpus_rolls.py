"""A rolls build's note cache (``notes/*.npz``, ``*.fail``) holding what the build did not write.

Before: a FIFO named ``<work>.npz`` or ``<work>.fail`` hung ``roll_manifest`` (and ``build_statistics``), and one
zeroed ``.npz`` (a disk fault) stopped the whole manifest with ``BadZipFile``. Now the damaged work is listed in
failures.csv with the reason and every other work is kept.
"""

from __future__ import annotations

import os

import numpy as np

from musicvae_course.corpus import rolls
from musicvae_course.corpus.works import Work

WORKS = [Work("essenFolksong/x.abc", k) for k in range(5)]


def _stem(tmp_path, work):
    stem = tmp_path / "notes" / rolls.cache_name(work)
    stem.parent.mkdir(parents=True, exist_ok=True)
    return stem


def _damaged_cache(tmp_path):
    for work in WORKS:
        rolls._save_notes(rolls._with(_stem(tmp_path, work), ".npz"), np.array([60]), np.array([0]), np.array([4]), 1)
    os.unlink(rolls._with(_stem(tmp_path, WORKS[1]), ".npz"))
    os.mkfifo(rolls._with(_stem(tmp_path, WORKS[1]), ".npz"))  # opening it to read blocked forever
    rolls._with(_stem(tmp_path, WORKS[2]), ".npz").write_bytes(b"\0" * 600)  # zeroed by a disk fault
    rolls._with(_stem(tmp_path, WORKS[3]), ".npz").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '<i8', 'f")
    os.unlink(rolls._with(_stem(tmp_path, WORKS[4]), ".npz"))
    os.mkfifo(rolls._with(_stem(tmp_path, WORKS[4]), ".fail"))


def test_roll_manifest_lists_damaged_cache_files_as_failures_and_keeps_the_rest(tmp_path):
    _damaged_cache(tmp_path)
    rows = rolls.roll_manifest(WORKS, tmp_path, heldout=set())
    assert [r["key"] for r in rows] == [WORKS[0].key]
    failures = dict(line.split(",", 1) for line in (tmp_path / "failures.csv").read_text().splitlines()[1:])
    assert set(failures) == {w.key for w in WORKS[1:]}
    assert "FIFO" in failures[WORKS[1].key]
    assert "x.abc__n2.npz" in failures[WORKS[2].key] and "not a dataset .npz" in failures[WORKS[2].key]
    assert "unreadable failure note" in failures[WORKS[4].key] and "FIFO" in failures[WORKS[4].key]


def test_build_statistics_counts_a_damaged_file_as_cached_not_timed(tmp_path):
    _damaged_cache(tmp_path)
    stats = rolls.build_statistics(WORKS, tmp_path)["essenFolksong"]
    assert (stats["cached"], stats["timed"], stats["failed"], stats["cpu_seconds"]) == (4, 1, 1, 1.0)


def test_load_notes_refuses_arrays_of_other_shapes_by_name(tmp_path):
    path = tmp_path / "odd.npz"
    np.savez(path, pitch=np.zeros((2, 2), np.int16), onset=np.zeros(2, np.int32), offset=np.zeros(2, np.int32))
    try:
        rolls.load_notes(path)
    except ValueError as err:
        assert "odd.npz: damaged note cache" in str(err)
    else:
        raise AssertionError("a 2-D pitch array was accepted")


def test_one_zeroed_cache_file_does_not_stop_the_manifest(tmp_path):
    for work in WORKS[:3]:
        rolls._save_notes(rolls._with(_stem(tmp_path, work), ".npz"), np.array([60]), np.array([0]), np.array([4]))
    rolls._with(_stem(tmp_path, WORKS[1]), ".npz").write_bytes(b"\0" * 600)  # was BadZipFile for the whole build
    rows = rolls.roll_manifest(WORKS[:3], tmp_path, heldout=set())
    assert [r["key"] for r in rows] == [WORKS[0].key, WORKS[2].key]
    assert WORKS[1].key in (tmp_path / "failures.csv").read_text()
