"""A cache index whose entries claim more rows than a file can give, or the same rows again.

Before: each entry's rows were copied whole (``tobytes``) to be checked against their checksum, however many it
claimed: a 12 KB cache folder (a sparse rows file, one entry of 3 million rows) took 6 s and 2.2 GB to open, and
a bare ``MemoryError`` past that; entries claiming the same rows were each checked and each served, so one file's
segments came back once per entry.
"""

from __future__ import annotations

import io
import json
import warnings

import numpy as np
import pytest

import musicvae_course.core.segment_cache as segment_cache
from musicvae_course.core.data import load_dataset
from musicvae_course.core.midi_limits import MAX_SEGMENTS_PER_FILE
from musicvae_course.core.read_pool import content_hash


def _cache(folder, rows: np.ndarray, claims: list[tuple[int, int]]) -> None:
    """A cache folder of ``rows`` and one entry per ``(start, count)``, each with its rows' true checksum."""
    folder.mkdir()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": rows.shape})
    (folder / "segments-0.npy").write_bytes(header.getvalue() + rows.tobytes())
    files = {
        f"{i}.mid": {
            "size": 1,
            "hash": "h",
            "signature": [1, 2, 3],
            "reason": None,
            "start": start,
            "count": count,
            "rows_hash": content_hash(rows[start : start + count].tobytes()),
        }
        for i, (start, count) in enumerate(claims)
    }
    index = {"settings": {"format": 1}, "segments_file": "segments-0.npy", "files": files}
    (folder / "index.json").write_text(json.dumps(index))


def _rows(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 352), dtype=np.uint8)


def test_an_entry_claiming_more_rows_than_a_file_gives_is_damaged_and_not_read(tmp_path, monkeypatch):
    hashed = []
    monkeypatch.setattr(segment_cache, "content_hash", lambda data: hashed.append(len(memoryview(data).cast("B"))))
    _cache(tmp_path / "cache", _rows(MAX_SEGMENTS_PER_FILE + 1), [(0, MAX_SEGMENTS_PER_FILE + 1)])
    with pytest.warns(UserWarning, match=r"1 cached file\(s\) damaged"):
        ds = load_dataset(tmp_path / "cache")
    assert len(ds) == 0 and hashed == []


def test_entries_claiming_the_same_rows_are_served_once(tmp_path):
    rows = _rows(10)
    _cache(tmp_path / "cache", rows, [(0, 10), (0, 10), (5, 5)])
    with pytest.warns(UserWarning, match=r"2 cached file\(s\) damaged .*e\.g\. 1\.mid"):
        ds = load_dataset(tmp_path / "cache")
    assert ds.files == ["0.mid"] and np.array_equal(np.asarray(ds.packed), rows)


def test_an_honest_index_is_read_whole(tmp_path):
    rows = _rows(12)
    _cache(tmp_path / "cache", rows, [(0, 5), (5, 7)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no entry is taken for damaged
        ds = load_dataset(tmp_path / "cache")
    assert ds.files == ["0.mid", "1.mid"] and ds.file_ids.tolist() == [0] * 5 + [1] * 7


def _many_arrays(path, n: int) -> None:
    import zipfile

    one = io.BytesIO()
    np.save(one, np.zeros(1, np.uint8))
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(n):
            archive.writestr(f"a{i}.npy", one.getvalue())


@pytest.mark.parametrize("n", [100, 0xFFFF + 10])  # the second needs zip64's end record
def test_an_npz_of_thousands_of_arrays_is_refused_from_its_end_record(tmp_path, monkeypatch, n):
    import zipfile

    _many_arrays(tmp_path / "many.npz", n)
    opened = []
    monkeypatch.setattr(zipfile, "ZipFile", lambda *args, **kwargs: opened.append(args))
    with pytest.raises(ValueError, match=rf"many\.npz: not a dataset \.npz \({n:,} arrays, more than 64"):
        load_dataset(tmp_path / "many.npz")
    assert opened == []  # refused before zipfile built an object per entry
