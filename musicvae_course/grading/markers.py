"""The marker conventions of the source notebooks and their questions (the student versions: :mod:`.student`).

Used by every notebook with exercises (01_loading_the_pretrained_vae.ipynb, 02_latent_space_with_widgets.ipynb,
03_fine_tuning_on_a_subset.ipynb, 04_generation.ipynb); ``check`` (:mod:`.check`) and the autograder
(:mod:`.autograde`) both read notebooks through it.

Marker conventions (nbgrader's own, so the same source notebooks also work with nbgrader):

* Every graded cell carries ``metadata.nbgrader = {"grade_id", "points", "solution", "grade", "locked",
  "task": false, "schema_version": 3}``.
* **Test cell** of a question: ``grade: true, solution: false, locked: true, points: N``. Its ``grade_id`` *is the
  question id* (``"q1"``): ``check("q1")`` and the grades CSV use it. Lines above ``### BEGIN HIDDEN TESTS`` are the
  public tests; the region between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` is removed from the
  student version. ``# CASE id: requirement`` lines split a test cell into cases worth partial credit
  (:mod:`.cases`); a cell without them scores all its points or none (nbgrader's rule).
* **Solution cell**: ``solution: true, grade: false, locked: false``, ``grade_id`` = ``"<question id>_solution"``
  (a second cell for the same question: ``"q1_solution_2"``). ``### BEGIN SOLUTION`` ... ``### END SOLUTION``
  becomes ``# YOUR CODE HERE`` + ``raise NotImplementedError()`` (indented like the marker); a solution cell
  without markers is replaced whole.
* **Locked given cell** (read-only code the tests rely on: imports, helpers, data): ``solution: false,
  grade: false, locked: true`` with a unique ``grade_id``. The autograder runs the source's version of it.
* **Instructor-only cell**: cell tag ``instructor``. Removed from the student version, not run when grading.
* Markers must stand alone on their line, exactly as written above; a line that merely mentions
  ``BEGIN SOLUTION``/``HIDDEN TESTS`` otherwise is an error (nbgrader would silently leave it, solution and all).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

# nbformat is imported inside the functions that write notebooks: it pulls in jsonschema, seconds of import
# time in every student kernel that only wants ``check``.

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN_TESTS = "### BEGIN HIDDEN TESTS"
END_HIDDEN_TESTS = "### END HIDDEN TESTS"
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"  # nbgrader's default stub
TEXT_STUB = "YOUR ANSWER HERE"
INSTRUCTOR_TAG = "instructor"
SOLUTION_SUFFIX = "_solution"
_MARKER_WORDS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


class GradingSourceError(ValueError):
    """A source notebook breaks the marker conventions; the message names the notebook and the cell."""


# ---------------------------------------------------------------------------------------------- cell roles


def nbgrader_metadata(cell) -> dict:
    """The cell's ``metadata.nbgrader`` dict, or ``{}`` for an ungraded cell."""
    metadata = cell.get("metadata")  # nbformat converts a version 3 file without checking it: a list, a number
    meta = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    return meta if isinstance(meta, dict) else {}


def grade_id_of(cell) -> str | None:
    """The cell's ``grade_id`` when it is a string, else None: a submitted notebook may hold anything there (a
    list cannot even be looked up in a dict)."""
    grade_id = nbgrader_metadata(cell).get("grade_id")
    return grade_id if type(grade_id) is str else None


def source_of(cell) -> str:
    """The cell's source, or "" when a submitted notebook that breaks the schema holds a number or a dict there."""
    text = cell.get("source", "")
    return text if type(text) is str else ""


def is_instructor_only(cell) -> bool:
    """True for cells tagged ``instructor`` (removed from student versions, never run when grading)."""
    return INSTRUCTOR_TAG in cell.get("metadata", {}).get("tags", [])


def cell_role(cell) -> str:
    """One of ``"instructor"``, ``"test"``, ``"solution"``, ``"locked"`` or ``"plain"``."""
    if is_instructor_only(cell):
        return "instructor"
    meta = nbgrader_metadata(cell)
    if meta.get("grade") and not meta.get("solution"):
        return "test"
    if meta.get("solution"):
        return "solution"
    if meta.get("locked"):
        return "locked"
    return "plain"


