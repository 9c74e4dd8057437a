"""Hostile submissions (issue 10's list): each gets the true score of the honest work in it, in the sandbox.

One autograder run (bwrap required: CI installs bubblewrap) over every ``attack_*`` fixture submission, an honest
one that calls play() and trains with Adam, and two plain students graded before and after the attackers
(alphabetically) who must keep their grades. Afterwards the kit's files and the instructor source are unchanged,
no process of a submission is left, and nothing big is left on disk.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from musicvae_course.fileio import sha256_of
from musicvae_course.grading import autograde, student_version
from musicvae_course.grading.sandbox import Limits, bwrap_path
from musicvae_course.grading.session import GradingSession

FIXTURES = Path(__file__).parent / "fixtures" / "grading"
SOURCE = FIXTURES / "source" / "melody.ipynb"
EXPECTED = json.loads((FIXTURES / "expected_scores.json").read_text())
ATTACKS = sorted(name for name in EXPECTED if name.startswith("attack_")) + ["honest_play_adam"]
PACKAGE = Path(autograde.__file__).resolve().parents[1]


def _hashes():
    files = [p for p in PACKAGE.rglob("*.py")] + [SOURCE]
    return {str(p): sha256_of(p) for p in files}


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    assert bwrap_path(), "the attack suite needs bubblewrap: apt-get install bubblewrap (CI installs it)"
    root = tmp_path_factory.mktemp("attacks")
    submissions = root / "submissions"
    for name in ATTACKS:
        shutil.copytree(FIXTURES / "submissions" / name, submissions / name)
    for name in ("aaa_before", "zzz_after"):  # graded before and after the attackers
        shutil.copytree(FIXTURES / "submissions" / "partial", submissions / name)
    scratch = root / "tmp"
    scratch.mkdir()
    before = _hashes()
    old_tmp = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(scratch)  # the workers' run folders go here: checked for leftovers below
    try:
        grades = autograde.autograde(
            submissions,
            SOURCE.parent,
            root / "grades",
            cell_timeout=20,
            timeout=300,
            jobs=2,
            sandbox="bwrap",
            limits=Limits(disk_bytes=300 * 1024**2, file_bytes=64 * 1024**2, tmp_bytes=64 * 1024**2),
        )
    finally:
        if old_tmp is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_tmp
    return {g.student: g for g in grades}, root, before


@pytest.mark.parametrize("student", ATTACKS)
def test_each_attack_gets_the_true_score_of_its_honest_work(attacked, student):
    grades, _, _ = attacked
    assert {q.question_id: q.points for q in grades[student].questions} == EXPECTED[student]["scores"]
    assert grades[student].isolation == "bwrap"


def test_students_graded_before_and_after_the_attackers_keep_their_grades(attacked):
    grades, root, _ = attacked
    partial = EXPECTED["partial"]["scores"]
    for student in ("aaa_before", "zzz_after"):
        assert {q.question_id: q.points for q in grades[student].questions} == partial
    with open(root / "grades" / "grades.csv", newline="") as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    assert set(rows) == set(ATTACKS) | {"aaa_before", "zzz_after"}  # the daemon added no row
    assert rows["attack_daemon"]["total"] == "8" and rows["zzz_after"]["total"] == "3.5"


def test_kit_files_and_the_instructor_source_are_unchanged(attacked):
    _, _, before = attacked
    assert _hashes() == before
    assert "### BEGIN SOLUTION" in SOURCE.read_text()


def test_no_process_of_a_submission_outlives_the_run(attacked):
    leftovers = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"mvc-daemon-marker" in (entry / "cmdline").read_bytes():
                leftovers.append(entry.name)
        except OSError:
            continue
    assert leftovers == []


def test_nothing_big_is_left_on_disk(attacked):
    _, root, _ = attacked
    assert _folder_bytes(root / "tmp") < 5 * 1024**2
    assert "wrote more than" in (root / "grades" / "feedback" / "attack_fill_disk" / "melody.md").read_text()


def test_honest_work_gets_no_note_and_no_problem(attacked):
    _, root, _ = attacked
    feedback = (root / "grades" / "feedback" / "honest_play_adam" / "melody.md").read_text()
    assert (
        feedback
        == "# melody.ipynb: 8 / 8 points\n\n- **q1**: 2 / 2\n- **q2**: 3 / 3\n- **q3**: 1 / 1\n- **q4**: 2 / 2\n"
    )


def test_returned_subclasses_are_refused_with_a_note_naming_their_type(attacked):
    _, root, _ = attacked
    feedback = (root / "grades" / "feedback" / "attack_rigged_eq" / "melody.md").read_text()
    assert "count_onsets gave a <class '__main__.Yes'>; expected plain data" in feedback
    assert "transpose gave a <class '__main__.AlwaysEqual'>; expected plain data" in feedback


def test_what_a_submission_raised_stays_on_its_line_of_the_feedback(attacked):
    _, root, _ = attacked
    feedback = (root / "grades" / "feedback" / "attack_forge_feedback" / "melody.md").read_bytes().decode()
    lines = feedback.split("\n")
    assert [line for line in lines if line.startswith("#")] == [
        "# melody.ipynb: 6 / 8 points",
        "## Problems while running your notebook",
    ]
    assert sum(line.startswith("- **q") for line in lines) == 4
    assert not {"\x1b", "\r", "\u2028"} & set(feedback)
    assert "normalize raised ValueError:  # melody.ipynb: 8 / 8 points - **q1**: 2 / 2" in feedback


def test_names_a_submission_chose_cannot_run_as_spreadsheet_formulas(attacked):
    _, root, _ = attacked
    for name in ("grades.csv", "grades_long.csv", "lms.csv", "similarity.csv"):
        with open(root / "grades" / name, newline="") as handle:
            assert not [cell for row in csv.reader(handle) for cell in row if cell[:1] in ("=", "+", "-", "@")]
    assert "attack_broken_notebook,'=2+2.ipynb,,0,0,unreadable\n" in (root / "grades" / "grades_long.csv").read_text()


def test_a_link_to_the_instructors_notebook_a_pipe_or_a_folder_is_not_graded(tmp_path):
    # a copy of the submissions that keeps links and pipes (cp -a, rsync -a) hands the grader paths it reads with
    # its rights, or that never end
    for student in ("linker", "piper", "folder"):
        (tmp_path / "subs" / student).mkdir(parents=True)
    (tmp_path / "subs" / "linker" / "melody.ipynb").symlink_to(SOURCE)
    os.mkfifo(tmp_path / "subs" / "piper" / "melody.ipynb")
    (tmp_path / "subs" / "folder" / "melody.ipynb").mkdir()
    grades = autograde.autograde(tmp_path / "subs", SOURCE.parent, tmp_path / "grades", jobs=1, sandbox="bwrap")
    assert [(g.student, g.status, g.total) for g in grades] == [(s, "error", 0) for s in ("folder", "linker", "piper")]
    assert grades[0].problems == ["melody.ipynb is not a plain file (a link, a folder, a pipe); not graded"]
    assert "BEGIN SOLUTION" not in (tmp_path / "grades" / "records" / "linker" / "melody.json").read_text()


# ------------------------------------------------ shortcuts taken another way; given helpers edited (one kernel)


def _graded(cell, grade_id, **flags):
    cell.metadata["nbgrader"] = {
        "grade": False,
        "grade_id": grade_id,
        "locked": False,
        "points": 0,
        "schema_version": 3,
        "solution": False,
        "task": False,
        **flags,
    }
    return cell


def _sorting_source() -> nbformat.NotebookNode:
    """q1-q5 each ask for a sort without the "kit's" kit_sort; q4's tests read a given helper of its cell."""
    cells = [_graded(new_code_cell("def kit_sort(xs):\n    return sorted(xs)"), "setup", locked=True)]
    for n in range(1, 6):
        answer = f"def sort_{n}(xs):\n    ### BEGIN SOLUTION\n    return sorted(xs)\n    ### END SOLUTION"
        tests = f"assert sort_{n}([3, 1, 2]) == [1, 2, 3], 'sorts'"
        if n == 4:
            answer += "\n\n\ndef check_4(xs):\n    '''Given, do not change.'''\n    return sort_4(list(xs))"
            tests = "assert check_4((2, 1)) == [1, 2], 'sorts a tuple'"
        cells.append(_graded(new_code_cell(answer), f"q{n}_solution", solution=True))
        test = _graded(new_code_cell(tests), f"q{n}", grade=True, locked=True, points=1)
        test.metadata["grading"] = {"forbidden": ["kit_sort"]}
        cells.append(test)
    return new_notebook(cells=cells)


