"""Autograder: each submission in its own sandboxed kernel, tests in the grader's process, results on disk at once.

Used to grade the course notebooks (01_loading_the_pretrained_vae.ipynb ... 04_generation.ipynb). CLI:
``python -m musicvae_course.grading autograde submissions/ --source notebooks/ --out grades/ [--jobs N]
[--student NAME]`` with ``submissions/<student>/<notebook>.ipynb``. See docs/grading.md for the threat model.

* Each submission runs in a fresh kernel in the bubblewrap sandbox of :mod:`.kernel` (or, without bwrap,
  unsandboxed with ``isolation: none`` recorded and a loud warning); its tests run grader-side (:mod:`.judge`).
* As soon as a submission is graded, its record (``records/<student>/<notebook>.json``) and feedback
  (``feedback/<student>/<notebook>.md``) are written atomically, outside the sandbox's reach (the out folder is
  hidden from kernels). The CSVs are rebuilt from all records after each one (:mod:`.reports`), so a killed run
  loses nothing graded, and a rerun resumes: records whose submission, source and grader are unchanged are kept.
  ``student=NAME`` regrades that student only and keeps everyone else's grades.
* Before each submission the grader re-hashes the kit's own files (the package, the sources, the data) and
  stops with :class:`KitChanged` if any changed.
* Submissions are graded in parallel by ``jobs`` worker processes (default: the number of cores).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import tempfile
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

from ..fileio import atomic_write, sha256_of
from . import reports
from .judge import QuestionResult
from .markers import GradingSourceError, grade_id_of, source_of
from .sandbox import Limits, Sandbox, make_sandbox, remove_tree
from .session import Layout, NotebookGrade, grade_notebook
from .source import load_source
from .submissions import MAX_NOTEBOOK_BYTES, match_source, parse_submission, scan

RECORD_VERSION = 1


class KitChanged(RuntimeError):
    """The kit's own files changed during a grading run (a submission escaped, or someone edited them)."""


def kit_files(source_dir: Path, layout: Layout) -> list[Path]:
    """The files whose hashes must not change while grading: the package, the sources, the data."""
    package = Path(__file__).resolve().parents[1]
    files = [p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    files += sorted(Path(source_dir).glob("*.ipynb"))
    for host in layout.files.values():
        files += [host] if host.is_file() else [p for p in host.rglob("*") if p.is_file()]
    return sorted(set(files))


def hash_files(files) -> dict[str, str]:
    """``{path: sha256}``; a missing file hashes to ``"missing"``."""
    out = {}
    for path in files:
        try:
            out[str(path)] = sha256_of(path)
        except OSError:
            out[str(path)] = "missing"
    return out


def grader_version() -> str:
    """SHA-256 over the grading package's source: records made by another grader are regraded."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def record_of(grade: NotebookGrade, submission_sha: str, source_sha: str, solutions: dict) -> dict:
    """The JSON record of one graded notebook (what the CSVs and feedback are rebuilt from)."""
    return {
        "version": RECORD_VERSION,
        "grader": grader_version(),
        "student": grade.student,
        "notebook": grade.notebook,
        "status": grade.status,
        "isolation": grade.isolation,
        "seconds": round(grade.seconds, 2),
        "submission_sha256": submission_sha,
        "source_sha256": source_sha,
        "questions": [
            {**{k: v for k, v in asdict(q).items() if k != "cases"}, "cases": [asdict(c) for c in q.cases]}
            for q in grade.questions
        ],
        "problems": grade.problems,
        "grader_notes": grade.grader_notes,
        "solutions": solutions,
    }


def _file_stem(notebook: str) -> str:
    """The stem of a notebook's record and feedback files. A submitted name may take all of a file system's 255
    bytes: with ``.json`` and atomic_write's ``.<name>.<random>.tmp`` it did not fit (ENAMETOOLONG stopped the run
    for the class), so a long one is cut to 100 bytes and told apart by a hash of the whole."""
    stem = Path(notebook).stem
    raw = stem.encode("utf-8", "surrogateescape")
    if len(raw) <= 100:
        return stem
    return raw[:100].decode("utf-8", "surrogateescape") + "-" + hashlib.sha256(raw).hexdigest()[:16]


def _record_path(out_dir: Path, student: str, notebook: str) -> Path:
    return out_dir / "records" / student / (_file_stem(notebook) + ".json")


def write_record(out_dir: Path, record: dict) -> None:
    """Write the record and the feedback of one notebook atomically."""
    path = _record_path(out_dir, record["student"], record["notebook"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(record, indent=1))
    feedback = out_dir / "feedback" / record["student"] / (_file_stem(record["notebook"]) + ".md")
    feedback.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(feedback, reports.feedback_text(reports.grade_from_record(record)))


def _solutions_of(nb, source) -> dict:
    found = {}
    for cell in nb.cells:
        gid = grade_id_of(cell)
        if gid in source.solutions:
            found.setdefault(gid, source_of(cell)[: reports.MAX_SOLUTION_CHARS])  # all the similarity report reads
    return found


# Worker side: sources are loaded once per worker process; the grader's namespaces live in session._SPACES.
_WORKER_SOURCES: dict = {}


def _grade_job(job: dict) -> dict:
    """Grade one submission in a worker process and write its record; returns the record."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    key = job["source_path"]
    if key not in _WORKER_SOURCES:
        _WORKER_SOURCES[key] = load_source(key)
    source = _WORKER_SOURCES[key]
    data = Path(job["path"]).read_bytes()
    nb = parse_submission(data, Path(job["path"]).name)
    sandbox = Sandbox(
        job["sandbox_mode"],
        [Path(p) for p in job["hidden"]],
        [Path(p) for p in job["readable"]],
        Limits(**job["limits"]),
        job["user"],
    )
    layout = Layout(job["layout"][0], {k: Path(v) for k, v in job["layout"][1].items()})
    grade = grade_notebook(
        source,
        nb,
        job["student"],
        sandbox=sandbox,
        layout=layout,
        cell_timeout=job["cell_timeout"],
        timeout=job["timeout"],
    )
    if Path(job["path"]).name != source.name:
        grade.problems.insert(0, f"graded {Path(job['path']).name} as {source.name}")
    grade.problems[0:0] = job.get("notes", [])
    record = record_of(grade, hashlib.sha256(data).hexdigest(), source.digest, _solutions_of(nb, source))
    write_record(Path(job["out_dir"]), record)
    return record


