"""MIDI from other sources, round 3: what students bring (DAW exports, fine resolutions, hour-long files, bytes).

Both readers (the fast parser and pretty_midi's reference) must give one roll or one error in the same words; the
meter must be the one the file states; an error a student sees names the file and what to do.
"""

from __future__ import annotations

import io

import mido
import numpy as np
import pytest
from midi_corpus import held_note, smf, vlq

from musicvae_course.core import meter as meter_module
from musicvae_course.core.meter import TimeSignature, bar_lines, meter, meter_grid, time_signatures
from musicvae_course.core.midi_fast import MidiSkip, midi_to_pianoroll_fast, read_pianoroll, read_pianoroll_reference
from musicvae_course.core.pianoroll import midi_to_pianoroll

READERS = [read_pianoroll, read_pianoroll_reference]


def _verdicts(data: bytes, **limits) -> list:
    """What each reader makes of ``data``: its roll as a tuple of (shape, on-cells), or its error's words."""
    out = []
    for read in READERS:
        try:
            roll = read(data, **limits)
            out.append((roll.shape, tuple(np.flatnonzero(roll))))
        except MidiSkip as err:
            out.append(str(err))
    return out


def test_a_roll_over_max_steps_is_refused_in_the_same_words_by_both_readers():
    # 44 bytes at 1 tick per quarter: 40 M steps; the reference's early check said it without the quarter notes
    verdicts = _verdicts(smf(held_note(9_999_000), division=1), max_seconds=None)
    assert verdicts[0] == verdicts[1]
    assert "39,996,000 steps long (9,999,000 quarter notes)" in verdicts[0] and "MAX_STEPS" in verdicts[0]


def _one_note_file(division: int, tempo_us: int, end_tick: int) -> bytes:
    conductor = b"\x00\xff\x51\x03" + tempo_us.to_bytes(3, "big") + b"\x00\xff\x2f\x00"
    notes = b"\x00\x90\x3c\x40" + vlq(end_tick) + b"\x80\x3c\x00\x00\xff\x2f\x00"
    return smf(conductor, notes, division=division)