def _answered(nb, answers: dict, added: dict) -> nbformat.NotebookNode:
    """The student version with ``answers`` in solution cells and ``added`` cells before the given grade ids."""
    nb = student_version(nb)
    for cell in list(nb.cells):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
        if grade_id in added:
            nb.cells.insert(nb.cells.index(cell), new_code_cell(added[grade_id]))
    return nb


def test_forbidden_functions_reached_another_way_and_edited_given_helpers_earn_nothing(tmp_path):
    assert bwrap_path(), "the attack suite needs bubblewrap: apt-get install bubblewrap (CI installs it)"
    source = _sorting_source()
    (tmp_path / "source").mkdir()
    nbformat.write(source, tmp_path / "source" / "sorting.ipynb")
    submission = _answered(
        source,
        {
            "q1_solution": "def sort_1(xs):\n    return helper(xs)",  # an alias made in another cell
            "q2_solution": "def sort_2(xs):\n    return getattr(sort_2, '__glo' + 'bals__')['kit_' + 'sort'](xs)",
            "q3_solution": "def sort_3(xs):\n    raise NotImplementedError()",
            "q4_solution": "def sort_4(xs):\n    return xs  # wrong\n\n\ndef check_4(xs):\n    return [1, 2]",
            "q5_solution": "def sort_5(xs):\n    return [x for x, _ in sorted((x, i) for i, x in enumerate(xs))]",
        },
        {
            "q1_solution": "helper = kit_sort",
            "q3": "sort_3 = lambda xs: kit_sort(xs)",  # rebinds q3's answer after its cell
            "q5_solution": "expected = kit_sort([3, 1])  # honest: compares with the kit, not used by sort_5",
        },
    )
    (tmp_path / "subs" / "student").mkdir(parents=True)
    nbformat.write(submission, tmp_path / "subs" / "student" / "sorting.ipynb")
    grades = autograde.autograde(
        tmp_path / "subs", tmp_path / "source", tmp_path / "grades", cell_timeout=20, jobs=1, sandbox="bwrap"
    )
    by_question = {q.question_id: q for q in grades[0].questions}
    assert {q: r.points for q, r in by_question.items()} == {"q1": 0, "q2": 0, "q3": 0, "q4": 0, "q5": 1}
    assert "uses kit_sort from the kit" in by_question["q1"].detail
    assert "getattr with a computed name, which can hide" in by_question["q2"].detail
    assert "asks you to write this yourself" in by_question["q3"].detail
    assert by_question["q4"].detail == "case main (the tests before the first CASE line): sorts a tuple"


