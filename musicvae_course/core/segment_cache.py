"""The machinery behind ``data.build_dataset``: parallel reading and the on-disk cache.

Kept apart from :mod:`musicvae_course.core.data` (what students call) because it is
plumbing: a process pool that survives a crashing parser, and a cache folder
that is updated file by file. Taught, as a black box, in
``notebooks/03_fine_tuning_on_a_subset.ipynb``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import uuid
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from ..fileio import atomic_write
from . import midi_fast
from .pianoroll import segments

SEGMENT_BYTES = 352  #: 88 x 32 bits, packed
_CHUNK_FILES = 32  # files per task: amortises inter-process overhead, keeps the bar moving


def read_file(path: str, max_seconds, reader="fast") -> dict:
    """Read one file into packed segments, or say why not. Never raises.

    Returns ``{"size", "mtime_ns", "hash", "reason", "fallback"}`` plus
    ``"packed"``: ``(n, 352)`` uint8 when ``reason`` is None.
    """
    result = {"size": -1, "mtime_ns": -1, "hash": "", "reason": None, "fallback": False}
    try:
        stat = os.stat(path)
        data = Path(path).read_bytes()
        result.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns, hash=content_hash(data))
        if reader == "fast":
            roll, result["fallback"] = midi_fast.read_pianoroll(data, max_seconds)
        elif reader == "reference":
            roll = midi_fast.read_pianoroll_reference(data, max_seconds)
        else:
            roll = reader(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = segments(roll)
        if len(rows) == 0:
            raise midi_fast.MidiSkip("no notes in the 88-key range (MIDI 21-108)")
        result["packed"] = np.packbits(rows.reshape(len(rows), -1), axis=1)
    except ValueError as err:  # MidiSkip and readers' own "bad file" errors
        result["reason"] = str(err)
    except Exception as err:  # anything else in one file must not stop the others
        result["reason"] = f"{type(err).__name__}: {err}"
    return result


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _read_chunk(paths, max_seconds, reader):
    return [(path, read_file(path, max_seconds, reader)) for path in paths]


def read_files(paths, workers, max_seconds, reader, bar) -> dict:
    """``{path: read_file(path)}`` for all ``paths``, in ``workers`` processes.

    A worker that dies (a segfault in a C++ parser, ``os._exit``) breaks the
    pool; we then rerun the unfinished files one at a time in a single worker
    until the one that kills it is found, record it as skipped, and go on in
    parallel with the rest.
    """
    results: dict = {}
    if workers == 0:
        for path in paths:
            results[path] = read_file(path, max_seconds, reader)
            bar.update()
        return results
    workers = workers or os.cpu_count() or 1
    pending = list(paths)
    while pending:
        chunk = max(1, min(_CHUNK_FILES, len(pending) // (4 * workers)))
        crashed = _pool_pass(pending, results, workers, chunk, max_seconds, reader, bar)
        pending = [p for p in pending if p not in results]
        if crashed and pending:
            suspects = pending[: 2 * workers * chunk + 1]  # what was in flight, and a margin
            if _pool_pass(suspects, results, 1, 1, max_seconds, reader, bar):
                culprit = next(p for p in suspects if p not in results)
                results[culprit] = {
                    "size": -1,
                    "mtime_ns": -1,
                    "hash": "",
                    "fallback": False,
                    "reason": "the reader crashed (its worker process died)",
                }
                bar.update()
            pending = [p for p in pending if p not in results]
    return results


def _pool_pass(paths, results, workers, chunk, max_seconds, reader, bar) -> bool:
    """Read ``paths`` into ``results`` in a fresh pool; True if a worker died."""
    with ProcessPoolExecutor(min(workers, len(paths))) as pool:
        futures = [
            pool.submit(_read_chunk, paths[i : i + chunk], max_seconds, reader) for i in range(0, len(paths), chunk)
        ]
        try:
            for future in as_completed(futures):
                for path, result in future.result():
                    results[path] = result
                    bar.update()
            return False
        except BrokenProcessPool:
            for future in futures:  # keep what finished before the crash
                if future.done() and future.exception() is None:
                    for path, result in future.result():
                        if path not in results:
                            results[path] = result
                            bar.update()
            return True


class Cache:
    """A cache folder: ``index.json`` + one ``segments-*.npy`` of packed rows + ``skipped.csv``.

    Without a folder it keeps everything in memory (same interface).
    """

    def __init__(self, folder, settings):
        self.folder = None if folder is None else Path(folder)
        self.settings = settings
        self.entries: dict = {}  # path -> {size, mtime_ns, hash, reason, fallback, start, count}
        self.rows = np.zeros((0, SEGMENT_BYTES), np.uint8)
        self.rows_file = None
        index_path = None if self.folder is None else self.folder / "index.json"
        if index_path is not None and index_path.is_file():
            index = json.loads(index_path.read_text())
            self.rows_file = index["segments_file"]  # replaced (and deleted) on the next write
            if settings is None or index["settings"] == settings:  # else: rebuild with new rules
                self.entries = index["files"]
                self.rows = np.load(self.folder / self.rows_file, mmap_mode="r")

    def entries_for(self, listed, chosen):
        """Drop files no longer listed; return ``(entries, paths that need reading)``."""
        listed = set(listed)
        self.changed = any(p not in listed for p in self.entries)
        entries = {p: e for p, e in self.entries.items() if p in listed}
        to_read = []
        for path in chosen:
            entry, stat = entries.get(path), os.stat(path)
            if entry and (entry["size"], entry["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
                continue
            if entry and entry["size"] == stat.st_size and entry["hash"] == content_hash(Path(path).read_bytes()):
                entry["mtime_ns"] = stat.st_mtime_ns  # touched or copied, same bytes
                self.changed = True
                continue
            to_read.append(path)
        return entries, to_read

    def update(self, entries, results) -> dict:
        """Merge fresh ``results`` into ``entries`` and rewrite the cache if anything changed."""
        if not (results or self.changed):
            return entries
        entries = {**entries, **results}
        entries = {p: entries[p] for p in sorted(entries)}
        blocks, start = [], 0
        for entry in entries.values():
            block = entry.pop("packed", None)
            if block is None:
                block = self.rows[entry.get("start", 0) : entry.get("start", 0) + entry.get("count", 0)]
            entry["start"], entry["count"] = start, len(block)
            start += len(block)
            blocks.append(block)
        if self.folder is None:
            self.rows = np.concatenate(blocks) if blocks else self.rows[:0]
        else:
            self._write(entries, blocks, start)
        self.entries = entries
        return entries

    def _write(self, entries, blocks, n_rows):
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"segments-{uuid.uuid4().hex[:12]}.npy"
        rows = np.lib.format.open_memmap(self.folder / name, mode="w+", dtype=np.uint8, shape=(n_rows, SEGMENT_BYTES))
        for block, entry in zip(blocks, entries.values()):
            rows[entry["start"] : entry["start"] + entry["count"]] = block
        rows.flush()
        del rows
        index = {"settings": self.settings, "segments_file": name, "files": entries}
        atomic_write(self.folder / "index.json", json.dumps(index))  # the commit point
        old, self.rows_file = self.rows_file, name
        self.rows = np.load(self.folder / name, mmap_mode="r")
        if old and old != name:
            try:
                (self.folder / old).unlink()
            except OSError:  # e.g. still mapped on Windows: harmless leftover
                pass

    def dataset_arrays(self, entries, chosen):
        """``(packed rows, file_ids, files)`` of the chosen files that gave segments."""
        files = [p for p in chosen if not entries[p]["reason"] and entries[p]["count"]]
        counts = np.array([entries[p]["count"] for p in files], dtype=np.int64)
        file_ids = np.repeat(np.arange(len(files)), counts)
        if counts.sum() == len(self.rows):  # every cached row chosen: keep the memory map
            return self.rows, file_ids, files
        starts = np.array([entries[p]["start"] for p in files], dtype=np.int64)
        index = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        return np.asarray(self.rows[index]), file_ids, files

    def write_report(self, skipped):
        """Write ``skipped.csv`` (path, reason); return its path, or None without a folder."""
        if self.folder is None:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "skipped.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "reason"])
            writer.writerows(skipped)
        return str(path)
