"""Grading one notebook: a sandboxed student kernel plus grader-side tests. ``GradingSession`` and ``grade_notebook``.

Used by the autograder (whole submissions of the course notebooks) and by the exercises' mutation suite::

    with GradingSession("notebooks/02_latent_space_with_widgets.ipynb", sandbox="auto") as session:
        result = session.grade_question("q1", solutions={"q1_solution": "def slerp(...): ..."})
        result.points, result.max_points, result.cases  # cases: [(id, requirement, passed, points, message)]

The kernel works in a private copy of the notebook's folder layout (:class:`Layout`: the data files where the
notebook reads them), in the sandbox of :mod:`.kernel`. Locked cells run there from the SOURCE; after each, the
kernel snapshots the models they bound and restores them before each question. The tests run grader-side
(:mod:`.judge`).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import codec
from .judge import GraderSpace, KernelLost, QuestionResult, run_question
from .kernel import Kernel, KernelDied
from .sandbox import Sandbox, make_sandbox, remove_tree
from .source import Source, Step, load_source, plan_submission

MAX_RESTARTS = 3
GIVEN_MIN_TIMEOUT = 60.0  # the instructor's given cells (imports, data) are not limited below this
# Problems listed per notebook: a million cells that raise (or repeat a locked cell) are a million lines in the
# record and the feedback, and the class files are rebuilt from every record after each notebook
MAX_PROBLEMS = 100
# ...and characters per problem: what a cell raised is the student's to choose (an exception class named by 40 MB of
# "E", five times, made a 210 MB record and as much feedback, parsed again by every rebuild of the class files)
MAX_PROBLEM_CHARS = 1000
MAX_NAME = 80  # characters of an exception's class name


@dataclass
class Layout:
    """Where a notebook's files lie: ``workdir_name`` (the folder the notebook runs in, e.g. ``notebooks``) and
    ``{path relative to the course root: host path}`` of the data it reads (``data_samples``, ``reference``).
    :meth:`make` copies them into a fresh course root."""

    workdir_name: str
    files: dict = field(default_factory=dict)

    @classmethod
    def for_source_dir(cls, source_dir, extra=None) -> Layout:
        """The kit's layout: ``../data_samples``, ``../reference`` and ``reference/`` of the sources, if they exist."""
        source_dir = Path(source_dir).resolve()
        files = {}
        for relative, host in (
            ("data_samples", source_dir.parent / "data_samples"),
            ("reference", source_dir.parent / "reference"),
            (f"{source_dir.name}/reference", source_dir / "reference"),
        ):
            if host.exists():
                files[relative] = host
        files.update({k: Path(v).resolve() for k, v in (extra or {}).items()})
        return cls(source_dir.name, files)

    def make(self, root: Path) -> Path:
        """Copy the files under ``root`` (a new folder); returns the working folder ``root/<workdir_name>``."""
        root.mkdir(parents=True, exist_ok=True)
        for relative, host in self.files.items():
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if host.is_dir():
                shutil.copytree(host, target, symlinks=False, dirs_exist_ok=True)
            else:
                shutil.copy2(host, target)
        workdir = root / self.workdir_name
        workdir.mkdir(parents=True, exist_ok=True)
        return workdir


@dataclass
class NotebookGrade:
    """Grade of one submitted notebook: per-question results plus problems met while running it."""

    student: str
    notebook: str
    questions: list = field(default_factory=list)  # [QuestionResult]
    problems: list = field(default_factory=list)  # cell errors, timeouts, restarts (shown to the student)
    grader_notes: list = field(default_factory=list)  # only what could change a verdict
    status: str = "graded"  # graded / missing / unreadable / error
    isolation: str = ""  # "bwrap" or "none" once graded
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return round(sum(q.points for q in self.questions), 6)

    @property
    def max_points(self) -> float:
        return sum(q.max_points for q in self.questions)


