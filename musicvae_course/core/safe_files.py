"""Reading input files that may be hostile: only regular files, symlinks checked, bounded size and time.

A name ending in ``.mid`` can be a FIFO (opening it blocks forever), a device (``/dev/zero`` never ends), a
folder, a dangling symlink or a symlink loop. Every reader of the kit goes through :func:`read_regular_file`,
which refuses all of these with a reason that names the entry (the link, not its target), and through
:func:`time_limit`, which stops a read that takes longer than ``READ_TIMEOUT_S``. Taught, as a black box, in
``notebooks/03_fine_tuning_on_a_subset.ipynb``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import sys
import threading

from .midi_limits import READ_TIMEOUT_S, LimitError

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


class FileSkip(ValueError):
    """An entry that is not a readable regular file; the message says what it is (without the path)."""


class ReadTimeout(TimeoutError):
    """Reading one input took longer than its time limit."""


def display_name(path) -> str:
    """``path`` as printable text on one line whatever its bytes: undecodable bytes become ``\\xNN`` escapes, and
    so do characters that print nothing (a newline ``\\n``, ESC ``\\x1b``, a right-to-left override ``\\u202e``):
    a file's name cannot forge a line of an error or a report, nor send a terminal its escape sequences."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def check_regular_file(path) -> os.stat_result:
    """The ``os.stat`` of ``path`` if it is (or links to) a regular file; else ``FileSkip`` saying what it is.

    Dangling symlinks and symlink loops are named as such, with the link's own name.
    """
    try:
        info = os.stat(path)
    except OSError as err:
        if os.path.islink(path):
            if err.errno == errno.ELOOP:
                raise FileSkip(f"symlink loop: {display_name(path)} is part of a loop of links") from None
            target = display_name(os.readlink(path))
            raise FileSkip(f"dangling symlink: {display_name(path)} -> {target} (no such file)") from None
        if err.errno == errno.ENOENT:
            raise FileSkip("no such file") from None
        raise FileSkip(f"cannot read ({err.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise FileSkip(f"not a regular file: {_KINDS.get(stat.S_IFMT(info.st_mode), 'a special file')}")
    return info


def stored_bytes(path) -> int | None:
    """The bytes ``path`` (a path or an open descriptor) holds on disk (``st_blocks``); ``None``: cannot be told.

    A sparse file (``truncate -s 10G``) is gigabytes long and holds a few KB: what a reader of its length spends
    (hashing 10 GB of holes took 37 s and 10 GB of mapped pages) is not bounded by the disk it takes. ``None`` for a
    file system that reports no blocks (some FUSE ones) when the file is not one hole throughout (``SEEK_DATA``).
    """
    try:
        info = os.stat(path)  # a path, or an open file's descriptor
    except OSError:
        return None
    if getattr(info, "st_blocks", 0):
        return int(info.st_blocks) * 512
    if not info.st_size or not hasattr(os, "SEEK_DATA"):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC) if not isinstance(path, int) else path
    except OSError:
        return None
    try:
        os.lseek(fd, 0, os.SEEK_DATA)
        return None  # data somewhere, yet no blocks: a file system that does not count them
    except OSError as err:
        return 0 if err.errno == errno.ENXIO else None  # ENXIO: no data anywhere, one hole
    finally:
        if fd is not path:
            os.close(fd)


def check_not_hollow(path, declared: int, ratio: float, at_any_ratio: int) -> None:
    """Refuse (``ValueError``, not naming the file: callers do) ``declared`` bytes to be read from a file that
    stores less than ``1/ratio`` of them, once past ``at_any_ratio``: the rule for compressed members, for holes."""
    stored = stored_bytes(path)
    if stored is not None and declared > max(at_any_ratio, ratio * stored):
        raise ValueError(
            f"declares {declared:,} bytes but stores {stored:,} on disk (a sparse file: more than {ratio:g} times "
            "less, MAX_COMPRESSION_RATIO); not a file this kit wrote"
        )


def check_place_for_file(path, what: str = "file", lock: bool = False) -> None:
    """Refuse what sits at ``path`` in the way of a file the kit writes there, before any work that would end at
    it: ``FileExistsError`` saying what it is. A folder is refused (a write's rename over it fails: a folder named
    ``last.pt`` failed a training run only at its first save, ``index.json`` a cache build only after every read);
    other entries and links are replaced by the write (``fileio.atomic_write``) and pass. With ``lock``, for a lock
    file that ``filelock`` opens in place: anything but a regular file is refused (it opens no link: one raised
    "Too many levels of symbolic links", a traceback from training).
    """
    try:
        info = os.lstat(path)
    except OSError:
        return  # absent (or not reachable): whoever opens it next reports that
    if stat.S_ISREG(info.st_mode) or not (lock or stat.S_ISDIR(info.st_mode)):
        return
    kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else _KINDS.get(stat.S_IFMT(info.st_mode), "a special file")
    raise FileExistsError(f"{display_name(path)}: {kind} where the {what} goes (not one this kit made); remove it")


def read_regular_file(path, max_bytes: int) -> bytes:
    """All bytes of a regular file, at most ``max_bytes`` of them.

    Opened non-blocking and checked again after opening, so a FIFO swapped in between never blocks.

    Raises:
        FileSkip: not a regular file, dangling link, link loop, unreadable (opening or reading fails).
        LimitError: larger than ``max_bytes`` (named in the message).
    """
    check_regular_file(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise FileSkip(f"cannot open ({err.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise FileSkip(f"not a regular file: {_KINDS.get(stat.S_IFMT(info.st_mode), 'a special file')}")
        if info.st_size > max_bytes:
            raise LimitError(f"{info.st_size:,} bytes: larger than the limit of {max_bytes:,} bytes")
        try:
            data = handle.read(max_bytes + 1)  # a file that grew while we read is still bounded
        except OSError as err:  # a failing disk or share, /proc/self/mem: a raw OSError named no file
            raise FileSkip(f"cannot read ({err.strerror or err})") from None
    if len(data) > max_bytes:
        raise LimitError(f"more than the limit of {max_bytes:,} bytes")
    return data


@contextlib.contextmanager
def time_limit(seconds: float | None = READ_TIMEOUT_S, what: str = "reading the file"):
    """Raise ``ReadTimeout`` in this block after ``seconds`` (``None``: no limit).

    Uses ``SIGALRM``, so it works in the main thread of a process (this process, or a pool worker) and is a
    no-op elsewhere (other threads, Windows). An enclosing limit already running is left in charge.
    """
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    )
    if not usable:
        yield
        return

    def expired(signum, frame):
        raise ReadTimeout(f"{what} took longer than the limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def die_with_parent() -> None:
    """Make this process (a pool worker) end when its parent dies, even by ``kill -9`` (Linux ``prctl``).

    Without it a killed build's workers wait forever on their task queue. No-op where unavailable.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
