"""MIDI from other sources, round 4: notation programs, DAWs, hardware recorders, converters, old format-2 files.

Every kind of file must give one roll, or one error in the same words, in both readers (the fast parser and the
pretty_midi reference); an error names the file and what is wrong; the meter numbers bars as notation programs do.
"""

from __future__ import annotations

import io

import mido
import numpy as np
import pytest
from midi_corpus import END_OF_TRACK, held_note, other_source_files, smf, vlq, with_format

from musicvae_course.core.meter import TimeSignature, bar_lines, meter, meter_grid, numbered_downbeats
from musicvae_course.core.midi_fast import MidiSkip, midi_to_pianoroll_fast, read_pianoroll, read_pianoroll_reference
from musicvae_course.core.midi_mido import mido_reads_as_parse_notes
from musicvae_course.core.pianoroll import LOWEST_PITCH, midi_to_pianoroll

SYSEX = b"\x00\xf0\x05\x7e\x7f\x09\x01\xf7"  # GM on


def _both(data: bytes):
    """The roll both readers give ``data`` (asserted equal), or the words both refuse it in (asserted equal)."""
    verdicts = []
    for read in (read_pianoroll, read_pianoroll_reference):
        try:
            verdicts.append(read(data, max_seconds=None))
        except MidiSkip as err:
            verdicts.append(str(err))
    if isinstance(verdicts[0], str) or isinstance(verdicts[1], str):
        assert verdicts[0] == verdicts[1]
    else:
        np.testing.assert_array_equal(verdicts[0], verdicts[1])
    return verdicts[0]


def _notes(roll) -> list[tuple[int, int, int]]:
    """``(pitch, first step, last step + 1)`` of each run of on-cells, by pitch then step."""
    runs = []
    for row in np.flatnonzero(roll.any(axis=1)):
        edges = np.diff(np.r_[0, roll[row].astype(np.int8), 0])
        runs += [(LOWEST_PITCH + row, a, b) for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))]
    return runs


@pytest.mark.parametrize("kind", sorted(other_source_files()))
def test_every_kind_of_file_from_other_programs_gives_one_roll_in_all_four_readers(tmp_path, kind):
    data = other_source_files()[kind]
    roll = _both(data)
    assert not isinstance(roll, str) and roll.any(), roll
    path = tmp_path / f"{kind}.mid"
    path.write_bytes(data)
    np.testing.assert_array_equal(midi_to_pianoroll(path), roll)
    np.testing.assert_array_equal(midi_to_pianoroll_fast(path), roll)
    assert meter(path).downbeats[0] == 0


def test_a_format_2_file_plays_its_sequences_one_after_another(tmp_path):
    # before: both readers sounded the three sequences at once, from tick 0 (a roll 8 steps long)
    roll = _both(other_source_files()["format_2_sequences"])
    assert _notes(roll) == [(60, 0, 4), (64, 4, 12), (67, 12, 13)]
    together = _both(with_format(other_source_files()["format_2_sequences"], 1))  # format 1: tracks together
    assert _notes(together) == [(60, 0, 4), (64, 0, 8), (67, 0, 1)]
    # each sequence's time signature is at its own start
    path = tmp_path / "patterns.mid"
    path.write_bytes(with_format(smf(held_note(480), b"\x00\xff\x58\x04\x06\x03\x18\x08" + held_note(960, 64)), 2))
    assert [(str(s), s.step) for s in meter(path).signatures] == [("4/4", 0), ("6/8", 4)]


def test_a_damaged_format_2_file_is_refused_alike_naming_the_file(tmp_path):
    data = other_source_files()["format_2_sequences"][:-7]
    assert _both(data).startswith("truncated MIDI: track 2 declares")
    path = tmp_path / "patterns.mid"
    path.write_bytes(data)
    for read in (midi_to_pianoroll, midi_to_pianoroll_fast):
        with pytest.raises(ValueError, match=r"patterns\.mid: not a readable MIDI file \(truncated MIDI: track 2"):
            read(path)


