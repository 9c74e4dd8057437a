"""The cache folder under stress: concurrent builds, kills, full disks, damage, stale files, read-only folders.

Nothing is lost and nothing wrong is served: every case ends with the same segments as a fresh build, or a clear
error naming the folder.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from midi_corpus import _write_notes

import musicvae_course.core.segment_cache as segment_cache
from musicvae_course.core.data import build_dataset, load_dataset
from musicvae_course.core.segment_cache import Cache, CacheBusy, CacheFull

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(6):
        _write_notes(folder / f"piece_{i}.mid", [(60 + i, 0, 480), (64 + i, 480, 1440), (67, 1440 + 120 * i, 3840)])
    return folder


def _fresh(corpus):
    return build_dataset(corpus, workers=0, progress=False)


def _same(a, b) -> bool:
    return a.files == b.files and np.array_equal(a.segments, b.segments) and np.array_equal(a.file_ids, b.file_ids)


def _build(corpus, cache, **kwargs):
    return build_dataset(corpus, cache_dir=cache, workers=0, progress=False, **kwargs)


# --- concurrency and kills ----------------------------------------------------------------------


def test_a_second_build_waits_for_the_lock_then_fails_clearly(corpus, tmp_path):
    cache = tmp_path / "cache"
    with Cache(cache, {"format": 1}):  # another build holding the folder
        began = time.perf_counter()
        with pytest.raises(CacheBusy, match=r"cache.*in use by another build.*waited 0\.5 s"):
            _build(corpus, cache, lock_timeout=0.5)
        assert time.perf_counter() - began < 10
    assert _same(_build(corpus, cache), _fresh(corpus))  # and works once the lock is free


def test_concurrent_builds_into_one_folder_all_succeed_and_leave_no_orphans(corpus, tmp_path):
    cache = tmp_path / "cache"
    script = textwrap.dedent(
        f"""
        import sys
        from musicvae_course.core.data import build_dataset
        ds = build_dataset({str(corpus)!r}, cache_dir={str(cache)!r}, workers=0, progress=False)
        print(len(ds))
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    runs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env) for _ in range(3)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0] * 3
    fresh = _fresh(corpus)
    assert {int(out) for out in outputs} == {len(fresh)}
    assert len(list(cache.glob("segments-*.npy"))) == 1 and not list(cache.glob(".*.tmp"))
    assert _same(load_dataset(cache), fresh)


def test_leftovers_of_a_killed_build_are_swept_at_the_next_start(corpus, tmp_path):
    cache = tmp_path / "cache"
    _build(corpus, cache)
    (cache / ".index.json.k1ll3d.tmp").write_bytes(b"{half")
    (cache / ".segments-abc.npy.x9.tmp").write_bytes(b"\0" * 4096)
    (cache / "segments-0123456789ab.npy").write_bytes(b"\0" * 4096)  # written, never committed
    assert _same(_build(corpus, cache), _fresh(corpus))
    assert sorted(p.name for p in cache.iterdir() if p.name != ".lock") == sorted(
        ["index.json", "skipped.csv", *[p.name for p in cache.glob("segments-*.npy")]]
    )
    assert len(list(cache.glob("segments-*.npy"))) == 1


