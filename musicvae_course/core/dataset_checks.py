"""Checks on what a ``PianoRollDataset`` is made from: rolls, packed rows, file ids and names, ``.npz`` files.

Kept apart from :mod:`musicvae_course.core.data` (what students call). Each refusal is a ``ValueError`` naming the
argument (or the file) and what is wrong, before anything is packed or batched: ``file_ids`` of strings raised
``invalid literal for int()``, floats were cut to whole numbers, negative ids picked files from the end of
``files``, ids past ``files`` raised a bare ``IndexError`` in ``select_files``; float ``packed`` rows were accepted
and every batch then raised ``NotImplementedError``; an empty ``(0, 88, 32)`` array of segments raised numpy's
``cannot reshape``. Taught, as a black box, in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from .pianoroll import N_PITCHES, SEGMENT_STEPS
from .safe_files import FileSkip, check_not_hollow, check_regular_file, display_name

SEGMENT_BYTES = N_PITCHES * SEGMENT_STEPS // 8  #: one packed segment: 352 bytes
MAX_NPZ_ARRAYS = 64  #: arrays in an .npz the kit reads (a dataset has 3, a corpus note cache 4)


def as_segments(segments) -> np.ndarray:
    """``segments`` as a numpy array of shape ``(N, 88, 32)`` holding only 0 and 1 (any N, 0 included)."""
    try:
        rolls = np.asarray(segments)
    except (ValueError, TypeError) as err:  # lists of rolls of different sizes
        raise ValueError(f"segments must be an array of shape (N, 88, 32): {str(err).splitlines()[0]}") from None
    if rolls.ndim != 3 or rolls.shape[1:] != (N_PITCHES, SEGMENT_STEPS):
        raise ValueError(f"segments must have shape (N, 88, 32), got {rolls.shape}")
    check_binary(rolls, "segments")
    return rolls


def check_binary(rolls: np.ndarray, name: str) -> None:
    """Refuse anything but bool or exactly 0/1 values (NaN, 0.01, -1 would silently become notes)."""
    if rolls.dtype == bool or rolls.size == 0:
        return
    if not np.issubdtype(rolls.dtype, np.number) or np.iscomplexobj(rolls):
        raise ValueError(f"{name} must be bool or 0/1 numbers, got dtype {rolls.dtype}")
    if not ((rolls == 0) | (rolls == 1)).all():
        bad = rolls[(rolls != 0) & (rolls != 1)].ravel()[:3]
        raise ValueError(f"{name} must hold only 0 and 1 (binary rolls), found e.g. {bad.tolist()}")


def check_packed(packed) -> None:
    """Refuse ``packed`` rows that are not uint8 ``(N, 352)`` (numpy, memmap, tensor, or any object with ``shape``
    and indexing), naming what they are."""
    shape, dtype = getattr(packed, "shape", None), getattr(packed, "dtype", None)
    if shape is None or tuple(shape[1:]) != (SEGMENT_BYTES,):
        shown = tuple(shape) if shape is not None else type(packed).__name__
        raise ValueError(f"packed segments must have shape (N, {SEGMENT_BYTES}), got {shown}")
    if dtype is not None and dtype not in (np.uint8, torch.uint8):  # no dtype: rows of the caller's own kind
        raise ValueError(f"packed segments must be uint8 bytes made by np.packbits, got {dtype}")


def check_file_ids(file_ids, n_segments: int, files) -> tuple[np.ndarray | None, list | None]:
    """``(file_ids as int64 (N,), files as a list of str)``, each ``None`` if given as ``None``.

    ``file_ids`` must be whole numbers, one per segment, and index into ``files`` (``0 <= id < len(files)``) when
    ``files`` is given; ``files`` a list (or array) of names, not one string.
    """
    if isinstance(files, (str, bytes)):  # list("abc") made three files "a", "b", "c"
        raise ValueError(f"files must be a list of file names, got one {type(files).__name__}: {files[:60]!r}")
    names = None if files is None else [str(f) for f in files]
    if file_ids is None:
        return None, names
    ids = np.asarray(file_ids.cpu() if torch.is_tensor(file_ids) else file_ids)
    if ids.dtype == bool or ids.dtype.kind not in "iuf" or ids.ndim != 1:
        raise ValueError(f"file_ids must be whole numbers of shape (N,), got {ids.dtype} of shape {ids.shape}")
    if ids.dtype.kind == "f" and not (np.isfinite(ids).all() and (ids == np.round(ids)).all()):
        raise ValueError(f"file_ids must be whole numbers, found e.g. {ids[ids != np.round(ids)][:3].tolist()}")
    if len(ids) != n_segments:
        raise ValueError(f"file_ids has {len(ids)} entries for {n_segments} segments")
    if len(ids) and (ids.min() < 0 or (names is not None and ids.max() >= len(names))):
        within = f"0..{len(names) - 1} (indices into the {len(names)} files)" if names is not None else ">= 0"
        raise ValueError(f"file_ids must be in {within}, found {ids.min():g}..{ids.max():g}")
    return ids.astype(np.int64), names


@contextlib.contextmanager
def checked_npz(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened once and checked (``check_npz``), for ``np.load`` to read from the same open file: a file
    replaced between a check by name and a read by name (a bomb swapped in) was read unchecked."""
    try:
        check_regular_file(path)  # before opening: a FIFO would block the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except (FileSkip, OSError) as err:
        raise ValueError(f"{display_name(path)}: not a dataset .npz ({err})") from None
    with os.fdopen(fd, "rb") as handle:
        check_npz(path, handle)
        handle.seek(0)
        yield handle


