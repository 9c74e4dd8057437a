"""Meter from the file: downbeats and beats from MIDI time signatures (core/meter.py)."""

from __future__ import annotations

from fractions import Fraction

import mido
import numpy as np
import pretty_midi
import pytest

from musicvae_course import bar_lines
from musicvae_course.core.meter import (
    TimeSignature,
    bar_number_span,
    bar_steps,
    beat_steps,
    meter,
    meter_grid,
    numbered_downbeats,
    parse_time_signature,
    roll_and_meter,
    short_bar,
    time_signatures,
    window_in_bars,
    with_pickup_bar,
    write_time_signatures,
)
from musicvae_course.core.pianoroll import load_pretty_midi, midi_to_pianoroll, pianoroll_to_midi


def make_midi(signatures, last_step, tempi=((0.0, 120.0),)):
    """A file with one note ending at ``last_step`` and time signatures ``[(num, den, step), ...]``."""
    pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=tempi[0][1])
    if len(tempi) > 1:  # pretty_midi writes the tempo map from this private list
        pm._tick_scales = [(int(tick), 60.0 / (bpm * pm.resolution)) for tick, bpm in tempi]
        pm._update_tick_to_time(pm._tick_scales[-1][0] + 1)
    for numerator, denominator, step in signatures:
        time = pm.tick_to_time(step * 120)
        pm.time_signature_changes.append(pretty_midi.TimeSignature(numerator, denominator, time))
    piano = pretty_midi.Instrument(0)
    piano.notes.append(pretty_midi.Note(80, 60, 0.0, pm.tick_to_time(last_step * 120)))
    pm.instruments.append(piano)
    return pm


def reread(pm, tmp_path):
    path = tmp_path / "piece.mid"
    pm.write(str(path))
    return path


def test_four_four_has_a_downbeat_every_16_steps(tmp_path):
    path = reread(make_midi([(4, 4, 0)], 64), tmp_path)
    assert bar_lines(path) == [0, 16, 32, 48]
    assert meter(path).beats == list(range(0, 64, 4))


def test_three_four_has_a_downbeat_every_12_steps_and_beats_every_quarter(tmp_path):
    path = reread(make_midi([(3, 4, 0)], 48), tmp_path)
    assert bar_lines(path) == [0, 12, 24, 36]
    assert meter(path).beats == list(range(0, 48, 4))


def test_six_eight_has_12_step_bars_and_two_dotted_quarter_beats(tmp_path):
    path = reread(make_midi([(6, 8, 0)], 64), tmp_path)
    assert bar_lines(path) == [0, 12, 24, 36, 48, 60]
    assert meter(path).beats == list(range(0, 64, 6))


def test_a_pickup_marked_by_a_short_time_signature_starts_the_first_full_bar_after_it(tmp_path):
    path = reread(make_midi([(1, 4, 0), (4, 4, 4)], 40), tmp_path)
    assert bar_lines(path) == [0, 4, 20, 36]


def test_a_pickup_the_file_does_not_mark_is_given_in_steps(tmp_path):
    path = reread(make_midi([(6, 8, 0)], 42), tmp_path)
    assert bar_lines(path, pickup_steps=6) == [6, 18, 30]
    assert meter(path, pickup_steps=6).beats == [0, 6, 12, 18, 24, 30, 36]


def test_a_time_signature_change_starts_a_new_bar_where_it_occurs(tmp_path):
    path = reread(make_midi([(3, 4, 0), (2, 4, 36)], 60), tmp_path)
    assert bar_lines(path) == [0, 12, 24, 36, 44, 52]
    # a change in the middle of a bar cuts that bar short
    path = reread(make_midi([(4, 4, 0), (3, 4, 24)], 48), tmp_path)
    assert bar_lines(path) == [0, 16, 24, 36]


def test_duplicate_events_count_once_and_a_file_without_any_is_four_four(tmp_path):
    assert bar_lines(reread(make_midi([(3, 4, 0), (3, 4, 0), (3, 4, 12)], 36), tmp_path)) == [0, 12, 24]
    assert [tuple(s) for s in time_signatures(reread(make_midi([(3, 4, 0), (3, 4, 0)], 12), tmp_path))] == [(3, 4, 0)]
    assert bar_lines(reread(make_midi([], 40), tmp_path)) == [0, 16, 32]


def write_tracks(path, tracks, ticks_per_quarter=480):
    """A type-1 file of mido tracks, each ``[(tick, message), ...]``; the last holds one note 40 quarters long."""
    note = [
        (0, mido.Message("note_on", note=60, velocity=80)),
        (40 * ticks_per_quarter, mido.Message("note_off", note=60)),
    ]
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_quarter)
    for events in [*tracks[:-1], tracks[-1] + note]:
        track, now = mido.MidiTrack(), 0
        for tick, message in sorted(events, key=lambda event: event[0]):
            track.append(message.copy(time=tick - now))
            now = tick
        mid.tracks.append(track)
    mid.save(str(path))
    return path