class _KernelRun:
    """A student kernel for one source notebook, restartable: completed steps are replayed after a restart."""

    def __init__(self, source: Source, sandbox: Sandbox, layout: Layout, cell_timeout: float, deadline: float):
        self.source, self.sandbox, self.layout = source, sandbox, layout
        self.cell_timeout, self.deadline = cell_timeout, deadline
        self.run_dir = Path(tempfile.mkdtemp(prefix="mvc-grade-"))
        self.completed: list[Step] = []
        self.kernel = None
        self.restarts = 0
        try:
            self.start()
        except BaseException:
            self.close()
            raise

    def start(self):
        """(Re)start the kernel in a fresh copy of the layout; completed cells are replayed (a restart after a
        disk-filling cell must not start in the full folder)."""
        if self.kernel is not None:
            self.kernel.close()
        for part in ("course", "home", "ipc"):
            remove_tree(self.run_dir / part)
        self.workdir = self.layout.make(self.run_dir / "course")
        # the student version beside it, so check("q1") in the submission works as it did for the student
        (self.workdir / self.source.name).write_text(self.source.student_text, encoding="utf-8")
        self.kernel = Kernel(self.run_dir, self.workdir, self.sandbox)
        reply = self.kernel.execute(codec.KERNEL_HELPER, 30, silent=True)
        if reply.get("status") != "ok":
            raise KernelDied(f"the grader's helper could not start in the kernel ({reply.get('status')})")
        for old in self.completed:
            outcome = self.kernel.execute(old.source, self.budget(old))
            if outcome.get("status") in ("dead", "hung", "timeout"):
                raise KernelDied(f"replaying {old.label} after a restart failed ({outcome['status']})")
            if old.kind == "given":
                self.snapshot(old)

    def restart(self, why: str, problems: list):
        self.restarts += 1
        problems.append(why)
        if self.restarts > MAX_RESTARTS:
            raise KernelDied("too many kernel restarts")
        self.start()

    def snapshot(self, step: Step):
        if step.record_names:
            self.kernel.execute("", 10, user_expressions={"r": f"_mvc_grader.snapshot({list(step.record_names)!r})"})

    def budget(self, step: Step) -> float:
        limit = max(self.cell_timeout, GIVEN_MIN_TIMEOUT) if step.kind == "given" else self.cell_timeout
        return max(0.0, min(limit, self.deadline - time.monotonic()))

    def run_cell(self, step: Step, problems: list) -> None:
        budget = self.budget(step)
        outcome = self.kernel.execute(step.source, budget)
        status = outcome.get("status")
        if status in ("ok", "error"):
            self.completed.append(step)
            if status == "error":
                name = str(outcome.get("ename"))[:MAX_NAME]  # a class named by 40 MB of "E" made a 200 MB record
                problems.append(f"{step.label} raised {name}: {str(outcome.get('evalue'))[:300]}")
            if step.kind == "given":
                self.snapshot(step)
        elif status == "timeout":  # interrupted cleanly; not replayed after a restart (it would loop again)
            problems.append(f"{step.label} ran past the {budget:g} s time limit and was interrupted")
        else:
            what = (
                "killed the kernel"
                if status == "dead"
                else f"ran past the {budget:g} s time limit and ignored the interrupt"
            )
            if self.kernel.over_disk:
                what = f"wrote more than {self.sandbox.limits.disk_bytes / 1e6:g} MB of files (each at least 4 kB)"
            if self.kernel.over_processes:
                what = f"started more than {self.sandbox.limits.processes} processes or threads"
            if self.kernel.over_memory:
                what = f"used more than {self.sandbox.limits.memory_bytes / 1e9:g} GB of memory in all its processes"
            self.restart(f"{step.label} {what}; the kernel was restarted and this cell skipped", problems)

    def close(self):
        if self.kernel is not None:
            self.kernel.close()
        remove_tree(self.run_dir)


def _test_question(
    run: _KernelRun, space: GraderSpace, question_id: str, solution_sources, problems, other_sources=()
) -> QuestionResult:
    budget = max(0.0, min(run.cell_timeout, run.deadline - time.monotonic()))
    run.kernel.execute("", 10, user_expressions={"r": "_mvc_grader.restore()"}, silent=True)
    helpers = run.source.given_helpers.get(question_id)
    if helpers:  # the tests call them in the kernel: the instructor's, not the student's edit
        keep = sorted(run.source.solution_names)  # a builtin's name may be an answer's (not rebound: the student's)
        run.kernel.execute("", 10, user_expressions={"r": f"_mvc_grader.define({helpers!r}, {keep!r})"}, silent=True)
    try:
        result = run_question(space, question_id, run.kernel, budget, solution_sources, other_sources)
        # torch's grad mode and default dtype as the student's cells left them: a hidden test's call of their
        # function (sample_latent with float64 mu setting the default dtype) is not theirs to carry to later cells
        run.kernel.execute("", 10, user_expressions={"r": "_mvc_grader.resume()"}, silent=True)
        return result
    except KernelLost as exc:
        run.restart(f"tests of {question_id}: {exc} while the tests ran; it was restarted", problems)
        q = run.source.questions[question_id]
        return QuestionResult(question_id, 0.0, q.points, "failed", f"{exc} while the tests of {question_id} ran")


_SPACES: dict = {}  # (source path, digest) -> GraderSpace: once per source notebook and worker process


def grader_space(source: Source, layout: Layout, scratch=None) -> GraderSpace:
    """The grader's namespace for ``source`` in this process (made on first use, in a private layout copy).

    ``scratch``: the folder to make it in (the autograder's run folder, removed at the end); default: a
    temporary folder removed when the process exits.
    """
    key = (str(source.path.resolve()), source.digest)
    if key not in _SPACES:
        root = Path(tempfile.mkdtemp(prefix="mvc-grader-space-", dir=scratch))
        if scratch is None:
            atexit.register(shutil.rmtree, root, True)
        _SPACES[key] = GraderSpace(source, layout.make(root / "course"))
    return _SPACES[key]


