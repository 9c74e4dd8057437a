"""Student versions of the source notebooks: solutions become stubs, hidden tests, their cases' weights and
instructor cells go, outputs are cleared (``make student-versions``; CI checks ``student/`` is in sync).

Used for every notebook with exercises; the conventions they follow are in :mod:`.markers`.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from pathlib import Path

from ..fileio import atomic_write
from .cases import drop_hidden_weights
from .markers import (
    GradingSourceError,
    _cell_label,
    cell_role,
    questions,
    read_notebook,
    strip_hidden_tests,
    strip_solutions,
)


def student_version(nb, name: str = "notebook"):
    """Return the student version of a source notebook (the source is not modified).

    Solutions become stubs, hidden tests and ``instructor`` cells are removed, outputs, execution counts and
    widget state are cleared; test and locked cells become undeletable and read-only in JupyterLab
    (``metadata.editable``/``deletable``), solution cells undeletable. Deterministic: the same source always
    gives the same file, so CI can compare.
    """
    questions(nb, name)  # validate first: never write a half-stripped notebook
    out = copy.deepcopy(nb)
    out.metadata.pop("widgets", None)
    out.metadata.pop("celltoolbar", None)
    cells = []
    for index, cell in enumerate(out.cells):
        role = cell_role(cell)
        if role == "instructor":
            continue
        if "id" not in cell:  # nbformat 4.4 sources: derive a stable id instead of a random one
            cell["id"] = hashlib.sha1(f"{name}:{index}".encode()).hexdigest()[:8]
        where = f"{name}, {_cell_label(cell, index)}"
        if role == "solution":
            cell.source = strip_solutions(cell.source, cell.cell_type, where)
            cell.metadata["deletable"] = False
        elif role == "test":
            cell.source = strip_hidden_tests(cell.source, where)
            drop_hidden_weights(cell)
        if role in ("test", "locked"):
            cell.metadata["deletable"] = False
            cell.metadata["editable"] = False
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        cells.append(cell)
    out.cells = cells
    if out.get("nbformat_minor", 0) < 5:
        out.nbformat_minor = 5
    return out


def make_student_version(src_nb, dst_nb) -> Path:
    """Write the student version of the notebook file ``src_nb`` to ``dst_nb``; returns ``dst_nb``."""
    import nbformat

    src_nb, dst_nb = Path(src_nb), Path(dst_nb)
    student = student_version(read_notebook(src_nb), src_nb.name)
    dst_nb.parent.mkdir(parents=True, exist_ok=True)
    text = nbformat.writes(student)
    atomic_write(dst_nb, text + ("" if text.endswith("\n") else "\n"))
    return dst_nb


def _describe_difference(expected: dict, actual: dict, label: str) -> list[str]:
    problems = []
    if expected.get("metadata") != actual.get("metadata"):
        keys = sorted(
            set(expected.get("metadata", {})) ^ set(actual.get("metadata", {}))
            | {
                k
                for k in expected.get("metadata", {})
                if expected["metadata"].get(k) != actual.get("metadata", {}).get(k)
            }
        )
        problems.append(f"{label}: notebook metadata differs ({', '.join(keys)})")
    want, have = expected.get("cells", []), actual.get("cells", [])
    if len(want) != len(have):
        problems.append(f"{label}: {len(have)} cells, the source gives {len(want)}")
    for index, (w, h) in enumerate(zip(want, have)):
        if w == h:
            continue
        w_src, h_src = "".join(w.get("source", "")), "".join(h.get("source", ""))
        name = _cell_label(w, index)
        if w_src != h_src:
            diff = "\n".join(
                difflib.unified_diff(
                    h_src.split("\n"), w_src.split("\n"), "student version", "from source", lineterm="", n=1
                )
            )
            problems.append(f"{label}, {name}: source differs\n{diff}")
        else:
            keys = sorted(k for k in set(w) | set(h) if w.get(k) != h.get(k))
            problems.append(f"{label}, {name}: {', '.join(keys)} differ")
    return problems


def make_student_versions(src_dir, dst_dir, check: bool = False) -> list[str]:
    """Write (or with ``check=True`` only compare) the student versions of every ``*.ipynb`` in ``src_dir``.

    Returns the differences between ``dst_dir`` and what the sources give, one message each: stale or missing
    student versions, extra notebooks in ``dst_dir`` that no source gives (never deleted), and source notebooks
    that break the marker conventions (skipped; the others are still processed). An empty list means in sync
    (with ``check=False``: everything written). Used by CI: ``python -m musicvae_course.grading
    student-versions notebooks/ student/ --check``.
    """
    import nbformat

    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    if not src_dir.is_dir():
        raise NotADirectoryError(f"source notebook folder {src_dir} does not exist")
    problems = []
    sources = sorted(p for p in src_dir.glob("*.ipynb") if p.resolve().parent != dst_dir.resolve())
    for src in sources:
        dst = dst_dir / src.name
        try:
            expected = json.loads(nbformat.writes(student_version(read_notebook(src), src.name)))
        except GradingSourceError as exc:
            problems.append(f"{src}: not processed: {exc}")
            continue
        if not dst.exists():
            problems.append(f"{dst}: missing (student version of {src})")
        else:
            try:
                actual = json.loads(dst.read_text(encoding="utf-8"))
            except ValueError as exc:
                actual = {}
                problems.append(f"{dst}: not valid JSON ({exc})")
            if actual and actual != expected:
                problems.extend(_describe_difference(expected, actual, str(dst)))
        if not check:
            make_student_version(src, dst)
    names = {p.name for p in sources}
    if dst_dir.is_dir():
        problems.extend(
            f"{p}: no source notebook {src_dir / p.name} gives this file"
            for p in sorted(dst_dir.glob("*.ipynb"))
            if p.name not in names
        )
    return problems