@pytest.mark.parametrize(
    "division, tempo_us, end_tick, seconds",
    [(96, 700_000, 960, 7.0), (480, 400_000, 4_320_000, 3600.0)],  # 10 quarters at 700 ms; 1 hour at 150 BPM
    ids=["seven_seconds", "one_hour_at_150_bpm"],
)
def test_a_file_ending_exactly_on_the_length_limit_is_read_by_both_readers(division, tempo_us, end_tick, seconds):
    # pretty_midi's seconds are a float sum (1 hour came out 3600.0000000000005 s): the reference alone skipped it
    data = _one_note_file(division, tempo_us, end_tick)
    on_the_limit = _verdicts(data, max_seconds=seconds)
    assert on_the_limit[0] == on_the_limit[1] and on_the_limit[0][0] == (88, end_tick * 4 // division)
    just_under = _verdicts(data, max_seconds=seconds - 0.001)
    # the same words, and numbers that show why ("60 min (limit 60 min)" did not)
    assert just_under == [f"too long: {seconds:,.3f} s (limit {seconds - 0.001:,.3f} s)"] * 2


def test_both_readers_agree_on_the_length_limit_whatever_the_tempo_map():
    # random tempo maps, each file measured against its own exact length and the float just below it
    rng = np.random.default_rng(3)
    disagreements = []
    for _ in range(60):
        division = int(rng.choice([7, 96, 120, 384, 480, 960, 1000]))
        ticks = sorted(int(t) for t in rng.integers(1, 40 * division, size=int(rng.integers(0, 6))))
        tempos = [(0, 428_571)] + [(t, int(rng.choice([250_000, 333_333, 400_000, 700_000]))) for t in ticks]
        end = int(rng.integers(division, 40 * division))
        conductor, last = b"", 0
        for tick, tempo in tempos:
            conductor += vlq(tick - last) + b"\xff\x51\x03" + tempo.to_bytes(3, "big")
            last = tick
        notes = b"\x00\x90\x3c\x40" + vlq(end) + b"\x80\x3c\x00\x00\xff\x2f\x00"
        data = smf(conductor + b"\x00\xff\x2f\x00", notes, division=division)
        exact_us, last, tempo_now = 0, 0, 500_000
        for tick, tempo in tempos:
            if tick >= end:
                break
            exact_us, last, tempo_now = exact_us + (tick - last) * tempo_now, tick, tempo
        seconds = (exact_us + (end - last) * tempo_now) / (1_000_000 * division)
        for limit in (seconds, np.nextafter(seconds, 0.0)):
            verdicts = _verdicts(data, max_seconds=float(limit))
            if verdicts[0] != verdicts[1]:
                disagreements.append((division, tempos, end, verdicts))
    assert disagreements == []


def test_a_long_piece_at_a_fine_resolution_is_refused_saying_so_not_only_corrupt(tmp_path):
    # music21 writes 10,080 ticks per quarter note: 1,000 quarter notes pass pretty_midi's MAX_TICK
    quarter_notes = b"".join(b"\x00\x90\x3c\x40" + vlq(10_080) + b"\x80\x3c\x00" for _ in range(1000))
    data = smf(quarter_notes + b"\x00\xff\x2f\x00", division=10_080)
    verdicts = _verdicts(data, max_seconds=None)
    assert verdicts[0] == verdicts[1]
    assert "1,000 quarter notes at 10,080 ticks per quarter note" in verdicts[0]
    assert "save it at 960 or 480" in verdicts[0]
    path = tmp_path / "from_music21.mid"
    path.write_bytes(data)
    for read in (midi_to_pianoroll, midi_to_pianoroll_fast):
        with pytest.raises(ValueError, match=r"from_music21\.mid: .*save it at 960 or 480"):
            read(path)
    # a part that enters after 1,000 quarter notes of rest: one time step past MAX_TICK, said alike
    late_entry = b"\x00\xc0\x00" + vlq(10_080_000) + b"\x90\x3c\x40\x10\x80\x3c\x00\x00\xff\x2f\x00"
    verdicts = _verdicts(smf(late_entry, division=10_080), max_seconds=None)
    assert verdicts[0] == verdicts[1] and "at 10,080 ticks per quarter note" in verdicts[0]
    assert "save it at 960 or 480" in verdicts[0]
    # a damaged file at 480 ticks per quarter note is not told to save at 480
    damaged = _verdicts(smf(held_note(10_000_001)), max_seconds=None)
    assert damaged[0] == damaged[1] and "likely corrupt" in damaged[0] and "save it" not in damaged[0]


def test_the_fast_reader_names_an_odd_file_name_on_one_line(tmp_path):
    path = tmp_path / "line\nbreak\x1b[31m.mid"
    path.write_bytes(b"not midi")
    for read in (midi_to_pianoroll, midi_to_pianoroll_fast):
        with pytest.raises(ValueError) as caught:
            read(path)
        assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)
        assert "line\\nbreak\\x1b[31m.mid" in str(caught.value)


@pytest.mark.parametrize("read", [midi_to_pianoroll, bar_lines, time_signatures, meter])
def test_a_student_passing_bytes_or_a_web_address_is_told_what_to_pass(read):
    data = smf(held_note(480))
    for wrong in (data, io.BytesIO(data)):
        with pytest.raises(TypeError, match="expected the path of a MIDI file or a pretty_midi.PrettyMIDI, got"):
            read(wrong)
    with pytest.raises(FileNotFoundError, match=r"https://example\.com/a\.mid \(a web address: download"):
        read("https://example.com/a.mid")


def test_signatures_past_the_end_are_not_measured(monkeypatch):
    # a file may hold 100,000 time signatures after its last note: each was measured in Fractions (1 s)
    measured = []
    real = meter_module.bar_steps
    monkeypatch.setattr(meter_module, "bar_steps", lambda signature: measured.append(signature) or real(signature))
    late = [TimeSignature(4, 4, step) for step in range(64, 64 + 16 * 1000, 16)]
    grid = meter_grid([TimeSignature(3, 4, 0), *late], 48)
    assert grid.downbeats == [0, 12, 24, 36] and len(grid.signatures) == 1001
    assert measured == [TimeSignature(3, 4, 0)]


