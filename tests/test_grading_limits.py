"""What one submission can make the grader keep, write and read again (sixth round of attacks)."""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell
from test_grading_attacks import _one_question

from musicvae_course.grading import autograde, student_version
from musicvae_course.grading.sandbox import bwrap_path


def test_an_exception_class_with_a_huge_name_does_not_make_a_huge_record(tmp_path):
    # a cell's error was recorded with its class name whole: five classes named by 40 MB of "E" made a 210 MB record
    # and as much feedback, which every rebuild of the class files after each later notebook parsed again
    assert bwrap_path(), "the attack suite needs bubblewrap: apt-get install bubblewrap (CI installs it)"
    (tmp_path / "source").mkdir()
    answer = "def double(n):\n    ### BEGIN SOLUTION\n    return 2 * n\n    ### END SOLUTION"
    source = _one_question(tmp_path / "source" / "double.ipynb", answer, "assert double(2) == 4, 'doubles'")
    submission = student_version(nbformat.read(source, as_version=4))
    submission.cells[0].source = "def double(n):\n    return 2 * n"
    submission.cells.append(new_code_cell("raise type('E' * 2 * 1024 * 1024, (Exception,), {})('a message')"))
    (tmp_path / "subs" / "student").mkdir(parents=True)
    nbformat.write(submission, tmp_path / "subs" / "student" / "double.ipynb")
    grades = autograde.autograde(
        tmp_path / "subs", source.parent, tmp_path / "grades", cell_timeout=20, jobs=1, sandbox="bwrap"
    )
    assert grades[0].total == 1
    assert grades[0].problems[-1].endswith(" raised " + "E" * 80 + ": a message")
    assert (tmp_path / "grades" / "records" / "student" / "double.json").stat().st_size < 20_000
    assert (tmp_path / "grades" / "feedback" / "student" / "double.md").stat().st_size < 20_000