def signature(numerator, denominator):
    return mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator)


def test_time_signatures_in_any_track_are_read(tmp_path):
    # DAW exports and music21 put the meter in other tracks than the first; pretty_midi reads the first one's
    # only, so this 6/8 tune (tempo alone in track 0, the meter with the notes in track 2) was barred as 4/4
    tempo = (0, mido.MetaMessage("set_tempo", tempo=600_000))
    path = write_tracks(tmp_path / "daw.mid", [[tempo], [], [(0, signature(6, 8)), (96 * 9, signature(9, 8))]], 96)
    assert [tuple(s) for s in time_signatures(path)] == [(6, 8, 0), (9, 8, 36)]
    assert bar_lines(path) == [0, 12, 24, 36, 54, 72, 90, 108, 126, 144]
    assert meter(path).beats[:8] == [0, 6, 12, 18, 24, 30, 36, 42]
    assert meter(load_pretty_midi(path)) == meter(path)  # the kit's PrettyMIDI holds them too
    # one event per track at the same tick, as music21 writes them, counts once; where they differ the last
    # one read (file order, track by track) wins
    path = write_tracks(tmp_path / "two.mid", [[(0, signature(4, 4))], [(0, signature(3, 4))]])
    assert time_signatures(path) == [TimeSignature(3, 4, 0)]
    assert bar_lines(path)[:3] == [0, 12, 24]


def test_tempo_changes_do_not_move_the_bars(tmp_path):
    pm = make_midi([(3, 4, 0)], 48, tempi=((0, 120.0), (480 * 2, 60.0)))
    path = reread(pm, tmp_path)
    assert len(pretty_midi.PrettyMIDI(str(path)).get_tempo_changes()[1]) == 2
    assert bar_lines(path) == [0, 12, 24, 36]


def test_bar_and_beat_lengths_and_the_models_window_in_other_meters():
    assert [bar_steps(s) for s in ("4/4", "3/4", "6/8", "2/2", "2/4")] == [16, 12, 12, 16, 8]
    assert [beat_steps(s) for s in ("4/4", "3/4", "6/8", "2/2", "12/8", "3/8")] == [4, 4, 6, 8, 6, 2]
    assert window_in_bars(32, "3/4") == Fraction(8, 3) == window_in_bars(32, (6, 8))
    assert window_in_bars(32, "2/4") == 4


def test_bad_time_signatures_are_refused_with_the_value_named():
    with pytest.raises(ValueError, match="'3-4'"):
        parse_time_signature("3-4")
    with pytest.raises(ValueError, match="denominator"):
        parse_time_signature((3, 5))
    with pytest.raises(FileNotFoundError, match="nope.mid"):
        bar_lines("nope.mid")


def test_a_bare_roll_gets_its_grid_from_a_time_signature():
    grid = meter_grid("3/4", 30)
    assert grid.downbeats == [0, 12, 24] and grid.beats == list(range(0, 30, 4))
    assert grid.signatures == [TimeSignature(3, 4, 0)]


def test_bar_number_spans_count_real_bars():
    six_eight = meter_grid("6/8", 366).downbeats
    assert bar_number_span(six_eight, 0, 64) == "bars 1-6"
    assert bar_number_span(list(range(6, 366, 12)), 0, 64) == "pickup and bars 1-5"
    assert bar_number_span([0, 16, 32, 48], 16, 32) == "bar 2"


def test_written_meter_reads_back_at_its_steps_whatever_the_tempo(tmp_path):
    roll = np.zeros((88, 64), bool)
    roll[39, ::4] = True
    assert pianoroll_to_midi(roll).time_signature_changes == []  # none: MIDI's default 4/4
    waltz = write_time_signatures(pianoroll_to_midi(roll), "3/4")
    assert time_signatures(reread(waltz, tmp_path)) == [TimeSignature(3, 4, 0)]
    changing = [TimeSignature(4, 4, 24), TimeSignature(6, 8, 0)]  # any order
    written = reread(write_time_signatures(pianoroll_to_midi(roll, bpm=90), changing), tmp_path)
    assert time_signatures(written) == [TimeSignature(6, 8, 0), TimeSignature(4, 4, 24)]
    as_tuple = reread(write_time_signatures(pianoroll_to_midi(roll), tuple(changing)), tmp_path)  # two, not one
    assert time_signatures(as_tuple) == time_signatures(written)
    assert bar_lines(written)[:4] == [0, 12, 24, 40]
    np.testing.assert_array_equal(midi_to_pianoroll(written), roll[:, :61])  # the notes are untouched
    tempo_map = make_midi([], 64, tempi=((0, 120.0), (960, 60.0)))  # the tempo halves at step 8
    assert time_signatures(write_time_signatures(tempo_map, [TimeSignature(3, 4, 0), TimeSignature(2, 4, 20)]))[
        1
    ] == TimeSignature(2, 4, 20)


