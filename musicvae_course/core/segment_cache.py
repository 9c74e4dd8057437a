"""The on-disk cache behind ``data.build_dataset``: locked, checked, written whole or not at all.

A cache folder holds ``index.json`` (settings, the rows file's name, one entry per file: signature, content
hash, rows or the reason it was skipped, and a checksum of its rows), one ``segments-*.npy`` of packed rows and
``skipped.csv``. Kept apart from :mod:`musicvae_course.core.data` (what students call) because it is plumbing.
Taught, as a black box, in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.

What can go wrong, and what happens:

* **Two builds at once** into one folder: a lock per folder (``filelock``), so the second waits (up to
  ``lock_timeout`` seconds) and then fails with ``CacheBusy`` naming the folder.
* **A killed build** leaves temporary files: they have unique names and are swept at the next start (under
  the lock, so they cannot be another build's). ``index.json`` is the commit point (``fileio.atomic_write``).
* **A full disk**: the free space is checked before writing, and ``ENOSPC`` becomes ``CacheFull`` naming the
  folder and the space needed. Rows are written with ordinary writes, never through a memory map (a write to a
  mapped file on a full disk kills the process with SIGBUS).
* **Damage** (a zeroed, truncated or edited rows file, a broken index): every entry's rows are checked against
  their checksum when the cache is opened; damaged parts are read again with a warning, and a broken index
  means a rebuild with a warning. An index over ``MAX_CACHE_INDEX_BYTES`` or nested too deep to parse is broken;
  one naming rows outside its folder, or rows that are not a regular file (a FIFO would block), names damaged rows.
* **A read-only folder**: a complete cache is used as it is; files that need reading are read into memory only,
  with a warning.
"""

from __future__ import annotations

import csv
import errno
import functools
import io
import json
import os
import re
import shutil
import socket
import sys
import time
import uuid
import warnings
from pathlib import Path

import numpy as np

from ..fileio import atomic_write, sweep_temp_files
from .dataset_checks import check_json_parse_cost
from .midi_limits import MAX_COMPRESSION_RATIO, MAX_SEGMENTS_PER_FILE
from .read_pool import content_hash, file_signature
from .safe_files import (
    check_not_hollow,
    check_place_for_file,
    check_regular_file,
    display_name,
    read_regular_file,
)

SEGMENT_BYTES = 352  #: 88 x 32 bits, packed
LOCK_TIMEOUT_S = 600.0  #: how long a build waits for another build of the same cache folder
_HEADER_BYTES = 128  # an .npy v1 header for a 2-D uint8 array fits in 128 bytes
_ROWS_FILE = re.compile(r"segments-[\w.-]+\.npy")  # as _write names them, in the folder itself


_OWNER = ".lock.owner"  # who holds .lock: filelock truncates the lock file itself when it opens it
PARSE_ALLOWANCE = 64 * 1024 * 1024  #: bytes any index may cost to parse, or any rows file hold in holes


class CacheBusy(TimeoutError):
    """Another build holds the cache folder's lock."""


class CacheFull(OSError):
    """The cache folder's disk has not enough space; the message names the folder and the space needed."""


