"""What one student's folder, or the folders its code writes, can cost the batch as a whole."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nbformat
from test_grading_attacks import _one_question

from musicvae_course.grading import autograde, submissions
from musicvae_course.grading.submissions import MAX_FOLDER_DEPTH, MAX_NOTEBOOKS_PER_STUDENT

FIXTURE = Path(__file__).parent / "fixtures" / "grading"
SOURCE_DIR = FIXTURE / "source"


def test_a_folder_of_thousands_of_notebook_files_is_read_only_up_to_the_limit(tmp_path):
    # each file left a record and a feedback file, and every report rebuild read all the records again
    folder = tmp_path / "subs" / "mallory"
    folder.mkdir(parents=True)
    for n in range(MAX_NOTEBOOKS_PER_STUDENT + 30):
        (folder / f"junk{n:03d}.ipynb").write_text("{}")
    lines = []
    autograde.autograde(tmp_path / "subs", SOURCE_DIR, tmp_path / "grades", jobs=1, sandbox="bwrap", log=lines.append)
    records = list((tmp_path / "grades" / "records" / "mallory").iterdir())
    assert len(records) == MAX_NOTEBOOKS_PER_STUDENT
    assert "junk079.json" not in {p.name for p in records}
    assert any(f"80 notebook files, over the grader's limit of {MAX_NOTEBOOKS_PER_STUDENT}" in line for line in lines)


def test_a_folder_nested_too_deep_for_recursion_does_not_stop_the_run(tmp_path):
    # pathlib's rglob recursed once per level: RecursionError stopped the batch before anyone was graded
    deep = tmp_path / "subs" / "mallory"
    deep.mkdir(parents=True)
    shutil.copy(FIXTURE / "submissions" / "correct" / "melody.ipynb", deep / "melody.ipynb")
    folder = os.open(deep, os.O_RDONLY)
    try:
        for _ in range(1200):  # a 2.4 kB relative path, made one folder at a time
            os.mkdir("a", dir_fd=folder)
            inner = os.open("a", os.O_RDONLY, dir_fd=folder)
            os.close(folder)
            folder = inner
    finally:
        os.close(folder)
    lines = []
    try:
        grades = autograde.autograde(
            tmp_path / "subs",
            SOURCE_DIR,
            tmp_path / "grades",
            jobs=1,
            sandbox="bwrap",
            cell_timeout=60,
            log=lines.append,
        )
    finally:
        subprocess.run(["rm", "-rf", str(deep / "a")], check=True)  # shutil.rmtree recurses too
    assert [(g.student, g.status, g.total) for g in grades] == [("mallory", "graded", 8)]
    assert any(f"folders over {MAX_FOLDER_DEPTH} deep; the rest of the folder is not read" in line for line in lines)


DEEP_FOLDERS = (
    "import os\nfd = os.open('.', os.O_RDONLY)\nfor _ in range(1500):\n    os.mkdir('a', dir_fd=fd)\n"
    "    inner = os.open('a', os.O_RDONLY, dir_fd=fd)\n    os.close(fd)\n    fd = inner\n"
)


def test_folders_a_submission_nests_too_deep_for_recursion_are_removed_and_the_run_ends(tmp_path):
    # shutil.rmtree recursed once per level: RecursionError (not an OSError that ignore_errors covers) made the grader
    # fail on the notebook (error, 0 of its honest point) and left its run folder on disk
    (tmp_path / "source").mkdir()
    answer = "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"
    _one_question(tmp_path / "source" / "double.ipynb", answer, "assert double(2) == 4, 'doubles'")
    submitted = nbformat.read(tmp_path / "source" / "double.ipynb", as_version=4)
    submitted.cells[0].source = DEEP_FOLDERS + "\n\ndef double(x):\n    return 2 * x"
    (tmp_path / "subs" / "mallory").mkdir(parents=True)
    nbformat.write(submitted, tmp_path / "subs" / "mallory" / "double.ipynb")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    old_tmp = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(scratch)  # the workers' run folders go here: checked for leftovers below
    try:
        grades = autograde.autograde(
            tmp_path / "subs", tmp_path / "source", tmp_path / "grades", jobs=1, sandbox="bwrap", cell_timeout=30
        )
    finally:
        if old_tmp is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_tmp
        left = list(scratch.iterdir())
        subprocess.run(["rm", "-rf", str(scratch)], check=True)
    assert [(g.student, g.status, g.total) for g in grades] == [("mallory", "graded", 1)]
    assert left == []


def test_names_a_submission_chose_reach_the_log_without_terminal_escapes(tmp_path):
    # the log goes to the grader's terminal: a folder named "\x1b[2J..." cleared it, or set its title
    folder = tmp_path / "subs" / "mallory"
    (folder / "\x1b[2J\x1b]0;graded 8/8\x07").mkdir(parents=True)
    (folder / "melody.ipynb").symlink_to(FIXTURE / "submissions" / "correct" / "melody.ipynb")  # error, no kernel
    (folder / "\x1b[2J\x1b]0;graded 8/8\x07" / "melody.ipynb").write_text("{}")
    lines = []
    autograde.autograde(tmp_path / "subs", SOURCE_DIR, tmp_path / "grades", jobs=1, sandbox="bwrap", log=lines.append)
    (copy,) = [line for line in lines if "is a second copy of melody.ipynb" in line]
    assert copy.startswith("mallory/ [2J ]0;graded 8/8 /melody.ipynb is a second copy")
    assert not [line for line in lines if "\x1b" in line or "\x07" in line]


def test_a_folder_of_too_many_entries_is_searched_up_to_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(submissions, "MAX_FOLDER_ENTRIES", 10)
    (tmp_path / "mallory" / "sub").mkdir(parents=True)
    for n in range(30):
        (tmp_path / "mallory" / "sub" / f"{n:02d}.txt").write_text("")
    (tmp_path / "mallory" / "melody.ipynb").write_text("{}")
    found, stray = submissions.scan(tmp_path, None)
    assert found == {"mallory": [tmp_path / "mallory" / "melody.ipynb"]}
    assert stray == [f"{tmp_path / 'mallory'}: over 10 files and folders; the rest of the folder is not read"]