@pytest.mark.parametrize("between", [SYSEX, b"\x00\xf7\x02\xf8\xfa", b"\x00\xff\x01\x01a"], ids=["sysex", "f7", "meta"])
def test_running_status_after_a_sysex_or_meta_event_continues_the_channel_message_before_it(between):
    # the SMF spec says both cancel running status; writers rely on it and players continue. mido read a data byte
    # after a sysex as a "running sysex" (its length from the next byte): the note-off was lost, "no notes"
    data = smf(b"\x00\x90\x3c\x40" + between + b"\x60\x3c\x00" + END_OF_TRACK)
    assert _notes(_both(data)) == [(60, 0, 1)]
    # a run of notes in running status after a sysex: as the same notes with every status byte written
    run = b"".join(vlq(0) + bytes([62 + k % 5, 64]) + b"\x60" + bytes([62 + k % 5, 0]) for k in range(40))
    written = b"".join(b"\x00\x90" + bytes([62 + k % 5, 64]) + b"\x60\x90" + bytes([62 + k % 5, 0]) for k in range(40))
    explicit = _both(smf(b"\x00\x90\x3c\x40\x00\x90\x3c\x00" + between + written + END_OF_TRACK))
    np.testing.assert_array_equal(_both(smf(b"\x00\x90\x3c\x40\x00\x3c\x00" + between + run + END_OF_TRACK)), explicit)


def test_the_reference_mend_for_sysex_running_status_is_undone_after_reading():
    data = smf(b"\x00\x90\x3c\x40" + SYSEX + b"\x60\x3c\x00" + END_OF_TRACK)
    with mido_reads_as_parse_notes():
        mended = [m.type for m in mido.MidiFile(file=io.BytesIO(data)).tracks[0]]
    assert mended == ["note_on", "sysex", "note_on", "end_of_track"]
    # outside the block, mido as it is: the note-off's bytes read as a second (empty) sysex, the note never ended
    assert [m.type for m in mido.MidiFile(file=io.BytesIO(data)).tracks[0]] == [
        "note_on",
        "sysex",
        "sysex",
        "end_of_track",
    ]


def test_a_data_byte_with_no_channel_message_before_it_is_refused_alike_naming_the_file(tmp_path):
    data = smf(SYSEX + b"\x00\x3c\x40\x60\x80\x3c\x00" + END_OF_TRACK)  # a sysex, then a note-on without status
    words = "corrupt MIDI: track 0: the event at tick 0 has no status byte and no channel message before it"
    assert _both(data).startswith(words)
    path = tmp_path / "recorder.mid"
    path.write_bytes(data)
    for read in (midi_to_pianoroll, midi_to_pianoroll_fast):
        with pytest.raises(ValueError, match=rf"recorder\.mid: not a readable MIDI file \({words}"):
            read(path)


def test_hundreds_of_tempo_changes_move_neither_the_notes_nor_the_bars(tmp_path):
    notes = b"".join(
        b"\x00\x90" + bytes([48 + k % 24, 80]) + vlq(333) + b"\x80" + bytes([48 + k % 24, 0]) for k in range(90)
    )
    rng = np.random.default_rng(4)
    tempo_map = b"".join(
        vlq(int(rng.integers(0, 90))) + b"\xff\x51\x03" + int(t).to_bytes(3, "big")
        for t in rng.integers(150_000, 3_000_000, 600)
    )
    signature = b"\x00\xff\x58\x04\x03\x02\x18\x08"
    steady = smf(signature + END_OF_TRACK, notes + END_OF_TRACK, division=480)
    moving = smf(signature + tempo_map + END_OF_TRACK, notes + END_OF_TRACK, division=480)
    np.testing.assert_array_equal(_both(moving), _both(steady))
    (tmp_path / "moving.mid").write_bytes(moving)
    assert bar_lines(tmp_path / "moving.mid")[:4] == [0, 12, 24, 36]


def test_drums_are_left_out_and_a_drum_only_file_has_no_roll(tmp_path):
    assert _notes(_both(other_source_files()["drums_and_piano"])) == [(60, 1, 2)]  # the kick (36) on channel 10 is not
    drums = smf(b"\x00\x99\x24\x40\x60\x89\x24\x00" + END_OF_TRACK)
    assert _both(drums) == "drums only (channel 10)"
    (tmp_path / "beat.mid").write_bytes(drums)
    assert (
        midi_to_pianoroll(tmp_path / "beat.mid").shape == midi_to_pianoroll_fast(tmp_path / "beat.mid").shape == (88, 0)
    )


