"""A source notebook as the grader sees it: questions, cases, locked cells, names, and a submission's plan.

Used by the autograder and :class:`~musicvae_course.grading.session.GradingSession` for the course notebooks
(01_loading_the_pretrained_vae.ipynb ... 04_generation.ipynb). The plan of a submission: its code cells in the
student's order; solution cells and cells the student added run as written; locked cells and test cells are
taken from the SOURCE by ``grade_id`` (edited, deleted or relabelled ones make no difference: a missing one is
put back after the nearest source cell that is present); the submission's own test cells never run.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .cases import grading_metadata, split_cases
from .markers import (
    BEGIN_SOLUTION,
    END_SOLUTION,
    _marker_lines,
    cell_role,
    grade_id_of,
    nbgrader_metadata,
    questions,
    read_notebook,
    solution_question,
    source_of,
    statement_lines,
)
from .student import student_version


@dataclass
class Step:
    """One thing to run in the kernel: a cell (``"given"`` or ``"student"``) or a question's tests."""

    kind: str
    source: str = ""
    label: str = ""
    question_id: str | None = None
    grade_id: str | None = None
    record_names: tuple[str, ...] = ()


def _python_source(source: str) -> str:
    """Cell source with IPython syntax (``%magic``, ``!cmd``) turned into Python, for ``ast``."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return TransformerManager().transform_cell(source)
    except Exception:
        return ""


def _parse(source: str):
    try:
        return ast.parse(_python_source(source))
    except SyntaxError:
        return ast.Module(body=[], type_ignores=[])


def _bound_names(source: str) -> set[str]:
    """Names a cell binds at top level (assignments, definitions, imports)."""
    names = set()
    for node in _parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _imports(sources) -> tuple[list[str], list[tuple[str, str]]]:
    """Module names imported by the cells, and (alias, module) bindings such as ("np", "numpy")."""
    modules, bindings = [], []
    for source in sources:
        for node in ast.walk(_parse(source)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    modules.append(alias.name)
                    if alias.asname:
                        bindings.append((alias.asname, alias.name))
                    else:
                        top = alias.name.split(".")[0]
                        bindings.append((top, top))
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.append(node.module)
                for alias in node.names:  # bound only if it turns out to be a module (checked in the kernel)
                    bindings.append((alias.asname or alias.name, f"{node.module}.{alias.name}"))
                    modules.append(f"{node.module}.{alias.name}")
    return list(dict.fromkeys(modules)), list(dict.fromkeys(bindings))


@dataclass
class Source:
    """A loaded source notebook: questions (with cases), cells by grade_id, the names its cells bind."""

    name: str
    path: Path
    nb: nbformat.NotebookNode
    questions: dict
    cells_by_id: dict  # grade_id -> (role, source cell) for test, solution and locked cells
    required_order: list  # grade_ids of test, solution and locked cells in source order
    module_names: list
    bindings: list
    protected_names: dict  # locked cell grade_id -> names it binds (snapshotted in the kernel)
    solution_names: set = field(default_factory=set)  # names the source's solution cells bind (proxied)
    locked_names: set = field(default_factory=set)
    cases: dict = field(default_factory=dict)  # question id -> [Case]
    forbidden: dict = field(default_factory=dict)  # question id -> [names]
    solutions: dict = field(default_factory=dict)  # solution grade_id -> reference source
    digest: str = ""
    student_text: str = ""  # the student version as JSON text (put beside the kernel: check() reads it)
    demo_sources: set = field(default_factory=set)  # the student version's plain code cells, as released
    given_helpers: dict = field(default_factory=dict)  # question id -> functions its solution cells give as is

    def locked_sources(self) -> list[tuple[str, str]]:
        """(grade_id, source) of the locked given cells in order, as the instructor wrote them."""
        return [
            (gid, cell.source)
            for gid in self.required_order
            for role, cell in [self.cells_by_id[gid]]
            if role == "locked" and cell.cell_type == "code"
        ]


def load_source(path) -> Source:
    """Read and validate a source notebook (GradingSourceError naming the cell for broken markers or cases)."""
    path = Path(path)
    nb = read_notebook(path)
    found = questions(nb, path.name)
    graded_view = student_version(nb, path.name)  # what students got: locked cells as released
    cells_by_id, order = {}, []
    for cell in graded_view.cells:
        role = cell_role(cell)
        grade_id = nbgrader_metadata(cell).get("grade_id")
        if role in ("test", "solution", "locked") and grade_id:
            cells_by_id[grade_id] = (role, cell)
            order.append(grade_id)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    module_names, bindings = _imports(code)
    solution_names = set().union(*[_bound_names(c.source) for c in nb.cells if cell_role(c) == "solution"])
    protected = {
        gid: tuple(sorted(_bound_names(cell.source) - solution_names))
        for gid, (role, cell) in cells_by_id.items()
        if role == "locked" and cell.cell_type == "code"
    }
    locked_names = set().union(*protected.values()) if protected else set()
    locked_names |= (
        set().union(*[_bound_names(cell.source) for role, cell in cells_by_id.values() if role == "locked"])
        if cells_by_id
        else set()
    )
    cases, forbidden, solutions, given = {}, {}, {}, {}
    for cell in nb.cells:
        role, gid = cell_role(cell), nbgrader_metadata(cell).get("grade_id")
        if role == "test":
            meta = grading_metadata(cell)
            try:
                cases[gid] = split_cases(cell.source, meta.get("weights"), f"{path.name}, test cell {gid}")
            except ValueError as exc:
                from .markers import GradingSourceError

                raise GradingSourceError(str(exc)) from None
            forbidden[gid] = list(meta.get("forbidden", []))
        elif role == "solution":
            solutions[gid] = cell.source
            helpers = _given_functions(cell.source, f"{path.name}, solution cell {gid}")
            if helpers:
                given[solution_question(gid)] = given.get(solution_question(gid), "") + helpers
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Source(
        path.name,
        path,
        nb,
        found,
        cells_by_id,
        order,
        module_names,
        bindings,
        protected,
        solution_names,
        locked_names,
        cases,
        forbidden,
        solutions,
        digest,
        nbformat.writes(graded_view),
        {c.source for c in graded_view.cells if c.cell_type == "code" and cell_role(c) == "plain"},
        given,
    )


def _given_functions(source: str, where: str) -> str:
    """The top-level functions of a solution cell outside its solution regions (``latent_gradients``: helpers the
    tests call in the kernel, "given, do not change"), as source to run again before the question's tests."""
    regions = _marker_lines(source, BEGIN_SOLUTION, END_SOLUTION, where)
    lines = source.split("\n")
    found = []
    for node in _parse(source).body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        first, last = statement_lines(node)
        if not any(first <= end and start <= last for start, end in regions):
            found.append("\n".join(lines[first : last + 1]) + "\n\n")
    return "".join(found)


