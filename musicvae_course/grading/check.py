"""``check("q1")``: a question's public tests, run in the student's own kernel for immediate feedback.

Used by every notebook with exercises. It reads the test cell of the notebook file (public part only; the hidden
part is dropped even when run on the instructor's source) and runs its top-level statements one by one against a
copy of the caller's namespace. It never promises a grade (otter-grader#138).
"""

from __future__ import annotations

import builtins
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import protect as _protect
from .cases import cell_tree, grading_metadata, names_used, scope_names, shortcut_note, shortcut_uses
from .dynamic_routes import import_bindings
from .markers import GradingSourceError, cell_role, nbgrader_metadata, solution_question, split_tests


@dataclass
class CheckResult:
    """What ``check(question_id)`` found: tests run and passed, and the failures (message per failed test)."""

    question_id: str
    passed: int
    total: int
    failures: list[str] = field(default_factory=list)
    setup_error: str | None = None
    notes: list[str] = field(default_factory=list)  # shortcuts used, protected objects the tests saw changed
    not_done: bool = False  # the tests met the stub's NotImplementedError, or a name only the stub cell defines
    missing: str | None = None  # that name, when it is a name

    @property
    def ok(self) -> bool:
        return self.setup_error is None and not self.not_done and self.passed == self.total

    def __str__(self) -> str:
        text = self._report()
        return "\n".join([text, *self.notes]) if self.notes else text

    def _report(self) -> str:
        q = self.question_id
        if self.not_done:
            what = (
                f"`{self.missing}` is not defined yet (your code in the solution cell of {q} should define it)"
                if self.missing
                else f"the solution cell of {q} still raises NotImplementedError"
            )
            return (
                f"{q}: not done yet: {what}. Replace `raise NotImplementedError()` with your code, run that cell, "
                f'then check("{q}") again.'
            )
        if self.setup_error:
            return f"{q}: the public tests could not run: {self.setup_error}"
        if self.total == 0:
            return f"{q}: this question has no public tests; it is graded by hidden tests only."
        if self.ok:
            return f"{q}: public tests passed ({self.passed}/{self.total}). Your grade also depends on hidden tests."
        lines = [f"{q}: {self.passed} of {self.total} public tests passed."]
        lines += self.failures[:3]
        if len(self.failures) > 3:
            lines.append(f"... and {len(self.failures) - 3} more")
        return "\n".join(lines)


def _hint(exc: BaseException) -> str:
    if isinstance(exc, NameError):
        return " (run the cell that defines it first)"
    return ""


def _run_public_tests(question_id: str, test_source: str, namespace: dict, own: frozenset = frozenset()) -> CheckResult:
    """``own``: the names the tests use that only an answer defines (missing while a stub stops its cell)."""
    statements = [s for s in split_tests(test_source, question_id) if not s.hidden]
    scratch = dict(namespace)  # tests may assign names; the student's namespace stays as it was
    tests = [s for s in statements if s.is_test]
    result = CheckResult(question_id, 0, len(tests))
    number = 0
    for statement in statements:
        snippet = statement.code.strip()
        code = compile(statement.code, f"<public tests of {question_id}>", "exec", dont_inherit=True)
        if statement.is_test:
            number += 1
        try:
            exec(code, scratch)
        except AssertionError as exc:
            message = str(exc)
            result.failures.append(
                f"  test {number} failed: {message}\n    {snippet}"
                if message
                else f"  test {number} failed:\n    {snippet}"
            )
        except Exception as exc:
            message = str(exc)
            if isinstance(exc, NotImplementedError) and not message:  # the stub: `raise NotImplementedError()`
                result.not_done = True  # one plain line, not the same traceback-like report for every test
                return result
            if isinstance(exc, NameError) and getattr(exc, "name", None) in own:  # a stub cell stopped early
                result.not_done, result.missing = True, exc.name
                return result
            text = f"{type(exc).__name__}{': ' + message if message else ''}{_hint(exc)}"
            if not statement.is_test:
                result.setup_error = f"`{snippet}` raised {text}"
                return result
            result.failures.append(f"  test {number} raised {text}\n    {snippet}")
        else:
            if statement.is_test:
                result.passed += 1
    return result