class Cache:
    """A locked cache folder (or, with ``folder=None``, the same interface in memory). Use as a context manager."""

    def __init__(self, folder, settings, lock_timeout: float = LOCK_TIMEOUT_S):
        self.folder = None if folder is None else Path(folder)
        self.settings = settings
        self.entries: dict = {}  # path -> {size, signature, hash, reason, start, count, rows_hash}
        self.rows = np.zeros((0, SEGMENT_BYTES), np.uint8)
        self.rows_file = None
        self.read_only = False
        self.changed = False
        self._lock = None
        if self.folder is not None:
            self._open(lock_timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._lock is not None:
            (self.folder / _OWNER).unlink(missing_ok=True)  # ours: written when we took the lock
            self._lock.release()
            self._lock = None

    # --- opening -------------------------------------------------------------------------

    def _open(self, lock_timeout):
        from filelock import FileLock, Timeout

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # a link or a folder as .lock: a bare OSError ("Too many levels of symbolic links"), naming no remedy
            check_place_for_file(self.folder / ".lock", "lock file", lock=True)
            for name in ("index.json", "skipped.csv"):  # a folder there failed the build only after every read
                check_place_for_file(self.folder / name, "cache's file")
            lock = FileLock(str(self.folder / ".lock"))
            _acquire(lock, self.folder, lock_timeout)
            self._lock = lock
            _record_owner(self.folder)
        except Timeout:
            raise CacheBusy(
                f"the cache folder {display_name(self.folder)} is in use by another build (waited {lock_timeout:g} s "
                f"for its lock {display_name(self.folder / '.lock')}{_owner_text(self.folder)}); wait for it to "
                "finish, or use another cache_dir"
            ) from None
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise
            self.read_only = True  # no lock possible: nobody can write here, and neither will we
        if not self.read_only:
            self._sweep()
        self._load_index()

    def _sweep(self):
        """Remove what killed builds left: temporary files, rows files no index names."""
        for name in ("index.json", "skipped.csv", _OWNER):  # ours only: not a user's .notes.tmp
            sweep_temp_files(self.folder, name)
        for path in self.folder.glob(".segments-*.npy.*.tmp"):  # rows files' leftovers (their names vary)
            if path.is_file():
                path.unlink(missing_ok=True)
        named = self._index_json.get("segments_file") if (self.folder / "index.json").is_file() else None
        for path in self.folder.glob("segments-*.npy"):
            if path.name != named:
                path.unlink(missing_ok=True)

    @functools.cached_property
    def _index_json(self) -> dict:
        """The index as the cache was opened ({} if damaged: warned once, though the sweep and the load read it)."""
        from .midi_limits import MAX_CACHE_INDEX_BYTES

        try:  # bounded: a 3 GB sparse index.json took 13 s and 3.3 GB before failing; a JSON nested deep recursed
            text = read_regular_file(self.folder / "index.json", MAX_CACHE_INDEX_BYTES)
            check_json_parse_cost(text, PARSE_ALLOWANCE)
            index = json.loads(text)
            if not isinstance(index, dict) or not isinstance(index.get("files"), dict):
                raise ValueError("not a cache index")
            return index
        except (OSError, ValueError, RecursionError) as err:
            warnings.warn(f"{display_name(self.folder)}: damaged cache index ({err}); rebuilding", stacklevel=5)
            return {}

    def _load_index(self):
        if not (self.folder / "index.json").is_file():
            return
        index = self._index_json
        if not index or (self.settings is not None and index.get("settings") != self.settings):
            self.changed = bool(index)  # other rules: every file is read again
            return
        named = index.get("segments_file")
        try:
            # a name of this folder's own rows files only, and a regular file: np.load blocked forever on a FIFO the
            # index named, read any file it named by an absolute path (/dev/zero), and the rebuild then deleted that
            # file as the old rows (the name is kept as self.rows_file, which the rebuild removes, only once it fits)
            if not (isinstance(named, str) and _ROWS_FILE.fullmatch(named)):
                raise ValueError(f"not a segments-*.npy name of this folder: {named!r}")
            self.rows_file = named
            size = check_regular_file(self.folder / self.rows_file).st_size
            check_not_hollow(self.folder / self.rows_file, size, MAX_COMPRESSION_RATIO, PARSE_ALLOWANCE)
            rows = np.load(self.folder / self.rows_file, mmap_mode="r", allow_pickle=False)
            if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != SEGMENT_BYTES:
                raise ValueError(f"rows of shape {rows.shape} and type {rows.dtype}")
        except (OSError, ValueError, TypeError) as err:
            warnings.warn(
                f"{display_name(self.folder)}: damaged segments file {display_name(str(named))} ({err}); "
                "reading every file again",
                stacklevel=3,
            )
            self.changed = True
            return
        entries, damaged, claimed = {}, [], 0
        for path, entry in index["files"].items():
            # entries that claim more rows than one file gives, or than the rows file holds in all (an honest index
            # claims each row once): a 12 KB cache of a sparse rows file and one entry of 3 million rows took 6 s
            # and 2.2 GB to check (a bare MemoryError past that), 250,000 entries of the same rows hours
            if isinstance(entry, dict) and self._entry_ok(entry, rows, len(rows) - claimed):
                entries[path] = entry
                claimed += entry["count"]
            else:
                damaged.append(path)
        if damaged:
            warnings.warn(
                f"{display_name(self.folder)}: {len(damaged)} cached file(s) damaged (a field missing or malformed, "
                "or rows failing their checksum); "
                f"reading them again, e.g. {display_name(damaged[0])}",
                stacklevel=3,
            )
            self.changed = True
        self.entries, self.rows = entries, rows

    @staticmethod
    def _entry_ok(entry, rows, unclaimed: int) -> bool:
        """Whether an index entry has the fields and types this module writes, and rows matching its checksum.

        Checked field by field: an index that is valid JSON may hold anything, and an entry without ``hash``, a
        ``start`` of ``1e999`` or ``"0"``, or a ``reason`` that is a list crashed the build that reused it.
        """
        reason, start, count = entry.get("reason"), entry.get("start", 0), entry.get("count", 0)
        signature = entry.get("signature")
        if not (
            (reason is None or isinstance(reason, str))
            and _whole(entry.get("size"))
            and isinstance(entry.get("hash"), str)
            and isinstance(signature, list)
            and all(_whole(value) for value in signature)
            and _whole(start)
            and _whole(count)
        ):
            return False
        if reason:
            entry["start"], entry["count"] = 0, 0  # a skipped file has no rows
            return True
        if start < 0 or not 1 <= count <= min(MAX_SEGMENTS_PER_FILE, unclaimed) or start + count > len(rows):
            return False
        if not isinstance(entry.get("rows_hash"), str):
            return False
        return content_hash(np.ascontiguousarray(rows[start : start + count])) == entry["rows_hash"]  # no copy

    # --- what to read --------------------------------------------------------------------

    def entries_for(self, listed, chosen):
        """Drop files no longer listed; return ``(entries, paths that need reading)``."""
        listed = set(listed)
        self.changed = self.changed or any(p not in listed for p in self.entries)
        entries = {p: e for p, e in self.entries.items() if p in listed}
        to_read = []
        for path in chosen:
            entry, signature = entries.get(path), list(file_signature(path))
            if entry and signature and entry.get("signature") == signature:
                continue
            if entry and signature and entry.get("size") == signature[0] and entry["hash"] == self._hash(path):
                entry["signature"] = signature  # touched or copied, same bytes
                self.changed = True
                continue
            to_read.append(path)
        return entries, to_read

    @staticmethod
    def _hash(path) -> str | None:
        try:
            from .midi_limits import MAX_MIDI_BYTES

            return content_hash(read_regular_file(path, MAX_MIDI_BYTES))
        except (ValueError, OSError):
            return None

    # --- writing -------------------------------------------------------------------------

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
            else:
                entry["rows_hash"] = content_hash(np.ascontiguousarray(block).tobytes())
            entry["start"], entry["count"] = start, len(block)
            start += len(block)
            blocks.append(block)
        if self.folder is None or self.read_only:
            if self.read_only and results:
                warnings.warn(
                    f"{display_name(self.folder)} is read-only: {len(results)} file(s) read into memory only, "
                    "not cached",
                    stacklevel=3,
                )
            self.rows = np.concatenate(blocks) if blocks else self.rows[:0]
        else:
            self._write(entries, blocks, start)
        self.entries = entries
        return entries

    def _write(self, entries, blocks, n_rows):
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "|u1", "fortran_order": False, "shape": (n_rows, SEGMENT_BYTES)}
        )
        index_text = json.dumps({"settings": self.settings, "segments_file": "segments-0.npy", "files": entries})
        needed = len(header.getvalue()) + n_rows * SEGMENT_BYTES + len(index_text)
        free = shutil.disk_usage(self.folder).free
        if free < needed:
            raise _full(self.folder, needed, free)
        name = f"segments-{uuid.uuid4().hex[:12]}.npy"

        def write_rows(handle):
            handle.write(header.getvalue())
            for block in blocks:
                handle.write(np.ascontiguousarray(block).tobytes())  # plain writes: a full disk is an error

        index = {"settings": self.settings, "segments_file": name, "files": entries}
        try:
            atomic_write(self.folder / name, write_rows)
            atomic_write(self.folder / "index.json", json.dumps(index))  # the commit point
        except BaseException as err:
            (self.folder / name).unlink(missing_ok=True)  # not committed: the old index still names the old rows
            if isinstance(err, OSError) and err.errno == errno.ENOSPC:
                raise _full(self.folder, needed, shutil.disk_usage(self.folder).free) from None
            raise
        old, self.rows_file = self.rows_file, name
        self.rows = np.load(self.folder / name, mmap_mode="r")
        if old and old != name:
            (self.folder / old).unlink(missing_ok=True)  # a dataset still mapping it keeps its pages (POSIX)

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
        """Write ``skipped.csv`` (path, reason; any file name, as printable text); return its path, or None."""
        if self.folder is None:
            return None
        path = self.folder / "skipped.csv"
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["path", "reason"])
        writer.writerows((display_name(p), display_name(r)) for p, r in skipped)
        if self.read_only:
            return str(path) if path.is_file() else None
        atomic_write(path, text.getvalue())
        return str(path)


