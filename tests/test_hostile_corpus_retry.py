"""``python -m musicvae_course.corpus --out DIR --retry-failures`` with a failures.csv it did not write.

A row's corpus path became the MIDI file's path: ``/x`` was parsed from ``/x`` and written to (or, when the
export failed, deleted from) ``/x.mid``, outside the build; a tune number that is not a number stopped the retry
with a bare ``ValueError``; the manifest was rewritten in place, so a retry killed then lost every row.
"""

from __future__ import annotations

import csv
import io

import pytest

import musicvae_course.corpus.build as bc
from musicvae_course.corpus.works import Work, output_name

MANIFEST_ROW = {column: "" for column in bc.MANIFEST_COLUMNS} | {"file": "midi/bach/a.mid", "corpus_path": "bach/a"}


def _write(path, rows):
    text = io.StringIO(newline="")
    csv.writer(text).writerows(rows)
    path.write_text(text.getvalue(), encoding="utf8")


@pytest.fixture
def build(tmp_path, monkeypatch):
    out = tmp_path / "build"
    out.mkdir()
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=bc.MANIFEST_COLUMNS)
    writer.writeheader()
    writer.writerow(MANIFEST_ROW)
    (out / "manifest.csv").write_text(text.getvalue(), encoding="utf8")
    ran = []

    def run_jobs(jobs, workers, timeout_s, progress, job=None):  # no music21: every retried work fails again
        for work, out_path, _ in jobs:
            ran.append((work.key, out_path))
            yield work, out_path, {"ok": False, "reason": "still failing"}

    monkeypatch.setattr(bc, "_run_jobs", run_jobs)
    monkeypatch.setattr(bc, "list_works", lambda collections=None: [])
    return out, ran


def test_rows_naming_no_corpus_work_are_kept_not_run(build):
    out, ran = build
    rows = [
        ("/x", "", "timeout"),  # absolute: parsed /x and deleted /x.mid
        ("../../etc/passwd", "", "timeout"),
        ("bach/../../../y", "", "timeout"),
        ("bach", "", "timeout"),  # no file part
        ("bach/b.abc", "two", "timeout"),  # int('two') stopped the retry
        ("bach/b.abc", "-3", "timeout"),
        ("bach/c.abc", "4", "timeout"),  # the one good row
    ]
    _write(out / "failures.csv", [("corpus_path", "number", "reason"), *rows])
    summary = bc.retry_failures(out, workers=1, heldout=set(), progress=False)
    assert [key for key, _ in ran] == ["bach/c.abc#4"]
    assert all(path.is_relative_to(out / "midi") for _, path in ran)
    assert (summary.tried, summary.written, summary.failed) == (1, 0, 7)
    with open(out / "failures.csv", newline="", encoding="utf8") as handle:
        kept = list(csv.DictReader(handle))
    assert [(row["corpus_path"], row["number"]) for row in kept] == [(path, number) for path, number, _ in rows]
    assert all(row["reason"].startswith("not retried: ") for row in kept[:6])
    assert kept[6]["reason"] == "still failing"


def test_output_name_refuses_a_path_outside_the_corpus():
    with pytest.raises(ValueError, match="not a path of music21's corpus"):
        output_name(Work("/x"))
    assert output_name(Work("bach/bwv66.6.mxl", 2)) == "bach/bwv66.6.mxl__n2.mid"


def test_a_manifest_of_other_columns_is_refused_before_any_work(build):
    out, ran = build
    (out / "manifest.csv").write_text("file,extra\nmidi/a.mid,1\n", encoding="utf8")
    _write(out / "failures.csv", [("corpus_path", "number", "reason"), ("bach/c.abc", "", "timeout")])
    with pytest.raises(ValueError, match=r"manifest\.csv: columns \['file', 'extra'\]"):
        bc.retry_failures(out, workers=1, heldout=set(), progress=False)
    assert ran == []


def test_an_interrupted_manifest_write_keeps_the_old_one(build, monkeypatch):
    out, _ = build
    before = (out / "manifest.csv").read_text(encoding="utf8")
    _write(out / "failures.csv", [("corpus_path", "number", "reason"), ("bach/c.abc", "", "timeout")])

    def killed(self, rows):  # a kill (Ctrl+C) while the rows go out
        raise KeyboardInterrupt

    monkeypatch.setattr(csv.DictWriter, "writerows", killed)
    with pytest.raises(KeyboardInterrupt):
        bc.retry_failures(out, workers=1, heldout=set(), progress=False)
    assert (out / "manifest.csv").read_text(encoding="utf8") == before