def _session_notebook() -> Path | None:
    """The notebook file of the running kernel, when the front end tells (JupyterLab/Notebook 7, VS Code)."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    user_ns = getattr(shell, "user_ns", {}) or {}
    for candidate in (
        user_ns.get("__vsc_ipynb_file__"),
        user_ns.get("__session__"),
        os.environ.get("JPY_SESSION_NAME"),
    ):
        if candidate and str(candidate).endswith(".ipynb") and Path(candidate).is_file():
            return Path(candidate)
    return None


class Checker:
    """``check = Checker("01_loading_the_pretrained_vae.ipynb")`` then ``check("q1")`` in any cell.

    ``notebook``: the notebook file whose test cells hold the public tests, relative to the working directory
    (Jupyter starts kernels in the notebook's folder); ``None`` asks the front end which notebook is open.
    The file is read at each call, so the locked test cells are the ones the student sees.
    """

    def __init__(self, notebook=None, protect: dict | None = None):
        self.notebook = None if notebook is None else Path(notebook)
        self.protect = dict(protect or {})  # name -> object (a model): eval mode during tests, changes undone

    def _path(self) -> Path:
        if self.notebook is not None:
            if not self.notebook.is_file():
                raise FileNotFoundError(
                    f"check: cannot find the notebook {self.notebook} in {Path.cwd()}; if you renamed or moved "
                    "it, use check = Checker('<your notebook file>.ipynb')"
                )
            return self.notebook
        found = _session_notebook()
        if found is None:
            raise FileNotFoundError(
                "check: this front end does not say which notebook is open; "
                "use check = Checker('<your notebook file>.ipynb')"
            )
        return found

    def run(self, question_id: str, namespace: dict | None = None) -> CheckResult:
        """Run the public tests of ``question_id`` against ``namespace`` (default: the caller's globals)."""
        if namespace is None:
            namespace = sys._getframe(1).f_globals
        path = self._path()
        try:  # plain json, not nbformat: see the note at the imports
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        except (ValueError, KeyError, TypeError) as exc:
            raise GradingSourceError(f"check: {path} is not a readable notebook ({exc})") from None
        for cell in cells:
            if cell_role(cell) == "test" and nbgrader_metadata(cell).get("grade_id") == question_id:
                forbidden = grading_metadata(cell).get("forbidden") or []
                mine = [
                    cell_role(c) == "solution"
                    and solution_question(str(nbgrader_metadata(c).get("grade_id"))) == question_id
                    for c in cells
                ]
                solutions = [_text(c) for c, own in zip(cells, mine) if own]
                others = [
                    _text(c)
                    for c, own in zip(cells, mine)
                    if not own and c.get("cell_type") == "code" and cell_role(c) in ("solution", "plain")
                ]
                answers = names_used(_text(cell)) & set().union(  # what the tests use that solution cells define
                    *[scope_names(cell_tree(_text(c))[1])[1] for c in cells if cell_role(c) == "solution"]
                )
                uses = shortcut_uses(solutions, forbidden, answers, others, _imported(cells)) if forbidden else []
                # A name the tests use that no cell of the file defines (a stub that replaced a whole cell): only
                # the answer defines it. A name some cell defines is missing because that cell has not run.
                given = set().union(*[scope_names(cell_tree(_text(c))[1])[1] for c in cells if c is not cell])
                own = frozenset(names_used(_text(cell)) - given - set(dir(builtins)))
                result = self._guarded(question_id, _text(cell), namespace, own)
                if uses:
                    result.notes.append(
                        shortcut_note(question_id, uses, forbidden).replace("scores 0", "would score 0 when graded")
                    )
                return result
        known = [nbgrader_metadata(c).get("grade_id") for c in cells if cell_role(c) == "test"]
        raise ValueError(
            f"check: no question {question_id!r} in {path.name}; its questions are "
            f"{', '.join(map(str, known)) or 'none'}"
        )

    def _guarded(self, question_id: str, source: str, namespace: dict, own: frozenset = frozenset()) -> CheckResult:
        """Public tests with the protected objects in eval mode; changes the tests saw are undone and named."""
        guarded = {n: o for n, o in self.protect.items() if _protect.protectable(o)}
        snaps = {n: _protect.snapshot(o) for n, o in guarded.items()}
        for obj in guarded.values():
            _protect.set_eval(obj)
        evaluated = {n: _protect.snapshot(o) for n, o in guarded.items()}
        try:
            result = _run_public_tests(question_id, source, namespace, own)
        finally:
            changed = {n: _protect.changes(n, o, evaluated[n]) for n, o in guarded.items()}
            for name, obj in guarded.items():
                _protect.restore(obj, snaps[name])
        for name, what in changed.items():
            if what:
                result.notes.append(
                    f"note: your code changed {' and '.join(what)} while the tests ran; check() put {name} back "
                    "as it was (the grader tests with its own copy, so change a copy instead)"
                )
        return result

    def __call__(self, question_id: str) -> None:
        """Print the public-test report of ``question_id`` (never raises for failing tests)."""
        print(self.run(question_id, sys._getframe(1).f_globals))


def _text(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _imported(cells) -> set[str]:
    """Names the notebook's code cells bind by import (``np``): the shortcut check knows ``np.append(a, b)`` puts
    nothing into a container the answer reads, and that a variable named ``code`` is no module."""
    code_cells = [cell for cell in cells if cell.get("cell_type") == "code"]
    return set().union(*[import_bindings(cell_tree(_text(cell))[0]) for cell in code_cells])


def check(question_id: str, notebook=None) -> None:
    """Print the public-test report of ``question_id`` for the open notebook (see :class:`Checker`).

    Prints e.g. ``q1: public tests passed (3/3). Your grade also depends on hidden tests.`` or which test failed
    with its message. Never raises for failing tests; raises ValueError for an unknown question id.
    """
    print(Checker(notebook).run(question_id, sys._getframe(1).f_globals))
