"""Tests for musicvae_course.corpus (the corpus builder) and the shipped data_samples/."""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

import pytest

from musicvae_course.core.pianoroll import SEGMENT_STEPS, midi_to_pianoroll
from musicvae_course.corpus import build as bc
from musicvae_course.corpus import export, samples, terms
from musicvae_course.corpus import works as corpus_works

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "data_samples"


def _sample_rows():
    with open(SAMPLES / "manifest.csv", newline="", encoding="utf8") as f:
        return list(csv.DictReader(f))


def test_every_sample_is_listed_with_an_allowed_licence_and_loads():
    rows = _sample_rows()
    listed = {row["file"] for row in rows}
    on_disk = {p.name for p in SAMPLES.glob("*.mid")}
    assert on_disk == listed
    assert 20 <= len(rows) <= 60
    assert sum(p.stat().st_size for p in SAMPLES.glob("*.mid")) < 3_000_000
    for row in rows:
        assert row["licence"] in terms.REDISTRIBUTABLE_LICENCES, row["file"]
        # the licence recorded must be the one the script's table gives that path
        assert terms.encoding_terms(row["corpus_path"]).licence == row["licence"]
        assert row["style"] in samples.SAMPLE_STYLES
        assert row["composer"] and row["title"]
        roll = midi_to_pianoroll(SAMPLES / row["file"])
        assert roll.shape[0] == 88 and roll.shape[1] >= SEGMENT_STEPS, row["file"]
        assert roll.any(), row["file"]
        assert int(row["steps"]) == roll.shape[1]


def test_samples_cover_the_styles_the_notebooks_filter_on():
    styles = {row["style"] for row in _sample_rows()}
    assert {"chorale", "folk", "renaissance", "keyboard", "strings"} <= styles


def test_samples_readme_lists_every_file():
    readme = (SAMPLES / "README.md").read_text(encoding="utf8")
    for row in _sample_rows():
        assert f"`{row['file']}`" in readme


@pytest.mark.parametrize(
    "path",
    [
        "essenFolksong/altdeu10.abc",  # non-commercial permission only
        "palestrina/Agnus.krn",  # (c) John Miller, licence agreement
        "bach/bwv66.6.mxl",  # by permission, no licence
        "bach/bwv277.krn",  # (c) CCARH (per-file exception)
        "monteverdi/madrigal.5.4.mxl",  # (c) UT Orpheus (per-file exception)
        "schumann_clara/opus17/movement3.xml",  # collection default, not the CC polonaises
        "no_such_collection/x.xml",  # unknown: default deny
    ],
)
def test_redistributable_rule_rejects_restricted_encodings(path):
    assert not terms.encoding_terms(path).redistributable
    with pytest.raises(ValueError, match=path.split("/")[0]):
        terms.check_redistributable(path)


@pytest.mark.parametrize(
    "path",
    [
        "josquin/milleRegrets.abc",
        "corelli/opus3no1/1grave.xml",
        "schumann_clara/polonaise_op1n2.mxl",
        "lusitano/allor_che_ignuda.mxl",
    ],
)
def test_redistributable_rule_accepts_open_encodings(path):
    assert terms.encoding_terms(path).redistributable


def test_is_redistributable_refuses_restrictive_and_unknown_ids():
    for licence in (
        "non-commercial-permission",
        "unstated-permission",
        "proprietary-licence-agreement",
        "all-rights-reserved",
        "unknown",
        "",
    ):
        assert not terms.is_redistributable(licence)
    assert terms.is_redistributable("GPL-2.0-or-later")


def test_build_samples_refuses_a_restricted_work_before_writing(tmp_path):
    spec = samples.SampleSpec("essenFolksong/altdeu10.abc", "essen.mid", "folk", "t", "c", 1)
    with pytest.raises(ValueError, match="non-commercial"):
        samples.build_samples(tmp_path, specs=(spec,))
    assert not any(tmp_path.iterdir())


def test_output_names_keep_the_full_path_and_tune_number():
    a = corpus_works.output_name(corpus_works.Work("beethoven/opus18no1/movement1.mxl"))
    b = corpus_works.output_name(corpus_works.Work("beethoven/opus18no2/movement1.mxl"))
    c = corpus_works.output_name(corpus_works.Work("trecento/PMFC_04-Cara mi donna.xml"))
    assert a != b and a.startswith("beethoven/") and a.endswith(".mid")
    assert " " not in c
    assert corpus_works.output_name(corpus_works.Work("oneills1850/0001-0050.abc", 3)) != corpus_works.output_name(
        corpus_works.Work("oneills1850/0001-0050.abc", 30)
    )


