"""Reading many MIDI files into packed segments, in parallel, one bad file never stopping the rest.

The per-file job of :func:`musicvae_course.core.data.build_dataset`: read the bytes (regular files only, bounded
size), hash them, roll them, cut 2-bar segments, pack the bits, all under a per-file time limit. A pool of worker
processes survives a crashing parser, and its workers die with their parent (``safe_files.die_with_parent``).
Taught, as a black box, in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from . import midi_fast
from .devices import usable_cpus
from .midi_limits import MAX_MIDI_BYTES, MAX_SEGMENTS_PER_FILE, READ_TIMEOUT_S
from .pianoroll import segments
from .safe_files import die_with_parent, read_regular_file, time_limit

_CHUNK_FILES = 32  # files per task: amortises inter-process overhead, keeps the bar moving


def content_hash(data: bytes) -> str:
    """The cache's content hash: BLAKE2b, 128 bits, as 32 hex digits."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def file_signature(path) -> tuple:
    """What says "unchanged" without reading: size, mtime and ctime in ns (ctime cannot be set back by a user,
    so an edit with the mtime restored still shows). ``()`` if the entry cannot be stat'ed."""
    try:
        info = os.stat(path)
    except OSError:
        return ()
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def read_file(path: str, max_seconds, reader="fast", timeout: float | None = READ_TIMEOUT_S) -> dict:
    """Read one file into packed segments, or say why not. Never raises (but for ``KeyboardInterrupt``).

    Returns ``{"size", "signature", "hash", "reason"}`` plus ``"packed"``: ``(n, 352)`` uint8 when ``reason``
    is None. ``hash`` is of the very bytes that were parsed.
    """
    result = {"size": -1, "signature": list(file_signature(path)), "hash": "", "reason": None}
    try:
        with time_limit(timeout, "reading and rolling this file"):
            if reader in ("fast", "reference"):
                data = read_regular_file(path, MAX_MIDI_BYTES)
                result.update(size=len(data), hash=content_hash(data))
                read = midi_fast.read_pianoroll if reader == "fast" else midi_fast.read_pianoroll_reference
                roll = read(data, max_seconds)
            else:
                data = read_regular_file(path, MAX_MIDI_BYTES)  # the custom reader reads it again itself
                result.update(size=len(data), hash=content_hash(data))
                roll = reader(path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rows = segments(roll, max_windows=MAX_SEGMENTS_PER_FILE)
        if len(rows) == 0:
            raise midi_fast.MidiSkip("no notes in the 88-key range (MIDI 21-108)")
        result["packed"] = np.packbits(rows.reshape(len(rows), -1), axis=1)
    except (ValueError, TimeoutError) as err:  # MidiSkip, FileSkip, LimitError, ReadTimeout, readers' own
        result["reason"] = str(err)
    except Exception as err:  # anything else in one file must not stop the others
        result["reason"] = f"{type(err).__name__}: {err}"
    return result


def _read_chunk(paths, max_seconds, reader, timeout):
    return [(path, read_file(path, max_seconds, reader, timeout)) for path in paths]


def read_files(paths, workers, max_seconds, reader, bar, timeout: float | None = READ_TIMEOUT_S) -> dict:
    """``{path: read_file(path)}`` for all ``paths``, in ``workers`` processes (``0``: in this one).

    A worker that dies (a segfault in a C++ parser, ``os._exit``) breaks the pool; we then rerun the
    unfinished files one at a time in a single worker until the one that kills it is found, record it as
    skipped, and go on in parallel with the rest.
    """
    results: dict = {}
    if workers == 0:
        for path in paths:
            results[path] = read_file(path, max_seconds, reader, timeout)
            bar.update()
        return results
    workers = workers or usable_cpus()  # the affinity mask, not the machine's CPUs
    pending = list(paths)
    while pending:
        chunk = max(1, min(_CHUNK_FILES, len(pending) // (4 * workers)))
        crashed = _pool_pass(pending, results, workers, chunk, (max_seconds, reader, timeout), bar)
        pending = [p for p in pending if p not in results]
        if crashed and pending:
            suspects = pending[: 2 * workers * chunk + 1]  # what was in flight, and a margin
            if _pool_pass(suspects, results, 1, 1, (max_seconds, reader, timeout), bar):
                culprit = next(p for p in suspects if p not in results)
                results[culprit] = {
                    "size": -1,
                    "signature": list(file_signature(culprit)),
                    "hash": "",
                    "reason": "the reader crashed (its worker process died)",
                }
                bar.update()
            pending = [p for p in pending if p not in results]
    return results


def _pool_pass(paths, results, workers, chunk, options, bar) -> bool:
    """Read ``paths`` into ``results`` in a fresh pool; True if a worker died."""
    with ProcessPoolExecutor(min(workers, len(paths)), initializer=die_with_parent) as pool:
        futures = [pool.submit(_read_chunk, paths[i : i + chunk], *options) for i in range(0, len(paths), chunk)]
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
