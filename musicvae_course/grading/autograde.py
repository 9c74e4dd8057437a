"""Autograder: run each submitted notebook in its own kernel, then the instructor's tests, and write grades.

Used to grade the course notebooks (01_loading_the_pretrained_vae.ipynb ... 04_generation.ipynb); marker
conventions are in :mod:`musicvae_course.grading`. CLI: ``python -m musicvae_course.grading autograde
submissions/ --source notebooks/ --out grades/`` with ``submissions/<student>/<notebook>.ipynb``.

How a submission is graded
--------------------------
1. Every submission and source notebook is read into memory first, so a submission that writes files cannot
   change another student's notebook, the hidden tests or the grades (``grades.csv`` and the feedback files are
   written at the end, from memory).
2. A fresh kernel starts in ``workdir`` (default: the source folder, so relative data paths work). Before any
   student code, the grader installs its kernel half (``_grader_kernel.py``): it imports the modules the source
   notebook imports and snapshots their functions, classes and code objects.
3. The submission's code cells run one by one in the student's order, each with ``cell_timeout`` seconds:
   solution cells and cells the student added as written; locked cells (nbgrader read-only) and test cells
   are taken from the SOURCE by ``grade_id``, so editing or deleting them changes nothing (a deleted one is
   put back after the nearest source cell that is still there). Test cells of the submission never run.
4. Where a test cell stands, the question's tests from the source (public and hidden) run through
   ``user_expressions`` of an ``execute_request``: no input transformers, no history. They first undo what
   student code replaced (functions, classes and code objects of those modules, ``sys.modules`` entries,
   trace hooks, warning filters), rebind the notebook's module aliases (``np``) and the names locked cells
   defined (helpers, data) to their pristine values, run with pristine builtins in a copy of the user
   namespace, and return a result signed with HMAC-SHA256 under a key created for that request only.
   A result that is missing, unsigned or altered scores 0.
5. A cell that raises leaves the kernel as it is (its question then usually fails its tests). A cell or a
   question's tests that run past ``cell_timeout`` get a KeyboardInterrupt; if the kernel does not answer
   after that (the loop caught it) or dies (``os._exit``, segfault), the kernel restarts, the cells that had
   completed are replayed, the offending cell is skipped and grading goes on. ``timeout`` bounds the whole
   notebook. Questions that could not be tested score 0, each with the reason in the feedback.

Defended (tested in tests/test_grading.py): editing, deleting or re-labelling test cells; redefining
``check`` or assertion helpers defined by locked cells; monkeypatching builtins or functions of modules the
notebook imports (``np.isclose = lambda *a: True``, ``builtins.isinstance = ...``); replacing a function's
``__code__``; rebinding ``np``; printing fake results; input transformers that strip ``assert`` lines; writing a
fake grades file; crashing cells, infinite loops (also ones that swallow KeyboardInterrupt), killing the kernel.

Not defended: student code runs with the grader's permissions, in the same process as the tests (as in
nbgrader, which runs student code without isolation, and whose hidden tests are not secret either:
nbgrader#917). Code written against this grader's internals can find the nonce-named class, capture a request's
key (e.g. by replacing the kernel's ``user_expressions`` or with an audit hook) and forge a result; it can also
read the source notebooks if they are on disk, mutate shared objects in place, return objects whose ``__eq__``
always says True (write tests that convert results: ``float(...)``, ``np.asarray(..., dtype=float)``), use all
memory, or damage files. Run the autograder as an unprivileged user in a throwaway container with no network
and a memory limit, and look at submissions whose feedback lists "grader notes".
"""

from __future__ import annotations

import ast
import csv
import hashlib
import hmac
import io
import json
import math
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from ..fileio import atomic_write
from .markers import (
    GradingSourceError,
    cell_role,
    nbgrader_metadata,
    questions,
    read_notebook,
    solution_question,
    split_tests,
    student_version,
)

#: Standard-library modules whose functions the tests are protected against patches of, besides the notebook's.
STDLIB_MODULES = (
    "builtins",
    "math",
    "operator",
    "functools",
    "itertools",
    "collections",
    "random",
    "statistics",
    "json",
    "hmac",
    "hashlib",
    "copy",
    "types",
    "re",
    "numbers",
    "fractions",
    "warnings",
)
TIMEOUT_ENAME = "GraderTimeLimit"
MAX_OUTPUT_CHARS = 20_000  # per cell; a print loop must not exhaust the grader's memory before its timeout
MAX_RESTARTS = 3
GRACE_SECONDS = 2  # how long an interrupted kernel gets to answer before it is restarted


