"""The exercises measure learning: each reference solution gets full marks, each plausible wrong attempt loses points.

The wrong attempts live in ``tests/fixtures/exercises/<notebook>/<question>/<name>.py``: the solution cell as a
student might write it, headed by ``# mistake: <what is wrong>`` and ``# loses: <case ids>`` (or ``forbidden``); the
question's given helpers ("Given, do not change") are appended as the notebook has them unless the file has its own.
Each is graded through the grader's ``GradingSession.grade_question`` (one sandboxed kernel per notebook, many
questions; ``EXERCISES_GRADER=standin`` uses the in-process stand-in of tests/fixtures/exercises/) and
must fail exactly the cases it names, so docs/exercise_mistakes.md, generated from these headers by
scripts/make_mistakes_table.py, says what the checks really say.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "exercises"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


runner = _load("exercise_standin_runner", FIXTURES / "standin_runner.py")
table = _load("make_mistakes_table", ROOT / "scripts" / "make_mistakes_table.py")

MISTAKES = table.read_mistakes(FIXTURES)
HONEST = table.read_honest(FIXTURES)
NOTEBOOKS = sorted({m.notebook for m in MISTAKES})
QUESTIONS = sorted({(m.notebook, m.question) for m in MISTAKES})


@pytest.fixture(scope="module")
def sessions():
    opened, stack = {}, []

    def get(notebook: str):
        if notebook not in opened:
            context = runner.open_session(ROOT / "notebooks" / f"{notebook}.ipynb")
            opened[notebook] = context.__enter__()
            stack.append(context)
        return opened[notebook]

    yield get
    for context in reversed(stack):
        context.__exit__(None, None, None)


def _note(result) -> str:
    return getattr(result, "note", "") or getattr(result, "detail", "") or ""


def _failed(result) -> list[str]:
    """Failed case ids, or ["forbidden"] for a shortcut (0 points with the grader's plain note)."""
    if result.points == 0 and "yourself" in _note(result):
        return ["forbidden"]
    return [tuple(case)[0] for case in result.cases if not tuple(case)[2]]


def _describe(result) -> str:
    lines = [f"{result.question_id}: {result.points:.2f}/{result.max_points} {_note(result)}"]
    lines += [f"  {'ok  ' if c[2] else 'FAIL'} {c[0]} ({c[1]}): {c[4]}" for c in map(tuple, result.cases)]
    return "\n".join(lines)


@pytest.mark.parametrize(("notebook", "question"), QUESTIONS, ids=[f"{n[:2]}-{q}" for n, q in QUESTIONS])
def test_the_reference_solution_gets_full_marks(sessions, notebook, question):
    result = sessions(notebook).grade_question(question)
    assert result.points == pytest.approx(result.max_points), _describe(result)


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.test_id for m in MISTAKES])
def test_a_wrong_attempt_loses_points_on_exactly_the_cases_it_names(sessions, mistake):
    result = sessions(mistake.notebook).grade_question(mistake.question, solutions=mistake.solutions)
    assert result.points < result.max_points, _describe(result)
    assert sorted(_failed(result)) == sorted(mistake.loses), _describe(result)


def test_a_wrong_answer_tried_does_not_change_the_questions_graded_after_it(sessions):
    # one kernel grades a notebook's questions in turn, and 04 q6 calls q4's snap_to_key: after a wrong q4 was tried,
    # the reference q6 scored 2.25 of 3 (and which q6 mistakes failed which cases depended on the order of tests)
    wrong = next(m for m in MISTAKES if m.test_id == "04-q4-moves_probabilities")
    session = sessions(wrong.notebook)
    assert session.grade_question("q4", solutions=wrong.solutions).points < 3
    result = session.grade_question("q6")
    assert result.points == pytest.approx(result.max_points), _describe(result)


@pytest.mark.parametrize("answer", HONEST, ids=[h.test_id for h in HONEST])
def test_an_honest_answer_written_another_way_keeps_full_marks(sessions, answer):
    # numpy instead of torch, loops, another formula: what the text allows must not cost points
    result = sessions(answer.notebook).grade_question(answer.question, solutions=answer.solutions)
    assert result.points == pytest.approx(result.max_points), _describe(result)


def test_every_exercise_has_at_least_four_wrong_attempts():
    counts = {(m.notebook, m.question): 0 for m in MISTAKES}
    for m in MISTAKES:
        counts[(m.notebook, m.question)] += 1
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for question in table.question_ids(notebook):
            assert counts.get((notebook.stem, question), 0) >= 4, f"{notebook.stem} {question}: fewer than 4"


def test_the_mistakes_table_is_in_sync_with_the_fixtures():
    expected = table.render(FIXTURES, ROOT / "notebooks")
    actual = (ROOT / "docs" / "exercise_mistakes.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/exercise_mistakes.md is stale: run python scripts/make_mistakes_table.py"


def _bound_names(source: str) -> set[str]:
    """Every name a cell binds anywhere (assignments, loop and with targets, imports, defs, arguments)."""
    bound = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem[:2])
def test_test_cells_use_only_their_own_locked_cell_and_solution_names(notebook):
    """The contract's name rule: no test may read a name that only a plain demo cell binds."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    allowed = set(dir(builtins))
    for cell in cells:
        if runner.cell_kind(cell) in ("locked", "solution"):
            allowed |= _bound_names(runner._source(cell))
    for cell in cells:
        if runner.cell_kind(cell) != "test":
            continue
        source = runner._source(cell)
        own = _bound_names(source)
        used = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        foreign = sorted(used - own - allowed)
        question = cell["metadata"]["nbgrader"]["grade_id"]
        assert foreign == [], (
            f"{notebook.name} {question}: tests read {foreign}, bound only outside locked/solution cells"
        )


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem[:2])
def test_setup_cells_do_not_import_what_the_exercises_forbid(notebook):
    """A forbidden kit function is not handed to students by a setup import unless a demo cell needs it."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    forbidden = set()
    for cell in cells:
        forbidden |= set(cell.get("metadata", {}).get("grading", {}).get("forbidden", []))
    demo_sources = "\n".join(
        runner._source(c) for c in cells if runner.cell_kind(c) == "plain" and c["cell_type"] == "code"
    )
    for cell in cells:
        if runner.cell_kind(cell) != "locked":
            continue
        imported = set()
        for node in ast.walk(ast.parse(runner._source(cell))):
            if isinstance(node, ast.ImportFrom):
                imported.update(a.asname or a.name for a in node.names)
        unused_by_demos = sorted(n for n in imported & forbidden if not re.search(rf"\b{n}\b", demo_sources))
        assert unused_by_demos == [], f"{notebook.name}: the setup imports {unused_by_demos}, which exercises forbid"
