"""Which MIDI files a build reads: listing folders, globs and lists; choosing subsets; checking arguments.

Part of :func:`musicvae_course.core.data.build_dataset` (re-exported there). Taught in
``notebooks/03_fine_tuning_on_a_subset.ipynb``.
"""

from __future__ import annotations

import glob
import os
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
            matches = glob.glob(str(source), recursive=True)
            if not matches:
                raise FileNotFoundError(f"no such file, folder or glob match: {display_name(str(source))}")
            found.update(_absolute(Path(m)) for m in matches if m.lower().endswith(MIDI_SUFFIXES))
    return sorted(found)


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
