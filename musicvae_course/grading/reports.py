"""Class grades rebuilt from the per-notebook records: gradebook, long CSV, LMS CSV, feedback, similarity report.

Used by the autograder after every graded notebook (so a regrade updates them in place). Files in ``out_dir``:

* ``grades.csv``: one row per student: ``student, 01_total, 01.q1, 01.q2, ..., 02_total, ..., total, max,
  isolation``. A notebook's key is its leading number (``01_loading...`` -> ``01``), else its file stem.
* ``grades_long.csv``: ``student, notebook, question, points, max, status``; one row per question (status
  passed/partial/failed/timeout/not run, or the notebook's missing/unreadable/error).
* ``lms.csv``: ``student_id`` and one column per notebook (its total) plus ``course_total``: the shape LMS
  gradebook imports take (see docs/grading.md for Canvas and Moodle).
* ``similarity.csv``: ``notebook, question, student_a, student_b, similarity`` for pairs of solutions whose
  normalised source (comments, names and layout removed) is at least ``SIMILARITY_THRESHOLD`` alike.
* ``feedback/<student>/<notebook>.md``: per question and case, why points were lost; never hidden test source.
"""

from __future__ import annotations

import builtins
import csv
import io
import json
import keyword
import re
import tokenize
from difflib import SequenceMatcher
from pathlib import Path

from ..fileio import atomic_write
from .judge import CaseResult, QuestionResult
from .session import NotebookGrade

SIMILARITY_THRESHOLD = 0.9
MIN_TOKENS = 12  # shorter solutions are alike by necessity
# A solution is compared by its first MAX_TOKENS tokens (honest ones have a few hundred): the report is rebuilt after
# every graded notebook, and a megabyte-long "solution" against each classmate's took minutes of each rebuild.
MAX_TOKENS = 1000
MAX_SOLUTION_CHARS = 10_000  # what a record keeps of a solution cell for the report


def _number(value: float) -> str:
    return f"{round(value, 4):g}"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(text) -> str:
    """Text a submission chose (exception messages, class and file names) on one line and without terminal
    escapes, so that it cannot start a heading or a score line of its own in the feedback, or send the grader's
    terminal escapes (clear the screen, set its title) in the log."""
    return _CONTROL.sub(" ", str(text))


def _encodable(text: str) -> str:
    # a file name that is not UTF-8 reaches Python as lone surrogates, which no UTF-8 file can hold
    return text.encode("utf-8", "replace").decode("utf-8")


def _csv_cell(value) -> str:
    """A spreadsheet runs a cell that starts with one of ``=+-@`` as a formula; quoted, it stays text."""
    text = _encodable(str(value))
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def notebook_key(notebook: str) -> str:
    """``01_loading_the_pretrained_vae.ipynb`` -> ``01``; a name without a leading number -> its stem."""
    stem = Path(notebook).stem
    match = re.match(r"^(\d+)[_\-. ]", stem)
    return match.group(1) if match else stem


def load_records(out_dir) -> list[dict]:
    """Every record under ``out_dir/records`` (unreadable ones skipped), sorted by student and notebook."""
    records = []
    for path in sorted(Path(out_dir, "records").glob("*/*.json")):
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(records, key=lambda r: (r["student"], r["notebook"]))


def grade_from_record(record: dict) -> NotebookGrade:
    """A record (the JSON written per graded notebook) back as a :class:`NotebookGrade`."""
    grade = NotebookGrade(
        record["student"],
        record["notebook"],
        status=record["status"],
        isolation=record.get("isolation", "none"),
        seconds=record.get("seconds", 0.0),
    )
    for q in record["questions"]:
        cases = [CaseResult(**c) for c in q.get("cases", [])]
        grade.questions.append(
            QuestionResult(q["question_id"], q["points"], q["max_points"], q["status"], q.get("detail", ""), cases)
        )
    grade.problems, grade.grader_notes = list(record["problems"]), list(record["grader_notes"])
    return grade


