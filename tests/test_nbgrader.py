"""The nbgrader route of docs/grading.md, run for real on notebook 01: course layout, release, autograde, feedback.

``scripts/make_nbgrader_course.py`` lays out the course; nbgrader's own commands (``generate_assignment``,
``autograde``, ``export``, ``generate_feedback``) do the rest, in a subprocess each, as an instructor would
run them. A correct submission (the instructor source) must score full marks, a partial one (the release
with only q1 solved) exactly q1's points: with the data missing, both would lose the questions that load it.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from scripts_loader import load_script

ROOT = Path(__file__).resolve().parents[1]
make_nbgrader_course = load_script("make_nbgrader_course")

NOTEBOOK = "01_loading_the_pretrained_vae.ipynb"
ASSIGNMENT = Path(NOTEBOOK).stem
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS[ \t]*$(.*?)^[ \t]*### END HIDDEN TESTS", re.M | re.S)


def sources(notebook: dict) -> list[str]:
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in notebook["cells"]]


def points(notebook: dict) -> dict[str, float]:
    """grade_id -> points of the graded test cells."""
    return {
        c["metadata"]["nbgrader"]["grade_id"]: float(c["metadata"]["nbgrader"]["points"])
        for c in notebook["cells"]
        if c.get("metadata", {}).get("nbgrader", {}).get("grade")
    }


def nbgrader(course: Path, *args: str, timeout: float = 900) -> str:
    # nbgrader runs alembic (its database migrations) as a program: this environment's bin/ must be on PATH.
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    ran = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert ran.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{ran.stdout[-3000:]}\n{ran.stderr[-5000:]}"
    return ran.stdout + ran.stderr


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """An nbgrader course for notebook 01, released, with two submissions autograded and feedback generated."""
    root = tmp_path_factory.mktemp("nbgrader") / "course"
    assert make_nbgrader_course.make_course(root, ROOT / "notebooks", only=[NOTEBOOK]) == [ASSIGNMENT]
    nbgrader(root, "generate_assignment", ASSIGNMENT)

    source = json.loads((root / "source" / ASSIGNMENT / NOTEBOOK).read_text())
    release = json.loads((root / "release" / ASSIGNMENT / NOTEBOOK).read_text())
    partial = json.loads(json.dumps(release))
    solved = {
        c["metadata"]["nbgrader"]["grade_id"]: c["source"] for c in source["cells"] if "nbgrader" in c["metadata"]
    }
    for cell in partial["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "q1_solution":
            cell["source"] = solved["q1_solution"]
    for student, notebook in {"correct": source, "partial": partial}.items():
        folder = root / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / NOTEBOOK).write_text(json.dumps(notebook))  # the notebook only: data come from the source

    nbgrader(root, "autograde", ASSIGNMENT)
    nbgrader(root, "export", "--to", str(root / "grades.csv"))
    nbgrader(root, "generate_feedback", ASSIGNMENT)
    return root


def test_course_layout_puts_the_data_inside_each_assignment_and_the_notebook_reads_it_there():
    notebook, reads = make_nbgrader_course.notebook_for_nbgrader(
        json.loads((ROOT / "notebooks" / NOTEBOOK).read_text())
    )
    assert "data_samples" in reads
    assert not any(re.search(r"""["']\.\./""", s) for s in sources(notebook)), "a '../' path is left"
    assert any('Path("data_samples")' in s for s in sources(notebook))


def test_release_has_stubs_and_no_solutions_or_hidden_tests(course):
    release = course / "release" / ASSIGNMENT
    text = "\n".join(sources(json.loads((release / NOTEBOOK).read_text())))
    assert "raise NotImplementedError()" in text
    assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text
    assert (release / "data_samples" / "manifest.csv").is_file(), "the release carries the data"


def test_autograde_gives_full_marks_to_a_correct_and_q1_only_to_a_partial_submission(course):
    maximum = points(json.loads((ROOT / "notebooks" / NOTEBOOK).read_text()))
    with open(course / "grades.csv", newline="") as table:
        scores = {row["student_id"]: (float(row["score"]), float(row["max_score"])) for row in csv.DictReader(table)}
    assert scores == {
        "correct": (sum(maximum.values()), sum(maximum.values())),
        "partial": (maximum["q1"], sum(maximum.values())),
    }


def test_feedback_html_shows_no_hidden_test_code_although_the_graded_notebook_holds_it(course):
    source = json.loads((ROOT / "notebooks" / NOTEBOOK).read_text())
    hidden = {line.strip() for s in sources(source) for body in HIDDEN.findall(s) for line in body.splitlines()}
    hidden = {line for line in hidden if len(line) >= 16}
    assert len(hidden) >= 5
    for student in ("correct", "partial"):
        graded = "\n".join(sources(json.loads((course / "autograded" / student / ASSIGNMENT / NOTEBOOK).read_text())))
        assert hidden & {line.strip() for line in graded.splitlines()}, "nbgrader grades with the hidden tests"
        page = (course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
        shown = html.unescape(re.sub(r"<[^>]+>", "", page))  # the text a student reads, highlighting removed
        assert sorted(line for line in hidden if line in shown) == [], f"{student}'s feedback shows hidden tests"


def test_release_metadata_names_no_hidden_test_case(course):
    # The kit's metadata.grading.weights name every case of a question; nbgrader copies cell metadata into the
    # release as it is, so without the course's DropHiddenCaseWeights step students could read the hidden cases'
    # names ("exact", "gradients"...) and what each is worth.
    case = re.compile(r"^\s*#\s*CASE\s+([A-Za-z0-9_.-]+)\s*:", re.M)
    released = json.loads((course / "release" / ASSIGNMENT / NOTEBOOK).read_text())
    source = json.loads((course / "source" / ASSIGNMENT / NOTEBOOK).read_text())
    hidden = {}  # grade_id -> the ids of its hidden cases
    for cell, text in zip(source["cells"], sources(source)):
        weights = cell["metadata"].get("grading", {}).get("weights", {})
        if weights:
            public = set(case.findall(HIDDEN.sub("", text)))
            hidden[cell["metadata"]["nbgrader"]["grade_id"]] = set(weights) - public
    assert sum(map(len, hidden.values())) >= 5, "the source names hidden cases (else this test proves nothing)"
    weighted = 0
    for cell, text in zip(released["cells"], sources(released)):
        weights = cell["metadata"].get("grading", {}).get("weights")
        if weights is not None:
            grade_id = cell["metadata"]["nbgrader"]["grade_id"]
            weighted += 1
            assert set(weights) <= set(case.findall(text)), (grade_id, weights)
            assert not set(weights) & hidden[grade_id], (grade_id, weights)
    assert weighted >= 3  # the public cases' weights stay


def test_course_folder_says_it_is_the_instructors_and_what_students_get(tmp_path):
    make_nbgrader_course.make_course(tmp_path / "course", ROOT / "notebooks", only=[NOTEBOOK])
    readme = (tmp_path / "course" / "README.md").read_text()
    assert "instructor only" in readme and "solutions" in readme and "hidden tests" in readme
    assert "release/<assignment>/" in readme