def test_a_build_killed_while_writing_the_cache_loses_nothing(corpus, tmp_path):
    cache = tmp_path / "cache"
    before = _build(corpus, cache)
    _write_notes(corpus / "new.mid", [(72, 0, 960)])
    marker = tmp_path / "writing"
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        import musicvae_course.core.segment_cache as segment_cache
        from musicvae_course.core.data import build_dataset
        real = segment_cache.atomic_write

        def slow(path, content, **kwargs):
            def half_then_wait(handle):
                handle.write(b"\\x93NUMPY" + b"\\0" * 5000)  # part of the rows, then killed
                handle.flush()
                Path({str(marker)!r}).write_text("now")
                time.sleep(300)
            return real(path, half_then_wait if callable(content) else content, **kwargs)

        segment_cache.atomic_write = slow
        build_dataset({str(corpus)!r}, cache_dir={str(cache)!r}, workers=0, progress=False)
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    build = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.time() + 60
    while time.time() < deadline and not marker.exists():
        time.sleep(0.1)
    assert marker.exists(), "the build never reached its cache write"
    build.send_signal(signal.SIGKILL)
    build.wait(timeout=10)
    assert list(cache.glob(".*.tmp"))  # the kill left a temporary file...
    assert _same(load_dataset(cache), before)  # ...and the committed cache intact
    again = _build(corpus, cache)
    assert again.report.read == 1 and _same(again, _fresh(corpus))
    assert not list(cache.glob(".*.tmp")) and len(list(cache.glob("segments-*.npy"))) == 1  # swept


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux only")
def test_pool_workers_die_with_their_killed_parent(corpus, tmp_path):
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from musicvae_course.core.data import build_dataset

        def stuck(path):
            time.sleep(300)

        build_dataset({str(corpus)!r}, workers=2, reader=stuck, timeout=None, progress=False)
        """
    )
    module = tmp_path / "stuck_build.py"
    module.write_text(script.replace("def stuck", "def stuck_reader").replace("reader=stuck", "reader=stuck_reader"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    parent = subprocess.Popen([sys.executable, "-c", "import stuck_build"], env=env)
    workers = []
    deadline = time.time() + 60
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.3)
        workers = [int(p) for p in _children(parent.pid)]
    assert len(workers) >= 2, "the pool did not start"
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


# --- full disks ------------------------------------------------------------------------------------


def test_a_full_disk_is_an_error_naming_the_folder_and_the_space_needed(corpus, tmp_path, monkeypatch):
    cache = tmp_path / "cache"

    class Usage:
        free = 1000

    monkeypatch.setattr(segment_cache.shutil, "disk_usage", lambda folder: Usage)
    with pytest.raises(CacheFull, match=r"no space left for the cache in .*cache: it needs [\d.]+ MB, 0\.0 MB free"):
        _build(corpus, cache)
    assert not list(cache.glob("segments-*")) and not list(cache.glob(".*.tmp"))


def test_enospc_while_writing_removes_the_part_and_names_the_folder(corpus, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    before = _build(corpus, cache)
    _write_notes(corpus / "new.mid", [(72, 0, 960)])

    def full(handle_or_path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segment_cache, "atomic_write", full)
    with pytest.raises(CacheFull, match="no space left for the cache"):
        _build(corpus, cache)
    monkeypatch.undo()
    assert _same(load_dataset(cache), before)  # the committed cache is intact
    assert len(list(cache.glob("segments-*.npy"))) == 1


def test_rows_are_never_written_through_a_memory_map(corpus, tmp_path, monkeypatch):
    opened = []
    original = np.lib.format.open_memmap

    def read_only_maps(filename, mode="r+", *args, **kwargs):
        opened.append(mode)
        if mode != "r":
            raise AssertionError("a memory-mapped write can die by SIGBUS on a full disk")
        return original(filename, mode, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "open_memmap", read_only_maps)
    assert _same(_build(corpus, tmp_path / "cache"), _fresh(corpus))
    assert opened == ["r"]  # the rows file is mapped for reading only


# --- damage and stale entries ----------------------------------------------------------------------


def _rows_file(cache: Path) -> Path:
    return cache / json.loads((cache / "index.json").read_text())["segments_file"]


@pytest.mark.parametrize("damage", ["zeroed_file", "zeroed_rows", "truncated_rows", "garbage_index", "edited_entry"])
def test_a_damaged_cache_is_rebuilt_with_a_warning(corpus, tmp_path, damage):
    cache = tmp_path / "cache"
    _build(corpus, cache)
    rows = _rows_file(cache)
    if damage == "zeroed_file":
        rows.write_bytes(b"\0" * rows.stat().st_size)
    elif damage == "zeroed_rows":
        data = bytearray(rows.read_bytes())
        data[128:] = bytes(len(data) - 128)
        rows.write_bytes(bytes(data))
    elif damage == "truncated_rows":
        rows.write_bytes(rows.read_bytes()[:-500])
    elif damage == "garbage_index":
        (cache / "index.json").write_text("{not json")
    else:
        index = json.loads((cache / "index.json").read_text())
        entry = next(iter(index["files"].values()))
        entry["count"] += 1
        (cache / "index.json").write_text(json.dumps(index))
    with pytest.warns(UserWarning, match="damaged") as caught:
        again = _build(corpus, cache)
    assert again.report.read >= 1 and _same(again, _fresh(corpus))
    assert sum("damaged" in str(w.message) for w in caught) == 1  # said once (the sweep and the load read the index)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired: no warning the next time
        assert _build(corpus, cache).report.read == 0


def test_a_same_size_edit_with_the_mtime_restored_is_read_again(corpus, tmp_path):
    cache = tmp_path / "cache"
    _build(corpus, cache)
    path = corpus / "piece_0.mid"
    info = path.stat()
    data = bytearray(path.read_bytes())
    data[data.index(bytes([0x90, 60]), 20) + 1] = 61  # one pitch changed, same size
    path.write_bytes(bytes(data))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    again = _build(corpus, cache)
    assert again.report.read == 1 and _same(again, _fresh(corpus))


def test_a_complete_read_only_cache_is_usable(corpus, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = _build(corpus, cache)
    import filelock

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    def no_writes(*args, **kwargs):
        raise AssertionError("nothing may be written to a read-only cache")

    monkeypatch.setattr(filelock.FileLock, "acquire", read_only)
    monkeypatch.setattr(segment_cache, "atomic_write", no_writes)
    again = _build(corpus, cache)
    assert again.report.read == 0 and _same(again, first)
    _write_notes(corpus / "new.mid", [(72, 0, 960)])  # one file not cached: read into memory only
    with pytest.warns(UserWarning, match="read-only"):
        more = _build(corpus, cache)
    assert more.report.read == 1 and _same(more, _fresh(corpus))


def test_an_index_naming_a_fifo_as_its_rows_file_is_rebuilt_without_opening_it(corpus, tmp_path):
    # np.load blocked forever on a FIFO the index named (a time limit inside the process is no guard: the old code
    # took its TimeoutError for a damaged file, so the build runs in a child with a deadline)
    cache = tmp_path / "cache"
    _build(corpus, cache)
    index = json.loads((cache / "index.json").read_text())
    os.mkfifo(cache / "segments-fifo.npy")
    (cache / "index.json").write_text(json.dumps({**index, "segments_file": "segments-fifo.npy"}))
    code = f"""
        import warnings
        from musicvae_course.core.data import build_dataset
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = build_dataset({str(corpus)!r}, cache_dir={str(cache)!r}, workers=0, progress=False)
        print(ds.report.read, len(ds.files), ["damaged segments file" in str(w.message) for w in caught])
    """
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.split() == ["6", "6", "[True]"], run.stderr[-2000:]


@pytest.mark.parametrize("named", ["an_absolute_path", "a_parent_folder"])
def test_an_index_naming_rows_outside_its_folder_does_not_read_them(corpus, tmp_path, named):
    # the index is data: it named any file to map as rows (/dev/zero, another cache's, a file made to fit)
    cache = tmp_path / "cache"
    _build(corpus, cache)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rows = _rows_file(cache)
    rows_bytes = rows.read_bytes()
    (elsewhere / rows.name).write_bytes(rows_bytes)  # the very rows, so only the place is wrong
    index = json.loads((cache / "index.json").read_text())
    outside = str(elsewhere / rows.name) if named == "an_absolute_path" else f"../elsewhere/{rows.name}"
    (cache / "index.json").write_text(json.dumps({**index, "segments_file": outside}))
    with pytest.warns(UserWarning, match="damaged segments file .*not a segments-\\*\\.npy name of this folder"):
        again = _build(corpus, cache)
    assert again.report.read == len(again.files) and _same(again, _fresh(corpus))
    assert (elsewhere / rows.name).read_bytes() == rows_bytes  # the rebuild deleted the "old rows" it named


@pytest.mark.parametrize("damage", ["nested_deep", "over_the_size_limit"])
def test_an_index_too_deep_or_too_large_to_parse_is_rebuilt_with_a_warning(corpus, tmp_path, damage, monkeypatch):
    # 200,000 nested lists raised RecursionError through build_dataset; a 3 GB sparse index.json took 13 s and 3.3 GB
    from musicvae_course.core import midi_limits

    cache = tmp_path / "cache"
    _build(corpus, cache)
    if damage == "nested_deep":
        (cache / "index.json").write_text("[" * 200_000 + "]" * 200_000)
        words = "damaged cache index .*recursion"
    else:
        monkeypatch.setattr(midi_limits, "MAX_CACHE_INDEX_BYTES", 4096)
        index = (cache / "index.json").read_text()
        (cache / "index.json").write_text(index + " " * 4096)  # valid JSON, over the (lowered) limit
        words = r"damaged cache index \(.*larger than the limit of 4,096 bytes"
    with pytest.warns(UserWarning, match=words):
        again = _build(corpus, cache)
    assert _same(again, _fresh(corpus))
