"""Eighth round of hostile files against the data path: sparse files, costly indexes, held locks, interrupted pairs.

Before: a 4 KB cache folder whose rows file was a 2 GB hole (with entries of all-zero rows and their true checksums)
took 7.5 s and 2.2 GB to open (10 GB: about 37 s); a 60 MB ``index.json`` of ``[{},{},...`` took 1.3 GB to parse;
``load_dataset`` waited up to 600 s on another build's lock without a word; ``X.NPZ`` was taken for a cache folder;
an interrupt between ``history.json`` and ``history.csv`` left them an epoch apart; a rebuild of the corpus emptied
``manifest.csv`` at its start; ``build_rolls`` counted a damaged note cache as cached; the default thread count
ignored the CPUs the process may use.
"""

from __future__ import annotations

import csv
import errno
import glob
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import musicvae_course.core.checkpoint_checks as checkpoint_checks
import musicvae_course.core.midi_limits as midi_limits
import musicvae_course.core.segment_cache as segment_cache
from musicvae_course import fileio
from musicvae_course.core import dataset_checks, devices, file_lists, read_pool
from musicvae_course.core.checkpoint import load_checkpoint, save_checkpoint
from musicvae_course.core.data import PianoRollDataset, load_dataset
from musicvae_course.core.file_lists import list_midi_files
from musicvae_course.core.midi_limits import MAX_SEGMENTS_PER_FILE
from musicvae_course.core.model import MusicVAE
from musicvae_course.core.read_pool import content_hash
from musicvae_course.core.safe_files import stored_bytes
from musicvae_course.corpus import build as corpus_build
from musicvae_course.corpus import mix, rolls
from musicvae_course.corpus import works as corpus_works
from musicvae_course.train import history, run_folder

ROWS = np.random.default_rng(8).integers(1, 256, (12, 352), dtype=np.uint8)


def _write_sparse(path: Path, data: bytes, block: int = 1 << 16) -> None:
    """Write ``data`` leaving holes where whole blocks are zero (``cp --sparse=always``)."""
    with open(path, "wb") as handle:
        for at in range(0, len(data), block):
            chunk = data[at : at + block]
            if chunk.count(0) == len(chunk):
                handle.seek(len(chunk), os.SEEK_CUR)
            else:
                handle.write(chunk)
        handle.truncate()


def _npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


# --- sparse files ----------------------------------------------------------------------------------------------


def test_a_cache_whose_rows_file_is_a_hole_is_damaged_and_not_hashed(tmp_path, monkeypatch):
    hashed = []
    monkeypatch.setattr(segment_cache, "content_hash", lambda data: hashed.append(1) or "x")
    monkeypatch.setattr(segment_cache, "PARSE_ALLOWANCE", 1 << 20)
    folder, n = tmp_path / "cache", 3 * MAX_SEGMENTS_PER_FILE
    folder.mkdir()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (n, 352)})
    rows_file = folder / "segments-0.npy"
    rows_file.write_bytes(header.getvalue())
    os.truncate(rows_file, len(header.getvalue()) + n * 352)  # 6.6 MB of holes
    zeros = content_hash(bytes(352 * MAX_SEGMENTS_PER_FILE))
    entry = {"size": 1, "hash": "h", "signature": [1, 2, 3], "reason": None, "rows_hash": zeros}
    files = {
        f"{i}.mid": {**entry, "start": i * MAX_SEGMENTS_PER_FILE, "count": MAX_SEGMENTS_PER_FILE} for i in range(3)
    }
    index = {"settings": {"format": 1}, "segments_file": rows_file.name, "files": files}
    (folder / "index.json").write_text(json.dumps(index))
    assert stored_bytes(rows_file) < 1 << 20
    with pytest.warns(
        UserWarning,
        match=r"damaged segments file segments-0\.npy \(declares [\d,]+ bytes but stores [\d,]+ on disk \(a sparse",
    ):
        ds = load_dataset(folder)
    assert len(ds) == 0 and hashed == []