def load_grades(out_dir) -> list:
    """The records as :class:`~musicvae_course.grading.session.NotebookGrade` objects."""
    return [grade_from_record(r) for r in load_records(out_dir)]


def _with_missing(records: list[dict], sources: dict, students=None) -> list[dict]:
    """Add a "missing" record for every notebook a student did not hand in that someone else did."""
    handed_in = {r["notebook"] for r in records if r["notebook"] in sources}
    students = sorted({r["student"] for r in records} | set(students or ()))
    have = {(r["student"], r["notebook"]) for r in records}
    out = list(records)
    for student in students:
        for name in sorted(handed_in):
            if (student, name) not in have:
                questions = [
                    {
                        "question_id": q,
                        "points": 0,
                        "max_points": s.points,
                        "status": "not run",
                        "detail": "not submitted",
                        "cases": [],
                    }
                    for q, s in sources[name].questions.items()
                ]
                out.append(
                    {
                        "student": student,
                        "notebook": name,
                        "status": "missing",
                        "isolation": "",
                        "questions": questions,
                        "problems": ["not submitted"],
                        "grader_notes": [],
                    }
                )
    return sorted(out, key=lambda r: (r["student"], r["notebook"]))


def write_all(out_dir, sources: dict) -> None:
    """Rebuild ``grades.csv``, ``grades_long.csv``, ``lms.csv`` and ``similarity.csv`` from the records."""
    out_dir = Path(out_dir)
    folders = [p.name for p in (out_dir / "records").iterdir() if p.is_dir()] if (out_dir / "records").is_dir() else []
    records = _with_missing([r for r in load_records(out_dir) if r.get("questions") is not None], sources, folders)
    notebooks = sorted({r["notebook"] for r in records if r["notebook"] in sources})
    columns = []
    for name in notebooks:
        key = notebook_key(name)
        columns.append((name, None, f"{key}_total"))
        columns += [(name, q, f"{key}.{q}") for q in sources[name].questions]
    by_student: dict = {}
    for r in records:
        by_student.setdefault(r["student"], []).append(r)
    rows = [["student", *[c[2] for c in columns], "total", "max", "isolation"]]
    lms = [["student_id", *[Path(n).stem for n in notebooks], "course_total"]]
    course_max = sum(sum(q.points for q in sources[n].questions.values()) for n in notebooks)
    for student, own in by_student.items():
        per = {r["notebook"]: r for r in own}
        cells, total = [], 0.0
        for name, qid, _ in columns:
            r = per.get(name)
            if r is None:
                cells.append("")
                continue
            if qid is None:
                value = sum(q["points"] for q in r["questions"])
                total += value
                cells.append(_number(value))
            else:
                q = next((q for q in r["questions"] if q["question_id"] == qid), None)
                cells.append(_number(q["points"]) if q else "")
        isolation = sorted({r.get("isolation", "") for r in own if r.get("isolation")})
        rows.append([student, *cells, _number(total), _number(course_max), "/".join(isolation)])
        lms.append(
            [
                student,
                *[_number(sum(q["points"] for q in per[n]["questions"])) if n in per else "0" for n in notebooks],
                _number(total),
            ]
        )
    long_rows = [["student", "notebook", "question", "points", "max", "status"]]
    for r in records:
        for q in r["questions"]:
            status = q["status"] if r["status"] == "graded" else r["status"]
            long_rows.append(
                [r["student"], r["notebook"], q["question_id"], _number(q["points"]), _number(q["max_points"]), status]
            )
        if not r["questions"]:
            long_rows.append([r["student"], r["notebook"], "", "0", "0", r["status"]])
    _write_csv(out_dir / "grades.csv", rows)
    _write_csv(out_dir / "grades_long.csv", long_rows)
    _write_csv(out_dir / "lms.csv", lms)
    _write_csv(
        out_dir / "similarity.csv",
        [["notebook", "question", "student_a", "student_b", "similarity"], *similar_pairs(records, sources)],
    )


