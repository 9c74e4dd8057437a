"""MMA charts: written as MMA source, rendered by the ``mma`` program, read back as the chords played."""

from __future__ import annotations

import os

import numpy as np
import pytest

from musicvae_course.core.pianoroll import STEPS_PER_BAR, midi_to_pianoroll
from musicvae_course.corpus import mma

C_MAJOR_POP = mma.Chart("pop-rock/test", "pop-rock", "8Beat", (("I-V-vi-IV", 0),), "train")


def test_a_chart_lists_tempo_groove_seed_and_one_line_per_bar():
    text = mma.chart_text(mma.Chart("x/y", "latin", "BossaNova", (("turnaround", 2),), "train"))
    lines = text.splitlines()
    assert "Groove BossaNova" in lines and "Tempo 120" in lines and "RndSeed 1" in lines
    bars = [line for line in lines if line[:1].isdigit()]
    assert len(bars) == len(mma.PROGRESSIONS["turnaround"])
    assert bars[0] == "1 DM7 / Bm7 /"  # I and vi in D, two beats each


def test_waltz_bars_take_one_chord():
    text = mma.chart_text(mma.Chart("w/x", "waltz", "Waltz", (("pachelbel", 0),), "train"))
    assert "1 C\n" in text and "/" not in text.split("Groove Waltz")[1]


def test_rendered_chart_sounds_each_bars_chord(tmp_path):
    out = tmp_path / "pop.mid"
    mma.render(mma.chart_text(C_MAJOR_POP), out)
    roll = midi_to_pianoroll(out)  # drums (channel 10) dropped by the reader
    bars = len(mma.PROGRESSIONS["I-V-vi-IV"])
    assert bars * STEPS_PER_BAR <= roll.shape[1] <= (bars + 1) * STEPS_PER_BAR
    for bar, ((step, suffix),) in enumerate(mma.PROGRESSIONS["I-V-vi-IV"]):
        sounding = set(((np.flatnonzero(roll[:, bar * 16 : (bar + 1) * 16].any(axis=1)) + 21) % 12).tolist())
        third = 3 if suffix == "m" else 4
        assert {step % 12, (step + third) % 12, (step + 7) % 12} <= sounding, f"bar {bar + 1}"


def test_an_unknown_chord_is_refused_with_mmas_message(tmp_path):
    with pytest.raises(RuntimeError, match="bad.mma.*Unknown chord name"):
        mma.render("Tempo 120\nGroove 8Beat\n1 Cfoo\n", tmp_path / "bad.mid")
    assert not (tmp_path / "bad.mid").exists()


def test_build_renders_once_reports_failures_and_records_terms(tmp_path):
    broken = mma.Chart("pop-rock/broken", "pop-rock", "NoSuchGroove", (("I-V-vi-IV", 0),), "train")
    rows = mma.build_mma(tmp_path, [C_MAJOR_POP, broken])
    assert [r["file"] for r in rows] == ["midi/pop-rock/test.mid"]
    assert rows[0]["licence"].startswith("GPL-2.0-or-later") and rows[0]["split"] == "train"
    assert "pop-rock/broken" in (tmp_path / "failures.csv").read_text()
    stamp = os.stat(tmp_path / rows[0]["file"]).st_mtime_ns
    mma.build_mma(tmp_path, [C_MAJOR_POP])
    assert os.stat(tmp_path / rows[0]["file"]).st_mtime_ns == stamp  # not rendered again


def test_heldout_grooves_and_progressions_never_reach_a_training_chart():
    charts = mma.charts()
    train = [c for c in charts if c.split == "train"]
    assert train and all(c.groove not in mma.HELDOUT_GROOVES for c in train)
    assert all(p not in mma.HELDOUT_PROGRESSIONS for c in train for p, _ in c.sections)
    styles = {c.style for c in charts if c.split == "heldout" and c.groove in mma.HELDOUT_GROOVES}
    assert styles == set(mma.GROOVES)  # one unseen groove per style