def check_npz(path: Path, handle: BinaryIO | None = None) -> None:
    """A regular file whose arrays declare at most ``MAX_DATASET_BYTES`` (checked before numpy inflates them).

    ``handle``: the file already open (``checked_npz``); it is checked, not ``path`` again (which names it).
    """
    from . import midi_limits  # its limits read when called: they can be lowered (tests do)

    ratio, limit_any_ratio = midi_limits.MAX_COMPRESSION_RATIO, midi_limits.DATASET_BYTES_AT_ANY_RATIO
    source = path if handle is None else handle
    try:
        if handle is None:
            check_regular_file(path)
        elif not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise FileSkip("not a regular file (replaced after it was checked)")
        _check_entry_count(source)
        with zipfile.ZipFile(source) as archive:
            declared = sum(entry.file_size for entry in archive.infolist())
            if len(archive.infolist()) > MAX_NPZ_ARRAYS:  # a zip64 directory: its count was not read beforehand
                raise ValueError(f"{len(archive.infolist()):,} arrays, more than {MAX_NPZ_ARRAYS} (MAX_NPZ_ARRAYS)")
            names = [entry.filename for entry in archive.infolist()]
            if len(set(names)) < len(names):  # numpy reads the last of them: which one was meant is unknown
                twice = next(name for name in names if names.count(name) > 1)
                raise ValueError(f"array {twice} is stored {names.count(twice)} times (a zip edited by hand?)")
            for entry in archive.infolist():  # a header may declare any shape: numpy allocates it before reading
                if entry.file_size > max(limit_any_ratio, ratio * entry.compress_size):
                    # a deflate bomb: 1.75 MB of zeros took 19 s and 2 GB (and 3.5 MB the limit's 4 GB)
                    raise ValueError(
                        f"array {entry.filename} inflates {entry.compress_size:,} bytes to {entry.file_size:,}, more "
                        f"than {ratio:g} times (MAX_COMPRESSION_RATIO)"
                    )
                with archive.open(entry) as member:
                    fmt = np.lib.format
                    read = fmt.read_array_header_1_0 if fmt.read_magic(member) == (1, 0) else fmt.read_array_header_2_0
                    shape, _, dtype = read(member)
                needs = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if dtype.hasobject or needs > entry.file_size:
                    what = "objects (pickles)" if dtype.hasobject else f"{needs:,} bytes, holds {entry.file_size:,}"
                    raise ValueError(f"array {entry.filename} of shape {shape} declares {what}")
    except (zipfile.BadZipFile, OSError, FileSkip, ValueError, EOFError, RuntimeError, NotImplementedError) as err:
        # RuntimeError: an encrypted entry; NotImplementedError: a compression method zipfile lacks (both escaped)
        raise ValueError(f"{display_name(path)}: not a dataset .npz ({err})") from None
    try:  # stored arrays of a sparse file: 4 GB of holes is a few KB on disk, and 4 GB once read
        check_not_hollow(path if handle is None else handle.fileno(), declared, ratio, limit_any_ratio)
    except ValueError as err:
        raise ValueError(f"{display_name(path)}: not a dataset .npz ({err})") from None
    if declared > midi_limits.MAX_DATASET_BYTES:
        raise ValueError(
            f"{display_name(path)}: declares {declared / 1e9:.1f} GB of arrays, more than the limit of "
            f"{midi_limits.MAX_DATASET_BYTES / 1e9:.1f} GB (MAX_DATASET_BYTES)"
        )


def _check_entry_count(path) -> None:
    """Refuse, from the zip's end record alone, more than ``MAX_NPZ_ARRAYS`` entries: ``zipfile`` builds an object
    for each before anything can be checked, and each was then opened to read its header (200,000 empty arrays, a
    45 MB file: 17 s). What this look misses (a count it cannot find) is counted again after opening."""
    with contextlib.nullcontext(path) if hasattr(path, "read") else open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - (1 << 16) - 22))  # the end record: 22 bytes and a comment of up to 64 KB
        tail = handle.read()
    at, at64 = tail.rfind(b"PK\x05\x06"), tail.rfind(b"PK\x06\x06")  # the end record, and zip64's before it
    count = struct.unpack("<H", tail[at + 10 : at + 12])[0] if 0 <= at <= len(tail) - 12 else 0
    if count == 0xFFFF and 0 <= at64 <= len(tail) - 40:
        count = struct.unpack("<Q", tail[at64 + 32 : at64 + 40])[0]
    if count > MAX_NPZ_ARRAYS:
        raise ValueError(f"{count:,} arrays, more than {MAX_NPZ_ARRAYS} (MAX_NPZ_ARRAYS)")


MAX_PARSE_RATIO = 12  #: Python bytes per byte a cache index may cost to parse (the kit's own: 3 to 6)


def check_json_parse_cost(text: bytes, allowance: int) -> None:
    """Refuse JSON (a cache index, a history) whose parse would cost more than ``MAX_PARSE_RATIO`` times its size
    (past ``allowance``), estimated from its brackets, quotes and separators before parsing: 60 MB of
    ``[{},{},...`` took 1.3 GB (about 24x), where the kit's own index costs 3 to 6 times its size."""
    cost = (
        64 * (text.count(b"{") + text.count(b"[")) + 24 * text.count(b'"') + 12 * (text.count(b",") + text.count(b":"))
    )
    if cost > max(allowance, MAX_PARSE_RATIO * len(text)):
        raise ValueError(
            f"{len(text):,} bytes that would take about {cost / 1e6:,.0f} MB to parse (more than {MAX_PARSE_RATIO}x "
            "its size: not a file this kit wrote)"
        )