def _write_csv(path: Path, rows) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([_csv_cell(v) for v in row] for row in rows)
    atomic_write(path, buffer.getvalue())


def normalized_tokens(source: str) -> list[str]:
    """Tokens of Python source with comments, docstring-like strings, layout and names normalised away:
    identifiers become ``v1, v2, ...`` in order of first use (keywords and builtins stay), so renaming
    variables or reformatting does not hide a copy. Unparsable text falls back to whitespace-split words."""
    names: dict = {}
    out = []
    builtin_names = set(dir(builtins))
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type in (
                tokenize.COMMENT,
                tokenize.NL,
                tokenize.NEWLINE,
                tokenize.INDENT,
                tokenize.DEDENT,
                tokenize.ENDMARKER,
            ):
                continue
            text = token.string
            if token.type == tokenize.NAME and not keyword.iskeyword(text) and text not in builtin_names:
                text = names.setdefault(text, f"v{len(names) + 1}")
            out.append(text)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return source.split()
    return out


def similar_pairs(records: list[dict], sources: dict, threshold: float = SIMILARITY_THRESHOLD) -> list[list]:
    """``[notebook, question, student_a, student_b, similarity]`` for solution pairs at least ``threshold`` alike.

    Solutions identical to the source's stub (not attempted) and very short ones are left out.
    """
    from .markers import strip_solutions

    pairs = []
    for name in sorted(sources):
        source = sources[name]
        for qid, question in source.questions.items():
            stubs = {
                gid: normalized_tokens(strip_solutions(source.solutions[gid], "code")) for gid in question.solution_ids
            }
            entries = []
            for r in records:
                if r["notebook"] != name or not r.get("solutions"):
                    continue
                tokens = []
                for gid in question.solution_ids:
                    t = normalized_tokens(str(r["solutions"].get(gid, ""))[:MAX_SOLUTION_CHARS])[:MAX_TOKENS]
                    tokens += [] if t == stubs.get(gid) else t
                if len(tokens) >= MIN_TOKENS:
                    entries.append((r["student"], tokens))
            for i, (a, ta) in enumerate(entries):
                for b, tb in entries[i + 1 :]:
                    matcher = SequenceMatcher(None, ta, tb, autojunk=False)
                    if matcher.real_quick_ratio() < threshold or matcher.quick_ratio() < threshold:
                        continue  # upper bounds of ratio(), in linear time
                    ratio = matcher.ratio()
                    if ratio >= threshold:
                        pairs.append([name, qid, a, b, f"{ratio:.2f}"])
    return sorted(pairs, key=lambda p: (p[0], p[1], -float(p[4]), p[2], p[3]))


def feedback_text(grade) -> str:
    """Markdown feedback for one notebook: score per question, per case why points were lost; no test source."""
    lines = [f"# {one_line(grade.notebook)}: {_number(grade.total)} / {_number(grade.max_points)} points", ""]
    if grade.status != "graded":
        lines += [f"Status: {grade.status}", ""]
    for q in grade.questions:
        head = f"- **{q.question_id}**: {_number(q.points)} / {_number(q.max_points)}"
        if q.status == "passed":
            lines.append(head)
            continue
        lines.append(head + f" ({q.status})")
        failed = [c for c in q.cases if not c.passed]
        if failed:
            lines += [f"  - {one_line(c.message or f'case {c.case_id} failed ({c.requirement})')}" for c in failed]
        elif q.detail:
            lines.append(f"  - {one_line(q.detail)}")
    if grade.problems:
        lines += ["", "## Problems while running your notebook", ""] + [f"- {one_line(p)}" for p in grade.problems]
    if grade.grader_notes:
        lines += ["", "## Grader notes", ""] + [f"- {one_line(n)}" for n in grade.grader_notes[:30]]
    if grade.isolation == "none" and grade.status == "graded":
        lines += ["", "_Graded without a sandbox (isolation: none)._"]
    return _encodable("\n".join(lines) + "\n")
