"""MIDI <-> piano roll: the beat grid, the rounding rule, edge cases, round trips."""

import mido
import numpy as np
import pretty_midi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from midi_corpus import smf

from musicvae_course.core.midi_fast import MidiSkip, read_pianoroll, read_pianoroll_reference
from musicvae_course.core.pianoroll import (
    LOWEST_PITCH,
    N_PITCHES,
    midi_to_pianoroll,
    pianoroll_to_midi,
    pitch_name,
    segments,
)

# A short phrase: (MIDI pitch, start in quarter notes, length in quarter notes)
PHRASE = [(60, 0, 1), (64, 1, 0.5), (67, 1.5, 0.5), (72, 2, 2), (48, 0, 4), (62, 4, 0.25), (62, 4.25, 0.25), (65, 5, 3)]


def write_midi(path, notes, ppq=480, tempi=((0, 120.0),), tempo_track=0, drum=False):
    """Write notes with mido in ticks; tempi is [(tick, bpm)] placed on tempo_track."""
    mid = mido.MidiFile(ticks_per_beat=ppq)
    meta, music = mido.MidiTrack(), mido.MidiTrack()
    mid.tracks += [meta, music]
    channel = 9 if drum else 0
    events = []
    for pitch, start, length in notes:
        on, off = round(start * ppq), round((start + length) * ppq)
        events += [
            (on, 1, mido.Message("note_on", note=pitch, velocity=90, channel=channel)),
            (off, 0, mido.Message("note_off", note=pitch, velocity=0, channel=channel)),
        ]
    tempo_events = [(tick, 2, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))) for tick, bpm in tempi]
    target = {0: meta, 1: music}
    track_events = {0: [], 1: []}
    track_events[tempo_track] += tempo_events
    track_events[1] += events
    for index, evs in track_events.items():
        now = 0
        for tick, _, msg in sorted(evs, key=lambda e: (e[0], e[1])):
            target[index].append(msg.copy(time=tick - now))
            now = tick
    mid.save(str(path))
    return path


def expected_roll(notes, steps):
    roll = np.zeros((N_PITCHES, steps), bool)
    for pitch, start, length in notes:
        roll[pitch - LOWEST_PITCH, round(start * 4) : round((start + length) * 4)] = True
    return roll


def test_phrase_lands_on_the_sixteenth_grid(tmp_path):
    roll = midi_to_pianoroll(write_midi(tmp_path / "a.mid", PHRASE))
    assert roll.dtype == bool and roll.shape == (88, 32)
    assert np.array_equal(roll, expected_roll(PHRASE, 32))


@pytest.mark.parametrize("bpm", [60, 90, 150])
def test_tempo_does_not_change_the_roll(tmp_path, bpm):
    at_120 = midi_to_pianoroll(write_midi(tmp_path / "120.mid", PHRASE))
    other = midi_to_pianoroll(write_midi(tmp_path / f"{bpm}.mid", PHRASE, tempi=[(0, bpm)]))
    assert np.array_equal(other, at_120)


@pytest.mark.parametrize("tempo_track", [0, 1])
def test_mid_file_tempo_change_does_not_move_the_grid(tmp_path, tempo_track):
    at_120 = midi_to_pianoroll(write_midi(tmp_path / "120.mid", PHRASE))
    changed = write_midi(
        tmp_path / "changes.mid",
        PHRASE,
        ppq=96,
        tempi=[(0, 72.0), (96 * 3, 140.0), (96 * 5 + 17, 95.5)],
        tempo_track=tempo_track,
    )
    assert np.array_equal(midi_to_pianoroll(changed), at_120)


@pytest.mark.parametrize("tempo_track", [0, 1])
def test_both_readers_measure_a_file_in_the_same_seconds_wherever_its_tempo_is(tmp_path, tempo_track):
    # 10 BPM for 70 quarter notes is 7 minutes, over a 6-minute limit; pretty_midi (the reference) reads tempo in
    # the first track only, so a tempo in track 1 left it at 120 BPM (35 s) while the fast reader applied it
    path = write_midi(tmp_path / "slow.mid", [(60, 0, 70)], tempi=[(0, 10.0)], tempo_track=tempo_track)
    verdicts = []
    for read in (read_pianoroll, read_pianoroll_reference):
        try:
            verdicts.append(read(path, max_seconds=360).shape)
        except MidiSkip as err:
            verdicts.append(str(err))
    assert verdicts[0] == verdicts[1]
    assert verdicts[0] == ("too long: 7 min (limit 6 min)" if tempo_track == 0 else (88, 280))


def test_empty_file_gives_an_empty_roll(tmp_path):
    roll = midi_to_pianoroll(write_midi(tmp_path / "empty.mid", []))
    assert roll.shape == (88, 0)
    assert segments(roll).shape == (0, 88, 32)


def test_drum_tracks_are_excluded(tmp_path):
    roll = midi_to_pianoroll(write_midi(tmp_path / "drums.mid", PHRASE, drum=True))
    assert roll.shape == (88, 0)


def test_out_of_range_notes_are_dropped(tmp_path):
    notes = [(20, 0, 1), (109, 0, 1), (21, 1, 1), (108, 2, 1)]
    roll = midi_to_pianoroll(write_midi(tmp_path / "range.mid", notes))
    assert np.array_equal(roll, expected_roll([(21, 1, 1), (108, 2, 1)], 12))


