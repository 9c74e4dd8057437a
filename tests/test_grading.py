"""Grading: student versions, their sync check, check(), and the autograder over fixture submissions.

The fixtures (tests/fixtures/grading/) are built by build_fixtures.py: a three-question source notebook and
submissions that are correct, partial, crashing, looping and tampering, with the scores each must get.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell

from musicvae_course.grading import Checker, autograde, runs
from musicvae_course.grading.cli import main
from musicvae_course.grading.markers import (
    CODE_STUB,
    GradingSourceError,
    questions,
    split_tests,
    strip_solutions,
)
from musicvae_course.grading.source import load_source, plan_submission
from musicvae_course.grading.student import make_student_version, make_student_versions, student_version

FIXTURES = Path(__file__).parent / "fixtures" / "grading"
SOURCE = FIXTURES / "source" / "melody.ipynb"
EXPECTED = json.loads((FIXTURES / "expected_scores.json").read_text())


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_fixtures", FIXTURES / "build_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


@pytest.fixture
def student_dir(tmp_path):
    make_student_version(SOURCE, tmp_path / "melody.ipynb")
    return tmp_path


def test_committed_fixtures_match_their_builder(tmp_path):
    _load_builder().main(tmp_path)
    for built in sorted(tmp_path.rglob("*")):
        if built.is_file():
            committed = FIXTURES / built.relative_to(tmp_path)
            assert committed.read_text() == built.read_text(), f"{committed} is stale: run build_fixtures.py"


# ------------------------------------------------------------------------------------------- student versions


def test_student_version_strips_solutions_hidden_tests_instructor_cells_and_outputs():
    source = nbformat.read(SOURCE, as_version=4)
    source.cells[1].outputs = [nbformat.v4.new_output("stream", text="left over\n")]
    source.cells[1].execution_count = 7
    student = student_version(source, "melody.ipynb")
    text = nbformat.writes(student)
    for secret in (
        "BEGIN SOLUTION",
        "END SOLUTION",
        "HIDDEN TESTS",
        "weights / total",  # markers, a solution
        "normalize must not change its input",
        "clip at the top",  # hidden tests
        "Grading note",
        "reference_onsets",
        "left over",
    ):  # instructor cells, outputs
        assert secret not in text
    assert len(student.cells) == len(source.cells) - 2
    assert all(c.outputs == [] and c.execution_count is None for c in student.cells if c.cell_type == "code")
    assert _cell(student, "q1_solution").source == (
        "def normalize(weights):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    )
    assert _cell(student, "q3_solution").source == CODE_STUB
    public = _cell(student, "q1").source
    assert public.startswith("assert np.isclose(normalize([1, 3]).sum(), 1.0)") and public.count("assert") == 2
    assert _cell(student, "q1").metadata["editable"] is False
    assert _cell(student, "q1_solution").metadata["deletable"] is False
    assert "editable" not in _cell(student, "q1_solution").metadata
    assert student_version(source, "melody.ipynb") == student  # deterministic


def test_student_version_names_no_hidden_case_in_its_weights(tmp_path):
    # a hidden case's id says what it checks ("exact", "gradients"); the student copy keeps the public ones' weights
    # and grading still weighs every case by the instructor's source
    source = nbformat.read(SOURCE, as_version=4)
    cell = _cell(source, "q1")
    cell.source = "# CASE sums: sums to one\n" + cell.source.replace(
        "### BEGIN HIDDEN TESTS\n", "### BEGIN HIDDEN TESTS\n# CASE unchanged_input: zero sums and the input\n"
    )
    cell.metadata["grading"] = {"weights": {"sums": 1, "unchanged_input": 3}, "forbidden": ["sorted"]}
    student = student_version(source, "melody.ipynb")
    assert _cell(student, "q1").metadata["grading"] == {"weights": {"sums": 1}, "forbidden": ["sorted"]}
    assert "unchanged_input" not in nbformat.writes(student)
    nbformat.write(source, tmp_path / "melody.ipynb")
    assert [c.weight for c in load_source(tmp_path / "melody.ipynb").cases["q1"]] == [1.0, 3.0]


def test_strip_solutions_keeps_code_outside_the_markers():
    source = "x = 1\n    ### BEGIN SOLUTION\n    y = 2\n    ### END SOLUTION\nz = 3"
    assert strip_solutions(source, "code") == "x = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()\nz = 3"
    assert strip_solutions("### BEGIN SOLUTION\nIt is C major.\n### END SOLUTION", "markdown") == "YOUR ANSWER HERE"


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda nb: setattr(_cell(nb, "setup"), "source", "### BEGIN SOLUTION\nx = 1\n### END SOLUTION"),
            "solution markers outside a solution cell",
        ),
        (
            lambda nb: setattr(_cell(nb, "q1"), "source", "assert True\n### BEGIN HIDDEN TESTS\nassert True"),
            "has no '### END HIDDEN TESTS'",
        ),
        (
            lambda nb: setattr(_cell(nb, "q2_solution"), "source", "## BEGIN SOLUTION\nx = 1\n### END SOLUTION"),
            "looks like a grading marker",
        ),
        (lambda nb: _cell(nb, "q3").metadata["nbgrader"].update(points=0), "points > 0"),
        (
            lambda nb: _cell(nb, "q3_solution").metadata["nbgrader"].update(grade_id="answer3"),
            "'<question id>_solution'",
        ),
        (
            lambda nb: _cell(nb, "q3_solution").metadata["nbgrader"].update(grade_id="q9_solution"),
            "question 'q9', which has no test cell (questions: q1, q2, q3, q4)",
        ),
        (lambda nb: _cell(nb, "q2").metadata["nbgrader"].update(grade_id="q1"), "used by another cell"),
        (
            lambda nb: setattr(_cell(nb, "q2"), "source", "x = (1,\n### BEGIN HIDDEN TESTS\n2)\n### END HIDDEN TESTS"),
            "straddles",
        ),
    ],
)
def test_marker_mistakes_are_errors_naming_the_cell(edit, message):
    nb = nbformat.read(SOURCE, as_version=4)
    edit(nb)
    with pytest.raises(GradingSourceError, match="melody.ipynb, cell") as info:
        student_version(nb, "melody.ipynb")
    assert message in str(info.value)


def test_questions_and_test_statements_of_the_source():
    found = questions(nbformat.read(SOURCE, as_version=4), "melody.ipynb")
    assert {q: (found[q].points, found[q].solution_ids) for q in found} == {
        "q1": (2, ["q1_solution"]),
        "q2": (3, ["q2_solution"]),
        "q3": (1, ["q3_solution"]),
        "q4": (2, ["q4_solution"]),
    }
    statements = split_tests(found["q2"].test_source)
    assert [(s.lineno, s.hidden, s.is_test) for s in statements] == [
        (1, False, False),
        (2, False, False),
        (3, False, True),
        (5, True, False),
        (6, True, False),
        (7, True, True),
        (8, True, True),
        (9, True, True),
    ]


def test_sync_check_finds_stale_missing_and_extra_student_versions(tmp_path, capsys):
    src, dst = tmp_path / "notebooks", tmp_path / "student"
    src.mkdir()
    shutil.copy(SOURCE, src / "melody.ipynb")
    shutil.copy(SOURCE, src / "other.ipynb")
    assert any("missing" in p for p in make_student_versions(src, dst, check=True))
    assert not (dst / "melody.ipynb").exists()  # check never writes
    make_student_versions(src, dst)
    assert make_student_versions(src, dst, check=True) == []
    assert main(["student-versions", str(src), str(dst), "--check"]) == 0

    nb = nbformat.read(src / "melody.ipynb", as_version=4)  # the instructor edits a public test
    _cell(nb, "q3").source = _cell(nb, "q3").source.replace("up a whole tone", "two semitones up")
    nbformat.write(nb, src / "melody.ipynb")
    (dst / "stray.ipynb").write_text((dst / "other.ipynb").read_text())
    problems = make_student_versions(src, dst, check=True)
    assert any("melody.ipynb, cell" in p and "(q3): source differs" in p and "two semitones up" in p for p in problems)
    assert any("stray.ipynb: no source notebook" in p for p in problems)
    assert not any("other.ipynb" in p for p in problems)
    assert main(["student-versions", str(src), str(dst), "--check"]) == 1
    assert "difference(s)" in capsys.readouterr().err

    make_student_versions(src, dst)  # regenerating fixes the stale file; the stray one is reported, kept
    assert [p for p in make_student_versions(src, dst, check=True) if "stray" not in p] == []
    student = nbformat.read(dst / "melody.ipynb", as_version=4)
    student.cells[1].outputs = [nbformat.v4.new_output("stream", text="saved by Jupyter\n")]
    nbformat.write(student, dst / "melody.ipynb")
    assert any("outputs differ" in p for p in make_student_versions(src, dst, check=True))


def test_a_broken_source_is_reported_and_the_others_still_written(tmp_path):
    src, dst = tmp_path / "notebooks", tmp_path / "student"
    src.mkdir()
    shutil.copy(SOURCE, src / "good.ipynb")
    nb = nbformat.read(SOURCE, as_version=4)
    _cell(nb, "q1").source += "\n### BEGIN HIDDEN TESTS"
    nbformat.write(nb, src / "bad.ipynb")
    problems = make_student_versions(src, dst)
    assert any(p.startswith(str(src / "bad.ipynb")) and "not processed" in p for p in problems)
    assert (dst / "good.ipynb").exists() and not (dst / "bad.ipynb").exists()


def test_student_version_fails_only_in_graded_cells(student_dir):
    failures = runs.failing_cells(student_dir / "melody.ipynb", cell_timeout=60)
    assert {(f["role"], f["grade_id"], f["ename"]) for f in failures} == {
        ("test", "q1", "NotImplementedError"),
        ("test", "q2", "NotImplementedError"),
        ("solution", "q3_solution", "NotImplementedError"),
        ("test", "q3", "NameError"),
        ("test", "q4", "NotImplementedError"),
    }
    assert runs.ungraded_failures(student_dir / "melody.ipynb", cell_timeout=60) == []


def test_ungraded_cell_that_needs_a_solution_is_reported(tmp_path):
    nb = nbformat.read(SOURCE, as_version=4)
    nb.cells.insert(4, new_code_cell("shares = normalize([1, 1, 2])"))  # after q1's solution, ungraded
    (tmp_path / "src").mkdir()
    nbformat.write(nb, tmp_path / "src" / "melody.ipynb")
    make_student_version(tmp_path / "src" / "melody.ipynb", tmp_path / "student" / "melody.ipynb")
    (failure,) = runs.ungraded_failures(tmp_path / "student" / "melody.ipynb", cell_timeout=60)
    assert failure.startswith("cell 5 raised NotImplementedError")


# ---------------------------------------------------------------------------------------------------- check


def _normalize(weights):
    weights = np.asarray(weights, dtype=float)
    return weights / weights.sum()


def test_check_reports_passing_public_tests_without_promising_the_grade(student_dir):
    result = Checker(student_dir / "melody.ipynb").run("q1", {"np": np, "normalize": _normalize})
    assert (result.passed, result.total, result.ok) == (2, 2, True)
    assert str(result) == "q1: public tests passed (2/2). Your grade also depends on hidden tests."


def test_check_on_the_source_runs_only_public_tests():
    # _normalize fails q1's hidden tests (no ValueError for zeros); check must not run them, even on the source
    assert Checker(SOURCE).run("q1", {"np": np, "normalize": _normalize}).ok


def test_check_names_the_failed_test_and_its_message(student_dir):
    namespace = {"np": np, "normalize": lambda w: np.asarray(w, dtype=float)}
    result = Checker(student_dir / "melody.ipynb").run("q1", namespace)
    assert (result.passed, result.total) == (0, 2)
    text = str(result)
    assert text.startswith("q1: 0 of 2 public tests passed.")
    assert "test 1 failed: normalize([1, 3]) should sum to 1" in text
    assert "test 2 failed: equal weights get equal shares" in text


def test_check_hints_at_the_stub_and_at_undefined_names(student_dir):
    def stub(weights):
        raise NotImplementedError()

    checker = Checker(student_dir / "melody.ipynb")
    assert "the solution cell of q1 still raises NotImplementedError" in str(
        checker.run("q1", {"np": np, "normalize": stub})
    )
    assert "name 'count_onsets' is not defined (run the cell that defines it first)" in str(
        checker.run("q2", {"np": np})
    )


def test_check_leaves_the_namespace_alone_and_prints_when_called(student_dir, capsys):
    def count_onsets(roll):
        roll = np.asarray(roll, dtype=bool)
        return int((roll[:, 1:] & ~roll[:, :-1]).sum() + roll[:, 0].sum())

    namespace = {"np": np, "count_onsets": count_onsets}
    checker = Checker(student_dir / "melody.ipynb")
    exec("check('q2')", {**namespace, "check": checker})
    assert capsys.readouterr().out == "q2: public tests passed (1/1). Your grade also depends on hidden tests.\n"
    checker.run("q2", namespace)
    assert set(namespace) == {"np", "count_onsets"}  # the test's `held = ...` did not leak


def test_check_errors_name_the_question_and_the_file(student_dir, tmp_path):
    with pytest.raises(ValueError, match="no question 'q9' in melody.ipynb; its questions are q1, q2, q3"):
        Checker(student_dir / "melody.ipynb").run("q9", {})
    with pytest.raises(FileNotFoundError, match="cannot find the notebook"):
        Checker(tmp_path / "renamed.ipynb").run("q1", {})


# ----------------------------------------------------------------------------------------------- autograder


def test_plan_puts_deleted_and_relabelled_test_cells_back_after_their_solution():
    source = load_source(SOURCE)
    nb = nbformat.read(FIXTURES / "submissions" / "tampering" / "melody.ipynb", as_version=4)
    steps, notes = plan_submission(source, nb)
    order = [s.grade_id or s.kind for s in steps]
    assert order[:9] == ["setup", "q1_solution", "q1", "student", "q2_solution", "q2", "q3_solution", "q3", "student"]
    assert steps[order.index("q1")].kind == "tests"  # the edited test cell is replaced by the source's tests
    assert steps[0].kind == "given" and steps[0].record_names == ("Checker", "assert_same_notes", "check", "np")
    assert sorted(notes) == [
        "test cell 'q2' was missing and was put back",
        "test cell 'q3' was missing and was put back",
    ]
    nb.cells.append(nbformat.from_dict(dict(_cell(nb, "q1"))))  # a copy of a test cell is never run
    steps, notes = plan_submission(source, nb)
    assert [s.grade_id for s in steps].count("q1") == 1 and any("repeats 'q1'" in n for n in notes)


PLAIN = ("correct", "partial", "crashing", "infinite_loop", "tampering", "tampering_helpers")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One autograder run over the plain fixture submissions, an unreadable one and a student who sent none."""
    root = tmp_path_factory.mktemp("autograde")
    submissions = root / "submissions"
    for name in PLAIN:
        shutil.copytree(FIXTURES / "submissions" / name, submissions / name)
    (submissions / "unreadable").mkdir()
    (submissions / "unreadable" / "melody.ipynb").write_text("{ not a notebook")
    (submissions / "forgot").mkdir()
    (submissions / "forgot" / "notes.txt").write_text("no notebook here")
    out = root / "grades"
    grades = autograde.autograde(submissions, SOURCE.parent, out, cell_timeout=20, timeout=300, jobs=2)
    return {g.student: g for g in grades}, out, submissions


