"""Files written whole or not at all, and file hashes: the kit's one home for both.

Shared by the ML code and by :mod:`musicvae_course.grading` (which imports nothing else of the kit), so it
depends on the standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, Callable, Union

Content = Union[bytes, str, Callable[[BinaryIO], None]]
FILE_MODE = 0o644  # mkstemp makes files owner-only; what we write are ordinary, readable files


def atomic_write(path: str | os.PathLike, content: Content, *, encoding: str = "utf-8") -> Path:
    """Write ``content`` to ``path`` so that readers see the old file or the new one, never a part.

    The bytes go to a uniquely named temporary file in the same folder (``.<name>.<random>.tmp``), are flushed
    and fsynced, then renamed over ``path`` with ``os.replace`` (atomic on POSIX and Windows). On any failure the
    temporary file is removed and ``path`` is untouched.

    Args:
        path: the file to write; its folder must exist.
        content: ``bytes``, ``str`` (encoded with ``encoding``) or a function that writes to a binary file
            object (e.g. ``lambda f: torch.save(state, f)``).

    Ctrl+C or SIGTERM arriving during a write from the main thread is raised when the file is in place: an
    interrupt inside ``torch.save`` would leave its zip writer half-closed and turn a clean interruption into a
    ``RuntimeError`` (seen as a traceback from ``python -m musicvae_course.train`` stopped by SIGTERM).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        OSError: naming the folder when the disk is full (``ENOSPC``) or the folder is not writable.
    """
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write in {path.parent}: {exc.strerror}") from exc
    try:
        with _interrupts_after_the_write():
            with os.fdopen(fd, "wb") as handle:
                if callable(content):
                    content(handle)
                else:
                    handle.write(content.encode(encoding) if isinstance(content, str) else content)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp_name, FILE_MODE)
            os.replace(tmp_name, path)
    except OSError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise OSError(
                errno.ENOSPC,
                f"no space left on the disk of {path.parent} while writing {path.name}; free some space and try again",
            ) from exc
        raise
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def interrupts_held():
    """A block in which Ctrl+C and SIGTERM (from the main thread) wait for its end: for files written in pairs
    (``history.json`` and ``history.csv``), so that an interrupt between the two writes cannot leave them
    disagreeing. Each write is still atomic on its own (:func:`atomic_write`)."""
    return _interrupts_after_the_write()


@contextlib.contextmanager
def _interrupts_after_the_write():
    """Hold Ctrl+C and SIGTERM back for the duration of the block; one that arrived is raised again at its end.

    Python-level handlers rather than a signal mask: the kernel hands a process's signal to any thread that
    does not block it (torch's worker threads), and Python then runs the handler in the main thread anyway.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; Python runs them there, so a worker's write is not hit
        return
    arrived: list[int] = []
    held = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not None]  # None: set outside Python
    previous = {s: signal.signal(s, lambda signum, frame: arrived.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(arrived):
            signal.raise_signal(s)  # to the handler now in place: KeyboardInterrupt, or the default action


def sweep_temp_files(folder: str | os.PathLike, name: str | None = None, older_than_s: float = 0.0) -> list[Path]:
    """Remove the temporary files that :func:`atomic_write` calls left behind when their process was killed.

    Args:
        folder: where to look (not recursive).
        name: only the leftovers of writes to this file name (``.<name>.<random>.tmp``); ``None``: all of them.
        older_than_s: only files not modified for this many seconds (a write in progress in another process is
            younger). Callers that hold a lock on the folder may pass 0.

    Returns:
        The paths removed. Files that vanish meanwhile or cannot be removed are passed over.
    """
    import time

    # the name is matched as it is written: "model[1].pt" or "*" as a pattern swept other files' leftovers
    pattern = f".{glob.escape(name)}.*.tmp" if name is not None else ".*.tmp"
    removed = []
    now = time.time()
    for path in Path(folder).glob(pattern):
        try:
            if now - path.lstat().st_mtime >= older_than_s and path.is_file():
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    return removed


def sha256_of(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes as 64 lowercase hex digits, read in chunks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


class WalkLimit(OSError):
    """A bound of :func:`walk` stopped it (passed to its ``onerror``, as a folder it could not list is)."""


def walk(top, onerror=None, max_depth: int | None = None, max_entries: int | None = None):
    """``os.walk(top)`` top-down, links not followed, without recursion; yields ``(root, folders, names)``, and
    removing names from ``folders`` prunes them, as in ``os.walk``.

    Python 3.11's ``os.walk`` (and pathlib's ``rglob``) recurse once per level: a folder 1,200 levels deep raised
    ``RecursionError`` (after 23 s) where a dataset build should list what it can, and one 1,500 deep stopped a
    grading run before anyone was graded. A folder that cannot be listed (unreadable, a path past the system's
    length limit) is passed to ``onerror`` as its ``OSError`` and skipped. ``max_depth``: folders deeper than this
    below ``top`` are not entered; ``max_entries``: listing stops after this many entries in all, counted as they
    are listed (one folder of millions is never read whole). Either bound, when it stops the walk, is passed to
    ``onerror`` once as a :class:`WalkLimit`. Used by dataset builds (``core.file_lists``) and the grader's search
    for submitted notebooks (``grading.submissions``).
    """
    stack, seen, limited = [(os.fspath(top), 0)], 0, set()

    def limit(what: str) -> None:
        if what not in limited and onerror is not None:
            onerror(WalkLimit(what))
        limited.add(what)

    while stack:
        root, depth = stack.pop()
        folders, names = [], []
        try:
            with os.scandir(root) as entries:
                for entry in entries:
                    seen += 1
                    if max_entries is not None and seen > max_entries:
                        limit(f"over {max_entries:,} files and folders")
                        stack.clear()
                        break
                    try:
                        is_folder = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        is_folder = False
                    (folders if is_folder else names).append(entry.name)
        except OSError as err:
            if onerror is not None:
                onerror(err)
            continue
        yield root, folders, names
        if max_depth is not None and depth >= max_depth and folders:
            limit(f"folders over {max_depth} deep")
            continue
        if max_entries is None or seen <= max_entries:  # past the bound the stack was emptied: nothing more
            stack.extend((os.path.join(root, name), depth + 1) for name in reversed(folders))