def solution_question(grade_id: str) -> str | None:
    """Question id of a solution cell's grade_id: ``"q1_solution"`` and ``"q1_solution_2"`` -> ``"q1"``."""
    head, sep, tail = grade_id.rpartition(SOLUTION_SUFFIX)
    if not sep or not head or (tail and not tail.startswith("_")):
        return None
    return head


def _cell_label(cell, index: int) -> str:
    grade_id = nbgrader_metadata(cell).get("grade_id")
    return f"cell {index + 1}" + (f" ({grade_id})" if grade_id else "")


# ------------------------------------------------------------------------------------------------- markers


def _marker_lines(source: str, begin: str, end: str, where: str) -> list[tuple[int, int]]:
    """(begin line, end line) index pairs of the begin/end regions, checked for nesting and balance."""
    regions, start = [], None
    for number, line in enumerate(source.split("\n")):
        text = line.strip()
        if text == begin:
            if start is not None:
                raise GradingSourceError(f"{where}: nested {begin!r} on line {number + 1}")
            start = number
        elif text == end:
            if start is None:
                raise GradingSourceError(f"{where}: {end!r} on line {number + 1} without {begin!r}")
            regions.append((start, number))
            start = None
    if start is not None:
        raise GradingSourceError(f"{where}: {begin!r} on line {start + 1} has no {end!r}")
    return regions


def _check_marker_spelling(source: str, where: str) -> None:
    exact = {BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN_TESTS, END_HIDDEN_TESTS}
    for number, line in enumerate(source.split("\n")):
        text = line.strip()  # only comment lines can be mistyped markers; prose may say "hidden tests"
        if text.startswith("#") and any(word in text.upper() for word in _MARKER_WORDS) and text not in exact:
            raise GradingSourceError(
                f"{where}, line {number + 1}: {line.strip()!r} looks like a grading marker but is not one of "
                f"{sorted(exact)} alone on its line (it would stay in the student version)"
            )


def strip_solutions(source: str, cell_type: str, where: str = "cell") -> str:
    """Replace each ``### BEGIN SOLUTION`` .. ``### END SOLUTION`` region by the stub, indented like the marker.

    A solution cell without markers is replaced whole (code: ``CODE_STUB``; markdown: ``TEXT_STUB``).
    """
    stub = CODE_STUB if cell_type == "code" else TEXT_STUB
    regions = _marker_lines(source, BEGIN_SOLUTION, END_SOLUTION, where)
    if not regions:
        return stub
    lines, out, cursor = source.split("\n"), [], 0
    for begin, end in regions:
        out.extend(lines[cursor:begin])
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        out.extend(indent + stub_line for stub_line in stub.split("\n"))
        cursor = end + 1
    out.extend(lines[cursor:])
    return "\n".join(out)


def strip_hidden_tests(source: str, where: str = "cell") -> str:
    """The test cell's source without its hidden-test regions (markers included): the public tests."""
    regions = _marker_lines(source, BEGIN_HIDDEN_TESTS, END_HIDDEN_TESTS, where)
    lines = source.split("\n")
    hidden = {n for begin, end in regions for n in range(begin, end + 1)}
    return "\n".join(line for n, line in enumerate(lines) if n not in hidden).rstrip("\n")


@dataclass(frozen=True)
class GradedStatement:
    """One top-level statement of a test cell: its code, first line (1-based) and whether it is hidden."""

    code: str
    lineno: int
    hidden: bool
    is_test: bool  # False for assignments, imports and definitions (setup, not counted by check)


def statement_lines(node) -> tuple[int, int]:
    """0-based first and last line of a top-level statement, its decorators included."""
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1, node.end_lineno - 1


def split_tests(source: str, where: str = "test cell") -> list[GradedStatement]:
    """Split a test cell into top-level statements, each marked public or hidden by the marker regions.

    Raises GradingSourceError when the cell does not parse or a statement straddles a marker.
    """
    regions = _marker_lines(source, BEGIN_HIDDEN_TESTS, END_HIDDEN_TESTS, where)
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise GradingSourceError(f"{where}: test code does not parse: {exc}") from None
    lines = source.split("\n")
    statements = []
    for node in tree.body:
        first, last = statement_lines(node)
        inside = [begin < first and last < end for begin, end in regions]
        if not any(inside) and any(first <= end and begin <= last for begin, end in regions):
            raise GradingSourceError(f"{where}, line {node.lineno}: a statement straddles a hidden-tests marker")
        code = "\n" * first + "\n".join(lines[first : last + 1])  # leading newlines keep line numbers
        setup = isinstance(
            node,
            (
                ast.Assign,
                ast.AugAssign,
                ast.AnnAssign,
                ast.Import,
                ast.ImportFrom,
                ast.FunctionDef,
                ast.AsyncFunctionDef,
                ast.ClassDef,
            ),
        )
        statements.append(GradedStatement(code, node.lineno, any(inside), not setup))
    return statements


