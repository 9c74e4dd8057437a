"""Submitted notebook files: finding them in a class's folder, reading them safely, matching them to a source.

Used by :mod:`.autograde` (the batch process and each worker). Everything here runs outside any sandbox, in the
process that grades the whole class, so a file's size and the number of values its JSON holds are bounded before
it is parsed.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from ..fileio import WalkLimit, walk
from .markers import grade_id_of

#: A submitted file is read whole, and its JSON parsed, in the process that runs the batch, which no rlimit bounds:
#: a zip bomb's 20 GB "notebook" (or a sparse file) would end the run for the whole class. Outputs make notebooks
#: big (embedded audio and figures: a few MB); grading never reads them.
MAX_NOTEBOOK_BYTES = 64 * 1024**2
#: Bytes alone do not bound the parse: 30 MB of "[],[],..." is 10 million lists, 1.5 GB and 12 s in nbformat (at
#: 256 MB: 13 GB). Every JSON value but the first follows a "[", "," or ":", so counting those bytes (inside
#: strings too, which only overcounts) bounds the values; a course notebook with its outputs has a few thousand,
#: 2 million parse in about 3 s and 0.35 GB. Base64 figures and audio hold none of them.
MAX_NOTEBOOK_SEPARATORS = 2_000_000
#: Every notebook file in a student's folder is read and leaves a record and a feedback file (one that matches no
#: source too), and the class reports read every record again after each graded notebook: 2,000 files of "{}" took
#: 6.5 s and each rebuild 0.07 s, so 100,000 (a small zip) would cost minutes of scanning and an hour of rebuilds over a
#: class. A student's notebooks, their own first, are read up to this many; a course has a few.
MAX_NOTEBOOKS_PER_STUDENT = 50
#: A student's folder is searched this many folders deep, over at most this many entries. pathlib's rglob recurses
#: in Python: a folder nested 1,500 deep (a 3 kB path) raised RecursionError and stopped the run before anyone was
#: graded. nbgrader's layout is two deep.
MAX_FOLDER_DEPTH = 16
MAX_FOLDER_ENTRIES = 100_000


def parse_submission(data: bytes, name: str):
    """The nbformat v4 notebook in a submitted file's bytes; ValueError naming ``name`` when it holds too many JSON
    values to parse safely (see MAX_NOTEBOOK_SEPARATORS), or nbformat's own errors when it is not a notebook."""
    separators = data.count(b",") + data.count(b"[") + data.count(b":")
    if separators > MAX_NOTEBOOK_SEPARATORS:
        raise ValueError(
            f"{name} holds about {separators:,} JSON values, over the grader's limit of "
            f"{MAX_NOTEBOOK_SEPARATORS:,}; clear its outputs (Kernel > Restart & Clear Output) and hand it in again"
        )
    return nbformat.reads(data.decode("utf-8"), as_version=4)


def scan(submissions_dir: Path, only_student: str | None):
    """``({student: [notebook paths, their own first, copies in subfolders after]}, [lines on stray entries])``."""
    found, stray = {}, []
    for entry in sorted(submissions_dir.iterdir()):
        if entry.is_dir():
            if only_student is not None and entry.name != only_student:
                continue
            if entry.is_symlink():  # its files would be read with the grader's rights (the instructor's notebooks)
                stray.append(f"{entry}: a link, not a student folder; not graded")
                found[entry.name] = []
                continue
            # the student's own notebooks first, copies in subfolders (a backup) after them
            files, cut = _notebook_files(entry)
            files = sorted(files, key=_depth)
            if cut:
                stray.append(f"{entry}: {cut}; the rest of the folder is not read")
            if len(files) > MAX_NOTEBOOKS_PER_STUDENT:
                stray.append(
                    f"{entry}: {len(files):,} notebook files, over the grader's limit of {MAX_NOTEBOOKS_PER_STUDENT}; "
                    f"only the first {MAX_NOTEBOOKS_PER_STUDENT} (the folder's own, then subfolders') are read"
                )
                files = files[:MAX_NOTEBOOKS_PER_STUDENT]
            found[entry.name] = files
        elif entry.suffix == ".ipynb":
            stray.append(f"{entry}: not inside a student folder (expected {submissions_dir}/<student>/...); skipped")
    return found, stray


def _notebook_files(folder: Path) -> tuple[list[Path], str]:
    """Paths under ``folder`` whose names end in ``.ipynb`` (files, links, folders: the caller refuses all but
    plain files), outside ``.ipynb_checkpoints``, without recursion or following links (``fileio.walk``); and why
    the search stopped early ("" when it did not)."""
    found, cuts = [], []

    def note(error: OSError) -> None:  # a folder that cannot be listed is skipped, as before
        if isinstance(error, WalkLimit):
            cuts.append(str(error))

    for root, folders, names in walk(folder, note, MAX_FOLDER_DEPTH, MAX_FOLDER_ENTRIES):
        folders[:] = sorted(name for name in folders if name != ".ipynb_checkpoints")
        found += [Path(root, name) for name in sorted(names + folders) if name.endswith(".ipynb")]
    return found, "; ".join(cuts)


def _depth(path: Path):
    return len(path.parts), path


def match_source(path: Path, nb, sources: dict) -> str | None:
    """The source notebook a submission answers: by file name, else the one sharing the most grade ids (or None)."""
    if path.name in sources:
        return path.name
    ids = {grade_id_of(c) for c in nb.cells} - {None}
    overlap = {name: len(ids & set(s.cells_by_id)) for name, s in sources.items()}
    best = [name for name, n in overlap.items() if n and n == max(overlap.values())]
    return best[0] if len(best) == 1 else None