@pytest.mark.parametrize("student", PLAIN)
def test_autograder_gives_the_expected_scores(graded, student):
    grades, _, _ = graded
    assert {q.question_id: q.points for q in grades[student].questions} == EXPECTED[student]["scores"]
    assert grades[student].max_points == 8
    assert grades[student].isolation in ("bwrap", "none")


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_class_csv_has_one_row_per_student_with_notebook_and_course_totals(graded):
    _, out, _ = graded
    rows = {row["student"]: row for row in _rows(out / "grades.csv")}
    assert set(rows) == set(PLAIN) | {"unreadable", "forgot"}
    assert list(rows["correct"])[:6] == ["student", "melody_total", "melody.q1", "melody.q2", "melody.q3", "melody.q4"]
    for student in PLAIN:
        scores = EXPECTED[student]["scores"]
        assert {q: float(rows[student][f"melody.{q}"]) for q in scores} == scores
        assert float(rows[student]["melody_total"]) == float(rows[student]["total"]) == sum(scores.values())
    assert rows["tampering"]["total"] == "1"  # not the 6 its fake grades file claimed
    assert (rows["unreadable"]["total"], rows["forgot"]["total"], rows["forgot"]["max"]) == ("0", "0", "8")
    long = _rows(out / "grades_long.csv")
    assert list(long[0]) == ["student", "notebook", "question", "points", "max", "status"]
    partial_q4 = next(r for r in long if r["student"] == "partial" and r["question"] == "q4")
    assert (partial_q4["points"], partial_q4["max"], partial_q4["status"]) == ("0.5", "2", "partial")
    assert {r["status"] for r in long if r["student"] == "forgot"} == {"missing"}
    assert {r["status"] for r in long if r["student"] == "unreadable"} == {"unreadable"}
    lms = {r["student_id"]: r for r in _rows(out / "lms.csv")}
    assert (lms["partial"]["melody"], lms["partial"]["course_total"]) == ("3.5", "3.5")