def grade_notebook(
    source: Source,
    submission,
    student: str = "student",
    *,
    sandbox: Sandbox,
    layout: Layout,
    cell_timeout: float = 120,
    timeout: float = 1800,
    scratch=None,
) -> NotebookGrade:
    """Grade one submitted notebook (a NotebookNode); never raises for what student code does.

    ``scratch``: where the grader-side namespace is made (see :func:`grader_space`)."""
    started = time.monotonic()
    grade = NotebookGrade(student, source.name, isolation=sandbox.isolation)
    steps, notes = plan_submission(source, submission)
    grade.problems.extend(notes)
    space = grader_space(source, layout, scratch)
    grade.problems.extend(f"the grader's copy of given cell {gid} raised {msg}" for gid, msg in space.errors)
    results, solution_sources, written = {}, {}, []  # written: (question id, source) of the cells the student wrote
    run = None
    try:
        run = _KernelRun(source, sandbox, layout, cell_timeout, started + timeout)
        for step in steps:
            if time.monotonic() >= run.deadline:
                grade.problems.append(f"the notebook ran out of its {timeout:g} s time limit before {step.label}")
                break
            if step.kind == "tests":
                qid = step.question_id
                others = [text for owner, text in written if owner != qid]
                results[qid] = _test_question(run, space, qid, solution_sources.get(qid, []), grade.problems, others)
                continue
            if step.kind == "student" and step.question_id:
                solution_sources.setdefault(step.question_id, []).append(step.source)
            if step.kind == "student" and step.source not in source.demo_sources:
                written.append((step.question_id, step.source))
            run.run_cell(step, grade.problems)
    except Exception as exc:  # noqa: BLE001 - the batch goes on: this notebook's untested questions score 0
        grade.problems.append(f"grading stopped early: {exc}")
    finally:
        if run is not None:
            run.close()
    for qid, question in source.questions.items():
        grade.questions.append(
            results.get(qid)
            or QuestionResult(qid, 0.0, question.points, "not run", "the tests could not run (see problems)")
        )
    problems = grade.problems
    grade.problems = [p if len(p) <= MAX_PROBLEM_CHARS else p[: MAX_PROBLEM_CHARS - 1] + "\u2026" for p in problems]
    if len(grade.problems) > MAX_PROBLEMS:
        more = len(grade.problems) - MAX_PROBLEMS
        grade.problems[MAX_PROBLEMS:] = [f"and {more} more problems (cells that raised, repeated or ran too long)"]
    grade.seconds = time.monotonic() - started
    return grade


class GradingSession:
    """One sandboxed kernel for a source notebook, its locked cells run there and grader-side; grade questions.

    ``grade_question(qid, solutions={grade_id: source})`` runs the given solution cells (the instructor's
    reference for those not given) in the kernel, then grades ``qid`` grader-side. Call it many times.
    """

    def __init__(self, notebook, sandbox: str = "auto", *, cell_timeout: float = 120, layout: Layout | None = None):
        path = Path(notebook).resolve()
        self.source = load_source(path)
        self.layout = layout or Layout.for_source_dir(path.parent)
        kit_root = Path(__file__).resolve().parents[2]
        self.sandbox = make_sandbox(sandbox, kit_root, hidden=[path.parent])
        self.cell_timeout = cell_timeout
        self.space = grader_space(self.source, self.layout)
        self.run = _KernelRun(self.source, self.sandbox, self.layout, cell_timeout, float("inf"))
        self.problems: list[str] = []
        for grade_id, cell_source in self.source.locked_sources():
            step = Step(
                "given",
                cell_source,
                f"given code {grade_id}",
                None,
                grade_id,
                self.source.protected_names.get(grade_id, ()),
            )
            self.run.run_cell(step, self.problems)

    def grade_question(self, question_id: str, solutions: dict | None = None) -> QuestionResult:
        """Run ``question_id``'s solution cells (given sources or the reference ones), then its tests. A given
        answer is replaced by the reference's afterwards, so that it does not change the questions graded after it
        in this kernel (04 q6 calls q4's and q5's functions)."""
        if question_id not in self.source.questions:
            raise ValueError(
                f"no question {question_id!r} in {self.source.name}; its questions are "
                f"{', '.join(self.source.questions)}"
            )
        solutions = dict(solutions or {})
        ids = self.source.questions[question_id].solution_ids
        unknown = set(solutions) - set(ids)
        if unknown:
            raise ValueError(f"{question_id}'s solution cells are {ids}, not {sorted(unknown)}")
        sources = []
        for grade_id in ids:
            text = solutions.get(grade_id, self.source.solutions[grade_id])
            sources.append(text)
            self.run.run_cell(Step("student", text, f"solution cell {grade_id}", question_id, grade_id), self.problems)
        result = _test_question(self.run, self.space, question_id, sources, self.problems)
        for grade_id in solutions:
            reference = self.source.solutions[grade_id]
            self.run.run_cell(Step("student", reference, f"reference {grade_id}", question_id, grade_id), self.problems)
        return result

    def close(self):
        self.run.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
