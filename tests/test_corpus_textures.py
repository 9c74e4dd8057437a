"""Texture groups of the training mix: fast one-voice lines, melodies laid over accompaniments."""

from __future__ import annotations

import numpy as np
import pytest

from musicvae_course.core.data import PianoRollDataset
from musicvae_course.corpus import mix, textures


def _segments(pitches, n):
    segs = np.zeros((n, 88, 32), bool)
    for i in range(n):
        segs[i, pitches[i % len(pitches)] - 21, :8] = True
    return segs


def _one_voice(pitch_rows, n):
    segs = np.zeros((n, 88, 32), bool)
    for i in range(n):
        for step in range(0, 32, 4):  # a line of quarter notes
            segs[i, pitch_rows[(i + step // 4) % len(pitch_rows)], step : step + 3] = True
    return segs


def test_layer_lays_a_melody_in_the_accompaniment_key_above_it_and_names_both_sources():
    # melody in G major (G A B D E); accompaniment in E flat major: a chord over a scale in the bass
    melody = PianoRollDataset(
        _one_voice([67 - 21, 69 - 21, 71 - 21, 74 - 21, 76 - 21], 6),
        np.zeros(6, int),
        ["music21/essenFolksong/tune.abc"],
    )
    chord = np.zeros((3, 88, 32), bool)
    chord[:, [51 - 21, 55 - 21, 58 - 21], :] = True  # E flat, G, B flat
    for step, pitch in enumerate([39, 41, 43, 44, 46, 48, 50, 39]):  # E flat major scale, quarter notes
        chord[:, pitch - 21, 4 * step : 4 * step + 4] = True
    backing = PianoRollDataset(chord, np.zeros(3, int), ["mma/pop-rock/Rock1"])
    out = textures.layer(melody, backing, 5, seed=3)
    assert len(out) == 5 and set(mix.group_shares(out)) == {mix.LAYERED}
    assert out.files == ["layered/pop-rock/music21/essenFolksong/tune.abc+Rock1"]
    for seg in out.segments:
        assert (seg & chord[0]).sum() == chord[0].sum()  # the accompaniment is kept whole
        top = seg & ~chord[0]
        rows = np.flatnonzero(top.any(axis=1)) + 21
        assert top.sum(axis=0).max() == 1 and 1 <= rows.min() - 58 <= 12  # one line, just above the chord
        # moved from G to E flat major: every melody pitch class is in E flat major
        assert set(rows % 12) <= {3, 5, 7, 8, 10, 0, 2}
    assert (textures.layer(melody, backing, 5, seed=3).segments == out.segments).all()


def test_layer_refuses_when_there_is_no_single_line_melody():
    chords = PianoRollDataset(_segments([40], 4) | _segments([44], 4), np.zeros(4, int), ["music21/bach/a"])
    with pytest.raises(ValueError, match="no usable melody"):
        textures.layer(chords, chords, 3)


def test_fast_lines_keeps_one_voice_runs_of_music21_sources_only_and_groups_them():
    run = np.zeros((1, 88, 32), bool)
    run[0, 40 + np.arange(32) % 5, np.arange(32)] = True  # 32 sixteenths, 32 onsets
    slow = _one_voice([40, 42], 1)  # 8 quarter notes
    chordal_run = run | np.roll(run, 12, axis=1)  # the same run in octaves
    segs = np.concatenate([run, slow, chordal_run, run])
    files = ["music21/ryansMammoth/reel.abc", "music21/essenFolksong/song.abc", "music21/bach/bwv1.mxl", "mma/latin/A"]
    ds = PianoRollDataset(segs, np.arange(4), files)
    assert list(textures.onset_counts(segs)) == [32, 8, 64, 32]
    fast = textures.fast_lines(ds)
    assert fast.files == ["fast-line/ryansMammoth/reel.abc"] and len(fast) == 1
    assert (fast.segments[0] == run[0]).all()
    assert mix.style_group(fast.files[0]) == mix.FAST_LINES
    assert len(textures.fast_lines(ds, min_onsets=33)) == 0


def test_one_step_cells_counts_notes_of_one_sixteenth_only():
    seg = np.zeros((1, 88, 32), bool)
    seg[0, 40, [0, 2, 4]] = True  # three separate sixteenths (the first at the segment's edge)
    seg[0, 41, 8:10] = True  # an eighth: two steps, not counted
    seg[0, 42, 31] = True  # a sixteenth at the end
    assert list(textures.one_step_cells(seg)) == [4]
    assert list(textures.one_step_cells(np.zeros((2, 88, 32), bool))) == [0, 0]


def test_fast_polyphony_keeps_figuration_in_several_voices_of_music21_sources_only():
    figuration = np.zeros((1, 88, 32), bool)
    figuration[0, 40 + np.arange(0, 32, 2) % 7, np.arange(0, 32, 2)] = True  # 16 sixteenths, a rest after each
    figuration[0, 30, :] = True  # over a held bass note: two voices
    line_alone = figuration.copy()
    line_alone[0, 30, :] = False  # the same figuration, one voice: the fast-line group's, not this one's
    slow_chords = np.zeros((1, 88, 32), bool)
    slow_chords[0, [40, 44, 47], :16] = True
    segs = np.concatenate([figuration, line_alone, slow_chords, figuration])
    files = ["music21/beethoven/op18.mxl", "music21/ryansMammoth/reel.abc", "music21/bach/bwv1.mxl", "mma/latin/A"]
    ds = PianoRollDataset(segs, np.arange(4), files)
    assert list(textures.one_step_cells(segs)) == [16, 16, 0, 16]
    fast = textures.fast_polyphony(ds)
    assert fast.files == ["fast-polyphony/beethoven/op18.mxl"] and len(fast) == 1
    assert (fast.segments[0] == figuration[0]).all()
    assert mix.style_group(fast.files[0]) == mix.FAST_POLYPHONY
    assert len(textures.fast_polyphony(ds, min_one_step=17)) == 0


def test_a_mix_that_adds_fast_polyphony_draws_every_other_group_as_before():
    rng = np.random.default_rng(0)
    segs = np.zeros((40, 88, 32), bool)
    segs[np.arange(40), 30 + rng.integers(0, 30, 40), :4] = True
    segs[30:, 50, :] = True
    segs[30:, 60, 0:32:2] = True  # the last ten: figuration over a held note
    files = [f"music21/bach/w{i}.mxl" for i in range(20)] + [f"music21/essenFolksong/s{i}.abc" for i in range(20)]
    pool = PianoRollDataset(segs, np.arange(40), files)
    before = mix.balance(pool, 12, seed=5)
    after = mix.balance(mix.concat([pool, textures.fast_polyphony(pool)]), 12, seed=5, sizes={mix.FAST_POLYPHONY: 7})
    assert len(after) == len(before) + 7
    assert (after.segments[: len(before)] == before.segments).all()
    assert mix.group_shares(after)[mix.FAST_POLYPHONY] == 7 / len(after)
