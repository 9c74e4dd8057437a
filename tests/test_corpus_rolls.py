"""The score -> roll path of the corpus builder: same rolls as the MIDI route, resumable, robust."""

from __future__ import annotations

import os

import numpy as np
import pytest

from musicvae_course.core.pianoroll import midi_to_pianoroll
from musicvae_course.corpus import export, rolls
from musicvae_course.corpus import works as corpus_works

pytest.importorskip("music21")

#: Small works of three kinds: a folk tune with repeats (ABC), a four-part chorale with ties
#: (MusicXML), a one-line tune from a multi-tune file (ABC, by number).
SAMPLE_WORKS = [
    corpus_works.Work("airdsAirs/book2.abc", 276),
    corpus_works.Work("bach/bwv165.6.mxl"),
    corpus_works.Work("essenFolksong/zuccal0.abc", 181),
]


@pytest.mark.parametrize("work", SAMPLE_WORKS, ids=lambda w: w.key)
def test_rolls_from_parsed_scores_equal_the_midi_route(work, tmp_path):
    export.export_work(work, tmp_path / "w.mid")
    via_midi = midi_to_pianoroll(tmp_path / "w.mid")
    direct = rolls.notes_roll(*rolls.work_notes(work))
    assert direct.shape == via_midi.shape
    assert np.array_equal(direct, via_midi)


def test_repeats_are_expanded_as_the_midi_writer_expands_them():
    work = SAMPLE_WORKS[0]
    score = rolls._prepared_score(work)
    written_quarters = score.parts[0].highestTime if score.parts else score.highestTime
    _, _, offset = rolls.work_notes(work)
    assert rolls._has_repeats(score)
    assert offset.max() > written_quarters * 4  # played longer than written: repeats taken


def _fake_notes_job(work, out_stem, timeout_s, _unused=None):
    """Stand-in worker: caches a one-note 'work', or fails for a work named 'bad'."""
    from pathlib import Path

    if "bad" in work.corpus_path:
        Path(out_stem + ".fail").write_text("ValueError: unreadable\n")
        return {"ok": False, "seconds": 0.0, "reason": "ValueError: unreadable"}
    pitch = np.array([60 + (work.number or 0)])
    rolls._save_notes(Path(out_stem + ".npz"), pitch, np.array([0]), np.array([4]))
    return {"ok": True, "seconds": 0.0}


def _works(n):
    return [corpus_works.Work("essenFolksong/x.abc", k) for k in range(n)] + [corpus_works.Work("bach/bad.mxl")]


def test_a_stopped_build_continues_without_parsing_cached_works_again(tmp_path):
    works = _works(6)
    first = rolls.build_rolls(works[:3], tmp_path, workers=0, progress=False, job=_fake_notes_job)
    assert (first["done"], first["cached_before"]) == (3, 0)
    cached = tmp_path / "notes" / (rolls.cache_name(works[0]) + ".npz")
    stamp = os.stat(cached).st_mtime_ns
    second = rolls.build_rolls(works, tmp_path, workers=0, progress=False, job=_fake_notes_job)
    assert second == {**second, "works": 7, "cached_before": 3, "done": 3, "failed": 1}
    assert os.stat(cached).st_mtime_ns == stamp
    third = rolls.build_rolls(works, tmp_path, workers=0, progress=False, job=_fake_notes_job)
    assert (third["cached_before"], third["done"], third["failed"]) == (7, 0, 0)  # failures remembered
    retried = rolls.build_rolls(works, tmp_path, workers=0, retry_failed=True, progress=False, job=_fake_notes_job)
    assert (retried["cached_before"], retried["failed"]) == (6, 1)


def test_manifest_lists_cached_works_with_terms_and_split_and_failures_apart(tmp_path):
    works = _works(3)
    rolls.build_rolls(works, tmp_path, workers=0, progress=False, job=_fake_notes_job)
    rows = rolls.roll_manifest(works, tmp_path, heldout={works[1].key})
    assert [r["key"] for r in rows] == [w.key for w in works[:3]]
    assert [r["split"] for r in rows] == ["train", "heldout", "train"]
    assert all(r["licence"] and r["notes"] == 1 for r in rows)
    failures = (tmp_path / "failures.csv").read_text().splitlines()
    assert failures[1].startswith("bach/bad.mxl,ValueError")


def test_one_unreadable_work_fails_alone_with_its_reason(tmp_path):
    works = [corpus_works.Work("bach/no_such_file.mxl"), SAMPLE_WORKS[2]]
    summary = rolls.build_rolls(works, tmp_path, workers=0, progress=False)
    assert (summary["done"], summary["failed"]) == (1, 1)
    reason = (tmp_path / "notes" / (rolls.cache_name(works[0]) + ".fail")).read_text()
    assert "no_such_file" in reason or "Error" in reason
    segments = rolls.work_segments(tmp_path / "notes" / (rolls.cache_name(works[1]) + ".npz"))
    assert segments.shape[1:] == (88, 32) and len(segments) > 0


def test_fair_order_puts_heldout_works_first_then_alternates_collections():
    works = [corpus_works.Work(f"{c}/w{k}.abc") for c in ("aa", "bb") for k in range(4)]
    heldout = {"bb/w3.abc"}
    order = rolls.fair_order(works, heldout)
    assert order[0].key == "bb/w3.abc"
    assert sorted(w.key for w in order) == sorted(w.key for w in works)
    collections = [w.collection for w in order[1:]]
    assert collections[:6] == ["aa", "bb"] * 3


def test_build_statistics_extrapolate_each_collection_from_its_timed_works(tmp_path):
    works = [corpus_works.Work("aa/t.abc", k) for k in range(4)] + [corpus_works.Work("bb/u.abc", 0)]
    for work, cpu in ((works[0], 1.0), (works[1], 3.0), (works[4], 0.5)):
        stem = tmp_path / "notes" / rolls.cache_name(work)
        stem.parent.mkdir(parents=True, exist_ok=True)
        rolls._save_notes(rolls._with(stem, ".npz"), np.array([60]), np.array([0]), np.array([1]), cpu)
    stats = rolls.build_statistics(works, tmp_path)
    assert stats["aa"] == {**stats["aa"], "works": 4, "cached": 2, "timed": 2, "cpu_seconds": 4.0, "mean_cpu_s": 2.0}
    assert stats["all"]["estimated_cpu_seconds"] == 4.0 + 2 * 2.0 + 0.5
