"""musicvae_course.core.data / midi_fast / corpus_cache: loading a corpus into training segments."""

from __future__ import annotations

import csv
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from midi_corpus import (
    crashing_reader,
    hidden_restrikes,
    make_bad_files,
    make_messy_midi,
    make_music21_corpus,
    smf,
    vlq,
)

from musicvae_course.core import read_pool
from musicvae_course.core.data import (
    PianoRollDataset,
    build_dataset,
    list_midi_files,
    load_dataset,
    select_files,
    split_by_file,
)
from musicvae_course.core.midi_fast import midi_to_pianoroll_fast, read_pianoroll
from musicvae_course.core.pianoroll import midi_to_pianoroll, pretty_midi_from_bytes, segments

DATA_SAMPLES = Path(__file__).resolve().parents[1] / "data_samples"
CORPUS_VERSION = "v1"  # bump when midi_corpus.py changes what it writes


def _generated(request, name, make):
    """A folder made once per session, kept in pytest's cache when there is one
    (so local reruns skip the ~40 s music21 export; a clean clone makes it anew)."""
    cache = getattr(request.config, "cache", None)
    folder = (
        Path(cache.mkdir(f"musicvae-{name}-{CORPUS_VERSION}"))
        if cache is not None
        else request.getfixturevalue("tmp_path_factory").mktemp(name)
    )
    done = folder / "complete.txt"
    if not done.is_file():
        shutil.rmtree(folder)
        folder.mkdir()
        make(folder)
        done.write_text("ok")
    return sorted(folder.rglob("*.mid"))


@pytest.fixture(scope="session")
def real_files(request):
    """>= 200 real pieces (music21 folk tunes and chorales) plus data_samples/."""
    files = _generated(request, "music21", lambda folder: make_music21_corpus(folder))
    return files + sorted(DATA_SAMPLES.rglob("*.mid")) + sorted(DATA_SAMPLES.rglob("*.midi"))


@pytest.fixture(scope="session")
def messy_files(request):
    return _generated(
        request, "messy", lambda folder: [make_messy_midi(folder / f"messy_{i:03d}.mid", i) for i in range(200)]
    )


@pytest.fixture
def corpus(real_files, tmp_path):
    """Six real files in a fresh folder, with LMD's nested layout."""
    folder = tmp_path / "lmd_full"
    for i, source in enumerate(real_files[:3] + real_files[-3:]):
        target = folder / f"{i:x}" / f"{i:032x}.mid"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    return folder


# --- fast path against the reference --------------------------------------------------


def test_fast_path_equals_reference_on_real_files(real_files):
    assert len(real_files) >= 200
    for path in real_files:
        reference, fast = midi_to_pianoroll(path), midi_to_pianoroll_fast(path)
        assert fast.shape == reference.shape, path
        assert np.array_equal(fast, reference), path


def test_fast_path_equals_reference_on_messy_files(messy_files):
    """Overlaps, re-struck keys without their own note-off, stray/missing note-offs, velocity-0 note-ons,
    tempo outside track 0, odd resolutions: the fast path pairs notes as the reference does, exactly."""
    restruck = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pretty_midi: tempo on track > 0
        for path in messy_files:
            reference = midi_to_pianoroll(path)
            assert np.array_equal(midi_to_pianoroll_fast(path), reference), path
            restruck += hidden_restrikes(path) > 0
    assert restruck > 0  # the corpus does hold the case first-in-first-out pairing gets wrong


def test_fast_path_needs_no_reference_pass(real_files, monkeypatch):
    """Overlapping notes of one pitch (real multi-voice files have them) are paired by the fast parser itself."""
    import musicvae_course.core.midi_fast as fast_module

    monkeypatch.setattr(fast_module, "midi_to_pianoroll", None)  # any reference call would now fail
    monkeypatch.setattr(fast_module, "_reference_midi", None)
    for path in real_files[-40:]:
        assert read_pianoroll(path, max_seconds=None).shape[0] == 88


# --- bad input ------------------------------------------------------------------------