def test_notes_off_the_keyboard_of_no_length_or_overlapping_are_read_by_the_rules():
    files = other_source_files()
    assert _notes(_both(files["pitches_off_the_keyboard"])) == [(60, 0, 1)]  # 16 and 127 dropped, the roll not longer
    assert _notes(_both(files["zero_length_notes"])) == [(62, 0, 1)]  # a grace note of 0 ticks has no step
    assert _notes(_both(files["overlapping_same_pitch"])) == [(60, 0, 2)]  # the first note-off ends both notes
    assert _notes(_both(files["velocity_0_note_offs"])) == [(60, 0, 4), (64, 0, 4)]


def test_a_time_signature_of_0_4_is_left_out_of_the_meter(tmp_path):
    # partitura writes 0/4: no bar; the signatures around it count
    zero = b"\x00\xff\x58\x04\x00\x02\x18\x08"
    path = tmp_path / "partitura.mid"
    path.write_bytes(smf(zero + held_note(480 * 10)))
    assert bar_lines(path) == [0, 16, 32]
    path.write_bytes(smf(b"\x00\xff\x58\x04\x03\x02\x18\x08" + vlq(480 * 3) + zero[1:] + held_note(480 * 7)))
    assert bar_lines(path) == [0, 12, 24, 36]


def test_a_pickup_marked_by_a_short_bar_before_a_single_full_bar_is_not_bar_1(tmp_path):
    # before: a 1/4 pickup then one bar of 4/4 numbered the pickup bar 1 (only two downbeats to compare)
    grid = meter_grid([TimeSignature(1, 4, 0), TimeSignature(4, 4, 4)], 20)
    assert grid.downbeats == [0, 4] and numbered_downbeats(grid) == [4]
    assert numbered_downbeats(meter_grid([TimeSignature(3, 4, 0), TimeSignature(2, 4, 12)], 20)) == [0, 12]
    assert numbered_downbeats(meter_grid("4/4", 20)) == [0, 16]  # a bar cut by the end is not a pickup
    # a short bar mid-piece (LilyPond's \partial there, a repeat's split bar) counts as a bar
    mid = meter_grid([TimeSignature(4, 4, 0), TimeSignature(1, 4, 32), TimeSignature(4, 4, 36)], 60)
    assert numbered_downbeats(mid) == mid.downbeats == [0, 16, 32, 36, 52]


@pytest.mark.parametrize("frames", [24, 25, 29, 30])
def test_an_smpte_file_of_any_frame_rate_is_refused_as_smpte_by_both_readers(tmp_path, frames):
    data = smf(held_note(480), division=((256 - frames) << 8) | 40)
    assert _both(data).startswith(f"MIDI header: time division 0x{data[12]:02x}28 is in SMPTE frames ({frames} per")
    (tmp_path / "film.mid").write_bytes(data)
    with pytest.raises(ValueError, match=r"film\.mid: .*SMPTE frames .* the kit needs ticks per quarter note"):
        midi_to_pianoroll(tmp_path / "film.mid")


def test_a_format_2_file_over_the_event_limit_is_refused_without_walking_every_sequence(monkeypatch):
    from musicvae_course.core import midi_events

    walked = []
    real = midi_events._parse_track
    monkeypatch.setattr(midi_events, "_parse_track", lambda *args: walked.append(args[3]) or real(*args))
    monkeypatch.setattr(midi_events, "MAX_EVENTS", 150)
    sequence = b"".join(b"\x00\x90\x3c\x40\x60\x80\x3c\x00" for _ in range(50)) + END_OF_TRACK  # 101 events
    data = with_format(smf(*[sequence] * 5), 2)
    with pytest.raises(midi_events.MidiLimitError, match="more than 150 events"):
        midi_events.parse_notes(midi_events.smf_bytes(data))
    assert walked == [0, 1, 0, 1]  # put in sequence up to the second track, then refused by parse_notes
