#!/usr/bin/env python
"""Lay out an nbgrader course from the kit: one assignment per notebook, each with the data it reads.

::

    python scripts/make_nbgrader_course.py nbgrader_course          # (make nbgrader-course) all four notebooks
    python scripts/make_nbgrader_course.py course --only 01_loading_the_pretrained_vae.ipynb
    cd nbgrader_course && nbgrader generate_assignment 01_loading_the_pretrained_vae

writes::

    nbgrader_course/
        README.md                 for the instructor: what is theirs alone, what goes to students
        nbgrader_config.py        timeouts for the course's cells; feedback without hidden tests (see below)
        source/01_loading_the_pretrained_vae/
            01_loading_the_pretrained_vae.ipynb   the instructor source, instructor-only cells removed
            data_samples/                          what the notebook reads, inside the assignment folder
        source/02_latent_space_with_widgets/ ...

The kit's notebooks read ``../data_samples`` and ``../reference/...``: beside their folder. nbgrader moves an
assignment folder alone (release, exchange, submission, ``autograded/<student>/<assignment>/``), so here every
``"../X"`` string literal of a notebook's code becomes ``"X"`` and ``X`` is copied into the assignment folder:
nbgrader then carries the data wherever the notebook goes, and ``autograde`` copies it from the source into
``autograded/<student>/<assignment>/`` itself. File names stay unchanged: ``check("q1")`` reads the notebook by
its name.

nbgrader's feedback HTML shows test cells as they ran during autograding, hidden tests included, and a failing
test's traceback quotes its code. The generated ``nbgrader_config.py`` therefore adds ``ClearHiddenTests`` and
a preprocessor that shortens the tracebacks of test cells to their last line (``AssertionError: <message>``) to
``nbgrader generate_feedback``, so students read the message of a failed hidden test, never its code. It also
adds a step to ``nbgrader generate_assignment`` that keeps in each test cell's ``metadata.grading.weights`` only
the public cases: the kit's weights name the hidden cases too, and nbgrader copies cell metadata as it is.

The course folder is the instructor's: ``source/`` holds the solutions and hidden tests, nbgrader's
``gradebook.db``, ``submitted/`` and ``autograded/`` the students' work. Students get ``release/<assignment>/``
only (through ``nbgrader release_assignment`` or a copy), never this folder or the kit's repository.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RELATIVE_PATH = re.compile(r"""(["'])\.\./([^"'\s]+)\1""")
INSTRUCTOR_TAG = "instructor"

CONFIG = '''\
"""nbgrader configuration written by the course kit's scripts/make_nbgrader_course.py."""

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.converters import GenerateAssignment
from nbgrader.preprocessors import ClearHiddenTests, GetGrades, NbGraderPreprocessor

from musicvae_course.grading.cases import drop_hidden_weights

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)
c.CourseDirectory.course_id = "musicvae-course"
# The notebooks load a model and data, and notebook 03 fine-tunes for a few seconds: nbgrader's default of 30 s
# per cell is too short on a busy machine. Submissions with TRAIN_LIVE = True need more (up to 3 minutes).
c.Execute.timeout = {cell_timeout}


class ShortTestTracebacks(NbGraderPreprocessor):
    """In graded test cells, replace an error's traceback (which quotes the test's code) by its last line."""

    def preprocess_cell(self, cell, resources, index):
        meta = cell.metadata.get("nbgrader", {{}})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{{output.get('ename')}}: {{output.get('evalue')}}"]
        return cell, resources


# Feedback without the hidden tests' code (nbgrader's default feedback shows it, see jupyter/nbgrader#917).
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, ShortTestTracebacks, CSSHTMLHeaderPreprocessor]

class DropHiddenCaseWeights(NbGraderPreprocessor):
    """Keep in a test cell's metadata.grading.weights only the cases its (public) source still has: the kit's rule
    for student versions (drop_hidden_weights). The kit's weights name every case of a question, hidden ones too
    ("exact", "gradients"...); nbgrader copies cell metadata into the release as it is. Runs after ClearHiddenTests;
    nbgrader itself does not use weights.
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            drop_hidden_weights(cell)
        return cell, resources


# The release without the hidden cases' names: nbgrader's own list, DropHiddenCaseWeights after ClearHiddenTests.
_steps = list(GenerateAssignment.class_traits()["preprocessors"].default())
c.GenerateAssignment.preprocessors = _steps[: _steps.index(ClearHiddenTests) + 1] + [DropHiddenCaseWeights] + \\
    _steps[_steps.index(ClearHiddenTests) + 1 :]
'''


COURSE_README = """\
# nbgrader course folder: for the instructor only

Written by the course kit's `scripts/make_nbgrader_course.py`. Do not share this folder, nor the kit's
repository: `source/` holds the solutions and the hidden tests, and nbgrader's `gradebook.db`, `submitted/`,
`autograded/` and `feedback/` hold the students' work and grades.

What students get: `release/<assignment>/` only, made by `nbgrader generate_assignment <assignment>` (solutions
become stubs, hidden tests and outputs removed, hidden test cases left out of the cells' metadata) and handed out
by `nbgrader release_assignment` or as a copy of that folder. Feedback: `nbgrader generate_feedback`, whose HTML
this folder's `nbgrader_config.py` keeps free of hidden test code.
"""


def notebook_for_nbgrader(notebook: dict) -> tuple[dict, list[str]]:
    """The notebook without instructor-only cells, its ``"../X"`` literals made ``"X"``; and the X it reads."""
    reads: list[str] = []
    cells = []
    for cell in notebook["cells"]:
        if INSTRUCTOR_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        if cell["cell_type"] == "code":
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for _quote, relative in RELATIVE_PATH.findall(source):
                if relative not in reads:
                    reads.append(relative)
            cell = dict(cell, source=RELATIVE_PATH.sub(r"\1\2\1", source).splitlines(keepends=True))
        cells.append(cell)
    return dict(notebook, cells=cells), reads


def make_course(course: Path, sources: Path, only: list[str] | None = None, cell_timeout: int = 300) -> list[str]:
    """Write the course folder; return the assignment ids. Existing assignment folders in source/ are replaced."""
    notebooks = sorted(sources.glob("*.ipynb"))
    if only:
        missing = sorted(set(only) - {p.name for p in notebooks})
        if missing:
            raise SystemExit(f"{sources}: no notebook named {', '.join(missing)}")
        notebooks = [p for p in notebooks if p.name in only]
    if not notebooks:
        raise SystemExit(f"{sources}: no notebooks")
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(CONFIG.format(cell_timeout=cell_timeout), encoding="utf-8")
    (course / "README.md").write_text(COURSE_README, encoding="utf-8")
    assignments = []
    for path in notebooks:
        assignment = path.stem
        folder = course / "source" / assignment
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        notebook, reads = notebook_for_nbgrader(json.loads(path.read_text(encoding="utf-8")))
        (folder / path.name).write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        for relative in reads:
            source = (sources.parent / relative).resolve()
            if not source.exists():
                raise SystemExit(f"{path.name} reads '../{relative}', but {source} does not exist")
            destination = folder / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", ".*"))
            else:
                shutil.copy2(source, destination)
        assignments.append(assignment)
    return assignments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("course", help="the nbgrader course folder to write (created if needed)")
    parser.add_argument("--source", default=str(REPO / "notebooks"), help="the instructor notebooks")
    parser.add_argument("--only", nargs="+", help="notebook file names to include (default: all)")
    parser.add_argument("--cell-timeout", type=int, default=300, help="nbgrader's seconds per cell when grading")
    args = parser.parse_args(argv)
    assignments = make_course(Path(args.course), Path(args.source), args.only, args.cell_timeout)
    print(f"{args.course}: assignments {', '.join(assignments)}")
    print(f"next: cd {args.course} && nbgrader generate_assignment <assignment>  (then release, collect, autograde)")
    print(f"{args.course} is the instructor's (source/: solutions, hidden tests): students get release/<assignment>/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