def _fake_works(sizes):
    return [corpus_works.Work(f"{name}/piece{i}.abc", None) for name, n in sizes.items() for i in range(n)]


def test_heldout_split_is_stratified_and_order_independent():
    works = _fake_works({"big": 400, "mid": 12, "small": 5})
    keys = corpus_works.heldout_keys(works)
    assert keys == corpus_works.heldout_keys(list(reversed(works)))
    by_collection = {c: sum(k.startswith(c + "/") for k in keys) for c in ("big", "mid", "small")}
    assert by_collection == {"big": 20, "mid": 1, "small": 0}


@pytest.fixture(scope="module")
def all_works():
    return corpus_works.list_works()  # reads music21's metadata bundle once (~5 s)


def test_committed_heldout_list_matches_the_script(all_works):
    committed = corpus_works.read_heldout()
    works = all_works
    assert sorted(committed) == corpus_works.heldout_keys(works)
    assert committed <= {w.key for w in works}
    collections = {k.split("/")[0] for k in committed}
    assert {"bach", "palestrina", "essenFolksong", "beethoven", "trecento"} <= collections


def test_list_works_skips_analyses_and_merges_josquin_voices(all_works):
    works = [w for w in all_works if w.collection in ("monteverdi", "josquin")]
    assert works and not any(w.corpus_path.endswith(".rntxt") for w in works)
    josquin = [w for w in works if w.collection == "josquin"]
    assert len(josquin) == 8 and all(w.number is None for w in josquin)


def test_build_writes_good_works_and_reports_a_broken_one(tmp_path):
    works = [
        corpus_works.Work("essenFolksong/altdeu10.abc", 5),  # ABC reuses one TimeSignature object
        corpus_works.Work("nottingham-dataset/reelsa-c.abc", 80),  # chord symbols in the ABC
        corpus_works.Work("josquin/oVenusBant.abc"),  # voices merged into one score
        corpus_works.Work("bach/no_such_chorale.mxl"),  # broken: no such file
    ]
    heldout = {works[0].key}
    summary = bc.build_corpus(works, tmp_path, workers=1, timeout_s=300, heldout=heldout, progress=False)
    assert (summary.tried, summary.written, summary.failed) == (4, 3, 1)
    with open(tmp_path / "failures.csv", newline="", encoding="utf8") as f:
        failures = list(csv.DictReader(f))
    assert [row["corpus_path"] for row in failures] == ["bach/no_such_chorale.mxl"]
    assert failures[0]["reason"]
    with open(tmp_path / "manifest.csv", newline="", encoding="utf8") as f:
        rows = {row["corpus_path"]: row for row in csv.DictReader(f)}
    assert set(rows) == {w.corpus_path for w in works[:3]}
    assert rows["essenFolksong/altdeu10.abc"]["split"] == "heldout"
    assert rows["josquin/oVenusBant.abc"]["split"] == "train"
    assert rows["josquin/oVenusBant.abc"]["licence"] == "GPL-2.0-or-later"
    assert rows["essenFolksong/altdeu10.abc"]["redistributable"] == "False"
    assert int(rows["nottingham-dataset/reelsa-c.abc"]["chord_symbols_removed"]) > 0
    rolls = {path: midi_to_pianoroll(tmp_path / row["file"]) for path, row in rows.items()}
    assert all(roll.shape[1] >= SEGMENT_STEPS and roll.any() for roll in rolls.values())
    # a melody with chord symbols stays a melody: at most one note sounds at a time
    assert rolls["nottingham-dataset/reelsa-c.abc"].sum(axis=0).max() == 1
    # the Josquin file holds its three voices
    assert rolls["josquin/oVenusBant.abc"].sum(axis=0).max() == 3
    assert not (tmp_path / "midi" / corpus_works.output_name(works[3])).exists()

    # retry: a work listed as failed (e.g. a timeout on a busy machine) is built and
    # moved to the manifest; the broken one stays in failures.csv
    with open(tmp_path / "failures.csv", "a", newline="", encoding="utf8") as f:
        csv.writer(f).writerow(["nottingham-dataset/reelsa-c.abc", 81, "timeout after 1 s"])
    retry = bc.retry_failures(tmp_path, workers=1, timeout_s=300, heldout=heldout, progress=False)
    assert (retry.tried, retry.written, retry.failed) == (2, 1, 1)
    with open(tmp_path / "manifest.csv", newline="", encoding="utf8") as f:
        numbers = sorted(row["number"] for row in csv.DictReader(f) if row["collection"] == "nottingham-dataset")
    assert numbers == ["80", "81"]
    with open(tmp_path / "failures.csv", newline="", encoding="utf8") as f:
        assert [row["corpus_path"] for row in csv.DictReader(f)] == ["bach/no_such_chorale.mxl"]


