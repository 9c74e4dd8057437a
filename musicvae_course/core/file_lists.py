"""Which MIDI files a build reads: listing folders, globs and lists; choosing subsets; checking arguments.

Part of :func:`musicvae_course.core.data.build_dataset` (re-exported there). Taught in
``notebooks/03_fine_tuning_on_a_subset.ipynb``.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

import numpy as np

from ..fileio import walk
from .safe_files import display_name
from .seeding import DEFAULT_SEED

# .rmi: RIFF MIDI, read as the MIDI file inside; .kar: karaoke MIDI, a MIDI file with its lyrics as text events
MIDI_SUFFIXES = (".mid", ".midi", ".rmi", ".kar")


def list_midi_files(sources, unreadable: list | None = None) -> list[Path]:
    """Every ``.mid``/``.midi``/``.rmi``/``.kar`` under ``sources``: folders (recursive), globs, files, or a list of
    them.

    Entries are listed by their own name (a symlink is not replaced by its target, so a dangling link or a link
    loop can be reported under the name the user sees); folders are made absolute. Whatever has a MIDI name is
    listed, FIFOs and folders included: the reader skips them with a reason. Folders that cannot be listed are
    appended to ``unreadable`` as ``(path, reason)`` when a list is given (``build_dataset`` reports them).
    """

    def note(err: OSError) -> None:
        if unreadable is not None:
            unreadable.append((str(err.filename), f"folder not readable: {err.strerror}"))

    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    found = set()
    for source in sources:
        path = Path(source)
        if path.is_dir() and not path.name.lower().endswith(MIDI_SUFFIXES):
            top = path.resolve()  # once: the folders below are real folders (links are not followed)
            for root, folders, names in walk(top, onerror=note):
                found.update(Path(root, n) for n in names + folders if n.lower().endswith(MIDI_SUFFIXES))
        elif os.path.lexists(path):
            found.add(_absolute(path))
        else:
            matches = _recursive_glob(str(source), note) if "**" in str(source) else glob.glob(str(source))
            if not matches:
                raise FileNotFoundError(f"no such file, folder or glob match: {display_name(str(source))}")
            found.update(_absolute(Path(m)) for m in matches if m.lower().endswith(MIDI_SUFFIXES))
    return sorted(found)


def _recursive_glob(pattern: str, onerror) -> list[str]:
    """``glob.glob(pattern, recursive=True)`` without following links: glob's ``**`` follows links to folders, and
    three links to ``.`` or ``..`` in one folder made it list paths 40 links deep, exponentially many (over 60 s
    for ``corpus/**/*.mid``, never ending). Walks from the part of ``pattern`` before its first wildcard (as
    ``fileio.walk``: links listed, not followed) and matches each path; hidden names match only written out."""
    magic = min(i for i in (pattern.find(c) for c in "*?[") if i >= 0)
    base = pattern[: pattern.rfind(os.sep, 0, magic) + 1] or "."
    regex = re.compile(_glob_regex(pattern))
    hidden = re.search(r"(^|/)\.[^/.]", pattern) is not None  # a name starting with "." written out
    found = []
    for root, folders, names in walk(base, onerror=onerror):
        for name in names + folders:
            path = os.path.join(root, name) if base != "." else os.path.relpath(os.path.join(root, name))
            if regex.match(path) and (hidden or name[:1] != "."):
                found.append(path)
        folders[:] = [f for f in folders if hidden or f[:1] != "."]
    return found


def _glob_regex(pattern: str) -> str:
    """A glob pattern as a regular expression: ``**/`` any folders, ``*`` and ``?`` within one name, ``[...]``."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i) or pattern.startswith("**", i):
            out.append("(?:[^/]*/)*" if pattern.startswith("**/", i) else ".*")
            i += 3 if pattern.startswith("**/", i) else 2
            continue
        char, end = pattern[i], pattern.find("]", i + 2)
        if char == "[" and end > 0:
            inner = pattern[i + 1 : end].replace("\\", "\\\\")
            out.append("[" + ("^" + inner[1:] if inner.startswith("!") else inner) + "]")
            i = end + 1
            continue
        out.append({"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char)))
        i += 1
    return "(?s:" + "".join(out) + r")\Z"


def _absolute(path: Path) -> Path:
    return path.parent.resolve() / path.name


def select_files(paths, path_filter=None, max_files=None, fraction=None, seed: int = DEFAULT_SEED):
    """Choose files, in this order: ``path_filter`` (a case-insensitive substring of the
    path, or a function ``path -> bool``), then a seeded random ``fraction`` in (0, 1],
    then the first ``max_files``. Returns paths as ``str``, sorted."""
    if max_files is not None and not (_whole(max_files) and max_files >= 1):
        raise ValueError(f"max_files must be None or an int >= 1, got {max_files!r}")
    if fraction is not None and not (isinstance(fraction, (int, float)) and not isinstance(fraction, bool)):
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
    if path_filter is not None and not (callable(path_filter) or isinstance(path_filter, str)):
        raise ValueError(f"path_filter must be a string or a function path -> bool, got {path_filter!r}")
    paths = sorted(str(p) for p in paths)
    if path_filter is not None:
        keep = path_filter if callable(path_filter) else (lambda p: str(path_filter).lower() in p.lower())
        paths = [p for p in paths if keep(p)]
    if fraction is not None:
        if not 0 < fraction <= 1:  # NaN fails too
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        n = max(1, round(fraction * len(paths))) if paths else 0
        paths = sorted(np.random.default_rng(seed).choice(paths, n, replace=False).tolist()) if n else []
    return paths if max_files is None else paths[:max_files]


def check_build_arguments(workers, max_files, max_seconds, timeout, reader) -> None:
    """``build_dataset``'s arguments, refused by name when they make no sense."""

    if workers is not None and not (_whole(workers) and workers >= 0):
        raise ValueError(f"workers must be None or an int >= 0, got {workers!r}")
    if max_files is not None and not (_whole(max_files) and max_files >= 1):
        raise ValueError(f"max_files must be None or an int >= 1, got {max_files!r}")
    for name, value in (("max_seconds", max_seconds), ("timeout", timeout)):
        if value is not None and not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be None or a number > 0, got {value!r}")
    if not (reader in ("fast", "reference") or callable(reader)):
        raise ValueError(f"reader must be 'fast', 'reference' or a function, got {reader!r}")


def _whole(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