def test_a_sparse_npz_is_refused_before_numpy_reads_it_and_a_dense_one_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(midi_limits, "DATASET_BYTES_AT_ANY_RATIO", 1 << 20)
    data = _npz_bytes(packed=np.zeros((100_000, 352), np.uint8), file_ids=np.zeros(100_000, int), files=np.array(["a"]))
    _write_sparse(tmp_path / "hollow.npz", data)
    with pytest.raises(
        ValueError,
        match=r"hollow\.npz: not a dataset \.npz \(declares [\d,]+ bytes but stores [\d,]+ on disk \(a sparse file",
    ):
        load_dataset(tmp_path / "hollow.npz")
    (tmp_path / "dense.npz").write_bytes(data)  # the same bytes, written out: an honest (if odd) uncompressed save
    assert len(load_dataset(tmp_path / "dense.npz")) == 100_000


def test_a_sparse_checkpoint_is_refused_before_loading(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_checks, "DATASET_BYTES_AT_ANY_RATIO", 1 << 20)
    buffer = io.BytesIO()
    torch.save({"config": {}, "model_state": {"w": torch.zeros(2_000_000)}}, buffer)
    _write_sparse(tmp_path / "hollow.pt", buffer.getvalue())
    with pytest.raises(
        checkpoint_checks.CheckpointError,
        match=r"hollow\.pt: declares [\d,]+ bytes but stores [\d,]+ on disk \(a sparse file.*refused before loading",
    ):
        load_checkpoint(tmp_path / "hollow.pt")
    (tmp_path / "dense.pt").write_bytes(buffer.getvalue())
    assert load_checkpoint(tmp_path / "dense.pt")["model_state"]["w"].shape == (2_000_000,)


# --- costly indexes and odd .npz files -----------------------------------------------------------------------------


def test_an_index_that_would_cost_many_times_its_size_to_parse_is_refused_unparsed(tmp_path, monkeypatch):
    monkeypatch.setattr(segment_cache, "PARSE_ALLOWANCE", 1 << 16)
    parsed = []
    monkeypatch.setattr(segment_cache.json, "loads", lambda text: parsed.append(1))
    folder = tmp_path / "cache"
    folder.mkdir()
    body = ",".join(["{}"] * 200_000)
    (folder / "index.json").write_text('{"settings": {}, "files": {}, "x": [' + body + "]}")
    with pytest.warns(UserWarning, match=r"damaged cache index \([\d,]+ bytes that would take about .* to parse"):
        load_dataset(folder)
    assert parsed == []


@pytest.mark.parametrize("path_length", [5, 60])
def test_the_kits_own_index_passes_the_parse_cost_check(path_length):
    """Short names and skipped files (the cheapest honest entries) still cost well under the limit."""
    entry = {"size": 123, "signature": [123, 1_700_000_000_123_456_789, 1_700_000_000_123_456_789], "hash": "0" * 32}
    files = {}
    for i in range(20_000):
        skipped = i % 2 == 0
        extra = {"reason": "no notes", "start": 0, "count": 0} if skipped else {"reason": None, "start": i, "count": 1}
        files[f"{i:0{path_length}d}.mid"] = {**entry, **extra, "rows_hash": "1" * 32}
    text = json.dumps({"settings": {"format": 3, "max_seconds": 600.0, "reader": "fast"}, "files": files}).encode()
    dataset_checks.check_json_parse_cost(text, allowance=0)


def test_an_uppercase_npz_is_a_dataset_file_and_a_folder_named_npz_is_a_cache(tmp_path):
    ds = PianoRollDataset.from_packed(ROWS, np.zeros(12, int), ["a.mid"])
    written = ds.save_npz(tmp_path / "SET.NPZ")
    assert written.name == "SET.NPZ" and len(load_dataset(written)) == 12
    (tmp_path / "cache.npz").mkdir()
    with pytest.raises(FileNotFoundError, match=r"cache\.npz: not a dataset cache \(no index\.json\)"):
        load_dataset(tmp_path / "cache.npz")


def test_an_npz_storing_one_array_twice_is_refused_naming_it(tmp_path):
    with zipfile.ZipFile(tmp_path / "twice.npz", "w") as archive:
        for name, array in (("packed", ROWS), ("file_ids", np.zeros(12, int)), ("files", np.array(["a"]))):
            archive.writestr(name + ".npy", _npz_member(array))
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("packed.npy", _npz_member(ROWS[:3]))
    with pytest.raises(ValueError, match=r"twice\.npz: not a dataset \.npz \(array packed\.npy is stored 2 times"):
        load_dataset(tmp_path / "twice.npz")