def test_zero_length_notes_are_dropped_and_short_notes_last_one_step(tmp_path):
    notes = [(60, 1, 0), (62, 2, 0.05), (64, 3, 1)]  # grace note, a 1/80 note, a quarter
    roll = midi_to_pianoroll(write_midi(tmp_path / "short.mid", notes))
    assert not roll[60 - LOWEST_PITCH].any()
    assert roll[62 - LOWEST_PITCH].tolist()[8:10] == [True, False]
    assert roll[64 - LOWEST_PITCH, 12:16].all()


def test_overlapping_same_pitch_notes_merge():
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    piano = pretty_midi.Instrument(0)
    piano.notes += [pretty_midi.Note(90, 60, 0.0, 1.0), pretty_midi.Note(90, 60, 0.5, 1.5)]
    pm.instruments.append(piano)
    assert np.array_equal(midi_to_pianoroll(pm), expected_roll([(60, 0, 3)], 12))


def test_overlap_in_a_file_ends_at_the_first_note_off(tmp_path):
    # In a file the two note-ons share one key: the first note-off releases it
    # (pretty_midi and symusic read it so), the second note-off finds it silent.
    notes = [(60, 0, 2), (60, 1, 2)]
    roll = midi_to_pianoroll(write_midi(tmp_path / "overlap.mid", notes))
    assert np.array_equal(roll, expected_roll([(60, 0, 2)], 8))


def test_unreadable_file_names_the_file(tmp_path):
    bad = tmp_path / "not_midi.mid"
    bad.write_text("hello")
    with pytest.raises(ValueError, match=r"not_midi\.mid: not a readable MIDI file \(not a MIDI file"):
        midi_to_pianoroll(bad)
    (tmp_path / "empty.mid").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.mid: not a readable MIDI file \(empty file \(0 bytes\)\)"):
        midi_to_pianoroll(tmp_path / "empty.mid")
    with pytest.raises(FileNotFoundError, match="nowhere.mid"):
        midi_to_pianoroll(tmp_path / "nowhere.mid")


@settings(max_examples=40, deadline=None)
@given(arrays(bool, (N_PITCHES, 24), elements=st.booleans()), st.sampled_from([60.0, 120.0, 133.0]))
def test_roll_to_midi_to_roll_is_the_identity(roll, bpm):
    pm = pianoroll_to_midi(roll, bpm=bpm)
    back = midi_to_pianoroll(pm)
    restored = np.zeros_like(roll)
    restored[:, : back.shape[1]] = back
    assert back.shape[1] <= roll.shape[1]
    assert np.array_equal(restored, roll)


def test_repeated_steps_become_one_held_note():
    roll = np.zeros((88, 8), bool)
    roll[39, 0:4] = True  # four steps on: one note, not four
    roll[40, 0:2] = roll[40, 3:5] = True  # a gap keeps two notes apart
    notes = pianoroll_to_midi(roll, bpm=120).instruments[0].notes
    by_pitch = {}
    for note in notes:
        by_pitch.setdefault(note.pitch, []).append((round(note.start, 6), round(note.end, 6)))
    assert by_pitch[60] == [(0.0, 0.5)]  # 4 sixteenths at 120 BPM = 0.5 s
    assert by_pitch[61] == [(0.0, 0.25), (0.375, 0.625)]


def test_pianoroll_to_midi_thresholds_probabilities_and_writes(tmp_path):
    probs = np.zeros((1, 1, 88, 32), np.float32)
    probs[0, 0, 10, :4] = 0.7
    probs[0, 0, 11, :4] = 0.3
    pm = pianoroll_to_midi(probs, threshold=0.5, path=tmp_path / "out.mid")
    assert [n.pitch for n in pm.instruments[0].notes] == [31]
    assert isinstance(pretty_midi.PrettyMIDI(str(tmp_path / "out.mid")), pretty_midi.PrettyMIDI)
    with pytest.raises(ValueError, match=r"\(88, T\)"):
        pianoroll_to_midi(np.zeros((2, 88, 32)))


def test_segments_windows_stride_padding_and_min_notes():
    roll = np.zeros((88, 56), bool)
    roll[0, 0] = True  # bar 1
    roll[1, 50:56] = True  # bar 4 (steps 48-55; the tail is padded to 64)
    windows = segments(roll, length=32, stride=16, min_notes=1)
    # windows start at 0, 16, 32; the one at 16 (steps 16-47) is silent and dropped
    assert windows.shape == (2, 88, 32)
    assert windows[0, 0, 0] and windows[1, 1, 18:24].all()
    assert segments(roll, min_notes=0).shape == (3, 88, 32)
    short = np.zeros((88, 5), bool)
    short[3, 4] = True
    assert segments(short).shape == (1, 88, 32)
    with pytest.raises(ValueError, match=r"\(88, T\)"):
        segments(np.zeros((12, 40)))


def test_pitch_names():
    assert [pitch_name(p) for p in (21, 60, 61, 108)] == ["A0", "C4", "C#4", "C8"]


def test_a_meta_event_mido_does_not_know_keeps_its_time_in_the_reference(tmp_path):
    # mido builds unknown meta events (0x08 program name) with time 0: the note after it moved a quarter earlier
    path = tmp_path / "program_name.mid"
    path.write_bytes(smf(b"\x83\x60\xff\x08\x05Piano" + b"\x00\x90\x3c\x64\x83\x60\x80\x3c\x00\x00\xff\x2f\x00"))
    expected = expected_roll([(60, 1, 1)], 8)
    np.testing.assert_array_equal(midi_to_pianoroll(path), expected)
    np.testing.assert_array_equal(read_pianoroll(str(path)), expected)