def _one_question(path: Path, answer: str, tests: str, points: int = 1) -> Path:
    """A source notebook at ``path`` with one question: its solution cell ``answer`` and test cell ``tests``."""
    cells = [
        _graded(new_code_cell(answer), "q1_solution", solution=True),
        _graded(new_code_cell(tests), "q1", grade=True, locked=True, points=points),
    ]
    nbformat.write(new_notebook(cells=cells), path)
    return path


def test_a_function_that_raises_stop_iteration_cannot_end_the_tests_map_early(tmp_path):
    # raised grader-side as itself, a StopIteration ends map() quietly: all(map(is_even, ...)) is True, any() False
    assert bwrap_path(), "the attack suite needs bubblewrap: apt-get install bubblewrap (CI installs it)"
    answer = "def is_even(n):\n    ### BEGIN SOLUTION\n    return n % 2 == 0\n    ### END SOLUTION"
    tests = "assert all(map(is_even, [2, 4])) and not any(map(is_even, [1, 3])), 'evens and odds'"
    _one_question(tmp_path / "evens.ipynb", answer, tests)
    with GradingSession(tmp_path / "evens.ipynb", sandbox="bwrap", cell_timeout=20) as session:
        stopped = session.grade_question("q1", {"q1_solution": "def is_even(n):\n    raise StopIteration"})
        honest = session.grade_question("q1")
    assert (stopped.points, honest.points) == (0, 1)
    assert stopped.detail == "is_even raised StopIteration in case main (the tests before the first CASE line)"


def test_a_test_message_that_prints_a_huge_answer_is_cut_in_the_record_and_the_feedback(attacked):
    # q4's f-string prints the logits whole: 2 million values would be a 13 MB line, read again by every rebuild
    _, root, _ = attacked
    feedback = (root / "grades" / "feedback" / "attack_huge_message" / "melody.md").read_text()
    assert len(feedback) < 10_000 and "case values (the logits are the model's outputs" in feedback
    assert (root / "grades" / "records" / "attack_huge_message" / "melody.json").stat().st_size < 20_000