def _acquire(lock, folder: Path, timeout: float) -> None:
    """Take ``lock``, saying once what is waited for (lock file, holder) and showing the seconds waited.

    Raises ``filelock.Timeout`` after ``timeout`` seconds, and ``CacheBusy`` at once when the build that took it is
    gone (its process id no longer runs on this host): then a process it started still holds it, which no wait ends.
    """
    from filelock import Timeout
    from tqdm.auto import tqdm

    try:
        lock.acquire(timeout=0)
        return
    except Timeout:
        pass
    deadline, began = time.monotonic() + timeout, time.monotonic()
    warnings.warn(
        f"{display_name(folder)}: waiting up to {timeout:g} s for its lock {display_name(folder / '.lock')}"
        f"{_owner_text(folder)} (another build of this cache; lock_timeout= sets the wait)",
        stacklevel=5,
    )
    gone = 0  # checks in a row that found the taker gone: twice, 1 s apart (a new taker writes its name at once)
    with tqdm(total=int(timeout) or None, desc="waiting for the cache lock", unit="s") as bar:
        while True:
            gone = gone + 1 if _owner_gone(folder) else 0
            if gone >= 2:
                raise CacheBusy(
                    f"the cache folder {display_name(folder)} is locked ({display_name(folder / '.lock')}) by a "
                    f"build that is gone{_owner_text(folder)}: a process it started still holds the lock; end it "
                    "(or restart the kernel that started it), or use another cache_dir"
                )
            remaining = deadline - time.monotonic()
            try:
                lock.acquire(timeout=max(0.0, min(1.0, remaining)))
                return
            except Timeout:
                bar.update(int(time.monotonic() - began) - bar.n)
                if remaining <= 1.0:
                    raise


