"""MIDI files that other programs wrote (LilyPond, abc2midi, csvmidi, MIDIUtil, MuseScore), read by the kit.

The files are small and checked in (``tests/fixtures/midi_other_programs``, whose README names each tool, version
and source text, and how to make each again); no tool is needed to run these tests.

Each file: both readers (pretty_midi's reference and the fast parser) give one roll, and the meter is the score's,
with the pickup LilyPond and abc2midi write under the full time signature given as MIDI cannot say it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from musicvae_course.core.meter import meter, numbered_downbeats, time_signatures
from musicvae_course.core.midi_fast import midi_to_pianoroll_fast, read_pianoroll, read_pianoroll_reference
from musicvae_course.core.pianoroll import LOWEST_PITCH, midi_to_pianoroll

FOLDER = Path(__file__).parent / "fixtures" / "midi_other_programs"

# name: (pickup in steps the score has and the file cannot say, [(signature, step)], first downbeats, roll steps)
SCORES = {
    "ly_pickup44": (4, [("4/4", 0)], [4, 20, 36, 52], 68),  # \partial 4
    "ly_jig68": (2, [("6/8", 0)], [2, 14, 26, 38], 48),  # \partial 8
    "ly_artic_trill": (2, [("3/8", 0)], [2, 8, 14, 20, 26], 33),  # \articulate: trill, arpeggio, staccato
    "ly_change": (0, [("4/4", 0), ("3/4", 32), ("6/8", 56), ("2/4", 80)], [0, 16, 32, 44, 56, 68, 80, 88], 96),
    "ly_grace_tuplet_tempo": (0, [("4/4", 0)], [0, 16, 32, 48], 64),  # the start's grace shifts all by 21 ticks
    "ly_pickup78_changes": (4, [("7/8", 0), ("5/4", 18), ("2/2", 38), ("3/8", 54)], [4, 18, 38, 54, 60], 66),
    "ly_waltz34": (0, [("3/4", 0)], [0, 12, 24, 36], 48),  # two staves, chords, a tie
    "ly_staves3": (0, [("2/2", 0)], [0, 16], 32),  # flute, violin and a DrumStaff (channel 10)
    "ly_multi_score": (0, [("12/8", 0), ("2/1", 48)], [0, 24, 48], 80),
    "ly_multi_score-1": (0, [("3/16", 0), ("4/2", 6)], [0, 3, 6, 38], 70),
    "abc_jig": (2, [("6/8", 0)], [2, 14, 26, 38, 50, 62], 192),  # D|: an eighth upbeat, repeats
    "abc_reel": (4, [("2/2", 0)], [4, 20, 36, 52, 68, 84], 256),  # M:C| and A2| upbeat, two repeated parts
    "abc_slipjig": (0, [("9/8", 0), ("5/4", 36), ("7/8", 56)], [0, 18, 36, 56, 70], 76),
    "abc_twovoice": (0, [("4/4", 0)], [0, 16, 32], 48),  # V:1 and V:2: one track each
    "csv_format0_channels": (0, [("3/4", 0)], [0, 12], 24),  # format 0, 4 channels, drums on channel 10
    "csv_restrike_overlap": (0, [("6/8", 0), ("9/8", 12)], [0, 12], 30),
    "csvx_restrike_overlap": (0, [("6/8", 0), ("9/8", 12)], [0, 12], 30),
    "csv_sysex_text": (0, [("4/4", 0)], [0, 16], 20),  # sysex, sequencer-specific, SMPTE offset, lyrics, channel 16
    "mu_waltz": (0, [("3/4", 0), ("6/8", 36)], [0, 12, 24, 36], 48),
    "mu_format2": (0, [("2/4", 0)], [0, 8], 16),  # format 2: independent sequences, one after the other
    "mu_triplets_nodeint": (0, [("4/4", 0)], [0, 16], 24),
    # MuseScore marks the pickup as a short bar (1/8, 1/4) and repeats it where the repeat plays it again
    "ms_jig": (0, [("1/8", 0), ("6/8", 2), ("6/8", 50)], [0, 2, 14, 26, 38, 50, 62], 192),
    "ms_waltz": (0, [("1/4", 0), ("3/4", 4), ("1/4", 100), ("3/4", 104)], [0, 4, 16, 28, 40, 52], 196),
}


def test_every_checked_in_file_is_tested_and_the_folder_is_small():
    files = sorted(path.stem for path in FOLDER.glob("*.mid"))
    assert files == sorted(SCORES)
    assert sum(path.stat().st_size for path in FOLDER.glob("*.mid")) < 8 * 1024


@pytest.mark.parametrize("name", sorted(SCORES))
def test_both_readers_give_one_roll(name):
    path = FOLDER / f"{name}.mid"
    steps = SCORES[name][3]
    rolls = [
        read_pianoroll(path),
        read_pianoroll_reference(path),
        midi_to_pianoroll(path),
        midi_to_pianoroll_fast(path),
    ]
    assert rolls[0].shape == (88, steps) and rolls[0].any()
    for roll in rolls[1:]:
        np.testing.assert_array_equal(roll, rolls[0])
    data = path.read_bytes()
    np.testing.assert_array_equal(read_pianoroll(data), rolls[0])


@pytest.mark.parametrize("name", sorted(SCORES))
def test_the_meter_is_the_scores(name):
    pickup, signatures, downbeats, steps = SCORES[name]
    path = FOLDER / f"{name}.mid"
    assert [(str(s), s.step) for s in time_signatures(path)] == signatures
    grid = meter(path, pickup)
    assert grid.downbeats[: len(downbeats)] == downbeats
    assert all(step < steps for step in grid.downbeats)


def test_bars_are_numbered_from_the_pickup_given_whatever_bar_follows_the_first():
    # \partial 4 before 7/8, then 5/4: the first downbeat (step 4) is bar 1; it was taken for a pickup (a 14-step
    # bar before a 20-step one) and the piece numbered from the 5/4 bar
    grid = meter(FOLDER / "ly_pickup78_changes.mid", 4)
    assert numbered_downbeats(grid) == grid.downbeats == [4, 18, 38, 54, 60]
    marked = meter(FOLDER / "ms_jig.mid")  # a pickup marked by a short bar (1/8 before 6/8) is still no bar
    assert numbered_downbeats(marked)[:3] == [2, 14, 26]


def test_running_status_compressed_or_expanded_and_note_on_0_as_note_off_read_alike():
    compressed, expanded = (FOLDER / f"{name}_restrike_overlap.mid" for name in ("csv", "csvx"))
    assert compressed.stat().st_size < expanded.stat().st_size  # csvmidi did compress the running status
    roll = read_pianoroll(compressed)
    np.testing.assert_array_equal(roll, read_pianoroll(expanded))
    c4, e4, g4 = (pitch - LOWEST_PITCH for pitch in (60, 64, 67))
    assert roll[c4, :4].all() and not roll[c4, 4:24].any()  # struck at 0, re-struck at 2: one note-off closes both
    assert roll[g4, 12] and not roll[g4, 13]  # a note of 1 tick still sounds for a step
    assert roll[e4, 12:18].all() and roll[87].any()  # C8 (108) has a row; MIDI 20 has none


def test_the_drums_of_a_format_0_file_are_left_out_and_its_channels_kept():
    roll = read_pianoroll(FOLDER / "csv_format0_channels.mid")
    rows = sorted({LOWEST_PITCH + row for row in roll.nonzero()[0]})
    assert rows == [41, 48, 64, 65, 72, 74, 76, 77]  # bass drum (36) and snare (38) on channel 10 are not notes


# tool: (its texts, {checked-in file: its text, where the names differ}, commands run in a folder of the texts)
TOOLS = {
    "lilypond": ("ly_*.ly", {}, lambda texts: [["lilypond", "-s", *texts]]),
    "abc2midi": ("abc_*.abc", {}, lambda texts: [["abc2midi", t, "-o", f"{t[:-4]}.mid", "-silent"] for t in texts]),
    "csvmidi": (
        "csv_*.csv",
        {"csvx_restrike_overlap": "csv_restrike_overlap"},
        lambda texts: (
            [["csvmidi", "-z", t, f"{t[:-4]}.mid"] for t in texts]
            + [["csvmidi", "-x", "csv_restrike_overlap.csv", "csvx_restrike_overlap.mid"]]
        ),
    ),
}


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_the_files_are_made_again_alike_by_their_tools_where_installed(tool, tmp_path):
    pattern, extra, commands = TOOLS[tool]
    texts = sorted(path.name for path in FOLDER.glob(pattern))
    prefix = pattern.split("*")[0]
    made = sorted(name for name in SCORES if name.startswith(prefix) or name in extra)
    sources = [extra.get(name, name) for name in made]  # every checked-in file has its text here
    assert made and all(any(source.startswith(Path(text).stem) for text in texts) for source in sources)
    if shutil.which(tool) is None:  # the checked-in files are read by the tests above; nothing to make them again
        return
    for text in texts:
        shutil.copy(FOLDER / text, tmp_path / text)
    for command in commands(texts):
        subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, timeout=600)
    for name in made:
        again = tmp_path / f"{name}.mid" if (tmp_path / f"{name}.mid").exists() else tmp_path / f"{name}.midi"
        np.testing.assert_array_equal(read_pianoroll(again), read_pianoroll(FOLDER / f"{name}.mid"))
        assert time_signatures(again) == time_signatures(FOLDER / f"{name}.mid")


def write_midiutil_files(folder: Path) -> None:
    """Write the ``mu_*.mid`` files with MIDIUtil 1.2.1 (``pip install MIDIUtil``)."""
    from midiutil import MIDIFile

    folder = Path(folder)
    # a 3/4 waltz, re-struck notes of one pitch, overlapping notes of one pitch, a tempo change, a 6/8 at beat 9
    m = MIDIFile(2)
    m.addTempo(0, 0, 90)
    m.addTimeSignature(0, 0, 3, 2, 24)
    m.addTempo(0, 12, 60)
    for i, pitch in enumerate([60, 60, 60, 62, 62, 64, 64, 64, 65, 67, 67, 67]):
        m.addNote(0, 0, pitch, i * 1.0, 1.0, 100)
    m.addNote(1, 1, 48, 0, 3, 80)
    m.addNote(1, 1, 48, 1.5, 3, 80)
    m.addNote(1, 1, 43, 6, 0.5, 80)
    m.addNote(1, 1, 43, 6.25, 0.5, 80)
    m.addTimeSignature(0, 9, 6, 3, 24)
    with open(folder / "mu_waltz.mid", "wb") as file:
        m.writeFile(file)
    # format 2 (independent patterns)
    m = MIDIFile(2, file_format=2)
    m.addTimeSignature(0, 0, 2, 2, 24)
    for i, pitch in enumerate([72, 74, 76, 77]):
        m.addNote(0, 0, pitch, i * 0.5, 0.5, 100)
    for i, pitch in enumerate([48, 55]):
        m.addNote(1, 0, pitch, i * 1.0, 1.0, 100)
    with open(folder / "mu_format2.mid", "wb") as file:
        m.writeFile(file)
    # triplets in float beats at 480 ticks per quarter, hi-hats on channel 10, overlapping notes not deinterleaved
    m = MIDIFile(1, deinterleave=False, ticks_per_quarternote=480)
    m.addTimeSignature(0, 0, 4, 2, 24)
    for i in range(12):
        m.addNote(0, 0, 60 + (i % 3) * 4, i / 3, 1 / 3, 90)
    for i in range(8):
        m.addNote(0, 9, 42, i * 0.5, 0.25, 90)
    m.addNote(0, 0, 64, 4, 2, 90)
    m.addNote(0, 0, 64, 5, 2, 90)
    with open(folder / "mu_triplets_nodeint.mid", "wb") as file:
        m.writeFile(file)


if __name__ == "__main__":  # python tests/test_other_programs.py FOLDER: write the MIDIUtil files there
    write_midiutil_files(Path(sys.argv[1]))