@pytest.mark.parametrize("bad", ["3/5", "waltz", (0, 4), [(3, 4), "7"], "negative step", "fractional step"])
def test_a_meter_that_cannot_be_written_is_refused_by_name(bad):
    if bad in ("negative step", "fractional step"):
        bad = [TimeSignature(3, 4, -1 if bad == "negative step" else 1.5)]
    with pytest.raises(ValueError, match="time_signature"):
        write_time_signatures(pianoroll_to_midi(np.ones((88, 4), bool)), bad)


def test_a_time_signature_far_past_the_last_note_adds_no_bars(tmp_path):
    # 3/4, a half note, then 4/4 at step 3,333: its bars were drawn up to there (at 1 tick per quarter and
    # tick 9,999,990, 2.5 million of them: a 30-byte file hung)
    pm = make_midi([(3, 4, 0), (4, 4, 3333)], 8)
    path = reread(pm, tmp_path)
    assert bar_lines(path) == [0] and meter(path).beats == [0, 4]
    grid = meter_grid([TimeSignature(3, 4, 0), TimeSignature(4, 4, 10**9)], 30)
    assert grid.downbeats == [0, 12, 24] and grid.end == 30


def test_a_note_shorter_than_a_step_on_a_downbeat_has_its_bar_as_in_the_roll(tmp_path):
    # a 1-tick note at step 16 sounds for one step (a roll of 17): the meter ended at the note's end rounded (16),
    # so the bar the note starts had no line; a note of no length adds no step to either
    pm = make_midi([(4, 4, 0)], 16)
    pm.instruments[0].notes.append(pretty_midi.Note(80, 72, pm.tick_to_time(1920), pm.tick_to_time(1921)))
    pm.instruments[0].notes.append(pretty_midi.Note(80, 74, pm.tick_to_time(2400), pm.tick_to_time(2400)))
    roll, grid, unbarred = roll_and_meter(reread(pm, tmp_path))
    assert roll.shape == (88, 17) and grid.end == 17 and grid.downbeats == [0, 16] and unbarred is None


def test_grids_are_bounded_by_the_end_and_the_longest_roll():
    longer_than_the_piece = meter_grid("4/4", 32, pickup_steps=100_000)  # its beats were counted from step 99,996
    assert longer_than_the_piece.beats == list(range(0, 32, 4)) and longer_than_the_piece.downbeats == []
    with pytest.raises(ValueError, match="MAX_STEPS"):
        meter_grid("4/4", 10**12)


def test_a_time_signature_the_kit_cannot_bar_is_an_error_naming_the_file(tmp_path):
    pm = make_midi([(4, 4, 0)], 16)
    path = tmp_path / "odd_meter.mid"
    pm.write(str(path))
    data = path.read_bytes()
    path.write_bytes(data.replace(b"\xff\x58\x04\x04\x02", b"\xff\x58\x04\x04\x07"))  # 4/4 -> 4/128
    for read in (bar_lines, time_signatures, meter):
        with pytest.raises(ValueError, match=r"odd_meter\.mid: time signature 4/128 at step 0"):
            read(path)
    # where a picture should follow the bars but the notes must still be read: MIDI's 4/4, and the reason
    roll, grid, unbarred = roll_and_meter(path)
    assert roll.shape[1] > 0 and grid.signatures == [TimeSignature(4, 4, 0)] and grid.downbeats == [0]
    assert unbarred.startswith(f"{path}: time signature 4/128 at step 0")
    assert roll_and_meter(pm)[2] is None and roll_and_meter(pm, 4)[1].downbeats == [4]
    path.write_bytes(data.replace(b"\xff\x58\x04\x04\x02", b"\xff\x58\x04\x04\xff"))  # a byte of 255: 4/2**255
    unbarred = roll_and_meter(path)[2]  # the 78-digit denominator was written out whole
    assert unbarred.startswith(f"{path}: time signature 4/2**255 at step 0") and len(unbarred) < len(str(path)) + 150


def test_a_meter_past_the_last_tick_pretty_midi_writes_is_refused_by_name():
    pm = pianoroll_to_midi(np.ones((88, 4), bool))
    with pytest.raises(ValueError, match="step 100,000 .*MAX_TICK"):
        write_time_signatures(pm, [TimeSignature(4, 4, 0), TimeSignature(3, 4, 100_000)])


