"""Grader-side tests: the source's locked cells and each question's test cell run in the GRADER's process.

Used by the autograder and :class:`~musicvae_course.grading.session.GradingSession`. Names in a test cell resolve
to (1) what the test cell binds, (2) what the source's locked given cells bound when the grader ran them in its
own namespace (:class:`GraderSpace`: once per source notebook and worker process, in a scratch folder laid out
like the notebook's), (3) proxies into the student's kernel for the other names a solution cell binds: calling a
proxied function sends the arguments as plain data (grader objects that cannot travel, e.g. ``model``, by name)
and decodes the result strictly (:mod:`.codec`); a proxied variable is fetched as plain data. No comparison runs
in the student's process, so a rigged ``__eq__``, a torch mode or patched builtins there cannot change a verdict.
"""

from __future__ import annotations

import ast
import builtins
import io
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

from . import codec, protect
from .cases import Case, case_points, names_used, runnable_source, shortcut_note, shortcut_uses
from .link import CallTimeout, KernelLink, KernelLost, NotPlainData, _Proxy
from .source import Source


class GraderTimeout(BaseException):
    """The question's tests ran in the grader's process a whole budget past their deadline: a loop or a parse sized
    by what the student's code returned (``range(n)``, MIDI bytes its file holds). A BaseException, so that the
    tests' or a library's ``except Exception`` does not swallow it."""


class _Clock:
    """SIGALRM after ``seconds``; it raises GraderTimeout only while ``armed`` (inside a case's statements), and
    when it comes between them the next arming raises. Without a main thread (or SIGALRM), or with another timer of
    the process's pending (which it would cancel), there is no limit."""

    def __init__(self, seconds: float):
        self.seconds, self.armed, self.expired, self.installed, self.previous = seconds, False, False, False, None

    def _ring(self, signum, frame):
        self.expired = True
        if self.armed:
            raise GraderTimeout()

    def arm(self):
        self.armed = True
        if self.expired:
            raise GraderTimeout()

    def __enter__(self):
        main = threading.current_thread() is threading.main_thread()
        if main and hasattr(signal, "setitimer") and signal.getitimer(signal.ITIMER_REAL)[0] == 0:
            self.previous, self.installed = signal.signal(signal.SIGALRM, self._ring), True
            signal.setitimer(signal.ITIMER_REAL, max(self.seconds, 0.001))
        return self

    def __exit__(self, *exc):
        self.armed = False
        if self.installed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, signal.SIG_DFL if self.previous is None else self.previous)


@dataclass
class CaseResult:
    """One case of a question: ``(case_id, requirement, passed, points, message)`` as a tuple via ``astuple``."""

    case_id: str
    requirement: str
    passed: bool
    points: float
    message: str = ""

    def __iter__(self):
        return iter((self.case_id, self.requirement, self.passed, self.points, self.message))


@dataclass
class QuestionResult:
    """Score of one question: ``points`` of ``max_points``; ``status`` passed/partial/failed/timeout/not run."""

    question_id: str
    points: float
    max_points: float
    status: str
    detail: str = ""
    cases: list = field(default_factory=list)  # [CaseResult]


