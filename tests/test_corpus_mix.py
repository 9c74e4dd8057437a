"""The training mix: style groups, transposition within the 88 keys, balance, the mix report."""

from __future__ import annotations

import numpy as np
import pytest

from musicvae_course.core.data import PianoRollDataset
from musicvae_course.corpus import mix


def _segments(pitches, n):
    segs = np.zeros((n, 88, 32), bool)
    for i in range(n):
        segs[i, pitches[i % len(pitches)] - 21, :8] = True
    return segs


def test_transposition_moves_notes_and_drops_segments_that_would_leave_the_keyboard():
    segs = _segments([21, 60, 108], 3)  # lowest key, middle C, highest key
    up = mix.transpose_segments(segs, 2)
    assert len(up) == 2  # C8 + 2 would leave the 88 keys
    assert up[0, 23 - 21].any() and up[1, 62 - 21].any() and up.sum() == segs[:2].sum()
    down = mix.transpose_segments(segs, -1)
    assert len(down) == 2 and down[0, 59 - 21].any() and down[1, 107 - 21].any()


def test_style_groups_of_sources():
    assert mix.style_group("music21/essenFolksong/x.abc#3") == "folk-song"
    assert mix.style_group("music21/ryansMammoth/reel.abc#12") == "folk-dance"
    assert mix.style_group("music21/palestrina/Agnus.krn") == "early"
    assert mix.style_group("music21/bach/bwv1.mxl") == "baroque-romantic"
    assert mix.style_group("mma/latin/BossaNova") == "latin"


@pytest.mark.parametrize("source", ["/work/corpus/mma/latin/BossaNova.mid", "corpus/mma/x.mid", "bach"])
def test_a_source_that_was_not_named_is_an_error_not_a_default_group(source):
    # a path that slipped through unnamed once landed every MMA render in baroque-romantic
    with pytest.raises(ValueError, match="not named"):
        mix.style_group(source)


def test_mma_dataset_names_sources_by_style_whether_the_folder_is_given_relative_or_absolute(tmp_path, monkeypatch):
    import shutil

    from musicvae_course.corpus import mma

    folder = tmp_path / "renders"
    (folder / "latin").mkdir(parents=True)
    shutil.copy("data_samples/corelli_trio_sonata_op3_no1_grave.mid", folder / "latin" / "BossaNova.mid")
    row = dict.fromkeys(mma.MANIFEST_COLUMNS, "")
    row.update(file="latin/BossaNova.mid", style="latin", split="train")
    (folder / "manifest.csv").write_text(",".join(row) + "\n" + ",".join(row.values()) + "\n")
    monkeypatch.chdir(tmp_path)
    for given in ("renders", folder):
        ds = mix.mma_dataset(given, "train")
        assert ds.files == ["mma/latin/BossaNova"] and len(ds) > 0
        assert set(mix.group_shares(ds)) == {"latin"}


def _pool():
    sizes = {"music21/essenFolksong/a": 500, "music21/palestrina/b": 300, "mma/latin/c": 20}
    blocks, ids, files = [], [], []
    for k, (name, n) in enumerate(sizes.items()):
        blocks.append(_segments([40 + k, 50 + k], n))
        ids.append(np.full(n, k))
        files.append(name)
    return PianoRollDataset(np.concatenate(blocks), np.concatenate(ids), files)


def test_balance_gives_every_group_the_same_share_using_transposed_copies_for_small_ones():
    balanced = mix.balance(_pool(), per_group=100, seed=1)
    assert len(balanced) == 300
    shares = mix.group_shares(balanced)
    assert shares == {"folk-song": 1 / 3, "early": 1 / 3, "latin": 1 / 3}
    report = {r["collection"]: r for r in mix.mix_report(balanced)}
    assert report["mma/latin"]["transposed"] == 80  # all 20 originals once, the rest transposed copies
    assert report["music21/essenFolksong"]["transposed"] == 0
    # transposed copies are shifts of the originals' pitches (latin's MIDI 42 and 52)
    latin = balanced.subset(np.isin(balanced.file_ids, [i for i, f in enumerate(balanced.files) if "latin" in f]))
    pitches = set((np.flatnonzero(latin.segments.any(axis=(0, 2))) + 21).tolist())
    shifted = {p + s for p in (42, 52) for s in (0, *mix.DEFAULT_TRANSPOSITIONS)}
    assert pitches - {42, 52} and pitches <= shifted


def test_balance_is_deterministic_for_a_seed():
    a, b = mix.balance(_pool(), 50, seed=3), mix.balance(_pool(), 50, seed=3)
    assert np.array_equal(a.packed, b.packed) and a.files == b.files


def test_balance_sizes_weigh_one_group_more_and_leave_the_groups_before_it_as_they_were():
    plain = mix.balance(_pool(), 50, seed=3)
    heavier = mix.balance(_pool(), 50, seed=3, sizes={"latin": 150})
    assert mix.group_shares(heavier) == {"folk-song": 0.2, "early": 0.2, "latin": 0.6}
    # latin is drawn last: folk-song and early are the same segments as without the override
    assert np.array_equal(heavier.packed[:100], plain.packed[:100])
    with pytest.raises(ValueError, match="unknown style groups.*'jazz'"):
        mix.balance(_pool(), 50, sizes={"jazz": 10})


def test_mix_report_counts_sources_and_shares():
    report = mix.mix_report(_pool())
    assert [r["collection"] for r in report] == ["music21/essenFolksong", "music21/palestrina", "mma/latin"]
    assert abs(sum(r["share"] for r in report) - 1) < 1e-9
    assert report[0]["segments"] == 500 and report[0]["sources"] == 1


def test_music21_dataset_skips_a_work_it_cannot_roll_names_it_and_keeps_the_others(tmp_path):
    from musicvae_course.core.midi_limits import MAX_STEPS
    from musicvae_course.corpus import rolls

    good = (np.array([60, 64]), np.array([0, 16]), np.array([16, 40]))
    too_long = (np.array([60]), np.array([0]), np.array([MAX_STEPS + 10]))  # a few bytes asking for a huge roll
    rows = []
    for key, notes in (("good", good), ("long", too_long), ("damaged", None)):
        path = tmp_path / f"{key}.npz"
        if notes is None:
            path.write_bytes(b"not an npz")
        else:
            rolls._save_notes(path, *notes)
        rows.append(f"essenFolksong/{key}.abc,train,{key}.npz,essenFolksong")  # keys name their collection
    (tmp_path / "manifest.csv").write_text("key,split,cache_file,collection\n" + "\n".join(rows) + "\n")
    with pytest.warns(UserWarning) as caught:
        ds = mix.music21_dataset(tmp_path, "train")
    # 40 steps: windows at 0 and 16
    assert ds.files == ["music21/essenFolksong/essenFolksong/good.abc"] and len(ds) == 2
    messages = " ".join(str(w.message) for w in caught)
    assert "essenFolksong/long.abc (long.npz)" in messages and "MAX_STEPS" in messages
    assert "essenFolksong/damaged.abc (damaged.npz)" in messages
