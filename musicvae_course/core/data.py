"""A MIDI corpus as 2-bar training segments: cached, bit-packed, split by file.

Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``::

    ds = build_dataset("corpus/", cache_dir="cache/", path_filter="bach")
    print(ds.report)                      # files read / from cache / skipped, segments
    train, val, test = split_by_file(ds)  # no file in two splits
    for x in train.batches(256):          # float32 (256, 1, 88, 32)
        ...

A segment is 32 sixteenth steps (2 bars of 4/4) x 88 pitches, cut every 16
steps, windows with no note dropped (``pianoroll.segments``). Segments are kept
bit-packed, 352 bytes each (``np.packbits``), and unpacked a whole batch at a
time. The cache folder holds ``index.json`` (one row per file: path, size,
mtime, content hash, rows or the reason it was skipped), ``segments-*.npy``
(memory-mapped on load) and ``skipped.csv``. Use one cache folder per corpus.

Subsets: ``build_dataset(..., path_filter=, fraction=, max_files=)`` reads only
the chosen files; ``ds.select_files(...)`` takes the same arguments on a built
dataset. To ship a dataset as one file: ``ds.save_npz("d.npz")`` (about 10-35
bytes per segment compressed: 300k segments fit in ~10 MB) and
``load_dataset("d.npz")``; ``ds.to("cuda")`` then keeps it on the GPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..fileio import walk
from . import midi_fast
from .dataset_checks import SEGMENT_BYTES, as_segments, check_file_ids, check_packed, checked_npz
from .file_lists import MIDI_SUFFIXES, check_build_arguments, list_midi_files, select_files
from .midi_limits import READ_TIMEOUT_S
from .pianoroll import N_PITCHES, SEGMENT_STEPS
from .read_pool import content_hash, read_files
from .safe_files import display_name
from .seeding import DEFAULT_SEED
from .segment_cache import LOCK_TIMEOUT_S, Cache

__all__ = [
    "MIDI_SUFFIXES",
    "BuildReport",
    "PianoRollDataset",
    "build_dataset",
    "list_midi_files",
    "load_dataset",
    "select_files",
    "split_by_file",
]

CACHE_FORMAT = 1  #: bump when the cache layout or the roll rules change
MAX_DATASET_FILES = 2_000_000  #: file names a dataset .npz may list (LMD's lmd_full has 178,561)
_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)  # np.packbits is big-endian within a byte


@dataclass
class BuildReport:
    """What ``build_dataset`` did. ``skipped`` lists ``(path, reason)``."""

    files: int = 0
    read: int = 0
    from_cache: int = 0
    segments: int = 0
    skipped: list = field(default_factory=list)
    seconds: float = 0.0
    skipped_csv: str | None = None

    def __str__(self) -> str:
        text = (
            f"{self.files:,} files: {self.read:,} read, {self.from_cache:,} from cache, "
            f"{len(self.skipped):,} skipped; {self.segments:,} segments in {self.seconds:.1f} s"
        )
        return text + (f" (skipped files: {self.skipped_csv})" if self.skipped and self.skipped_csv else "")


class PianoRollDataset:
    """Binary 2-bar segments, bit-packed in memory (or memory-mapped, or on a GPU).

    Args:
        segments: ``(N, 88, 32)`` bool or {0, 1} array (a memmap works).
        file_ids: ``(N,)`` ints, index into ``files`` of each segment's source.
        files: list of source paths.

    ``ds[i]`` is a float32 tensor ``(1, 88, 32)``; ``ds.batches(...)`` yields
    ``(B, 1, 88, 32)``. Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
    """

    def __init__(self, segments, file_ids=None, files=None):
        rolls = as_segments(segments)  # (N, 88, 32) of 0/1, or ValueError saying what it is
        packed = np.packbits(rolls.reshape(len(rolls), N_PITCHES * SEGMENT_STEPS).astype(bool), axis=1)
        self._init(packed, file_ids, files)

    @classmethod
    def from_packed(cls, packed, file_ids=None, files=None, report=None) -> "PianoRollDataset":
        """Wrap ``(N, 352)`` uint8 rows made by ``np.packbits`` (numpy, memmap or tensor)."""
        ds = cls.__new__(cls)
        ds._init(packed, file_ids, files, report)
        return ds

    def _init(self, packed, file_ids, files, report=None):
        check_packed(packed)
        self.packed = packed
        # whole numbers indexing files: strings, fractions and ids outside files were taken, or failed later
        self.file_ids, self.files = check_file_ids(file_ids, int(packed.shape[0]), files)
        self.report = report

    def __len__(self) -> int:
        return int(self.packed.shape[0])

    def __repr__(self) -> str:
        n_files = "?" if self.file_ids is None else len(np.unique(self.file_ids))
        return f"PianoRollDataset({len(self):,} segments from {n_files} files, on {self.device})"

    @property
    def device(self) -> torch.device:
        return self.packed.device if torch.is_tensor(self.packed) else torch.device("cpu")

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -len(self) <= index < len(self):
            raise IndexError(f"segment {index} out of range for {len(self)} segments")
        return self._gather(torch.tensor([index % len(self)]))[0]

    @property
    def segments(self) -> np.ndarray:
        """All segments unpacked, ``(N, 88, 32)`` bool numpy (N x 2,816 bytes)."""
        packed = self.packed.cpu().numpy() if torch.is_tensor(self.packed) else np.asarray(self.packed)
        return np.unpackbits(packed, axis=1).reshape(-1, N_PITCHES, SEGMENT_STEPS).astype(bool)

    def batches(
        self, batch_size: int = 256, shuffle: bool = True, generator=None, device=None, drop_last: bool = False
    ):
        """Yield float32 ``(B, 1, 88, 32)`` batches, each gathered by one index operation.

        Args:
            shuffle: random order from ``torch.randperm(generator=generator)``.
            device: where batches go (default: where the data is). Packed bytes
                travel and are unpacked there, 8x less to copy.
            drop_last: skip a final batch smaller than ``batch_size``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        order = order.to(self.device)
        for start in range(0, n, batch_size):
            if drop_last and start + batch_size > n:
                break
            yield self._gather(order[start : start + batch_size], device)

    def _gather(self, indices: torch.Tensor, device=None) -> torch.Tensor:
        if torch.is_tensor(self.packed):
            rows = self.packed[indices]
        else:
            rows = torch.from_numpy(np.asarray(self.packed[indices.numpy()]))
        rows = rows.to(device if device is not None else rows.device, non_blocking=True)
        bits = (rows.unsqueeze(-1) >> _SHIFTS.to(rows.device)) & 1
        return bits.reshape(-1, 1, N_PITCHES, SEGMENT_STEPS).to(torch.float32)

    def to(self, device) -> "PianoRollDataset":
        """The same segments held as packed bytes on ``device`` (e.g. ``"cuda"``)."""
        packed = self.packed if torch.is_tensor(self.packed) else torch.from_numpy(np.ascontiguousarray(self.packed))
        return PianoRollDataset.from_packed(packed.to(device), self.file_ids, self.files, self.report)

    def subset(self, indices) -> "PianoRollDataset":
        """The segments at ``indices`` (ints or a bool mask), with their file ids."""
        indices = np.asarray(indices.cpu() if torch.is_tensor(indices) else indices)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        rows = (
            self.packed[torch.from_numpy(indices).to(self.device)]
            if torch.is_tensor(self.packed)
            else self.packed[indices]
        )
        file_ids = None if self.file_ids is None else self.file_ids[indices]
        return PianoRollDataset.from_packed(rows, file_ids, self.files)

    def select_files(self, path_filter=None, max_files=None, fraction=None, seed: int = DEFAULT_SEED):
        """The segments of some files only; same rules as ``build_dataset``'s arguments."""
        present = np.unique(self._require_file_ids())
        chosen = select_files([self.files[i] for i in present], path_filter, max_files, fraction, seed)
        keep = present[np.isin([self.files[i] for i in present], chosen)]
        return self.subset(np.isin(self.file_ids, keep))

    def save_npz(self, path) -> Path:
        """Write one compressed ``.npz`` (packed rows, file ids, paths); open it with ``load_dataset``.

        Written whole or not at all (``fileio.atomic_write``): an interrupted save leaves the old file. ``.npz`` is
        added to a name without it, as numpy does, and the path returned is the one written.
        """
        from ..fileio import atomic_write

        path = Path(path)
        path = path if path.suffix.lower() == ".npz" else path.with_name(path.name + ".npz")
        packed = self.packed.cpu().numpy() if torch.is_tensor(self.packed) else np.asarray(self.packed)
        file_ids = self.file_ids if self.file_ids is not None else np.zeros(len(self), np.int64)
        files = np.array(self.files or [""], dtype=str)
        return atomic_write(
            path, lambda handle: np.savez_compressed(handle, packed=packed, file_ids=file_ids, files=files)
        )

    def _require_file_ids(self) -> np.ndarray:
        if self.file_ids is None or self.files is None:
            raise ValueError("this dataset was made without file_ids/files; pass them to PianoRollDataset")
        return self.file_ids


