"""Grading from one source notebook: student versions, ``check("q1")`` for students, and the autograder.

A product of its own inside the kit: it imports nothing of the ML code (``core``, ``train``, ``ui``) and the ML
code never imports it (import-linter checks both). Modules:

* :mod:`.markers`: nbgrader's cell markers, questions and test cells, student versions.
* :mod:`.check`: ``check("q1")``, the public tests a student runs in their own kernel.
* :mod:`.autograde`: grading a folder of submissions, each in its own kernel.
* :mod:`.cli`: ``python -m musicvae_course.grading ...``.
"""

from .check import Checker, CheckResult, check
from .markers import (
    GradingSourceError,
    make_student_version,
    make_student_versions,
    questions,
    read_notebook,
    student_version,
)

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