def plan_submission(source: Source, submission) -> tuple[list[Step], list[str]]:
    """The steps to run for a submission, and notes on cells that were missing or duplicated."""
    steps, notes, seen = [], [], set()
    for number, cell in enumerate(submission.cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        grade_id = grade_id_of(cell)
        known = source.cells_by_id.get(grade_id)
        text = source_of(cell)
        if known is None or grade_id in seen:
            if known is not None and known[0] != "solution":
                notes.append(f"cell {number} repeats {grade_id!r} and was not run")
                continue
            first = text.strip().split("\n")[0][:60]
            steps.append(Step("student", text, f"cell {number} ({first!r})"))
            continue
        seen.add(grade_id)
        role, source_cell = known
        if role == "solution":
            question_id = solution_question(grade_id)
            steps.append(Step("student", text, f"cell {number} (your answer to {question_id})", question_id, grade_id))
        elif role == "locked":
            steps.append(
                Step(
                    "given",
                    source_cell.source,
                    f"cell {number} (given code {grade_id})",
                    None,
                    grade_id,
                    source.protected_names.get(grade_id, ()),
                )
            )
        else:
            steps.append(Step("tests", label=f"tests of {grade_id}", question_id=grade_id, grade_id=grade_id))
    for index, grade_id in enumerate(source.required_order):  # put back deleted locked and test cells
        role, source_cell = source.cells_by_id[grade_id]
        if grade_id in seen or role == "solution":
            continue
        positions = {s.grade_id: i for i, s in enumerate(steps) if s.grade_id}
        before = [positions[g] for g in source.required_order[:index] if g in positions]
        at = max(before) + 1 if before else 0
        if role == "test":
            step = Step("tests", label=f"tests of {grade_id}", question_id=grade_id, grade_id=grade_id)
        else:
            step = Step(
                "given",
                source_cell.source,
                f"given code {grade_id}",
                None,
                grade_id,
                source.protected_names.get(grade_id, ()),
            )
        steps.insert(at, step)
        seen.add(grade_id)
        notes.append(f"{'test' if role == 'test' else 'locked'} cell {grade_id!r} was missing and was put back")
    return steps, notes
