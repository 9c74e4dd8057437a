"""Grading from one source notebook: student versions, ``check("q1")`` for students, and the autograder.

A product of its own inside the kit: it imports nothing of the ML code (``core``, ``train``, ``ui``) and the ML
code never imports it (import-linter checks both). Modules:

* :mod:`.markers`: nbgrader's cell markers, questions and test cells.
* :mod:`.student`: the student versions (solutions stubbed, hidden tests and their cases' weights removed).
* :mod:`.check`: ``check("q1")``, the public tests a student runs in their own kernel (``protect=`` models).
* :mod:`.cases`: ``# CASE`` lines, weights and the ``forbidden`` shortcut check; :mod:`.magics`: a cell's IPython
  syntax as the Python the kernel runs, for that check.
* :mod:`.source`: a source notebook as the grader sees it, and a submission's plan.
* :mod:`.kernel`: one student kernel in a bubblewrap sandbox; :mod:`.codec`: plain data across, strictly decoded.
* :mod:`.judge`: tests run in the grader's process with proxies into the kernel; :mod:`.protect`: model guards.
* :mod:`.session`: ``GradingSession`` and grading one notebook; :mod:`.autograde`: a class, in parallel, resumable.
* :mod:`.reports`: feedback and the class CSVs rebuilt from the records; :mod:`.cli`: the command line.
"""

from .check import Checker, CheckResult, check
from .markers import GradingSourceError, questions, read_notebook
from .student import make_student_version, make_student_versions, student_version

__all__ = [
    "CheckResult",
    "Checker",
    "GradingSourceError",
    "check",
    "make_student_version",
    "make_student_versions",
    "questions",
    "read_notebook",
    "student_version",
]
