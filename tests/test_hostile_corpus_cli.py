"""``python -m musicvae_course.corpus`` misused: arguments refused by name, a bad path in one line with exit 2.

Before, ``--limit -1`` silently left out the last work, ``--timeout 0`` meant no time limit at all, and
``--retry-failures`` on a folder without failures.csv (or ``--out`` naming a file) ended in a traceback.
"""

from __future__ import annotations

import re

import pytest

import musicvae_course.corpus.cli as cli
from musicvae_course.corpus.works import Work, limit_works


@pytest.fixture(autouse=True)
def no_music21(monkeypatch):
    monkeypatch.setattr(cli, "list_works", lambda collections=None: [])  # the real one reads music21's bundle


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [
        ("--limit", "-1", "must be at least 1"),
        ("--limit", "0", "must be at least 1"),
        ("--timeout", "0", "must be at least 1"),
        ("--workers", "0", "must be at least 1"),
        ("--folk-fraction", "nan", r"must be in \[0, 1\]"),
        ("--folk-fraction", "1.5", r"must be in \[0, 1\]"),
        ("--timeout", "ten", "not a whole number"),
    ],
)
def test_bad_numbers_are_usage_errors_naming_the_option(tmp_path, capsys, option, value, why):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--out", str(a_file), option, value])
    assert stopped.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {option}" in last and re.search(why, last)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--retry-failures"], "failures.csv"),  # no such file in --out
        ([], "a_file"),  # --out names a file, not a folder
    ],
    ids=["retry-without-failures", "out-is-a-file"],
)
def test_a_bad_path_is_one_line_and_exit_2(tmp_path, capsys, argv, named):
    out = tmp_path / ("a_file" if named == "a_file" else "build")
    out.write_text("") if named == "a_file" else out.mkdir()
    assert cli.main(["--out", str(out), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m musicvae_course.corpus: error: ") and named in err[0]


def test_limit_works_refuses_a_limit_below_one():
    works = [Work(f"bach/w{i}.mxl") for i in range(3)]
    with pytest.raises(ValueError, match="limit must be None or a whole number >= 1, got -1"):
        limit_works(works, -1)
    assert len(limit_works(works, 2)) == 2