BAD_REASONS = {
    "empty": "empty file",
    "text": "not a MIDI file",
    "truncated": "truncated",
    "corrupt": "corrupt",
    "no_notes": "no notes",
    "drums_only": "drums only",
    "too_long": "too long",
}


def test_bad_files_are_skipped_and_reported(corpus, tmp_path):
    good = build_dataset(corpus, progress=False, workers=0)
    bad = make_bad_files(corpus / "bad", next(corpus.rglob("*.mid")))
    ds = build_dataset(corpus, cache_dir=tmp_path / "cache", workers=2, progress=False)
    reasons = dict(ds.report.skipped)
    assert set(reasons) == {str(p.resolve()) for p in bad.values()}
    for kind, path in bad.items():
        assert BAD_REASONS[kind] in reasons[str(path.resolve())], (kind, reasons[str(path.resolve())])
    with open(ds.report.skipped_csv, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["path", "reason"] and sorted(map(tuple, rows[1:])) == sorted(ds.report.skipped)
    assert ds.files == good.files and np.array_equal(ds.segments, good.segments)
    assert ds.report.read == len(good.files) + len(bad) and ds.report.segments == len(good)
    again = build_dataset(corpus, cache_dir=tmp_path / "cache", progress=False)
    assert again.report.read == 0 and again.report.skipped == ds.report.skipped


def test_a_crashing_worker_costs_one_file(corpus):
    crash = corpus / "crash.mid"
    shutil.copy(next(corpus.rglob("*.mid")), crash)
    ds = build_dataset(corpus, workers=2, reader=crashing_reader, progress=False)
    assert [(Path(p).name, "crashed" in r) for p, r in ds.report.skipped] == [("crash.mid", True)]
    expected = build_dataset(corpus, workers=0, path_filter=lambda p: Path(p).name != "crash.mid", progress=False)
    assert ds.files == expected.files and np.array_equal(ds.segments, expected.segments)


# --- cache ----------------------------------------------------------------------------


@pytest.fixture
def read_counter(monkeypatch):
    """Count files actually parsed (builds run in-process with workers=0)."""
    calls = []
    original = read_pool.read_file
    monkeypatch.setattr(read_pool, "read_file", lambda path, *a: calls.append(path) or original(path, *a))
    return calls


def test_cache_hit_reads_nothing(corpus, tmp_path, read_counter):
    first = build_dataset(corpus, cache_dir=tmp_path / "c", workers=0, progress=False)
    assert len(read_counter) == 6 and first.report.read == 6
    read_counter.clear()
    second = build_dataset(corpus, cache_dir=tmp_path / "c", workers=0, progress=False)
    assert read_counter == [] and second.report.from_cache == 6
    assert isinstance(second.packed, np.memmap)
    assert second.files == first.files and np.array_equal(second.segments, first.segments)
    assert np.array_equal(load_dataset(tmp_path / "c").segments, first.segments)


def test_cache_rereads_changed_and_new_files_and_drops_removed(corpus, real_files, tmp_path, read_counter):
    cache = tmp_path / "c"
    build_dataset(corpus, cache_dir=cache, workers=0, progress=False)
    paths = sorted(corpus.rglob("*.mid"))
    changed, removed = paths[0], paths[1]
    shutil.copy(real_files[100], changed)  # new content
    os.utime(paths[2], ns=(1, 1))  # touched only: same bytes, no reread
    removed.unlink()
    added = corpus / "new" / "added.mid"
    added.parent.mkdir()
    shutil.copy(real_files[101], added)
    read_counter.clear()
    ds = build_dataset(corpus, cache_dir=cache, workers=0, progress=False)
    assert sorted(read_counter) == sorted([str(changed.resolve()), str(added.resolve())])
    assert str(removed.resolve()) not in ds.files and str(added.resolve()) in ds.files
    fresh = build_dataset(corpus, workers=0, progress=False)  # no cache: the truth
    assert ds.files == fresh.files and np.array_equal(ds.segments, fresh.segments)
    assert np.array_equal(ds.file_ids, fresh.file_ids)
    assert len(list(cache.glob("segments-*.npy"))) == 1  # the old rows file is gone


def test_changed_settings_rebuild_the_cache(corpus, tmp_path, read_counter):
    build_dataset(corpus, cache_dir=tmp_path / "c", workers=0, progress=False)
    read_counter.clear()
    build_dataset(corpus, cache_dir=tmp_path / "c", workers=0, max_seconds=30.0, progress=False)
    assert len(read_counter) == 6


def test_a_filtered_build_keeps_the_rest_of_the_cache(corpus, tmp_path, read_counter):
    full = build_dataset(corpus, cache_dir=tmp_path / "c", workers=0, progress=False)
    part = build_dataset(corpus, cache_dir=tmp_path / "c", workers=0, max_files=2, progress=False)
    again = build_dataset(corpus, cache_dir=tmp_path / "c", workers=0, progress=False)
    assert len(read_counter) == 6 and part.files == full.files[:2]
    assert np.array_equal(again.segments, full.segments)


# --- files, subsets and splits ----------------------------------------------------------


def test_list_midi_files_takes_folders_globs_and_lists(corpus):
    nested = sorted(corpus.rglob("*.mid"))
    upper, karaoke = corpus / "UPPER.MIDI", corpus / "song.kar"  # a .kar file is MIDI with lyrics: it was left out
    shutil.copy(nested[0], upper)
    shutil.copy(nested[0], karaoke)
    (corpus / "notes.txt").write_text("not midi")
    assert list_midi_files(corpus) == sorted(p.resolve() for p in nested + [upper, karaoke])
    assert list_midi_files(str(corpus / "*" / "*.mid")) == [p.resolve() for p in nested]
    assert list_midi_files([nested[0], nested[1]]) == [nested[0].resolve(), nested[1].resolve()]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_midi_files(corpus / "nowhere")
    (corpus / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .mid"):
        build_dataset(corpus / "empty", progress=False)
    with pytest.raises(ValueError, match="path_filter='chopin'"):
        build_dataset(corpus, path_filter="chopin", progress=False)


def test_select_files():
    paths = [f"/c/{name}.mid" for name in ["bach_a", "Bach_b", "folk_c", "folk_d", "folk_e"]]
    assert select_files(paths, path_filter="BACH") == sorted(paths[:2])
    assert select_files(paths, path_filter=lambda p: p.endswith("e.mid")) == paths[4:]
    assert select_files(paths, max_files=3) == sorted(paths)[:3]
    some = select_files(paths, fraction=0.4, seed=1)
    assert len(some) == 2 and some == select_files(paths, fraction=0.4, seed=1)
    assert {tuple(select_files(paths, fraction=0.4, seed=s)) for s in range(20)} != {tuple(some)}
    with pytest.raises(ValueError, match="fraction"):
        select_files(paths, fraction=1.5)


def test_split_by_file_is_disjoint_complete_and_seeded():
    rng = np.random.default_rng(0)
    file_ids = np.repeat(np.arange(50), rng.integers(1, 9, 50))
    rolls = rng.random((len(file_ids), 88, 32)) < 0.05
    ds = PianoRollDataset(rolls, file_ids, [f"f{i}.mid" for i in range(50)])
    train, val, test = split_by_file(ds, (0.8, 0.1, 0.1), seed=3)
    sets = [set(part.file_ids.tolist()) for part in (train, val, test)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert [len(s) for s in sets] == [40, 5, 5] and len(train) + len(val) + len(test) == len(ds)
    rows = np.concatenate([part.packed for part in (train, val, test)])
    assert sorted(map(bytes, rows)) == sorted(map(bytes, ds.packed))  # every segment once
    again = split_by_file(ds, (0.8, 0.1, 0.1), seed=3)
    assert all(np.array_equal(a.file_ids, b.file_ids) for a, b in zip(again, (train, val, test)))
    assert set(split_by_file(ds, seed=4)[1].file_ids.tolist()) != sets[1]
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_file(ds, (0.5, 0.1))
    with pytest.raises(ValueError, match="file_ids"):
        split_by_file(PianoRollDataset(rolls))


def test_select_files_on_a_dataset(corpus):
    ds = build_dataset(corpus, workers=0, progress=False)
    first = ds.files[0]
    part = ds.select_files(path_filter=lambda p: p == first)
    assert len(part) == int(np.sum(ds.file_ids == 0)) and set(part.file_ids.tolist()) == {0}
    assert np.array_equal(part.segments, ds.segments[ds.file_ids == 0])


# --- the dataset object -------------------------------------------------------------------


@pytest.fixture
def small():
    rng = np.random.default_rng(1)
    rolls = rng.random((37, 88, 32)) < 0.1
    return PianoRollDataset(rolls, np.arange(37) // 5, [f"{i}.mid" for i in range(8)]), rolls


def test_items_and_segments_round_trip(small):
    ds, rolls = small
    assert len(ds) == 37 and ds.packed.shape == (37, 352) and ds.packed.dtype == np.uint8
    item = ds[5]
    assert item.shape == (1, 88, 32) and item.dtype == torch.float32
    assert torch.equal(item[0], torch.from_numpy(rolls[5]).float())
    assert torch.equal(ds[-1][0], torch.from_numpy(rolls[-1]).float())
    assert np.array_equal(ds.segments, rolls)
    with pytest.raises(IndexError):
        ds[37]
    with pytest.raises(ValueError, match=r"\(N, 88, 32\)"):
        PianoRollDataset(np.zeros((2, 88, 16), bool))


def test_batches_match_items(small):
    ds, rolls = small
    ordered = list(ds.batches(8, shuffle=False))
    assert [b.shape for b in ordered] == [(8, 1, 88, 32)] * 4 + [(5, 1, 88, 32)]
    assert all(b.dtype == torch.float32 for b in ordered)
    assert torch.equal(torch.cat(ordered), torch.stack([ds[i] for i in range(len(ds))]))
    assert len(list(ds.batches(8, drop_last=True))) == 4
    shuffled = torch.cat(list(ds.batches(8, generator=torch.Generator().manual_seed(7))))
    order = torch.randperm(37, generator=torch.Generator().manual_seed(7))
    assert torch.equal(shuffled[:, 0], torch.from_numpy(rolls[order.numpy()]).float())
    assert torch.equal(next(ds.batches(4, shuffle=False, device="cpu")), torch.stack([ds[i] for i in range(4)]))


def test_batches_gather_with_one_index_operation_each(small):
    ds, _ = small

    class CountingRows:  # stands in for the packed array and counts reads
        def __init__(self, rows):
            self.rows, self.shape, self.reads = rows, rows.shape, 0

        def __getitem__(self, index):
            self.reads += 1
            return self.rows[index]

    rows = CountingRows(ds.packed)
    batches = list(PianoRollDataset.from_packed(rows, ds.file_ids, ds.files).batches(10))
    assert rows.reads == len(batches) == 4


def test_subset_to_and_npz_round_trip(small, tmp_path):
    ds, rolls = small
    part = ds.subset(np.array([3, 30, 0]))
    assert np.array_equal(part.segments, rolls[[3, 30, 0]]) and part.file_ids.tolist() == [0, 6, 0]
    assert np.array_equal(ds.subset(np.arange(37) < 4).segments, rolls[:4])
    moved = ds.to("cpu")
    assert torch.is_tensor(moved.packed) and torch.equal(
        torch.cat(list(moved.batches(16, shuffle=False))), torch.cat(list(ds.batches(16, shuffle=False)))
    )
    assert np.array_equal(moved.subset(torch.tensor([2, 1])).segments, rolls[[2, 1]])
    loaded = load_dataset(ds.save_npz(tmp_path / "d.npz"))
    assert np.array_equal(loaded.segments, rolls) and loaded.files == ds.files
    assert np.array_equal(loaded.file_ids, ds.file_ids)


def test_a_dataset_npz_that_inflates_like_a_bomb_is_refused_before_loading(small, tmp_path, monkeypatch):
    # 1.75 MB of deflated zeros declaring 5 M segments took 19 s and 2 GB (3.5 MB: the 4 GB of MAX_DATASET_BYTES);
    # the floor is lowered here so that a small bomb stands for a large one
    from musicvae_course.core import midi_limits

    monkeypatch.setattr(midi_limits, "DATASET_BYTES_AT_ANY_RATIO", 1 << 20)
    bomb = PianoRollDataset.from_packed(np.zeros((20_000, 352), np.uint8), np.zeros(20_000, np.int64), ["a.mid"])
    with pytest.raises(ValueError, match=r"bomb\.npz: .*inflates .* more than 50 times \(MAX_COMPRESSION_RATIO\)"):
        load_dataset(bomb.save_npz(tmp_path / "bomb.npz"))
    ds, rolls = small  # real rows deflate far less: still read
    assert np.array_equal(load_dataset(ds.save_npz(tmp_path / "d.npz")).segments, rolls)


def test_built_segments_follow_the_reference_rule(corpus):
    ds = build_dataset(corpus, workers=0, progress=False)
    expected = [segments(midi_to_pianoroll(path)) for path in ds.files]
    assert np.array_equal(ds.segments, np.concatenate(expected))
    assert np.array_equal(ds.file_ids, np.repeat(np.arange(len(expected)), [len(e) for e in expected]))
    with pytest.raises(FileNotFoundError, match=r"index.json.*holds MIDI files: read them into a cache with build_"):
        load_dataset(corpus)  # a folder of MIDI where its cache is wanted: the error says what to do
    with pytest.raises(FileNotFoundError, match=r"index.json\) and not a .npz file$"):
        load_dataset(ds.save_npz(corpus / "d.npz").parent / "elsewhere")  # not there at all: no such hint


# --- the reference's note pairing, case by case -----------------------------------------------------

ON, OFF = b"\x90", b"\x80"


def _events(*events) -> bytes:
    """(delta ticks, status, pitch, velocity) -> a track body at 4 ticks per quarter (1 tick = 1 step)."""
    return b"".join(vlq(delta) + status + bytes([pitch, velocity]) for delta, status, pitch, velocity in events) + (
        b"\x00\xff\x2f\x00"
    )


PAIRING_CASES = {
    # a re-struck key with one note-off: both notes end there (first-in-first-out would drop the second)
    "restruck_one_off": _events((0, ON, 60, 90), (2, ON, 60, 90), (3, OFF, 60, 0)),
    # struck and released on one tick, nothing else open: dropped
    "on_off_same_tick": _events((4, ON, 60, 90), (0, OFF, 60, 0), (4, ON, 62, 90), (2, OFF, 62, 0)),
    # a note-off on the tick a second note starts: the earlier note ends, the new one stays open
    "off_closes_only_earlier": _events((0, ON, 60, 90), (4, ON, 60, 90), (0, OFF, 60, 0), (4, OFF, 60, 0)),
    # velocity-0 note-ons as note-offs, running status throughout
    "velocity_zero_off": b"\x00\x90\x3c\x50\x04\x3c\x00\x00\x3e\x50\x04\x3e\x00\x00\xff\x2f\x00",
    # a stray note-off and a note never closed
    "stray_and_unclosed": _events((0, OFF, 64, 0), (0, ON, 60, 90), (4, OFF, 60, 0), (0, ON, 67, 90)),
    # one key on two channels: separate keys
    "two_channels": _events((0, ON, 60, 90), (1, b"\x91", 60, 90), (1, OFF, 60, 0), (4, b"\x81", 60, 0)),
}


@pytest.mark.parametrize("case", sorted(PAIRING_CASES))
def test_fast_pairing_equals_the_reference_case_by_case(case):
    data = smf(PAIRING_CASES[case], division=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reference = midi_to_pianoroll(pretty_midi_from_bytes(data))
    assert np.array_equal(read_pianoroll(data, None), reference)
    assert reference.any()


def test_a_restruck_key_ends_both_notes_at_the_one_note_off():
    roll = read_pianoroll(smf(PAIRING_CASES["restruck_one_off"], division=4), None)
    assert roll[60 - 21].tolist() == [True] * 5  # ticks 0-5 as one sounding run