# -------------------------------------------------------------------------------------------- source model


@dataclass
class Question:
    """A graded question of a source notebook: its test cell, points and solution cells."""

    question_id: str
    points: float
    test_source: str  # full test cell, hidden tests included
    solution_ids: list[str] = field(default_factory=list)

    @property
    def public_source(self) -> str:
        return strip_hidden_tests(self.test_source, self.question_id)


def read_notebook(path):
    """Read a notebook file as an nbformat v4 ``NotebookNode``; errors name the file."""
    import nbformat

    path = Path(path)
    try:
        return nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise
    except Exception as exc:  # NotJSONError, JSON decode errors, bad nbformat
        raise GradingSourceError(f"{path}: not a readable notebook ({type(exc).__name__}: {exc})") from None


def questions(nb, name: str = "notebook") -> dict[str, Question]:
    """Validate a source notebook's markers and return its questions by id, in notebook order.

    ``name`` labels error messages. Raises GradingSourceError naming the notebook and cell for: markers in the
    wrong kind of cell, unbalanced or misspelt markers, duplicate grade_ids, a test cell without positive
    points, a solution cell whose grade_id names no question, manually graded or task cells.
    """
    found: dict[str, Question] = {}
    solution_cells: list[tuple[str, str]] = []
    seen_ids: set[str] = set()
    for index, cell in enumerate(nb.cells):
        where = f"{name}, {_cell_label(cell, index)}"
        source = cell.get("source", "")
        _check_marker_spelling(source, where)
        meta = nbgrader_metadata(cell)
        role = cell_role(cell)
        grade_id = meta.get("grade_id")
        if meta and role != "instructor":
            if not grade_id:
                raise GradingSourceError(f"{where}: nbgrader metadata without a grade_id")
            if grade_id in seen_ids:
                raise GradingSourceError(f"{where}: grade_id {grade_id!r} is used by another cell too")
            seen_ids.add(grade_id)
            if meta.get("task") or (meta.get("grade") and meta.get("solution")):
                raise GradingSourceError(
                    f"{where}: manually graded answers and task cells are not supported "
                    "by the kit's autograder; use a solution cell plus a test cell"
                )
        has_solution = BEGIN_SOLUTION in source or END_SOLUTION in source
        has_hidden = BEGIN_HIDDEN_TESTS in source or END_HIDDEN_TESTS in source
        if has_solution and role not in ("solution", "instructor"):
            raise GradingSourceError(
                f"{where}: solution markers outside a solution cell (set metadata.nbgrader.solution = true)"
            )
        if has_hidden and role not in ("test", "instructor"):
            raise GradingSourceError(
                f"{where}: hidden-test markers outside a test cell (set metadata.nbgrader.grade = true)"
            )
        if role == "solution":
            strip_solutions(source, cell.cell_type, where)  # validates the regions
            question_id = solution_question(grade_id)
            if question_id is None:
                raise GradingSourceError(
                    f"{where}: a solution cell's grade_id must be '<question id>_solution' "
                    f"(or '<question id>_solution_2', ...), not {grade_id!r}"
                )
            solution_cells.append((question_id, grade_id, where))
        elif role == "test":
            if cell.cell_type != "code":
                raise GradingSourceError(f"{where}: a test cell must be a code cell")
            points = meta.get("points")
            if not isinstance(points, (int, float)) or isinstance(points, bool) or points <= 0:
                raise GradingSourceError(f"{where}: a test cell needs metadata.nbgrader.points > 0, got {points!r}")
            split_tests(source, where)  # validates markers and syntax
            found[grade_id] = Question(grade_id, points, source)
    for question_id, grade_id, where in solution_cells:
        if question_id not in found:
            raise GradingSourceError(
                f"{where}: this solution cell belongs to question {question_id!r}, "
                f"which has no test cell (questions: {', '.join(found) or 'none'})"
            )
        found[question_id].solution_ids.append(grade_id)
    return found