def split_by_file(ds: PianoRollDataset, fractions=(0.8, 0.1, 0.1), seed: int = DEFAULT_SEED):
    """Split into datasets whose files are disjoint (overlapping windows never leak).

    Files with identical segments (copies of one piece under two names) form one group and always land in the
    same part. Groups are shuffled with ``seed`` and cut by *group count* at the cumulative ``fractions`` (which
    must sum to 1). Returns one dataset per fraction.
    Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.ndim != 1 or not np.all(np.isfinite(fractions)) or np.any(fractions < 0):
        raise ValueError(f"fractions must be finite, >= 0 and sum to 1, got {tuple(fractions)}")
    if not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {tuple(fractions)}")
    file_ids = ds._require_file_ids()
    packed = ds.packed.cpu().numpy() if torch.is_tensor(ds.packed) else np.asarray(ds.packed)
    order = np.argsort(file_ids, kind="stable")
    present, first = np.unique(file_ids[order], return_index=True)
    ends = np.append(first[1:], len(order))
    digests = [content_hash(packed[order[a:b]].tobytes()) for a, b in zip(first, ends)]
    groups = np.unique(digests, return_inverse=True)[1].reshape(-1)  # group index per present file
    group_ids = np.arange(groups.max() + 1 if len(groups) else 0)
    np.random.default_rng(seed).shuffle(group_ids)
    cuts = np.round(np.cumsum(fractions)[:-1] * len(group_ids)).astype(int)
    return tuple(ds.subset(np.isin(file_ids, present[np.isin(groups, part)])) for part in np.split(group_ids, cuts))


def build_dataset(
    sources,
    cache_dir=None,
    workers=None,
    *,
    path_filter=None,
    max_files=None,
    fraction=None,
    seed: int = DEFAULT_SEED,
    max_seconds: float | None = midi_fast.MAX_SECONDS,
    reader="fast",
    progress: bool = True,
    timeout: float | None = READ_TIMEOUT_S,
    lock_timeout: float = LOCK_TIMEOUT_S,
) -> PianoRollDataset:
    """Read MIDI files into a dataset of 2-bar segments, reusing a cache.

    Args:
        sources: folder (searched recursively, e.g. LMD's ``lmd_full/``), glob,
            file, or a list of them; ``.mid``/``.midi``/``.rmi``/``.kar`` files are used.
        cache_dir: folder for the cache. Unchanged files (same size and mtime,
            or same content hash) are not read again; changed and new files are;
            files gone from ``sources`` are dropped. ``None``: no cache.
        workers: processes (default: all cores); ``0`` reads in this process
            (for debugging: a crashing parser would then take it down).
        path_filter, max_files, fraction, seed: read only some files; see
            ``select_files``. Cached files left out stay in the cache.
        max_seconds: skip files longer than this (``None``: no limit).
        reader: ``"fast"`` (the kit's event parser, ``midi_fast``), ``"reference"``
            (pretty_midi), or a picklable function ``path -> (88, T) roll``
            that raises ``ValueError`` to skip a file.
        progress: show a progress bar and the summary line.
        timeout: seconds one file may take to read and roll (``READ_TIMEOUT_S``); ``None``: no limit.
        lock_timeout: seconds to wait for another build of the same ``cache_dir`` (``LOCK_TIMEOUT_S``).

    Returns:
        ``PianoRollDataset`` with ``.report`` (a ``BuildReport``). Bad entries
        (empty, not MIDI, corrupt, truncated, no notes, drums only, too long,
        over a limit of ``core.midi_limits``, slower than ``timeout``, not a
        regular file (FIFO, device, folder), a dangling symlink or a symlink
        loop, or crashing the parser) are skipped and listed in
        ``report.skipped`` and ``cache_dir/skipped.csv``; they never stop the build.

    Raises:
        CacheBusy: another build kept the cache folder locked for ``lock_timeout`` seconds.
        CacheFull: the cache's disk lacks the space needed (the message says how much).

    Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
    """
    from tqdm.auto import tqdm

    check_build_arguments(workers, max_files, max_seconds, timeout, reader)
    began = time.perf_counter()
    unreadable: list = []
    listed = [str(p) for p in list_midi_files(sources, unreadable)]
    if not listed:
        hint = (
            unreadable and f" ({len(unreadable)} folder(s) could not be listed, e.g. {display_name(unreadable[0][0])}"
        )
        raise FileNotFoundError(
            f"no .mid, .midi, .rmi or .kar files in {sources}" + (f"{hint}: {unreadable[0][1]})" if hint else "")
        )
    chosen = select_files(listed, path_filter, max_files, fraction, seed)
    if not chosen:
        raise ValueError(
            f"none of the {len(listed)} MIDI files in {sources} passed path_filter={path_filter!r}, "
            f"fraction={fraction}, max_files={max_files}"
        )
    settings = {
        "format": CACHE_FORMAT,
        "max_seconds": max_seconds,
        "reader": reader if isinstance(reader, str) else f"{reader.__module__}.{reader.__qualname__}",
    }
    with Cache(cache_dir, settings, lock_timeout) as cache:
        entries, to_read = cache.entries_for(listed, chosen)
        with tqdm(total=len(to_read), desc="Reading MIDI", unit="file", disable=not (progress and to_read)) as bar:
            results = read_files(to_read, workers, max_seconds, reader, bar, timeout)
        entries = cache.update(entries, results)
        ds = PianoRollDataset.from_packed(*cache.dataset_arrays(entries, chosen))
        report = BuildReport(
            files=len(chosen),
            read=len(to_read),
            from_cache=len(chosen) - len(to_read),
            segments=len(ds),
            skipped=[(p, entries[p]["reason"]) for p in chosen if entries[p]["reason"]] + unreadable,
        )
        report.skipped_csv = cache.write_report(report.skipped)
    report.seconds = time.perf_counter() - began
    ds.report = report
    if progress:
        tqdm.write(str(report))
    return ds


def _npz_arrays(path: Path):
    """``(packed, file_ids, files)`` of a ``save_npz`` file, checked as save_npz writes them (0-d or 2-D ids, file
    names of numbers or bytes got through); ``ValueError`` naming the file. ``files`` is bounded before it becomes
    Python strings: 392 KB of ``'ab'`` repeated (256 MB as numpy) took 22 s and 3.1 GB as 33 million str objects."""
    with checked_npz(path) as handle, np.load(handle, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in ("packed", "file_ids", "files") if name in archive.files}
    found = {name: f"{array.dtype}{array.shape}" for name, array in arrays.items()}
    packed, ids, files = (arrays.get(name) for name in ("packed", "file_ids", "files"))
    if (
        len(arrays) < 3
        or packed.dtype != np.uint8
        or packed.shape[1:] != (SEGMENT_BYTES,)
        or ids.dtype.kind not in "iu"
        or ids.shape != packed.shape[:1]
        or files.dtype.kind != "U"
        or files.ndim != 1
    ):
        raise ValueError(
            f"{display_name(path)}: not a dataset .npz of save_npz (packed: uint8 (N, {SEGMENT_BYTES}); file_ids: "
            f"ints (N,); files: strings (F,)); has {found}"
        )
    if len(files) > MAX_DATASET_FILES:
        raise ValueError(
            f"{display_name(path)}: lists {len(files):,} files, more than the limit of {MAX_DATASET_FILES:,} "
            "(data.MAX_DATASET_FILES)"
        )
    if len(ids) and not 0 <= ids.min() <= ids.max() < len(files):  # each segment's file must be in files
        raise ValueError(f"{display_name(path)}: file_ids {ids.min()}..{ids.max()} outside the {len(files)} files")
    return packed, ids, files.tolist()


def _holds_midi(folder: Path, look: int = 2000) -> bool:
    """Whether ``folder`` has MIDI files among its first ``look`` entries, subfolders included: a look, not a walk
    of all of LMD's 178,000 files."""
    seen = 0
    for _, folders, names in walk(folder):  # links are not followed: no loops; no recursion: any depth
        if any(name.lower().endswith(MIDI_SUFFIXES) for name in names):
            return True
        seen += len(folders) + len(names)
        if seen > look:
            return False
    return False


def load_dataset(path, lock_timeout: float = LOCK_TIMEOUT_S) -> PianoRollDataset:
    """Open a cache folder written by ``build_dataset`` (memory-mapped) or a ``.npz`` from ``save_npz``.

    ``lock_timeout``: seconds to wait while a build of the same cache folder runs (the wait names its lock file
    and the process holding it, and shows the seconds waited); then ``CacheBusy``.
    """
    path = Path(path)
    if path.suffix.lower() == ".npz" and not path.is_dir():  # X.NPZ from a Windows copy is a .npz too
        return PianoRollDataset.from_packed(*_npz_arrays(path))
    if not (path / "index.json").is_file():
        hint = ""
        if _holds_midi(path):  # the likeliest mix-up: a folder of MIDI files where their cache is wanted
            hint = f"; it holds MIDI files: read them into a cache with build_dataset({str(path)!r}, cache_dir=...)"
        raise FileNotFoundError(f"{display_name(path)}: not a dataset cache (no index.json) and not a .npz file{hint}")
    with Cache(path, None, lock_timeout) as cache:
        ds = PianoRollDataset.from_packed(*cache.dataset_arrays(cache.entries, list(cache.entries)))
    skipped = [(p, e["reason"]) for p, e in cache.entries.items() if e["reason"]]
    ds.report = BuildReport(
        files=len(cache.entries),
        from_cache=len(cache.entries),
        segments=len(ds),
        skipped=skipped,
        skipped_csv=str(path / "skipped.csv"),
    )
    return ds