@dataclass
class Step:
    """One thing to run in the kernel: a cell (``"given"`` or ``"student"``) or a question's tests."""

    kind: str
    source: str = ""
    label: str = ""
    question_id: str | None = None
    grade_id: str | None = None
    record_names: tuple[str, ...] = ()


@dataclass
class QuestionResult:
    """Score of one question: ``points`` of ``max_points``; ``status`` passed/failed/timeout/not run."""

    question_id: str
    points: float
    max_points: float
    status: str
    detail: str = ""


@dataclass
class NotebookGrade:
    """Grade of one submitted notebook: per-question results plus problems met while running it."""

    student: str
    notebook: str
    questions: list[QuestionResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # cell errors, timeouts, restarts (shown to the student)
    grader_notes: list[str] = field(default_factory=list)  # tampering the grader undid or noticed
    status: str = "graded"  # graded / missing / unreadable / error
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return sum(q.points for q in self.questions)

    @property
    def max_points(self) -> float:
        return sum(q.max_points for q in self.questions)


# ---------------------------------------------------------------------------------------------- source analysis


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
class _Source:
    name: str
    nb: nbformat.NotebookNode
    questions: dict
    cells_by_id: dict  # grade_id -> (role, source cell) for test, solution and locked cells
    required_order: list  # grade_ids of test, solution and locked cells in source order
    module_names: list
    bindings: list
    protected_names: dict  # locked cell grade_id -> names to re-bind for the tests


def _load_source(path: Path) -> _Source:
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
    return _Source(path.name, nb, found, cells_by_id, order, module_names, bindings, protected)


def plan_submission(source: _Source, submission) -> tuple[list[Step], list[str]]:
    """The steps to run for a submission, and notes on cells that were missing or duplicated."""
    steps, notes, seen = [], [], set()
    for number, cell in enumerate(submission.cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        grade_id = nbgrader_metadata(cell).get("grade_id")
        known = source.cells_by_id.get(grade_id)
        text = cell.get("source", "")
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


# ----------------------------------------------------------------------------------------------------- kernel


class _CappedClient(NotebookClient):
    """nbclient's client with a cap on each cell's stored output (a print loop would fill the grader's memory)."""

    def output(self, outs, msg, display_id, cell_index):
        sizes = self.__dict__.setdefault("_output_sizes", {})
        size = sizes.get(cell_index, 0)
        if size > MAX_OUTPUT_CHARS:
            return None
        out = super().output(outs, msg, display_id, cell_index)
        sizes[cell_index] = size + len(json.dumps(out)) if out is not None else size
        if sizes[cell_index] > MAX_OUTPUT_CHARS:
            outs.append(nbformat.v4.new_output("stream", name="stderr", text="[grader: output truncated]\n"))
        return out


class _Kernel:
    """One kernel for one submission, driven through nbclient; restartable by making a new one."""

    def __init__(self, workdir: Path, kernel_name: str, install_code: str, class_name: str, startup_timeout: int):
        self.nb = nbformat.v4.new_notebook()
        self.class_name = class_name
        self.last_reply = None
        self.client = _CappedClient(
            self.nb,
            kernel_name=kernel_name,
            allow_errors=True,
            interrupt_on_timeout=True,
            error_on_timeout={"ename": TIMEOUT_ENAME, "evalue": "time limit", "traceback": []},
            iopub_timeout=1,
            shell_timeout_interval=1,
            shutdown_kernel="immediate",
            record_timing=False,
            startup_timeout=startup_timeout,
            resources={"metadata": {"path": str(workdir)}},
        )
        self.client.on_cell_executed = self._on_cell_executed
        env = {k: v for k, v in os.environ.items() if k != "JPY_SESSION_NAME"}
        env["MPLBACKEND"] = "Agg"
        self.client.km = self.client.create_kernel_manager()
        self.client.start_new_kernel(env=env)
        self.client.start_new_kernel_client()
        reply = self.request(install_code, {}, startup_timeout)
        if reply is None or reply["content"].get("status") != "ok":
            raise RuntimeError(f"the grader could not install its kernel half: {reply and reply['content']}")

    def _on_cell_executed(self, cell, cell_index, execute_reply):
        self.last_reply = execute_reply

    def close(self):
        try:
            self.client._cleanup_kernel()
        except Exception:
            pass

    def request(self, code: str, user_expressions: dict, timeout: float):
        """Send a silent execute_request; its reply, or None when none came within ``timeout`` (interrupted)."""
        msg_id = self.client.kc.execute(
            code, silent=True, store_history=False, user_expressions=user_expressions, stop_on_error=False
        )
        return self.wait(msg_id, timeout)

    def wait(self, msg_id: str, timeout: float):
        self.client.timeout = max(1, math.ceil(timeout))
        return self.client.wait_for_reply(msg_id)

    def responsive(self) -> bool:
        try:
            return self.request("", {}, GRACE_SECONDS) is not None
        except DeadKernelError:
            return False

    def run_cell(self, source: str, timeout: float) -> dict:
        """Run a cell; ``{"status": ok|error|timeout|dead|hung, "ename", "evalue"}``."""
        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        self.client.timeout = max(1, math.ceil(timeout))
        self.last_reply = None
        try:
            self.client.execute_cell(cell, len(self.nb.cells) - 1, store_history=True)
        except DeadKernelError:
            return {"status": "dead"}
        content = (self.last_reply or {}).get("content", {})
        if content.get("ename") == TIMEOUT_ENAME:
            return {"status": "timeout" if self.responsive() else "hung"}
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        if errors or content.get("status") == "error":
            error = errors[0] if errors else content
            return {"status": "error", "ename": error.get("ename", "?"), "evalue": str(error.get("evalue", ""))}
        return {"status": "ok"}

    def _expression(self, method: str, *args) -> str:
        return (
            f"[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == {self.class_name!r}][0]"
            f".{method}({', '.join(repr(a) for a in args)})"
        )

    def record(self, names, timeout: float) -> None:
        if names:
            try:
                self.request("", {"r": self._expression("record", list(names))}, timeout)
            except DeadKernelError:  # noticed, and the kernel restarted, at the next cell
                pass

    def run_tests(self, question_id: str, statements, bindings, timeout: float) -> tuple[dict | None, str]:
        """Run a question's tests; (verified result or None, "" or why there is none / "timeout")."""
        key = secrets.token_hex(16)
        expression = self._expression("run", key, question_id, statements, bindings)
        msg_id = self.client.kc.execute(
            "", silent=True, store_history=False, user_expressions={"r": expression}, stop_on_error=False
        )
        try:
            reply = self.wait(msg_id, timeout)
            timed_out = reply is None
            if timed_out:  # interrupted: run() turns the KeyboardInterrupt into a failure and answers
                reply = self.wait(msg_id, GRACE_SECONDS)
        except DeadKernelError:
            return None, "dead"
        if reply is None:
            return None, "hung"
        result = verified_result(reply["content"].get("user_expressions", {}).get("r"), key, question_id)
        if result is None:
            return None, "unverified"
        return result, "timeout" if timed_out else ""


def verified_result(value, key: str, question_id: str) -> dict | None:
    """The test result in a ``user_expressions`` entry if its HMAC-SHA256 under ``key`` checks out, else None."""
    try:
        text = ast.literal_eval(value["data"]["text/plain"])
        payload, signature = text.rsplit("\n", 1)
        expected = hmac.new(key.encode(), payload.encode(), hashlib.sha256).hexdigest()
        result = json.loads(payload)
        if hmac.compare_digest(signature, expected) and result.get("question") == question_id:
            return result
    except Exception:  # missing, not a string, not JSON: all mean "no trustworthy result"
        pass
    return None


# ---------------------------------------------------------------------------------------------------- grading


def _install_code(source: _Source, nonce: str) -> str:
    kernel_source = (Path(__file__).with_name("kernel_support.py")).read_text(encoding="utf-8")
    prefixes = sorted({m.split(".")[0] for m in source.module_names})
    call = f"install({nonce!r}, {source.module_names!r}, {prefixes!r}, {list(STDLIB_MODULES)!r})"
    return f"exec(compile({kernel_source + chr(10) + call!r}, '<grader>', 'exec'), {{'__name__': '_grader_{nonce}'}})"


def grade_submission(
    source: _Source,
    submission,
    student: str = "student",
    *,
    cell_timeout: float = 120,
    timeout: float = 1800,
    workdir=None,
    kernel_name: str = "python3",
) -> NotebookGrade:
    """Grade one submitted notebook (a NotebookNode) against a loaded source; never raises for student errors.

    ``cell_timeout``: seconds for each cell and for each question's tests; ``timeout``: seconds for the whole
    notebook, restarts included. ``workdir``: the kernel's working directory (default: the source folder).
    """
    started = time.monotonic()
    deadline = started + timeout
    grade = NotebookGrade(student, source.name)
    steps, notes = plan_submission(source, submission)
    grade.problems.extend(notes)
    results = {}
    nonce = secrets.token_hex(8)
    install = _install_code(source, nonce)
    workdir = Path(workdir) if workdir else Path(".")
    completed: list[Step] = []  # cells that finished (with or without error): replayed after a restart
    kernel, restarts = None, 0

    def new_kernel():
        nonlocal kernel
        if kernel is not None:
            kernel.close()
        kernel = _Kernel(workdir, kernel_name, install, f"Grader_{nonce}", startup_timeout=60)
        for old in completed:  # replay, outputs discarded
            left = deadline - time.monotonic()
            outcome = kernel.run_cell(old.source, min(cell_timeout, left)) if left > 0 else {"status": "dead"}
            if outcome["status"] in ("dead", "hung", "timeout"):
                raise RuntimeError(f"replaying {old.label} after a restart failed ({outcome['status']})")
            if old.kind == "given":
                kernel.record(old.record_names, GRACE_SECONDS)

    try:
        new_kernel()
        for step in steps:
            left = deadline - time.monotonic()
            if left <= 0:
                grade.problems.append(f"the notebook ran out of its {timeout:g} s time limit before {step.label}")
                break
            budget = min(cell_timeout, left)
            if step.kind == "tests":
                question = source.questions[step.question_id]
                statements = [(s.code, s.lineno, s.hidden) for s in split_tests(question.test_source)]
                result, why = kernel.run_tests(step.question_id, statements, source.bindings, budget)
                results[step.question_id] = (result, why, budget)
                if result is not None:
                    grade.grader_notes.extend(f"{step.question_id}: {n}" for n in result.get("notes", []))
                if why in ("dead", "hung"):
                    restarts += 1
                    what = "died" if why == "dead" else "stopped answering after the time limit"
                    grade.problems.append(f"{step.label}: the kernel {what}; it was restarted")
                    if restarts > MAX_RESTARTS:
                        raise RuntimeError("too many kernel restarts")
                    new_kernel()
                continue
            outcome = kernel.run_cell(step.source, budget)
            status = outcome["status"]
            if status == "ok" or status == "error":
                completed.append(step)
                if status == "error":
                    grade.problems.append(f"{step.label} raised {outcome['ename']}: {outcome['evalue'][:300]}")
                if step.kind == "given":
                    kernel.record(step.record_names, GRACE_SECONDS)
            elif status == "timeout":  # interrupted cleanly; not replayed after a restart (it would loop again)
                grade.problems.append(f"{step.label} ran past the {budget:g} s time limit and was interrupted")
            else:
                restarts += 1
                what = (
                    "killed the kernel"
                    if status == "dead"
                    else f"ran past the {budget:g} s time limit and ignored the interrupt"
                )
                grade.problems.append(f"{step.label} {what}; the kernel was restarted and this cell skipped")
                if restarts > MAX_RESTARTS:
                    raise RuntimeError("too many kernel restarts")
                new_kernel()
    except Exception as exc:  # the batch goes on: this notebook's untested questions score 0
        grade.problems.append(f"grading stopped early: {exc}")
    finally:
        if kernel is not None:
            kernel.close()

    for question_id, question in source.questions.items():
        result, why, budget = results.get(question_id, (None, "not run", 0))
        if result is not None and result["status"] == "passed" and not why:
            grade.questions.append(QuestionResult(question_id, question.points, question.points, "passed"))
            continue
        if why == "timeout" or why == "hung":
            status, detail = "timeout", f"the tests did not finish within {budget:g} s (an endless loop?)"
        elif why == "dead":
            status, detail = "failed", "the kernel died while the tests ran"
        elif why == "unverified":
            status, detail = "failed", "the tests' result did not come back intact"
        elif why == "not run":
            status, detail = "not run", "the tests could not run (see problems)"
        else:
            failure = result["failure"]
            status = "failed"
            kind = "a hidden test" if failure["hidden"] else f"the public test on line {failure['lineno']}"
            message = f": {failure['message']}" if failure["message"] else ""
            detail = f"{kind} raised {failure['ename']}{message}"
        grade.questions.append(QuestionResult(question_id, 0, question.points, status, detail))
    grade.seconds = time.monotonic() - started
    return grade


def _find_submissions(submissions_dir: Path):
    """{student: [(path, bytes)]} read into memory up front; plus problems (stray files)."""
    found, problems = {}, []
    for entry in sorted(submissions_dir.iterdir()):
        if entry.is_dir():
            files = sorted(p for p in entry.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            found[entry.name] = [(p, p.read_bytes()) for p in files]
        elif entry.suffix == ".ipynb":
            problems.append(f"{entry}: not inside a student folder (expected {submissions_dir}/<student>/...); skipped")
    return found, problems


def _match_source(path: Path, nb, sources: dict) -> str | None:
    if path.name in sources:
        return path.name
    ids = {nbgrader_metadata(c).get("grade_id") for c in nb.cells} - {None}
    overlap = {name: len(ids & set(s.cells_by_id)) for name, s in sources.items()}
    best = [name for name, n in overlap.items() if n and n == max(overlap.values())]
    return best[0] if len(best) == 1 else None


def autograde(
    submissions_dir,
    source_dir,
    out_dir,
    *,
    cell_timeout: float = 120,
    timeout: float = 1800,
    workdir=None,
    kernel_name: str = "python3",
    log=None,
) -> list[NotebookGrade]:
    """Grade ``submissions_dir/<student>/<notebook>.ipynb`` against the sources in ``source_dir``.

    Writes ``out_dir/grades.csv`` (student, notebook, one column per question id, total, max, status) and
    ``out_dir/feedback/<student>/<notebook stem>.md``; returns the grades. A submission that cannot be read,
    matches no source or breaks the grader is reported in its row and feedback; the batch goes on. Students who
    did not submit a notebook that others submitted get a "missing" row. ``log``: called with progress lines.
    """
    submissions_dir, source_dir, out_dir = Path(submissions_dir), Path(source_dir), Path(out_dir)
    if not submissions_dir.is_dir():
        raise NotADirectoryError(f"submissions folder {submissions_dir} does not exist")
    sources = {}
    for path in sorted(source_dir.glob("*.ipynb")):
        try:
            sources[path.name] = _load_source(path)
        except GradingSourceError as exc:
            raise GradingSourceError(f"fix the source before grading: {exc}") from None
    if not sources:
        raise FileNotFoundError(f"no source notebooks (*.ipynb) in {source_dir}")
    submitted, stray = _find_submissions(submissions_dir)
    workdir = Path(workdir) if workdir else source_dir
    grades: list[NotebookGrade] = []
    graded_names = set()
    for student, files in submitted.items():
        done = set()
        for path, data in files:
            try:
                nb = nbformat.reads(data.decode("utf-8"), as_version=4)
            except Exception as exc:
                grade = NotebookGrade(student, path.name, status="unreadable")
                grade.problems.append(f"{path.name} is not a readable notebook ({type(exc).__name__}: {exc})")
                name = path.name if path.name in sources else None
                if name:
                    grade.questions = [
                        QuestionResult(q, 0, s.points, "not run", "unreadable notebook")
                        for q, s in sources[name].questions.items()
                    ]
                    done.add(name)
                    graded_names.add(name)
                grades.append(grade)
                continue
            name = _match_source(path, nb, sources)
            if name is None or name in done:
                why = "matches no source notebook" if name is None else f"is a second copy of {name}"
                grade = NotebookGrade(student, path.name, status="error")
                grade.problems.append(f"{path.relative_to(submissions_dir)} {why}; not graded")
                grades.append(grade)
                continue
            done.add(name)
            graded_names.add(name)
            if log:
                log(f"grading {student}/{path.name} against {name}")
            try:
                grade = grade_submission(
                    sources[name],
                    nb,
                    student,
                    cell_timeout=cell_timeout,
                    timeout=timeout,
                    workdir=workdir,
                    kernel_name=kernel_name,
                )
            except Exception as exc:  # a grader bug must not lose the rest of the batch
                grade = NotebookGrade(student, name, status="error")
                grade.problems.append(f"the grader failed on this notebook: {type(exc).__name__}: {exc}")
            if path.name != name:
                grade.problems.insert(0, f"graded {path.name} as {name}")
            grades.append(grade)
            if log:
                log(f"  {grade.total:g}/{grade.max_points:g} in {grade.seconds:.1f} s")
    for student in submitted:
        have = {g.notebook for g in grades if g.student == student}
        for name in sorted(graded_names - have):
            grade = NotebookGrade(student, name, status="missing")
            grade.questions = [
                QuestionResult(q, 0, s.points, "not run", "not submitted") for q, s in sources[name].questions.items()
            ]
            grades.append(grade)
    grades.sort(key=lambda g: (g.student, g.notebook))
    write_grades_csv(grades, out_dir / "grades.csv", {n: s for n, s in sources.items() if n in graded_names})
    for grade in grades:
        path = out_dir / "feedback" / grade.student / (Path(grade.notebook).stem + ".md")
        atomic_write(path, feedback_text(grade))
    if stray and log:
        for line in stray:
            log(line)
    return grades


def _number(value: float) -> str:
    return f"{value:g}"


def write_grades_csv(grades, path, sources=None) -> None:
    """Write ``grades.csv``: student, notebook, question columns (source order), total, max, status."""
    columns = []
    for source in (sources or {}).values():
        columns.extend(q for q in source.questions if q not in columns)
    for grade in grades:
        columns.extend(q.question_id for q in grade.questions if q.question_id not in columns)
    path = Path(path)
    rows = [["student", "notebook", *columns, "total", "max", "status"]]
    for grade in grades:
        points = {q.question_id: _number(q.points) for q in grade.questions}
        rows.append(
            [
                grade.student,
                grade.notebook,
                *[points.get(c, "") for c in columns],
                _number(grade.total),
                _number(grade.max_points),
                grade.status,
            ]
        )
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    atomic_write(path, buffer.getvalue())


def feedback_text(grade: NotebookGrade) -> str:
    """Markdown feedback for one notebook: score per question with the reason for each lost point."""
    lines = [f"# {grade.notebook}: {_number(grade.total)} / {_number(grade.max_points)} points", ""]
    if grade.status != "graded":
        lines += [f"Status: {grade.status}", ""]
    for q in grade.questions:
        lines.append(
            f"- **{q.question_id}**: {_number(q.points)} / {_number(q.max_points)}"
            + ("" if q.status == "passed" else f" ({q.status}: {q.detail})")
        )
    if grade.problems:
        lines += ["", "## Problems while running your notebook", ""] + [f"- {p}" for p in grade.problems]
    if grade.grader_notes:
        lines += [
            "",
            "## Grader notes",
            "",
            "Your code changed things the tests rely on; the grader undid it before testing:",
            "",
        ]
        lines += [f"- {n}" for n in grade.grader_notes[:30]]
    return "\n".join(lines) + "\n"


def failing_cells(path, cell_timeout: float = 120, kernel_name: str = "python3") -> list[dict]:
    """Run a notebook top to bottom in a fresh kernel (errors allowed); describe each cell that raised.

    Returns dicts ``{"cell": number (1-based), "role": cell_role, "grade_id", "ename", "evalue"}``. A cell that
    runs past ``cell_timeout`` or a dying kernel is reported as one entry with role "notebook".
    """
    path = Path(path)
    nb = read_notebook(path)
    client = NotebookClient(
        nb,
        kernel_name=kernel_name,
        allow_errors=True,
        timeout=max(1, math.ceil(cell_timeout)),
        resources={"metadata": {"path": str(path.parent)}},
        shutdown_kernel="immediate",
    )
    try:
        client.execute()
    except Exception as exc:  # DeadKernelError or a cell timeout: report it, never crash CI's loop
        return [
            {"cell": None, "role": "notebook", "grade_id": None, "ename": type(exc).__name__, "evalue": str(exc)[:300]}
        ]
    failures = []
    for number, cell in enumerate(nb.cells, start=1):
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            failures.append(
                {
                    "cell": number,
                    "role": cell_role(cell),
                    "grade_id": nbgrader_metadata(cell).get("grade_id"),
                    "ename": errors[0].get("ename"),
                    "evalue": str(errors[0].get("evalue", ""))[:300],
                }
            )
    return failures


def ungraded_failures(path, cell_timeout: float = 120, kernel_name: str = "python3") -> list[str]:
    """Run a student version; describe each failing cell that is neither a solution nor a test cell.

    The CI check that student versions "fail only in graded cells": stubs raise NotImplementedError and test
    cells fail, but every other cell must run, so a student can work through the notebook in order.
    """
    return [
        f"cell {f['cell']} raised {f['ename']}: {f['evalue']}"
        if f["cell"]
        else f"the notebook could not run to the end: {f['ename']}: {f['evalue']}"
        for f in failing_cells(path, cell_timeout, kernel_name)
        if f["role"] not in ("solution", "test")
    ]
