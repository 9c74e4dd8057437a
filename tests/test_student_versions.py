"""CI over the course itself: student/ is generated from notebooks/ and fails only in graded cells.

Both checks fail when a source notebook in notebooks/ changes and `make student-versions` was not run, or when
an ungraded cell of a student version needs a solution (see docs/grading.md, "Rules for tests").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from musicvae_course.grading import make_student_versions
from musicvae_course.grading.check import Checker
from musicvae_course.grading.runs import ungraded_failures

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


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_check_on_an_untouched_stub_says_not_done_yet_in_one_line():
    # A student who runs a stub and then check("qN") reads one plain line, not a report per test that quotes
    # the tests and repeats "NotImplementedError: " (or, for a stub that replaced a whole cell, "run the cell
    # that defines it first", which they did). Questions whose public tests first need the notebook's data are
    # left out: their check stops at the data, which is not defined here either.
    covered = []
    for path in sorted(STUDENT.glob("*.ipynb")):
        cells = _cells(path)
        for cell in cells:
            grading = cell.get("metadata", {}).get("nbgrader", {})
            if not (grading.get("grade") and not grading.get("solution")):
                continue
            question = grading["grade_id"]
            namespace = {"np": np, "torch": torch}
            for stub in cells:
                stub_id = str(stub.get("metadata", {}).get("nbgrader", {}).get("grade_id"))
                if stub_id == f"{question}_solution" or stub_id.startswith(f"{question}_solution_"):
                    try:  # run the stub as a student would: a def, or a cell that stops at the raise
                        exec(compile(_source(stub), f"{path.name}:{stub_id}", "exec"), namespace)
                    except NotImplementedError:
                        pass
                    except NameError:  # a default from the notebook's given cells (DEFAULT_SEED)
                        namespace["__skip__"] = True
            result = Checker(path).run(question, namespace)
            if "__skip__" in namespace or "run the cell that defines it first" in (result.setup_error or ""):
                continue
            text = str(result)
            assert text.startswith(f"{question}: not done yet: "), f"{path.name} {question}: {text}"
            assert "\n" not in text and "NotImplementedError: " not in text, f"{path.name} {question}: {text}"
            covered.append(f"{path.name[:2]}:{question}")
    assert len(covered) >= 8 and "04:q6" in covered, covered  # q6's stub replaces the cell that defines `portfolio`