def _record_owner(folder: Path) -> None:
    """Write who holds the lock (pid, host, start) beside it, for a build that waits on it to say."""
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    owner["program"] = display_name(sys.argv[0] if sys.argv and sys.argv[0] else "python")[-80:]
    try:
        atomic_write(folder / _OWNER, json.dumps(owner))
    except OSError:
        pass  # only a courtesy to builds that wait


def _owner(folder: Path) -> dict:
    try:
        owner = json.loads(read_regular_file(folder / _OWNER, 4096))
        return owner if isinstance(owner, dict) and _whole(owner.get("pid")) else {}
    except (OSError, ValueError, RecursionError):
        return {}


def _owner_text(folder: Path) -> str:
    owner = _owner(folder)
    if not owner:
        return ""
    where = f" on {display_name(str(owner.get('host')))[:60]}"
    return f", taken by process {owner['pid']}{where} at {display_name(str(owner.get('since')))[:20]}"


def _owner_gone(folder: Path) -> bool:
    """Whether the lock's recorded taker was a process of this host that no longer runs."""
    owner = _owner(folder)
    if not owner or owner.get("host") != socket.gethostname() or owner["pid"] == os.getpid():
        return False
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, another user's
    return False


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _full(folder, needed: int, free: int) -> CacheFull:
    return CacheFull(
        errno.ENOSPC,
        f"no space left for the cache in {display_name(folder)}: it needs {needed / 1e6:.1f} MB, "
        f"{free / 1e6:.1f} MB free; free some space or pass another cache_dir",
    )