@contextmanager
def working_directory(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextmanager
def quiet():
    """Output of given cells and tests run grader-side goes nowhere (it is not feedback, and a worker's stdout
    is the grader's log)."""
    sink = io.StringIO()
    with redirect_stdout(sink), redirect_stderr(sink):
        yield


class GraderSpace:
    """The grader's own namespace for one source notebook: its locked cells run in ``workdir``.

    ``errors``: (grade_id, message) of locked cells that raised (tests that need them then fail, with a note).
    ``refs``: ``{id(obj): name}`` of bound objects that are not plain data (``model``): sent to the kernel by name.
    """

    def __init__(self, source: Source, workdir: Path):
        self.source, self.workdir = source, Path(workdir)
        self.namespace: dict = {"__name__": "__grader__", "__builtins__": builtins}
        self.errors: list[tuple[str, str]] = []
        with working_directory(self.workdir), quiet():
            for grade_id, cell_source in source.locked_sources():
                try:
                    exec(compile(runnable_source(cell_source), f"<given cell {grade_id}>", "exec"), self.namespace)
                except BaseException as exc:  # noqa: BLE001 - a broken given cell is reported, not fatal
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    self.errors.append((grade_id, f"{type(exc).__name__}: {exc}"))
        self.refs, self.snapshots = {}, {}
        for name, value in self.namespace.items():
            if name.startswith("__") or type(value).__name__ == "module":
                continue
            try:
                codec.encode(value)
            except (TypeError, ValueError, RecursionError):
                self.refs[id(value)] = name
            if protect.protectable(value):
                self.snapshots[name] = protect.snapshot(value)
        torch = sys.modules.get("torch")  # the given cells' grad mode and default dtype (torch's own, unloaded)
        self.torch_modes = (torch.is_grad_enabled(), torch.get_default_dtype()) if torch is not None else None

    def restore(self):
        """Undo what tests did to protected objects (models) and to torch's grad mode and default dtype (a test's
        ``torch.set_grad_enabled(False)`` before an assert that a wrong answer failed: off for later students)."""
        for name, snap in self.snapshots.items():
            protect.restore(self.namespace[name], snap)
        torch = sys.modules.get("torch")
        if torch is not None:
            grad, dtype = self.torch_modes or (True, torch.float32)
            torch.set_grad_enabled(grad)
            torch.set_default_dtype(dtype)


MAX_MESSAGE = 2000  # characters: a test's f-string can print what came back whole (millions of values)


def _failure_message(exc: BaseException, case: Case, unusable: dict, test_bound=frozenset()) -> str:
    """The feedback line of a failed case, cut at MAX_MESSAGE: the record, the feedback and every rebuild of the
    class files after each notebook read it."""
    text = _failure_text(exc, case, unusable, test_bound)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "\u2026"


def _failure_text(exc: BaseException, case: Case, unusable: dict, test_bound=frozenset()) -> str:
    where = f"in case {case.case_id} ({case.requirement})"
    origin = getattr(exc, "_mvc_origin", None)
    if origin is not None:
        if origin[1] == "NotImplementedError":
            return f"{origin[0]} raised NotImplementedError {where}: its solution cell still holds the stub"
        return f"{origin[0]} raised {origin[1]}{': ' + str(exc) if str(exc) else ''} {where}"
    if isinstance(exc, AssertionError):
        return (
            f"case {case.case_id} ({case.requirement}): {exc}"
            if str(exc)
            else f"case {case.case_id} failed ({case.requirement})"
        )
    if isinstance(exc, NameError) and getattr(exc, "name", None) in unusable:
        return f"{unusable[exc.name]} {where}"
    if isinstance(exc, NameError) and getattr(exc, "name", None) in test_bound:
        return f"not tested {where}: it needs a result of an earlier case, which failed"
    if isinstance(exc, NameError):
        return f"{exc} {where}: define it in your notebook (did its cell run without errors?)"
    if isinstance(exc, (CallTimeout, NotPlainData)):
        return f"{exc} {where}"
    if isinstance(exc, GraderTimeout):
        return f"the tests ran past their time limit on what your functions returned {where}"
    return f"the tests raised {type(exc).__name__}: {exc} {where}"


def run_question(
    space: GraderSpace,
    question_id: str,
    kernel,
    budget: float,
    solution_sources: list[str],
    other_sources=(),
) -> QuestionResult:
    """Grade one question grader-side against the kernel's current state; never raises for student errors.

    ``solution_sources``: the student's solution cells of this question, ``other_sources``: the other cells the
    student wrote and ran before the tests (both for the shortcut check). The tests run in the grader's own
    folder (``space.workdir``), never in the kernel's: the student's code could have put links or Python modules
    there that a grader-side ``unlink`` or ``import`` would follow. A test reads what the student's code wrote
    through a given helper that runs in the kernel (04 q5's ``file_bytes``).
    Raises KernelLost when the kernel died or hung (the caller restarts it; the result is then lost).
    """
    source = space.source
    question = source.questions[question_id]
    cases = source.cases[question_id]
    forbidden = source.forbidden.get(question_id) or []
    if forbidden:
        answers = names_used(question.test_source) & source.solution_names
        modules = {alias for alias, _ in source.bindings}  # np.append(a, b) changes no container
        uses = shortcut_uses(solution_sources, forbidden, answers, other_sources, modules)
        if uses:
            note = shortcut_note(question_id, uses, forbidden)
            results = [CaseResult(c.case_id, c.requirement, False, 0.0, note) for c in cases]
            return QuestionResult(question_id, 0.0, question.points, "failed", note, results)
    deadline = time.monotonic() + budget
    link = KernelLink(kernel, deadline, budget)
    namespace = dict(space.namespace)
    test_bound = set()
    for case in cases:
        for statement in case.statements:
            test_bound |= _bound_targets(statement.code)
    wanted = (names_used(question.test_source) & source.solution_names) - test_bound - source.locked_names
    unusable, passed, messages = {}, [], []
    lost = None
    try:
        kinds = link.describe(wanted)
        for name, kind in kinds.items():
            if kind == "callable":
                namespace[name] = _Proxy(name, link, space.refs)
            elif kind == "value":
                try:
                    namespace[name] = link.fetch(name)
                except (NotPlainData, CallTimeout) as exc:
                    unusable[name] = str(exc)
                    namespace.pop(name, None)
                except Exception as exc:  # noqa: BLE001 - a variable that raised when read
                    unusable[name] = f"reading {name} raised {type(exc).__name__}: {exc}"
                    namespace.pop(name, None)
            else:
                namespace.pop(name, None)
                unusable[name] = f"{name} is not defined in your notebook (did its cell run without errors?)"
    except (NotPlainData, CallTimeout) as exc:
        lost = exc
    # kernel calls end at the deadline; the grader's own work on what came back gets one more budget (see GraderTimeout)
    with working_directory(space.workdir), quiet(), _Clock(deadline + budget - time.monotonic()) as clock:
        for case in cases:
            if lost is not None:
                passed.append(False)
                messages.append(_failure_message(lost, case, unusable))
                continue
            link.failure = None
            try:
                try:
                    clock.arm()
                    for statement in case.statements:
                        code = compile(statement.code, f"<tests of {question_id}>", "exec", dont_inherit=True)
                        exec(code, namespace)
                finally:
                    clock.armed = False
                if link.failure is not None:  # the test caught it (`except Exception`): the case fails all the same
                    raise link.failure
            except KernelLost:
                space.restore()
                raise
            except (CallTimeout, GraderTimeout) as exc:
                lost = exc
                passed.append(False)
                messages.append(_failure_message(exc, case, unusable, test_bound))
            except Exception as exc:  # noqa: BLE001 - any failure of a case is that case's failure
                passed.append(False)
                messages.append(_failure_message(exc, case, unusable, test_bound))
            else:
                passed.append(True)
                messages.append("")
    space.restore()
    points = case_points(question.points, cases, passed)
    results = [CaseResult(c.case_id, c.requirement, ok, p, m) for c, ok, p, m in zip(cases, passed, points, messages)]
    total = round(sum(points), 6)
    status = (
        "passed"
        if all(passed)
        else ("timeout" if isinstance(lost, (CallTimeout, GraderTimeout)) else ("partial" if total else "failed"))
    )
    detail = "; ".join(m for m in messages if m)
    return QuestionResult(question_id, total, question.points, status, detail, results)


def _bound_targets(code: str) -> set[str]:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names
