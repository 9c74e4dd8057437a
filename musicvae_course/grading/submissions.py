"""Submitted notebook files: finding them in a class's folder, reading them safely, matching them to a source.

Used by :mod:`.autograde` (the batch process and each worker). Everything here runs outside any sandbox, in the
process that grades the whole class, so a file's size and the number of values its JSON holds are bounded before
it is parsed.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

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
            files = sorted((p for p in entry.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts), key=_depth)
            found[entry.name] = files
        elif entry.suffix == ".ipynb":
            stray.append(f"{entry}: not inside a student folder (expected {submissions_dir}/<student>/...); skipped")
    return found, stray


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
