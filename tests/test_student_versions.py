"""CI over the course itself: student/ is generated from notebooks/ and fails only in graded cells.

Both checks fail when a source notebook in notebooks/ changes and `make student-versions` was not run, or when
an ungraded cell of a student version needs a solution (see docs/grading.md, "Rules for tests").
"""

from __future__ import annotations

from pathlib import Path

from musicvae_course.grading import make_student_versions
from musicvae_course.grading.autograde import ungraded_failures

ROOT = Path(__file__).resolve().parents[1]
SOURCES, STUDENT = ROOT / "notebooks", ROOT / "student"


def test_student_versions_are_in_sync_with_the_sources():
    problems = make_student_versions(SOURCES, STUDENT, check=True)
    assert problems == [], "\n".join(problems) + "\nregenerate with: make student-versions"


def test_student_versions_fail_only_in_graded_cells():
    failures = [
        f"{path.name}: {failure}"
        for path in sorted(STUDENT.glob("*.ipynb"))
        for failure in ungraded_failures(path, cell_timeout=600)
    ]
    assert failures == [], "\n".join(failures)