def test_feedback_says_why_points_were_lost_without_showing_hidden_tests(graded):
    grades, out, _ = graded
    feedback = {s: (out / "feedback" / s / "melody.md").read_text() for s in grades}
    assert feedback["correct"].startswith("# melody.ipynb: 8 / 8 points")
    assert "Problems" not in feedback["correct"] and "Grader notes" not in feedback["correct"]
    assert (
        "case main (the tests before the first CASE line): normalize([0, 0]) should raise ValueError"
        in (feedback["partial"])
    )
    assert "case values (the logits are the model's outputs" in feedback["partial"]
    assert "raised ModuleNotFoundError: No module named 'numpyy'" in feedback["crashing"]
    assert "cell 8 (your answer to q2) killed the kernel" in feedback["crashing"]
    assert "ignored the interrupt; the kernel was restarted" in feedback["infinite_loop"]
    assert [q.status for q in grades["infinite_loop"].questions] == ["passed", "failed", "timeout", "passed"]
    assert "count_onsets gave a <class 'numpy.int64'>" not in feedback["tampering"]
    for text in feedback.values():
        assert "normalize([0, 0])\n" not in text and "transpose([100, 30], 12)" not in text  # hidden test code


def test_a_rerun_resumes_and_a_regrade_of_one_student_keeps_the_others(graded):
    _, out, submissions = graded
    before = {r["student"]: r for r in _rows(out / "grades.csv")}
    again = autograde.autograde(submissions, SOURCE.parent, out, cell_timeout=20, jobs=1)  # nothing left to grade
    assert {g.student for g in again} == set(before) - {"forgot"}  # graded ones; "forgot" is only a CSV row
    assert {r["student"]: r for r in _rows(out / "grades.csv")} == before
    shutil.copy(submissions / "correct" / "melody.ipynb", submissions / "partial" / "melody.ipynb")
    autograde.autograde(submissions, SOURCE.parent, out, cell_timeout=20, jobs=1, student="partial")
    after = {r["student"]: r for r in _rows(out / "grades.csv")}
    assert after["partial"]["total"] == "8"
    assert {s: r for s, r in after.items() if s != "partial"} == {s: r for s, r in before.items() if s != "partial"}


def test_cli_autograde_reports_unreadable_and_missing_notebooks_without_stopping(tmp_path, capsys):
    submissions = tmp_path / "submissions"
    (submissions / "ada").mkdir(parents=True)
    (submissions / "ada" / "melody.ipynb").write_text("{ truncated")
    (submissions / "bob").mkdir()
    (submissions / "stray.ipynb").write_text("{}")
    out = tmp_path / "grades"
    assert main(["autograde", str(submissions), "--source", str(SOURCE.parent), "--out", str(out)]) == 0
    assert (out / "grades.csv").read_text().splitlines() == [
        "student,melody_total,melody.q1,melody.q2,melody.q3,melody.q4,total,max,isolation",
        "ada,0,0,0,0,0,0,8,",
        "bob,0,0,0,0,0,0,8,",
    ]
    assert "is not a readable notebook" in (out / "feedback" / "ada" / "melody.md").read_text()
    assert "stray.ipynb: not inside a student folder" in capsys.readouterr().err
    assert main(["run-student-versions", str(tmp_path / "bob")]) == 1  # no notebooks: CI must not pass