def test_grader_side_tests_do_not_run_in_the_kernels_folder(tmp_path, monkeypatch):
    # a link the student's code made in its folder must not lead a grader-side unlink elsewhere, and a module it
    # wrote there must not be imported by the grader (a grader run from Jupyter has '' on sys.path)
    assert bwrap_path(), "the attack suite needs bubblewrap: apt-get install bubblewrap (CI installs it)"
    victim = tmp_path / "instructor"
    victim.mkdir()
    (victim / "stale.txt").write_text("the instructor's file")
    pwned = tmp_path / "pwned"
    answer = "def double(n):\n    ### BEGIN SOLUTION\n    return 2 * n\n    ### END SOLUTION"
    tests = (
        "from pathlib import Path\n"
        "Path('outputs/stale.txt').unlink(missing_ok=True)  # an earlier run's file must not stand in\n"
        "try:\n    import mvc_probe_module\nexcept ImportError:\n    pass\n"
        "assert double(2) == 4, 'doubles'"
    )
    _one_question(tmp_path / "double.ipynb", answer, tests)
    module = f"open({str(pwned)!r}, 'w').write('the grader ran me')"
    hostile = (
        "import os\n"
        f"os.symlink({str(victim)!r}, 'outputs')\n"
        f"open('mvc_probe_module.py', 'w').write({module!r})\n"
        "def double(n):\n    return 2 * n"
    )
    monkeypatch.syspath_prepend("")
    with GradingSession(tmp_path / "double.ipynb", sandbox="bwrap", cell_timeout=20) as session:
        result = session.grade_question("q1", {"q1_solution": hostile})
        problems = list(session.problems)
    assert (result.points, problems) == (1, [])
    assert (victim / "stale.txt").read_text() == "the instructor's file"
    assert not pwned.exists()


def test_a_returned_value_that_makes_the_tests_loop_costs_a_time_limit_not_the_run(tmp_path):
    # the kernel's calls end at the question's deadline, but what the grader does with a returned value ran without
    # one: an int used as a loop count (or the MIDI bytes 04 q5's tests parse, 3 s per MB) held the worker for hours
    assert bwrap_path(), "the attack suite needs bubblewrap: apt-get install bubblewrap (CI installs it)"
    answer = "def voices():\n    ### BEGIN SOLUTION\n    return 4\n    ### END SOLUTION"
    tests = (
        "# CASE count: four voices\nheard = 0\nfor _ in range(voices()):\n    heard += 1\n"
        "assert heard == 4, f'expected 4 voices, got {heard}'\n# CASE type: an int\nassert type(voices()) is int"
    )
    _one_question(tmp_path / "voices.ipynb", answer, tests, points=2)
    with GradingSession(tmp_path / "voices.ipynb", sandbox="bwrap", cell_timeout=2) as session:
        looping = session.grade_question("q1", {"q1_solution": "def voices():\n    return 10**15"})
        honest = session.grade_question("q1")
    assert (looping.points, looping.status, honest.points) == (0, "timeout", 2)
    assert looping.detail.startswith("the tests ran past their time limit on what your functions returned in case co")


def test_a_wrong_answer_cannot_leave_the_graders_torch_modes_changed_for_later_questions(tmp_path):
    # a test that turns gradients off around an assert left them off when a wrong answer failed that assert: every
    # later question of the worker (and every later student) was graded without gradients
    assert bwrap_path(), "the attack suite needs bubblewrap: apt-get install bubblewrap (CI installs it)"
    import torch  # noqa: PLC0415 - the grader's process loads torch through the tests; restored below

    cells = [_graded(new_code_cell("import torch"), "setup", locked=True)]
    tests = {
        1: "torch.set_grad_enabled(False)\nassert one() == 1, 'one'\ntorch.set_grad_enabled(True)",
        2: "assert torch.is_grad_enabled() and two() == 2, 'two, with gradients on'",
    }
    for n, name in ((1, "one"), (2, "two")):
        answer = f"def {name}():\n    ### BEGIN SOLUTION\n    return {n}\n    ### END SOLUTION"
        cells.append(_graded(new_code_cell(answer), f"q{n}_solution", solution=True))
        cells.append(_graded(new_code_cell(tests[n]), f"q{n}", grade=True, locked=True, points=1))
    nbformat.write(new_notebook(cells=cells), tmp_path / "modes.ipynb")
    try:
        with GradingSession(tmp_path / "modes.ipynb", sandbox="bwrap", cell_timeout=20) as session:
            wrong = session.grade_question("q1", {"q1_solution": "def one():\n    return 0"})
            honest = session.grade_question("q2")
    finally:
        torch.set_grad_enabled(True)
    assert (wrong.points, honest.points) == (0, 1)