def test_an_uploaded_file_is_drawn_from_its_first_full_bar_not_its_pickup(tmp_path):
    from musicvae_course.ui.rolldraw import first_window

    # a quarter-note pickup, marked by a 1/4 bar as notation programs export it, then 4/4 quarter notes: the
    # canvas (bar lines every 16 steps) showed the pickup at step 0 and the music's bars 4 steps late
    pm = make_midi([(1, 4, 0), (4, 4, 4)], 0)
    pm.instruments[0].notes = [pretty_midi.Note(80, 60 + i % 5, i * 0.5, i * 0.5 + 0.4) for i in range(17)]
    path = reread(pm, tmp_path)
    np.testing.assert_array_equal(first_window(path), midi_to_pianoroll(path)[:, 4:36])
    # a file without one: 4/4 from step 0, as before
    pm = make_midi([], 0)
    pm.instruments[0].notes = [pretty_midi.Note(80, 60 + i % 5, i * 0.5, i * 0.5 + 0.4) for i in range(17)]
    path = reread(pm, tmp_path)
    np.testing.assert_array_equal(first_window(path), midi_to_pianoroll(path)[:, :32])


def test_a_grid_of_bars_shorter_than_a_step_is_walked_without_fraction_arithmetic_per_bar(monkeypatch):
    # 1/64 over the longest roll is 400,000 bars: stepped in Fractions they took 4 s for a 33-byte file (reconstruct,
    # the drawing widget's upload); the walk is in whole 64ths of a step, exact, and gives the same grid
    from musicvae_course.core.midi_limits import MAX_STEPS

    calls = []
    for name in ("__add__", "__sub__", "__lt__", "__ge__", "__round__"):
        method = getattr(Fraction, name)
        monkeypatch.setattr(Fraction, name, lambda *args, _method=method: calls.append(1) or _method(*args))
    grid = meter_grid([TimeSignature(1, 64, 0), TimeSignature(3, 4, MAX_STEPS - 24)], MAX_STEPS)
    assert len(calls) < 100  # per signature, not per bar
    assert grid.downbeats == [*range(MAX_STEPS - 23), MAX_STEPS - 12]  # a 1/64 bar is a quarter of a step


@pytest.mark.parametrize(
    "steps, signature", [(4, (1, 4)), (2, (1, 8)), (6, (3, 8)), (3, (3, 16)), (8, (2, 4)), (16, (4, 4)), (0.5, (1, 32))]
)
def test_short_bar_is_the_time_signature_of_a_bar_of_that_many_steps(steps, signature):
    assert short_bar(steps, 12) == TimeSignature(*signature, 12)
    assert bar_steps(short_bar(steps)) == Fraction(steps)
    with pytest.raises(ValueError, match="no time signature"):
        short_bar(Fraction(1, 8))


def test_a_pickup_written_as_a_short_bar_bars_as_the_pickup_given():
    signatures = [TimeSignature(3, 4, 0), TimeSignature(2, 4, 52)]
    marked = with_pickup_bar(signatures, 4)
    assert marked == [TimeSignature(1, 4, 0), TimeSignature(3, 4, 4), TimeSignature(2, 4, 52)]
    assert meter_grid(marked, 80).downbeats == [0, *meter_grid(signatures, 80, pickup_steps=4).downbeats]
    assert with_pickup_bar(signatures, 0) == signatures
    assert with_pickup_bar([TimeSignature(3, 4, 0), TimeSignature(2, 4, 2)], 4)[0] == TimeSignature(3, 4, 0)


def test_bars_are_numbered_from_the_first_full_one_after_a_pickup_marked_by_a_short_bar():
    marked = meter_grid([TimeSignature(1, 8, 0), TimeSignature(6, 8, 2)], 40)
    assert marked.downbeats == [0, 2, 14, 26, 38] and numbered_downbeats(marked) == [2, 14, 26, 38]
    assert bar_number_span(numbered_downbeats(marked), 0, 30) == "pickup and bars 1-3"
    given = meter_grid("6/8", 40, pickup_steps=2)
    assert numbered_downbeats(given) == given.downbeats == [2, 14, 26, 38]
    changed = meter_grid([TimeSignature(4, 4, 0), TimeSignature(3, 4, 16)], 60)  # a longer first bar is bar 1
    assert numbered_downbeats(changed) == changed.downbeats == [0, 16, 28, 40, 52]
    assert numbered_downbeats(meter_grid("3/4", 20)) == [0, 12]  # too short to tell: as it is