def _npz_member(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_fortran_order_rows_load_as_the_same_segments(tmp_path):
    np.savez(tmp_path / "f.npz", packed=np.asfortranarray(ROWS), file_ids=np.zeros(12, int), files=np.array(["a"]))
    assert np.array_equal(load_dataset(tmp_path / "f.npz").packed, ROWS)


# --- locks ---------------------------------------------------------------------------------------------------------


def _hold_lock(folder: Path, record_owner: bool) -> subprocess.Popen:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from filelock import FileLock
        import musicvae_course.core.segment_cache as segment_cache
        folder = Path({str(folder)!r})
        lock = FileLock(str(folder / ".lock"))
        lock.acquire()
        if {record_owner!r}:
            segment_cache._record_owner(folder)
        print("held", flush=True)
        time.sleep(120)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def _cache_folder(tmp_path) -> Path:
    folder = tmp_path / "cache"
    folder.mkdir()
    np.save(folder / "segments-0.npy", np.zeros((0, 352), np.uint8))
    (folder / "index.json").write_text(json.dumps({"settings": {}, "segments_file": "segments-0.npy", "files": {}}))
    return folder


def test_load_dataset_says_whose_lock_it_waits_on_and_gives_up_after_lock_timeout(tmp_path):
    folder = _cache_folder(tmp_path)
    holder = _hold_lock(folder, record_owner=True)
    try:
        with pytest.warns(
            UserWarning, match=rf"waiting up to 1\.5 s for its lock .*\.lock, taken by process {holder.pid}"
        ):
            with pytest.raises(segment_cache.CacheBusy, match=rf"waited 1\.5 s .*taken by process {holder.pid}"):
                load_dataset(folder, lock_timeout=1.5)
    finally:
        holder.kill()
        holder.wait()
    assert len(load_dataset(folder, lock_timeout=0)) == 0  # free again: no wait, no owner file left behind


def test_a_lock_whose_taker_is_gone_fails_at_once_instead_of_waiting(tmp_path):
    folder = _cache_folder(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    holder = _hold_lock(folder, record_owner=False)  # a child of the gone build, say, still holding it
    try:
        owner = {"pid": int(dead.stdout), "host": os.uname().nodename, "since": "then", "program": "x"}
        (folder / segment_cache._OWNER).write_text(json.dumps(owner))
        with pytest.warns(UserWarning, match="waiting up to 600 s"):
            with pytest.raises(
                segment_cache.CacheBusy, match=rf"by a build that is gone.*process {dead.stdout.strip()}"
            ):
                load_dataset(folder, lock_timeout=600)  # a test that hangs here has failed
    finally:
        holder.kill()
        holder.wait()


# --- pairs of files and interrupted rebuilds ------------------------------------------------------------------------


def test_an_interrupt_between_the_history_files_leaves_them_agreeing(tmp_path, monkeypatch):
    history.save_history([{"epoch": 1, "loss": 2.0}], tmp_path)
    real = history.atomic_write

    def write_then_interrupt(path, content):
        real(path, content)
        if path.name == "history.json":
            signal.raise_signal(signal.SIGINT)  # Ctrl+C right after the first file

    monkeypatch.setattr(history, "atomic_write", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        history.save_history([{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}], tmp_path)
    with open(tmp_path / "history.csv", newline="") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == [1, 2]
    assert [row["epoch"] for row in history.load_history(tmp_path)] == [1, 2]


def test_an_interrupted_corpus_rebuild_keeps_the_previous_manifest(tmp_path, monkeypatch):
    works = [corpus_works.Work("essenFolksong/x.abc", k) for k in range(3)]

    def jobs(done_before_interrupt):
        def run_jobs(jobs, workers, timeout_s, progress, job=None):
            for i, (work, out_path, _) in enumerate(jobs):
                if i == done_before_interrupt:
                    raise KeyboardInterrupt
                yield work, out_path, {"ok": True, "seconds": 0.0}

        return run_jobs

    monkeypatch.setattr(corpus_build, "_run_jobs", jobs(None))
    corpus_build.build_corpus(works, tmp_path, heldout=set(), progress=False)
    before = (tmp_path / "manifest.csv").read_bytes()
    assert len(before.splitlines()) == 1 + 3 and not list(tmp_path.glob("*.partial.csv"))
    monkeypatch.setattr(corpus_build, "_run_jobs", jobs(1))
    with pytest.raises(KeyboardInterrupt):
        corpus_build.build_corpus(works, tmp_path, heldout=set(), progress=False)
    assert (tmp_path / "manifest.csv").read_bytes() == before
    assert len((tmp_path / "manifest.partial.csv").read_text().splitlines()) == 1 + 1  # what the rebuild did


def _notes_job(work, out_stem, timeout_s, _unused=None):
    rolls._save_notes(Path(out_stem + ".npz"), np.array([60]), np.array([0]), np.array([4]))
    return {"ok": True, "seconds": 0.0}


@pytest.mark.parametrize("damage", ["zeroed", "cut", "not_npz"])
def test_build_rolls_parses_a_damaged_note_cache_again_and_says_so(tmp_path, damage):
    works = [corpus_works.Work("essenFolksong/x.abc", k) for k in range(3)]
    rolls.build_rolls(works, tmp_path, workers=0, progress=False, job=_notes_job)
    victim = tmp_path / "notes" / (rolls.cache_name(works[1]) + ".npz")
    data = victim.read_bytes()
    victim.write_bytes({"zeroed": bytes(len(data)), "cut": data[: len(data) // 2], "not_npz": b"hello"}[damage])
    with pytest.warns(UserWarning, match=r"1 damaged note cache file\(s\) parsed again, e\.g\. .*notes"):
        again = rolls.build_rolls(works, tmp_path, workers=0, progress=False, job=_notes_job)
    assert (again["cached_before"], again["done"]) == (2, 1)
    assert rolls.load_notes(victim)[0].tolist() == [60]
    assert len(rolls.roll_manifest(works, tmp_path, heldout=set())) == 3


# --- threads ---------------------------------------------------------------------------------------------------------


def test_default_threads_never_exceed_the_cpus_this_process_may_use(monkeypatch):
    # a machine of 4 physical cores (psutil is optional: a stand-in module answers for it)
    monkeypatch.setitem(sys.modules, "psutil", types.SimpleNamespace(cpu_count=lambda logical=True: 4))
    monkeypatch.setattr(devices, "usable_cpus", lambda: 1)  # taskset -c 0
    assert devices.default_cpu_threads(1) == 1 and devices.default_cpu_threads(2) == 1
    monkeypatch.setattr(devices, "usable_cpus", lambda: 8)
    assert devices.default_cpu_threads(1) == 4 and devices.default_cpu_threads(2) == 2
    before = torch.get_num_threads()
    try:  # fit passes an explicit --threads through set_cpu_threads, which keeps it
        assert devices.set_cpu_threads(3) == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_an_npz_replaced_after_its_check_is_read_as_it_was_checked(tmp_path, monkeypatch):
    PianoRollDataset.from_packed(ROWS, np.zeros(12, int), ["a.mid"]).save_npz(tmp_path / "a.npz")
    PianoRollDataset.from_packed(ROWS[:2], np.zeros(2, int), ["b.mid"]).save_npz(tmp_path / "b.npz")
    real = dataset_checks.check_npz

    def check_then_replace(path, handle=None):
        real(path, handle)
        os.replace(tmp_path / "b.npz", path)  # another process saves over it (or swaps in a bomb) just then

    monkeypatch.setattr(dataset_checks, "check_npz", check_then_replace)
    ds = load_dataset(tmp_path / "a.npz")
    assert np.array_equal(ds.packed, ROWS) and ds.files == ["a.mid"]


class _DiskFills:
    """A file object whose disk fills after ``room`` bytes (``ENOSPC``), as a full disk or quota does."""

    def __init__(self, handle, room: int):
        self.handle, self.room = handle, room

    def write(self, data) -> int:
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def test_a_checkpoint_saved_to_a_full_disk_says_so_naming_the_file(tmp_path, monkeypatch):
    real = os.fdopen
    monkeypatch.setattr(fileio.os, "fdopen", lambda fd, mode="r", *a, **k: _DiskFills(real(fd, mode, *a, **k), 4096))
    with pytest.raises(OSError, match=r"no space left on the disk of .* while writing m\.pt") as raised:
        save_checkpoint(MusicVAE(latent_dim=8), tmp_path / "m.pt")
    assert raised.value.errno == errno.ENOSPC and sorted(os.listdir(tmp_path)) == []


def test_a_read_only_run_folder_is_refused_before_training_naming_it(tmp_path, monkeypatch):
    class ReadOnlyLock:
        def __init__(self, path):
            self.path = path

        def acquire(self, timeout=None):
            raise PermissionError(errno.EROFS, "Read-only file system", str(self.path))

    monkeypatch.setattr(run_folder, "FileLock", ReadOnlyLock)
    folder = run_folder.RunFolder(tmp_path / "run", 60.0, {})
    with pytest.raises(PermissionError, match=r"out_dir .*run: cannot write there \(Read-only file system\); a run"):
        folder.open(resume=False, overwrite=False)


# --- globs -----------------------------------------------------------------------------------------------------------


def test_a_recursive_glob_over_a_folder_of_link_loops_lists_the_files_without_following_links(tmp_path):
    sub = tmp_path / "corpus" / "sub"
    sub.mkdir(parents=True)
    (sub / "a.mid").write_bytes(b"")
    for name, target in (("up", ".."), ("self", "."), ("again", "../sub")):  # glob's ** went 40 links deep: 3^40
        (sub / name).symlink_to(target)
    assert list_midi_files(str(tmp_path / "corpus" / "**" / "*.mid")) == [sub / "a.mid"]


@pytest.mark.parametrize(
    "pattern", ["**/*.mid", "c*/**/[xz]*", "./corpus/**/*.mid", "corpus/**/.q.mid", "corpus/**/[!x]*.mid", "corpus/**"]
)
def test_a_recursive_glob_finds_what_pythons_glob_finds_in_a_tree_without_links(tmp_path, monkeypatch, pattern):
    monkeypatch.chdir(tmp_path)
    for name in ("x.mid", "a/y.MID", "a/b/z.midi", "a/b/.hid/h.mid", "a/.q.mid", "a/b/w.txt", "[k].mid"):
        (tmp_path / "corpus" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "corpus" / name).write_bytes(b"")
    expected = sorted(p for p in glob.glob(pattern, recursive=True) if p.rstrip("/") != "corpus")
    assert sorted(file_lists._recursive_glob(pattern, None)) == expected


def test_a_builds_default_workers_are_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert devices.usable_cpus() == 1
    assert read_pool.usable_cpus is devices.usable_cpus  # the one home of the count, used for the pool's workers


def test_a_manifest_that_is_a_fifo_or_lacks_columns_is_refused_naming_it(tmp_path):
    os.mkfifo(tmp_path / "manifest.csv")  # open() blocked for ever
    with pytest.raises(ValueError, match=r"manifest\.csv: not a readable table \(not a regular file: a FIFO"):
        mix.music21_dataset(tmp_path, "train")
    (tmp_path / "manifest.csv").unlink()
    (tmp_path / "manifest.csv").write_text("key,split\nx,train\n")
    with pytest.raises(ValueError, match=r"manifest\.csv: columns \['cache_file', 'collection'\] missing"):
        mix.music21_dataset(tmp_path, "train")
    (tmp_path / "manifest.csv").write_bytes(b"key,split\n\xff\xfe,train\n")
    with pytest.raises(ValueError, match=r"manifest\.csv: not a readable table \('utf-8' codec"):
        mix.mma_dataset(tmp_path, "train")


def test_a_history_that_would_cost_many_times_its_size_to_parse_is_refused_unparsed(tmp_path, monkeypatch):
    monkeypatch.setattr(history, "PARSE_ALLOWANCE", 1 << 16)
    (tmp_path / "history.json").write_text("[" + ",".join(["{}"] * 200_000) + "]")  # a list of objects, as a history
    with pytest.raises(ValueError, match=r"history\.json: not a training history \(ValueError: [\d,]+ bytes that"):
        history.load_history(tmp_path)
    rows = [{"epoch": e, "loss": 1 / e, "val_loss": 1.5 / e, "kl": 20.0, "beta": 0.1, "lr": 1e-3} for e in range(1, 9)]
    history.save_history(rows * 1000, tmp_path)  # the kit's own, past the allowance: read back
    assert len(history.load_history(tmp_path)) == 8000
