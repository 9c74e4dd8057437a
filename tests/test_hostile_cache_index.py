"""A cache index that is valid JSON but holds wrong fields: the entry is read again, never a crash.

An entry without ``hash``, a ``start`` of ``1e999`` (JSON's infinity) or ``"0"``, or a ``reason`` that is a list
crashed the next build that reused the cache (KeyError, OverflowError, TypeError in update and in skipped.csv).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from midi_corpus import _write_notes

from musicvae_course.core.data import build_dataset, load_dataset


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(3):
        _write_notes(folder / f"piece_{i}.mid", [(60 + i, 0, 480), (64 + i, 480, 1440), (67, 1440, 3840)])
    return folder


def _build(corpus, cache):
    return build_dataset(corpus, cache_dir=cache, workers=0, progress=False)


def _edit(entry, field, value):
    if value is KeyError:
        entry.pop(field)
    else:
        entry[field] = value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hash", KeyError),  # with a signature that differs, the hash was looked up: KeyError
        ("start", 1e999),  # JSON 1e999 is inf: int(inf) raised OverflowError
        ("start", "0"),  # a string start passed the check and broke update (str + int)
        ("count", True),
        ("reason", [1]),  # skipped.csv could not print it (TypeError)
        ("reason", {"a": 1}),
        ("signature", "abc"),
        ("size", None),
    ],
)
def test_a_malformed_index_entry_is_read_again(corpus, tmp_path, field, value):
    cache = tmp_path / "cache"
    fresh = _build(corpus, cache)
    index = json.loads((cache / "index.json").read_text())
    entry = next(iter(index["files"].values()))
    _edit(entry, field, value)
    if field == "hash":
        entry["signature"] = [1, 2, 3]
    (cache / "index.json").write_text(json.dumps(index))
    _write_notes(corpus / "piece_new.mid", [(70, 0, 480), (72, 480, 1920)])  # something to read: update runs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = _build(corpus, cache)
    assert any("damaged" in str(w.message) for w in caught)
    assert ds.report.skipped == []
    assert len(ds) > len(fresh)
    again = load_dataset(cache)
    assert again.files == ds.files and np.array_equal(again.segments, ds.segments)
    assert json.loads((cache / "index.json").read_text())["files"][ds.files[0]]["hash"]


def test_the_sweep_removes_only_the_caches_own_temporary_files(corpus, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ".notes.tmp").write_text("the user's, in the folder they gave as cache_dir")
    (cache / ".index.json.abc123.tmp").write_text("{")  # what a killed build left
    (cache / ".segments-0.npy.abc123.tmp").write_bytes(b"\x93NUMPY")
    _build(corpus, cache)
    assert (cache / ".notes.tmp").read_text().startswith("the user's")
    assert not (cache / ".index.json.abc123.tmp").exists()
    assert not (cache / ".segments-0.npy.abc123.tmp").exists()
