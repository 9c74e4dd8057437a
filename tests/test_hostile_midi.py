"""Crafted MIDI: tiny files that declare absurd sizes, broken headers, damaged event streams.

Each is refused with a clear error naming the limit, before anything large is allocated (measured with
tracemalloc, which sees numpy's allocations), by both readers; bulk builds skip it and keep the rest.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from midi_corpus import _write_notes, held_note, smf, vlq

from musicvae_course.__main__ import main
from musicvae_course.core import midi_events, midi_limits
from musicvae_course.core.data import build_dataset
from musicvae_course.core.meter import TimeSignature, time_signatures
from musicvae_course.core.midi_events import MidiFormatError, parse_notes
from musicvae_course.core.midi_fast import MidiSkip, read_pianoroll, read_pianoroll_reference
from musicvae_course.core.pianoroll import midi_to_pianoroll, notes_to_pianoroll, segments

READERS = [read_pianoroll, read_pianoroll_reference]
MB = 1 << 20


def _peak_of(call) -> int:
    tracemalloc.start()
    try:
        call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


HUGE = {
    # 44 bytes: 1 tick per quarter, a 1-microsecond tempo, one note 9,999,000 ticks long: 40 M steps (3.5 GB)
    "one_tick_per_beat": smf(held_note(9_999_000, tempo_us=1), division=1),
    # a note held long enough to give far more identical 2-bar windows than MAX_SEGMENTS_PER_FILE
    "held_for_days": smf(held_note(2_000_000, tempo_us=1), division=4),
}


@pytest.mark.parametrize("name", sorted(HUGE))
@pytest.mark.parametrize("read", READERS)
def test_a_tiny_file_declaring_a_huge_roll_is_refused_before_allocating(name, read):
    data = HUGE[name]
    assert len(data) < 64

    def attempt():
        with pytest.raises(MidiSkip, match="MAX_STEPS"):
            read(data, None)

    assert _peak_of(attempt) < 64 * MB  # the roll would be gigabytes


def test_bulk_build_skips_the_huge_file_and_keeps_the_rest(tmp_path):
    (tmp_path / "huge.mid").write_bytes(HUGE["one_tick_per_beat"])
    _write_notes(tmp_path / "good.mid", [(60, 0, 480), (62, 480, 960)])
    ds = build_dataset(tmp_path, workers=0, progress=False)
    assert [(p.endswith("huge.mid"), "MAX_STEPS" in r) for p, r in ds.report.skipped] == [(True, True)]
    assert len(ds.files) == 1 and len(ds) > 0


def test_reconstruct_cli_on_a_37_byte_bomb_is_a_one_line_error(tmp_path, capsys):
    bomb = smf(held_note(9_999_000), division=1)
    path = tmp_path / "bomb.mid"
    path.write_bytes(bomb)
    code = main(["reconstruct", str(path), "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "MAX_STEPS" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "data, words",
    [
        (smf(held_note(480), division=0), "0 ticks per quarter"),
        (smf(held_note(480), division=0xE728), "time division|SMPTE"),  # -25 fps x 40: SMPTE timing
        (smf(held_note(480), n_tracks=3), "truncated"),
        (smf(held_note(480))[:-5], "truncated"),
        (smf(b"\x00\x90\x3c\xff\x10\x80\x3c\x00\x00\xff\x2f\x00"), "corrupt"),  # data byte >= 128
        (smf(b"\x00\x3c\x40"), "running status"),
        (smf(b"\x00\xf4\x00\xff\x2f\x00"), "undefined status"),
        (smf(b"\x00\xff\x51\x01\x07\x00\xff\x2f\x00"), "tempo event"),
        (smf(held_note(10_000_001)), "likely corrupt"),
        (b"MThd\x00\x00\x00\x06", "not a MIDI file|corrupt"),
        (b"MThd" + b"\xff" * 40, "corrupt|truncated"),
    ],
    ids=[
        "zero_ticks_per_quarter",
        "smpte_division",
        "fewer_tracks_than_declared",
        "cut_short",
        "data_byte_over_127",
        "running_status_first",
        "undefined_status",
        "short_tempo_event",
        "tick_over_limit",
        "header_only",
        "header_garbage",
    ],
)
def test_damaged_midi_is_refused_by_the_fast_reader_with_the_reason(data, words):
    with pytest.raises(MidiSkip, match=words):
        read_pianoroll(data, None)


def test_zero_ticks_per_quarter_is_a_clear_error_in_the_reference_reader_too(tmp_path):
    path = tmp_path / "zero_ppq.mid"
    path.write_bytes(smf(held_note(480), division=0))
    with pytest.raises(ValueError, match=r"zero_ppq\.mid: .*time division"):
        midi_to_pianoroll(path)


def test_too_many_notes_are_refused_while_parsing():
    body = b"".join(b"\x00\x90\x3c\x40\x01\x80\x3c\x00" for _ in range(50)) + b"\x00\xff\x2f\x00"
    with pytest.raises(MidiFormatError, match="MAX_NOTES"):
        parse_notes(smf(body), max_notes=10)
    assert len(parse_notes(smf(body)).start) == 50


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    import musicvae_course.core.midi_fast as midi_fast

    path = tmp_path / "big.mid"
    path.write_bytes(smf(held_note(480)) + b"\x00" * 4096)
    monkeypatch.setattr(midi_fast, "MAX_MIDI_BYTES", 1024)
    with pytest.raises(MidiSkip, match="larger than the limit of 1,024 bytes"):
        read_pianoroll(str(path))


def test_roll_and_window_limits_have_names_and_can_be_raised():
    with pytest.raises(ValueError, match="MAX_STEPS"):
        notes_to_pianoroll([60], [0], [midi_limits.MAX_STEPS + 1])
    assert notes_to_pianoroll([60], [0], [10], max_steps=10).shape == (88, 10)
    with pytest.raises(ValueError, match="MAX_SEGMENTS_PER_FILE"):
        segments(np.ones((88, 64), bool), max_windows=2)
    assert midi_limits.MAX_SEGMENTS_PER_FILE * 352 < 8 * MB  # one file's packed windows stay small


@pytest.mark.parametrize("where", ["time_step", "meta_length", "sysex_length"])
def test_a_run_of_ff_bytes_in_a_variable_length_number_is_refused_at_once(tmp_path, where):
    # 100 KB of 0xFF grew one number for 2 s (quadratic; 32 MB: days) and ended in Python's int-to-text limit
    run = b"\xff" * 100_000 + b"\x00"
    body = {"time_step": run, "meta_length": b"\x00\xff\x01" + run, "sysex_length": b"\x00\xf0" + run}[where]
    path = tmp_path / "ff.mid"
    path.write_bytes(smf(body + held_note(480)))
    for read in READERS:
        began = time.perf_counter()
        with pytest.raises(MidiSkip, match="likely corrupt|longer than|more than the whole file"):
            read(str(path), None)
        assert time.perf_counter() - began < 0.5
    with pytest.raises(ValueError, match=r"ff\.mid: not a readable MIDI file"):
        midi_to_pianoroll(path)


def test_more_events_than_the_limit_are_refused_before_the_reference_keeps_them_all(monkeypatch):
    # mido keeps every event as an object: 4 MB of 2-byte events took 800 MB, 32 MB of them 5 GB
    monkeypatch.setattr(midi_events, "MAX_EVENTS", 1000)
    data = smf(b"\x00\xf6" * 1000 + held_note(480))
    for read in READERS:
        with pytest.raises(MidiSkip, match="more than 1,000 events .*MAX_EVENTS"):
            read(data, None)
    assert midi_limits.MAX_EVENTS * 300 < 1024 * MB  # the reference's mido objects at the limit
    assert len(parse_notes(smf(held_note(480)), max_events=5).pitch) == 1  # a few events under it: read


def test_reconstruct_keeps_the_meter_of_a_file_with_a_time_signature_far_past_its_notes(tmp_path, capsys):
    # 3/4, one half note, then 4/4 at tick 9,999,000 at 1 tick per quarter: its bars took minutes to count, and
    # writing that signature at step 39,996,000 raised pretty_midi's IndexError
    ts = b"\xff\x58\x04\x03\x02\x18\x08", b"\xff\x58\x04\x04\x02\x18\x08"
    body = b"\x00" + ts[0] + b"\x00\x90\x3c\x64\x02\x80\x3c\x00" + vlq(9_999_000) + ts[1] + b"\x00\xff\x2f\x00"
    path = tmp_path / "far_meter.mid"
    path.write_bytes(smf(body, division=1))
    began = time.perf_counter()
    assert main(["reconstruct", str(path), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert time.perf_counter() - began < 10
    assert time_signatures(tmp_path / "out" / "original.mid") == [TimeSignature(3, 4, 0)]


def test_a_text_event_long_after_the_last_note_does_not_make_a_file_too_long_for_either_reader():
    # a text event 2.6 hours in (tick 9,000,000 at 120 BPM): the reference measured the file to it and skipped it
    data = smf(b"\x00\x90\x3c\x64\x83\x60\x80\x3c\x00" + vlq(9_000_000) + b"\xff\x01\x03end\x00\xff\x2f\x00")
    rolls = [read(data) for read in READERS]
    assert rolls[0].shape == (88, 4) and np.array_equal(rolls[0], rolls[1])


@pytest.mark.parametrize("far_note", [b"\x99\x24", b"\x90\x0a"], ids=["drum", "below_the_keyboard"])
def test_a_long_note_outside_the_roll_does_not_make_the_roll_too_long_for_either_reader(far_note):
    # a drum or a MIDI-10 note held 120,000 steps: not in the roll, but the reference counted it against MAX_STEPS
    off = bytes([far_note[0] - 0x10, far_note[1], 0])
    body = b"\x00\x90\x3c\x64\x60\x80\x3c\x00\x00" + far_note + b"\x64" + vlq(30_000 * 96) + off + b"\x00\xff\x2f\x00"
    rolls = [read(smf(body, division=96), None) for read in READERS]
    assert rolls[0].shape == (88, 4) and np.array_equal(rolls[0], rolls[1])


def test_an_smpte_file_is_refused_as_smpte_not_as_corrupt_by_both_readers(tmp_path):
    # SMPTE timing is valid MIDI (film scoring, some DAW exports); the reference called it a corrupt header
    data = smf(held_note(480), division=0xE728)  # -25 frames per second x 40 ticks per frame
    for read in READERS:
        with pytest.raises(MidiSkip, match="SMPTE") as refused:
            read(data)
        assert "corrupt" not in str(refused.value)
    path = tmp_path / "film.mid"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"film\.mid: .*SMPTE"):
        time_signatures(path)


@pytest.mark.parametrize("read", READERS)
def test_thousands_of_notes_held_at_once_on_one_key_are_painted_in_bounded_memory(read):
    # 1,000 note-ons of one key, one per tick, all closed by one note-off 99,000 steps later (3 KB): painted note
    # by note that indexed 99 M cells (1.7 GB, 6 s; 5,000 notes in 15 KB: 7.6 GB)
    body = b"\x00\x90\x3c\x40" + b"\x01\x3c\x40" * 999 + vlq(98_001) + b"\x80\x3c\x00\x00\xff\x2f\x00"
    data = smf(body, division=4)
    rolls = []
    assert _peak_of(lambda: rolls.append(read(data, None))) < 64 * MB
    assert rolls[0].shape == (88, 99_000) and rolls[0].sum() == rolls[0][60 - 21].sum() == 99_000


def _rmid(data: bytes, chunks: bytes = b"") -> bytes:
    body = b"RMID" + chunks + b"data" + len(data).to_bytes(4, "little") + data
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def test_chunks_of_other_kinds_among_the_tracks_are_skipped_by_both_readers(tmp_path):
    # the standard says to skip them; Yamaha's XF files put XFIH before the first track (XFKM after it), and both
    # readers refused such a file ("not a track chunk" / mido's "MTrk not found")
    inner = smf(b"\x00\xff\x58\x04\x03\x02\x18\x08" + held_note(480), held_note(240))
    first_track = inner.index(b"MTrk", 14)
    second_track = inner.index(b"MTrk", first_track + 4)
    xfih, xfkm = b"XFIH" + (9).to_bytes(4, "big") + b"123456789", b"XFKM" + (2).to_bytes(4, "big") + b"ab"
    path = tmp_path / "yamaha_xf.mid"
    path.write_bytes(inner[:first_track] + xfih + inner[first_track:second_track] + xfkm + inner[second_track:])
    rolls = [read(str(path)) for read in READERS] + [midi_to_pianoroll(path), read_pianoroll(inner)]
    assert all(np.array_equal(roll, rolls[-1]) for roll in rolls) and rolls[-1].any()
    assert time_signatures(path) == [TimeSignature(3, 4, 0)]
    damaged = inner[:first_track] + b"XF\x00H" + inner[first_track + 4 :]  # not a chunk name: still refused
    for read in READERS:
        with pytest.raises(MidiSkip):
            read(damaged)


def test_a_riff_midi_file_is_read_as_the_midi_file_inside_it_by_both_readers(tmp_path):
    # RMID (.rmi, Windows and some archives): refused as "not a MIDI file (starts with b'RIFF...')"
    inner = smf(b"\x00\xff\x58\x04\x03\x02\x18\x08" + held_note(480))
    path = tmp_path / "riff.mid"
    path.write_bytes(_rmid(inner, chunks=b"LIST\x03\x00\x00\x00abc\x00"))  # an odd chunk: padded to even
    rolls = [read(str(path)) for read in READERS] + [midi_to_pianoroll(path), read_pianoroll(inner)]
    assert all(np.array_equal(roll, rolls[-1]) for roll in rolls) and rolls[0].shape == (88, 4)
    assert time_signatures(path) == [TimeSignature(3, 4, 0)]
    for data, words in [(_rmid(inner)[:-10], "truncated RIFF MIDI"), (_rmid(inner)[:12], "without a data chunk")]:
        for read in READERS:
            with pytest.raises(MidiSkip, match=words):
                read(data)
    (tmp_path / "folder").mkdir()
    path.rename(tmp_path / "folder" / "riff.rmi")  # saved as .rmi, it is found in a folder of MIDI files too
    dataset = build_dataset(tmp_path / "folder", workers=0, progress=False)
    assert [Path(f).name for f in dataset.files] == ["riff.rmi"] and dataset.segments[0].sum() == rolls[0].sum()


def test_a_tempo_of_zero_is_refused_by_name_by_both_readers(tmp_path):
    # the reference divided by it ("ZeroDivisionError: float division by zero"); the fast reader read it
    path = tmp_path / "tempo0.mid"
    path.write_bytes(smf(held_note(480, tempo_us=0)))
    for read in READERS:
        with pytest.raises(MidiSkip, match="tempo of 0 microseconds per quarter note"):
            read(str(path))
    with pytest.raises(ValueError, match=r"tempo0\.mid: .*tempo of 0 microseconds"):
        midi_to_pianoroll(path)
    later_track = smf(held_note(480), b"\x00\xff\x51\x03\x00\x00\x00\x00\xff\x2f\x00")  # unread by the reference
    assert all(read(later_track).shape == (88, 4) for read in READERS)


def _track(body: bytes) -> bytes:
    return b"MTrk" + len(body).to_bytes(4, "big") + body


def test_empty_track_chunks_are_read_alike_by_both_readers():
    # a track chunk of 0 bytes: the reference failed ("max() arg is an empty sequence"), the fast reader read it
    header = b"MThd\x00\x00\x00\x06\x00\x01\x00\x03\x01\xe0"
    data = header + _track(b"") + _track(held_note(480)) + _track(b"")
    rolls = [read(data) for read in READERS]
    assert rolls[0].shape == (88, 4) and np.array_equal(rolls[0], rolls[1])
    assert np.array_equal(read_pianoroll(_rmid(data)), rolls[0])


def test_more_than_32767_declared_tracks_are_refused_alike_by_both_readers():
    # mido reads the count as signed (none at all): the reference failed on max(), the fast reader read the file
    data = (
        b"MThd\x00\x00\x00\x06\x00\x01\xff\xff\x01\xe0" + _track(held_note(480)) + _track(b"\x00\xff\x2f\x00") * 65534
    )
    for read in READERS:
        with pytest.raises(MidiSkip, match="65,535 tracks declared, more than 32,767"):
            read(data)


NOTE = b"\x00\x90\x3c\x64\x83\x60\x80\x3c\x00"  # one quarter note at 480 ticks per quarter
END = b"\x00\xff\x2f\x00"
NO_NOTE_EVENTS = {
    # meta events mido cannot decode, and sysex bytes it refuses: the reference refused the whole file (its notes
    # too) where the fast reader, players and DAWs read it
    "key_signature_of_64_sharps": b"\x00\xff\x59\x02\x40\x05",
    "key_signature_of_1_byte": b"\x00\xff\x59\x01\x00",
    "time_signature_of_2_bytes": b"\x00\xff\x58\x02\x03\x02",
    "time_signature_of_numerator_0": b"\x00\xff\x58\x04\x00\x02\x18\x08",
    "empty_smpte_offset": b"\x00\xff\x54\x00",
    "sysex_escape_of_a_real_time_byte": b"\x00\xf7\x01\xf8",  # F7 packets carry any byte: that is what they are for
    "sysex_byte_over_127": b"\x00\xf0\x03\x43\x92\xf7",
}


@pytest.mark.parametrize("event", sorted(NO_NOTE_EVENTS))
def test_events_without_notes_that_mido_cannot_decode_do_not_refuse_the_file_in_either_reader(tmp_path, event):
    data = smf(NO_NOTE_EVENTS[event] + NOTE + END)
    path = tmp_path / "odd.mid"
    path.write_bytes(data)
    rolls = [read(data) for read in READERS] + [midi_to_pianoroll(path)]
    assert rolls[0].shape == (88, 4) and all(np.array_equal(roll, rolls[0]) for roll in rolls)
    signature = [TimeSignature(3, 4, 0)] if event == "time_signature_of_2_bytes" else [TimeSignature(4, 4, 0)]
    assert time_signatures(path) == signature


def test_a_file_of_no_tracks_has_no_notes_in_both_readers():
    # the reference failed on it ("max() arg is an empty sequence") and called it corrupt
    data = b"MThd\x00\x00\x00\x06\x00\x01\x00\x00\x01\xe0"
    for read in READERS:
        with pytest.raises(MidiSkip, match="^no notes$"):
            read(data)


@pytest.mark.parametrize("event", [b"\x00\xf1\x80", b"\x00\xf2\x01\x82"], ids=["quarter_frame", "song_position"])
def test_a_system_message_with_a_data_byte_over_127_is_refused_by_both_readers(event):
    # mido refuses it as damage; the fast reader read on, from a stream out of step
    for read in READERS:
        with pytest.raises(MidiSkip, match="data byte"):
            read(smf(event + NOTE + END))


@pytest.mark.parametrize("kind", [b"\xff\x01", b"\xf0"], ids=["text", "sysex"])
def test_an_event_longer_than_the_reference_reads_is_refused_alike_by_both_readers(kind):
    # mido refuses events over 1,000,000 bytes ("exceeds maximum length"); the fast reader read the file
    body = b"\x00" + kind + vlq(midi_limits.MAX_EVENT_BYTES + 1) + b"\x01" * (midi_limits.MAX_EVENT_BYTES + 1)
    for read in READERS:
        with pytest.raises(MidiSkip, match="1,000,001 bytes, more than MAX_EVENT_BYTES"):
            read(smf(body + NOTE + END))
    under = b"\x00" + kind + vlq(1000) + b"\x01" * 1000
    rolls = [read(smf(under + NOTE + END)) for read in READERS]
    assert rolls[0].shape == (88, 4) and np.array_equal(rolls[0], rolls[1])


def test_a_data_byte_in_the_running_status_of_a_real_time_byte_is_refused_by_both_readers():
    # active sensing (0xFE) recorded between a note-on and its running-status note-off: mido refuses the file
    # ("wrong number of bytes for active_sensing message"); the fast reader stepped back a byte and said "no notes"
    body = b"\x00\x90\x3c\x64\x00\xfe\x83\x60\x3c\x00" + END
    for read in READERS:
        with pytest.raises(MidiSkip, match="corrupt"):
            read(smf(body))
    alone = b"\x00\xfe\x00\xf8" + NOTE + b"\x00\xfc" + NOTE + END  # with a status byte after each: read alike
    rolls = [read(smf(alone)) for read in READERS]
    assert rolls[0].shape == (88, 8) and np.array_equal(rolls[0], rolls[1])


def test_a_track_longer_than_the_file_is_refused_in_the_same_words_by_both_readers(tmp_path):
    # a writer that counted its last track's length wrong: the reference's reason was mido's "EOFError: ", nothing more
    body = NOTE + END
    data = b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk" + (len(body) + 10).to_bytes(4, "big") + body
    reasons = []
    for read in READERS:
        with pytest.raises(MidiSkip) as refused:
            read(data)
        reasons.append(str(refused.value))
    assert reasons[0] == reasons[1] == f"truncated MIDI: track 0 declares {len(body) + 10} bytes, {len(body)} left"
    path = tmp_path / "long_track.mid"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"long_track\.mid: .*track 0 declares"):
        midi_to_pianoroll(path)