def _daw_file(division: int, file_type: int) -> bytes:
    """A DAW-like export: a conductor track (tempo ramp, 4/4 -> 3/4 -> 6/8 -> 7/8, key, marker), a piano with
    sustain pedal, pitch bends, program change, a re-struck key and a zero-length note, and a drum track."""
    meta, message = mido.MetaMessage, mido.Message
    quarter, sixteenth = division, division // 4
    conductor = [(0, meta("track_name", name="Conductor")), (0, meta("time_signature", numerator=4, denominator=4))]
    conductor += [(i * sixteenth, meta("set_tempo", tempo=500_000 + i * 3_000)) for i in range(64)]
    conductor += [(16 * quarter, meta("time_signature", numerator=3, denominator=4))]
    conductor += [(22 * quarter, meta("time_signature", numerator=6, denominator=8)), (0, meta("key_signature"))]
    conductor += [(28 * quarter, meta("time_signature", numerator=7, denominator=8))]
    conductor += [(28 * quarter, meta("marker", text="B"))]
    piano = [(0, message("program_change", program=4)), (0, message("control_change", control=64, value=127))]
    for k in range(60):
        start, pitch = k * quarter // 2, (48, 55, 60, 64, 67, 72)[k % 6]
        length = (quarter // 2, quarter, sixteenth, 1, 0)[k % 5]
        piano += [(start, message("note_on", note=pitch, velocity=90)), (start + 3, message("pitchwheel", pitch=k))]
        piano += [(start + length, message("note_off", note=pitch, velocity=64))]
    piano += [(8 * quarter, message("note_on", note=60, velocity=70))]  # re-struck while the k=16 note sounds
    drums = [(k * sixteenth, message("note_on", channel=9, note=36 + k % 10, velocity=100)) for k in range(140)]
    drums += [(k * sixteenth + 1, message("note_off", channel=9, note=36 + k % 10)) for k in range(140)]
    tracks = []
    for events in (conductor, piano, drums):
        track, now = mido.MidiTrack(), 0
        for tick, event in sorted(events, key=lambda item: (item[0], item[1].type == "note_on")):
            track.append(event.copy(time=tick - now))
            now = tick
        tracks.append(track)
    midi = mido.MidiFile(type=file_type, ticks_per_beat=division)
    midi.tracks.extend(tracks if file_type == 1 else [mido.merge_tracks(tracks)])
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("division", [96, 480, 960, 15360])
def test_a_daw_export_reads_alike_in_both_readers_as_type_0_and_1_in_the_conductors_meter(tmp_path, division):
    rolls = []
    for file_type in (0, 1):
        path = tmp_path / f"daw_{file_type}.mid"
        path.write_bytes(_daw_file(division, file_type))
        reads = [read_pianoroll(path), read_pianoroll_reference(path), midi_to_pianoroll(path)]
        reads.append(midi_to_pianoroll_fast(path))
        for roll in reads[1:]:
            np.testing.assert_array_equal(roll, reads[0])
        rolls.append(reads[0])
        grid = meter(path)
        assert [(str(s), s.step) for s in grid.signatures] == [("4/4", 0), ("3/4", 64), ("6/8", 88), ("7/8", 112)]
        assert grid.downbeats == [0, 16, 32, 48, 64, 76, 88, 100, 112, 126]
    np.testing.assert_array_equal(rolls[0], rolls[1])  # the same music in one track or three
    assert rolls[0].shape == (88, 117) and rolls[0].any()  # the last note, k = 59, has no length


def _refusal(read, source) -> tuple[str, str]:
    try:
        read(source)
    except (ValueError, FileNotFoundError) as err:
        return type(err).__name__, str(err)
    raise AssertionError(f"{read.__name__} read {source!r}")


def test_both_readers_refuse_a_bad_file_with_one_error_in_the_same_words(tmp_path):
    bad = {
        "smpte.mid": smf(held_note(480), division=0xE728),  # 25 frames per second: valid MIDI, no beat grid
        "zero_ppq.mid": smf(held_note(480), division=0),
        "text.mid": b"hello",
        "empty.mid": b"",
        "cut.mid": smf(held_note(480))[:-5],
        "bomb.mid": smf(held_note(9_999_000), division=1),  # over MAX_STEPS and 60 minutes: MAX_STEPS said first
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        fast, reference = _refusal(read_pianoroll, data), _refusal(read_pianoroll_reference, data)
        assert fast == reference, name
    (tmp_path / "folder.mid").mkdir()
    for name in [*bad, "folder.mid", "missing.mid"]:
        fast = _refusal(midi_to_pianoroll_fast, tmp_path / name)
        assert fast == _refusal(midi_to_pianoroll, tmp_path / name) and name in fast[1], name
    assert "SMPTE frames (25 per second)" in _refusal(midi_to_pianoroll, tmp_path / "smpte.mid")[1]
    assert _refusal(midi_to_pianoroll, tmp_path / "missing.mid")[0] == "FileNotFoundError"
