"""Dataset ``.npz`` files with wrong shapes, types and counts, and interrupted saves.

Every refusal is a ``ValueError`` naming the file; ``save_npz`` writes whole or not at all.
"""

from __future__ import annotations

import numpy as np
import pytest

import musicvae_course.core.data as data
from musicvae_course.core.data import PianoRollDataset, load_dataset

ROWS = np.zeros((4, 352), np.uint8)
IDS = np.zeros(4, np.int64)
FILES = np.array(["a.mid"])


@pytest.mark.parametrize(
    "arrays",
    [
        {"packed": ROWS, "file_ids": np.int64(0), "files": FILES},  # 0-d ids: TypeError (len() of unsized object)
        {"packed": ROWS, "file_ids": np.zeros(3, np.int64), "files": FILES},  # 3 ids for 4 rows: no file named
        {"packed": np.uint8(3), "file_ids": np.zeros(0, np.int64), "files": FILES},  # 0-d rows: no file named
        {"packed": np.zeros(352, np.uint8), "file_ids": np.zeros(0, np.int64), "files": FILES},
        {"packed": ROWS, "file_ids": np.zeros((4, 1), np.int64), "files": FILES},  # 2-D ids: accepted
        {"packed": ROWS, "file_ids": IDS, "files": np.array([1, 2])},  # numbers as file names: accepted
        {"packed": ROWS, "file_ids": IDS, "files": np.array([b"a.mid"])},  # bytes: accepted as "b'a.mid'"
    ],
    ids=["ids-0d", "ids-short", "rows-0d", "rows-1d", "ids-2d", "files-numbers", "files-bytes"],
)
def test_a_malformed_npz_is_refused_by_name(tmp_path, arrays):
    path = tmp_path / "odd.npz"
    np.savez_compressed(path, **arrays)
    with pytest.raises(ValueError, match=r"odd\.npz: not a dataset \.npz"):
        load_dataset(path)


def test_a_file_list_past_the_limit_is_refused_before_it_becomes_strings(tmp_path, monkeypatch):
    # 392 KB listing 33 million 'ab' names took 22 s and 3.1 GB as Python strings; the limit is checked first
    monkeypatch.setattr(data, "MAX_DATASET_FILES", 10, raising=False)
    path = tmp_path / "many.npz"
    np.savez_compressed(path, packed=ROWS, file_ids=IDS, files=np.full(11, "ab"))
    with pytest.raises(ValueError, match=r"many\.npz: lists 11 files, more than the limit of 10"):
        load_dataset(path)


def test_save_npz_interrupted_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "d.npz"
    old = PianoRollDataset.from_packed(np.ones((3, 352), np.uint8), [0, 1, 1], ["a.mid", "b.mid"])
    old.save_npz(path)

    def interrupted(file, **arrays):  # a kill or a full disk halfway through the zip
        handle = file if hasattr(file, "write") else open(file, "wb")
        handle.write(b"PK\x03\x04 half a zip")
        handle.flush()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", interrupted)
    with pytest.raises(OSError):
        PianoRollDataset.from_packed(np.zeros((2, 352), np.uint8)).save_npz(path)
    again = load_dataset(path)
    assert again.files == ["a.mid", "b.mid"] and np.array_equal(again.packed, old.packed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


def test_save_npz_returns_the_path_it_wrote(tmp_path):
    written = PianoRollDataset.from_packed(np.ones((2, 352), np.uint8), [0, 0], ["a.mid"]).save_npz(tmp_path / "d")
    assert written == tmp_path / "d.npz" and written.is_file()
    assert load_dataset(written).files == ["a.mid"]


def _patched(raw: bytes, flag: int = 0, method: int | None = None) -> bytes:
    """Zip headers (local and central) with a general-purpose flag set or another compression method."""
    data = bytearray(raw)
    for signature, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        at = data.find(signature)
        while at >= 0:
            data[at + flag_at] |= flag
            if method is not None:
                data[at + method_at : at + method_at + 2] = method.to_bytes(2, "little")
            at = data.find(signature, at + 4)
    return bytes(data)


@pytest.mark.parametrize(
    ("flag", "method", "why"),
    [(1, None, "encrypted"), (0, 99, "compression method is not supported")],  # RuntimeError, NotImplementedError
    ids=["encrypted", "aes-method"],
)
def test_an_npz_zipfile_cannot_open_is_refused_by_name(tmp_path, flag, method, why):
    good = PianoRollDataset.from_packed(np.ones((3, 352), np.uint8), [0, 1, 1], ["a", "b"]).save_npz(tmp_path / "g")
    path = tmp_path / "locked.npz"
    path.write_bytes(_patched(good.read_bytes(), flag, method))
    with pytest.raises(ValueError, match=rf"locked\.npz: not a dataset \.npz \(.*{why}"):
        load_dataset(path)