def _plain_record(student, notebook, status, problem, source=None, sha="") -> dict:
    grade = NotebookGrade(student, notebook, status=status)
    grade.problems.append(problem)
    if source is not None:
        grade.questions = [QuestionResult(q, 0.0, s.points, "not run", status) for q, s in source.questions.items()]
    return record_of(grade, sha, source.digest if source else "", {})


def autograde(
    submissions_dir,
    source_dir,
    out_dir,
    *,
    cell_timeout: float = 120,
    timeout: float = 1800,
    jobs: int | None = None,
    student: str | None = None,
    sandbox: str = "auto",
    data: dict | None = None,
    limits: Limits | None = None,
    log=None,
) -> list[NotebookGrade]:
    """Grade ``submissions_dir/<student>/<notebook>.ipynb`` against the sources in ``source_dir``.

    Writes ``out_dir/records/``, ``out_dir/feedback/`` and the CSVs of :mod:`.reports` (``grades.csv``,
    ``grades_long.csv``, ``lms.csv``, ``similarity.csv``); returns every student's grades (all records). Resumes:
    a submission whose record matches its bytes, its source and this grader is not graded again, except for
    ``student``, which regrades that one student (others keep their records). ``sandbox``: "auto", "bwrap",
    "none". ``data``: extra ``{path in the course layout: host path}`` to copy for the kernels. Raises KitChanged
    when the kit's files change during the run (records graded so far are kept).
    """
    shown = log or (lambda line: None)

    def log(line):  # file and folder names a submission chose, shown on one line without terminal escapes
        shown(reports.one_line(line))

    submissions_dir, source_dir, out_dir = Path(submissions_dir), Path(source_dir), Path(out_dir)
    if not submissions_dir.is_dir():
        raise NotADirectoryError(f"submissions folder {submissions_dir} does not exist")
    sources = {}
    for path in sorted(source_dir.glob("*.ipynb")):
        try:
            sources[path.name] = load_source(path)
        except GradingSourceError as exc:
            raise GradingSourceError(f"fix the source before grading: {exc}") from None
    if not sources:
        raise FileNotFoundError(f"no source notebooks (*.ipynb) in {source_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    kit_root = Path(__file__).resolve().parents[2]
    box = make_sandbox(sandbox, kit_root, hidden=[source_dir, submissions_dir, out_dir], limits=limits)
    if box.mode == "none":
        log(
            "WARNING: bubblewrap (bwrap) is not available: student code runs UNSANDBOXED with your permissions; "
            "grades are recorded with isolation: none. Install bubblewrap (Debian: apt-get install bubblewrap)."
        )
    if box.mode == "bwrap" and box.user is None and os.geteuid() == 0:
        log(
            "WARNING: grading as root, and kernels cannot run as an unprivileged user here: student code can read "
            "files that only root may read in the system folders (/etc, /var, /run) and show them in its feedback. "
            "Grade as an ordinary user."
        )
    layout = Layout.for_source_dir(source_dir, data)
    watched = kit_files(source_dir, layout)
    baseline = hash_files(watched)

    def check_kit():
        now = hash_files(watched)
        changed = [p for p in watched if now[str(p)] != baseline[str(p)]]
        if changed:
            raise KitChanged(
                f"the kit's files changed during grading: {', '.join(map(str, changed[:5]))}; "
                "stopped (records graded so far are kept)"
            )

    found, stray = scan(submissions_dir, student)
    if student is not None and student not in found:
        raise FileNotFoundError(f"no folder {submissions_dir / student} for student {student!r}")
    for line in stray:
        log(line)
    version = grader_version()
    todo = []
    for name, files in found.items():
        (out_dir / "records" / name).mkdir(parents=True, exist_ok=True)  # a student without notebooks counts too
        done, notes = set(), {}  # notes: source name -> second copies, named in the graded copy's feedback
        for path in files:
            if path.name in done:  # a broken copy (in backup/) would write its error over the graded copy's record
                why = f"{path.relative_to(submissions_dir)} is a second copy of {path.name}; not graded"
                log(why)
                notes.setdefault(path.name, []).append(why)
                continue
            if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_NOTEBOOK_BYTES:
                # a link is read with the grader's rights (to the instructor's notebook, say); a pipe would never
                # end, a folder named *.ipynb not read at all
                why = f"{path.name} is not a plain file (a link, a folder, a pipe); not graded"
                if path.is_file() and not path.is_symlink():
                    why = (
                        f"{path.name} is {path.stat().st_size / 1e6:,.0f} MB, over the grader's limit of "
                        f"{MAX_NOTEBOOK_BYTES / 1e6:g} MB; clear its outputs (Kernel > Restart & Clear Output) and "
                        "hand it in again"
                    )
                write_record(out_dir, _plain_record(name, path.name, "error", why, sources.get(path.name)))
                done.add(path.name)
                continue
            data_bytes = path.read_bytes()
            sha = hashlib.sha256(data_bytes).hexdigest()
            try:  # matched here too: a file that breaks the schema must not stop the batch (this process)
                nb = parse_submission(data_bytes, path.name)
                matched = match_source(path, nb, sources)
            except Exception as exc:  # noqa: BLE001 - any unreadable file
                match = sources.get(path.name)
                write_record(
                    out_dir,
                    _plain_record(
                        name,
                        path.name,
                        "unreadable",
                        f"{path.name} is not a readable notebook ({type(exc).__name__}: {exc})",
                        match,
                        sha,
                    ),
                )
                done.add(path.name)
                continue
            if matched is None or matched in done:
                why = "matches no source notebook" if matched is None else f"is a second copy of {matched}"
                why = f"{path.relative_to(submissions_dir)} {why}; not graded"
                if matched is None:
                    write_record(out_dir, _plain_record(name, path.name, "error", why))
                else:  # its record would be the graded copy's, replaced on every resumed run
                    log(why)
                    notes.setdefault(matched, []).append(why)
                continue
            done.add(matched)
            notes[matched] = []
            old = _record_path(out_dir, name, matched)
            if student is None and old.is_file():
                try:
                    previous = json.loads(old.read_text())
                    if (previous.get("submission_sha256"), previous.get("source_sha256"), previous.get("grader")) == (
                        sha,
                        sources[matched].digest,
                        version,
                    ):
                        continue  # graded before by this grader: resume
                except ValueError:
                    pass
            todo.append(
                {
                    "student": name,
                    "path": str(path),
                    "source_path": str(sources[matched].path),
                    "out_dir": str(out_dir),
                    "cell_timeout": cell_timeout,
                    "timeout": timeout,
                    "sandbox_mode": box.mode,
                    "hidden": [str(p) for p in box.hidden],
                    "readable": [str(p) for p in box.readable],
                    "limits": asdict(box.limits),
                    "user": box.user,
                    "layout": [layout.workdir_name, {k: str(v) for k, v in layout.files.items()}],
                    "notes": notes[matched],
                }
            )
    jobs = max(1, jobs or os.cpu_count() or 1)
    log(f"{len(todo)} notebook(s) to grade with {jobs} job(s), isolation: {box.isolation}")
    scratch = tempfile.mkdtemp(prefix="mvc-autograde-")
    for job in todo:
        job["scratch"] = scratch
    try:
        _run_jobs(todo, jobs, out_dir, sources, check_kit, log)
    finally:
        remove_tree(scratch)
        reports.write_all(out_dir, sources)
    check_kit()
    return reports.load_grades(out_dir)


def _record_error(out_dir: Path, job: dict, sources: dict, why: str) -> None:
    """Record a notebook the grader could not grade (status "error"), so the class files still list it."""
    source = sources.get(Path(job["source_path"]).name)
    write_record(out_dir, _plain_record(job["student"], Path(job["path"]).name, "error", why, source))


def limit_worker_memory(memory_bytes: int) -> None:
    """Worker initializer: cap the grading process's heap (``RLIMIT_DATA``, bytes) at a kernel's memory limit.

    Grader-side tests compute on values a submission chose (an ``(N, 1)`` answer compared with an ``(88, 32)``
    roll broadcasts to ``N x 2,816`` cells), so a hostile answer could make the grader itself allocate gigabytes:
    capped, that test fails with MemoryError instead of the OOM killer ending the worker and the submissions
    graded beside it.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        memory_bytes = min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, hard))


def _run_jobs(todo, jobs, out_dir, sources, check_kit, log, grade=None):
    """Grade ``todo`` in ``jobs`` worker processes (``grade``: the function a worker runs, :func:`_grade_job`).

    A submission can end its worker (memory outside the rlimits, a crash in native code), and that ends the pool,
    so the notebooks graded beside it fail too and nothing says which one did it. Those notebooks are suspects:
    each is graded again alone, and only one that ends its worker twice while alone is recorded as the cause.
    """
    grade = grade or _grade_job
    pending, suspects, strikes = list(todo), set(), {}
    memory = max(job["limits"]["memory_bytes"] for job in todo) if todo else Limits().memory_bytes

    def key(job):
        return job["student"], job["path"]

    while pending:
        with ProcessPoolExecutor(
            max_workers=min(jobs, len(pending)),
            mp_context=get_context("spawn"),
            initializer=limit_worker_memory,
            initargs=(memory,),
        ) as pool:
            running = {}
            broken = False
            while (pending or running) and not broken:
                while pending and len(running) < jobs:
                    alone = key(pending[0]) in suspects
                    if (alone and running) or any(key(j) in suspects for j in running.values()):
                        break  # a suspect runs alone: if the pool ends then, it was that notebook
                    check_kit()
                    try:
                        future = pool.submit(grade, pending[0])
                    except BrokenProcessPool:  # a worker ended since the last wait: its futures say which
                        break
                    job = running[future] = pending.pop(0)
                    log(f"grading {job['student']}/{Path(job['path']).name}" + (" (alone)" if alone else ""))
                if not running:  # no notebook ended it: the workers themselves cannot start here
                    raise RuntimeError("the grading worker processes ended before grading anything")
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = running.pop(future)
                    try:
                        record = future.result()
                        total = sum(q["points"] for q in record["questions"])
                        top = sum(q["max_points"] for q in record["questions"])
                        log(f"  {job['student']}/{record['notebook']}: {total:g}/{top:g} in {record['seconds']:.1f} s")
                    except BrokenProcessPool:
                        broken = True
                        if key(job) in suspects:  # it ran alone
                            strikes[key(job)] = strikes.get(key(job), 0) + 1
                        if strikes.get(key(job), 0) >= 2:  # ended its grading process twice: recorded, batch goes on
                            _record_error(
                                out_dir, job, sources, "the grading process was killed while grading this notebook"
                            )
                        else:
                            suspects.add(key(job))
                            pending.insert(0, job)
                    except Exception as exc:  # noqa: BLE001 - a grader bug must not lose the batch
                        _record_error(
                            out_dir, job, sources, f"the grader failed on this notebook: {type(exc).__name__}: {exc}"
                        )
                    reports.write_all(out_dir, sources)
            if broken:
                suspects.update(key(job) for job in running.values())
                pending = [job for job in running.values()] + pending