def _exit_on_crash_work(work, out_path, timeout_s, max_measures):
    """Stand-in worker job: kills its process for works under 'crash/'."""
    if work.corpus_path.startswith("crash/"):
        os._exit(3)
    return {"ok": True, "seconds": 0.0}


def _parent_death_signal(work, out_path, timeout_s, max_measures):
    """Stand-in worker job: reports the signal the worker gets when its parent dies."""
    import ctypes

    value = ctypes.c_int(0)
    ctypes.CDLL(None).prctl(2, ctypes.byref(value))  # PR_GET_PDEATHSIG
    return {"ok": True, "signal": value.value}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux-only")
def test_pool_workers_die_with_their_parent():
    jobs = [(corpus_works.Work("fine/a.abc"), Path("unused.mid"), None)]
    ((_, _, result),) = bc._run_jobs(jobs, 1, 10, False, job=_parent_death_signal)
    assert result["signal"] == bc.signal.SIGTERM


def test_a_dying_worker_fails_only_its_own_work(tmp_path):
    works = [corpus_works.Work(f"fine/w{i}.abc") for i in range(5)]
    works.insert(2, corpus_works.Work("crash/x.abc"))
    jobs = [(w, tmp_path / f"{i}.mid", None) for i, w in enumerate(works)]
    results = {w.corpus_path: r for w, _, r in bc._run_jobs(jobs, 2, 10, False, job=_exit_on_crash_work)}
    assert set(results) == {w.corpus_path for w in works}
    assert not results["crash/x.abc"]["ok"]
    assert "worker process died" in results["crash/x.abc"]["reason"]
    assert all(r["ok"] for path, r in results.items() if path != "crash/x.abc")


def test_a_work_over_the_time_limit_is_skipped_with_a_reason(monkeypatch, tmp_path):
    def slow_export(work, out_path, max_measures=None):
        out_path.write_bytes(b"partial")
        time.sleep(30)

    monkeypatch.setattr(export, "export_work", slow_export)
    out = tmp_path / "slow.mid"
    result = export._export_job(corpus_works.Work("bach/bwv66.6.mxl"), str(out), 1, None)
    assert not result["ok"] and result["reason"] == "timeout after 1 s"
    assert result["seconds"] < 10
    assert not out.exists()  # no half-written file left behind


def test_limit_and_folk_fraction_are_deterministic_subsets():
    works = _fake_works({"essenFolksong": 300, "bach": 50})
    subset = corpus_works.limit_works(works, folk_fraction=0.25)
    assert set(subset) == set(corpus_works.limit_works(list(reversed(works)), folk_fraction=0.25))
    folk = [w for w in subset if w.collection == "essenFolksong"]
    assert all(w in subset for w in works if w.collection == "bach")
    assert 40 <= len(folk) <= 110
    assert len(corpus_works.limit_works(works, limit=7)) == 7
    with pytest.raises(ValueError, match="folk_fraction"):
        corpus_works.limit_works(works, folk_fraction=1.5)
    order = corpus_works.build_order(subset)
    first_folk = next(i for i, w in enumerate(order) if w.collection == "essenFolksong")
    assert all(w.collection == "bach" for w in order[:first_folk])
    assert all(w.collection == "essenFolksong" for w in order[first_folk:])


def test_partial_builds_and_trials_are_not_made_of_heldout_works():
    works = _fake_works({"palestrina": 400})
    heldout = set(corpus_works.heldout_keys(works))  # the 20 lowest (unsalted) hashes
    assert len(heldout) == 20
    assert len(heldout & {w.key for w in corpus_works.build_order(works)[:20]}) <= 5
    assert len(heldout & {w.key for w in corpus_works.limit_works(works, limit=20)}) <= 5
