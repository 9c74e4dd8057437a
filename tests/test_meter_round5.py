"""Meter from MIDI of other sources, round 5: where DAWs and notation programs put their time signatures, meters
that repeat, change every bar or sit off the bar lines, compound, odd and absurd meters, and how rolls cut from
such files (late, short, in segments, thousands of bars long) are barred and numbered when drawn."""

import matplotlib

matplotlib.use("Agg")

import re  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from midi_corpus import END_OF_TRACK, held_note, smf, vlq  # noqa: E402

from musicvae_course.core.meter import (  # noqa: E402
    TimeSignature,
    meter,
    meter_grid,
    numbered_downbeats,
    parse_time_signature,
    roll_and_meter,
    time_signatures,
    with_pickup_bar,
)
from musicvae_course.core.pianoroll import midi_to_pianoroll  # noqa: E402
from musicvae_course.ui import plots  # noqa: E402
from musicvae_course.ui.barlines import bar_numbers  # noqa: E402

QUARTER = 480  # ticks per quarter note in these files: 120 ticks a step


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _ts(numerator: int, power: int, delta: int = 0) -> bytes:
    """A time-signature event ``delta`` ticks after the one before: ``numerator / 2**power``."""
    return vlq(delta) + b"\xff\x58\x04" + bytes([numerator, power, 24, 8])


def _file(tmp_path, name: str, *tracks: bytes):
    path = tmp_path / f"{name}.mid"
    path.write_bytes(smf(*tracks))
    return path


def _every_bar(signatures, ticks_per_bar) -> bytes:
    """A track of ``(numerator, power)`` signatures, one per bar (bar lengths in ticks), then end of track."""
    events, delta = b"", 0
    for (numerator, power), ticks in zip(signatures, ticks_per_bar):
        events += _ts(numerator, power, delta)
        delta = ticks
    return events + END_OF_TRACK


def _bar_line_xs(ax):
    lines = [c for c in ax.collections if c.get_gid() == "bar-lines"]
    return sorted(float(segment[0, 0]) for segment in lines[0].get_segments()) if lines else []


def _beat_line_xs(ax):
    lines = [c for c in ax.collections if c.get_gid() == "beat-lines"]
    return sorted(float(segment[0, 0]) for segment in lines[0].get_segments()) if lines else []


def _labels(ax):
    """(x, text) of the bar numbers printed above ``ax``."""
    tops = [child for child in ax.child_axes if child.get_gid() == "bar-numbers"]
    if not tops:
        return []
    ticks = tops[0].xaxis.get_majorticklocs()
    return [(float(x), label.get_text()) for x, label in zip(ticks, tops[0].xaxis.get_majorticklabels())]


def _drawn(path, **kwargs):
    roll, grid, _ = roll_and_meter(path)
    return plots.visualize_pianoroll(roll, bar_lines=grid, **kwargs).axes[0]


def test_time_signatures_only_on_a_later_track_bar_the_piece(tmp_path):
    # a DAW's empty conductor track, the meter with the notes; or the meter alone in the last of three tracks
    on_notes = _file(tmp_path, "on_notes", END_OF_TRACK, _ts(3, 2) + held_note(8 * QUARTER))
    on_last = _file(tmp_path, "on_last", END_OF_TRACK, held_note(8 * QUARTER), _ts(3, 2) + END_OF_TRACK)
    for path in (on_notes, on_last):
        assert time_signatures(path) == [TimeSignature(3, 4, 0)]
        assert meter(path).downbeats == [0, 12, 24]
        assert [text for _, text in _labels(_drawn(path))] == ["bar 1 (3/4)", "2", "3"]


def test_conflicting_signatures_at_one_tick_count_once_the_last_track_read_winning(tmp_path):
    path = _file(tmp_path, "conflict", _ts(3, 2) + END_OF_TRACK, _ts(6, 3) + held_note(8 * QUARTER))
    grid = meter(path)
    assert grid.signatures == [TimeSignature(6, 8, 0)] and grid.downbeats == [0, 12, 24]
    assert grid.beats == [0, 6, 12, 18, 24, 30]  # one meter's beats, not both


def test_a_signature_repeated_every_bar_adds_no_bars_and_is_printed_once(tmp_path):
    # Logic and Cubase write the meter again at every bar line: a score prints it once
    repeated = _every_bar([(4, 2)] * 40, [4 * QUARTER] * 40)
    path = _file(tmp_path, "repeated", repeated, held_note(40 * 4 * QUARTER))
    grid = meter(path)
    assert len(time_signatures(path)) == 40  # the file's events, as read
    assert grid.signatures == [TimeSignature(4, 4, 0)]
    assert grid.downbeats == list(range(0, 640, 16))
    labels = [text for _, text in _labels(_drawn(path))]
    assert labels[0] == "bar 1 (4/4)" and len(labels) > 10
    assert not any("(" in text for text in labels[1:])  # was "7 (4/4)", "11 (4/4)" ...: every label named it
    # a pickup the file does not mark: its repeats on the file's bar lines do not cut the bars given
    shifted = meter(path, pickup_steps=4)
    assert shifted.downbeats == list(range(4, 640, 16)) and shifted.signatures == [TimeSignature(4, 4, 0)]
    assert with_pickup_bar(shifted.signatures, 4) == [TimeSignature(1, 4, 0), TimeSignature(4, 4, 4)]


def test_a_repeated_signature_mid_bar_still_starts_a_new_bar():
    grid = meter_grid([TimeSignature(4, 4, 0), TimeSignature(4, 4, 24), TimeSignature(4, 4, 40)], 64)
    assert grid.downbeats == [0, 16, 24, 40, 56]  # 40 is a bar line of the 4/4 that started at 24: no new one
    assert grid.signatures == [TimeSignature(4, 4, 0), TimeSignature(4, 4, 24)]
    assert bar_numbers(64, bar_lines=grid) == [(0, 1, "4/4"), (16, 2, ""), (24, 3, "4/4"), (40, 4, ""), (56, 5, "")]


def test_a_signature_off_the_bar_lines_starts_a_short_bar_and_an_off_grid_tick_rounds_to_its_step(tmp_path):
    mid_bar = _file(tmp_path, "mid_bar", _ts(4, 2) + _ts(3, 2, 6 * QUARTER) + END_OF_TRACK, held_note(12 * QUARTER))
    grid = meter(mid_bar)
    assert grid.downbeats == [0, 16, 24, 36] and numbered_downbeats(grid) == [0, 16, 24, 36]
    assert [text for _, text in _labels(_drawn(mid_bar))] == ["bar 1 (4/4)", "2", "3 (3/4)", "4"]
    off_grid = _file(tmp_path, "off_grid", _ts(4, 2) + _ts(3, 2, 1923) + END_OF_TRACK, held_note(8 * QUARTER))
    assert time_signatures(off_grid) == [TimeSignature(4, 4, 0), TimeSignature(3, 4, 16)]


@pytest.mark.parametrize(
    "numerator, power, bar, beats",
    [(6, 3, 12, [6]), (9, 3, 18, [6, 12]), (12, 3, 24, [6, 12, 18]), (3, 3, 6, [2, 4])],
)
def test_compound_meters_beat_on_the_dotted_quarter(tmp_path, numerator, power, bar, beats):
    path = _file(tmp_path, f"m{numerator}", _ts(numerator, power) + held_note(2 * bar * QUARTER // 4))
    grid = meter(path)
    assert grid.downbeats == [0, bar]
    ax = _drawn(path)
    assert _beat_line_xs(ax) == [b - 0.5 for b in beats + [bar + b for b in beats]]
    assert _bar_line_xs(ax) == [bar - 0.5]


def test_odd_meters_and_a_meter_that_changes_every_bar_are_numbered_from_their_first_bar(tmp_path):
    five = _file(tmp_path, "five", _ts(5, 2) + held_note(10 * QUARTER))
    assert meter(five).downbeats == [0, 20] and meter(five).beats == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36]
    seven = _file(tmp_path, "seven", _ts(7, 3) + held_note(7 * QUARTER))
    assert meter(seven).downbeats == [0, 14]
    # 5/8, 6/8, 5/8, 6/8 ...: the first bar is shorter than the next but no pickup (it was numbered as one,
    # every bar number one too low)
    changing = _every_bar([(5, 3), (6, 3)] * 4, [5 * QUARTER // 2, 3 * QUARTER] * 4)
    path = _file(tmp_path, "changing", changing, held_note(22 * QUARTER))
    grid = meter(path)
    assert grid.downbeats == [0, 10, 22, 32, 44, 54, 66, 76] and numbered_downbeats(grid) == grid.downbeats
    assert [text for _, text in _labels(_drawn(path, figsize=(14, 4)))][:3] == ["bar 1 (5/8)", "2 (6/8)", "3 (5/8)"]
    # a pickup marked with a short signature before bars of one meter is still a pickup
    pickup = _file(tmp_path, "pickup", _every_bar([(2, 3), (6, 3)], [QUARTER, 0]), held_note(13 * QUARTER))
    assert numbered_downbeats(meter(pickup)) == [4, 16, 28, 40]


@pytest.mark.parametrize(
    "power, signature, downbeats",
    [(0, "3/1", [0, 48]), (1, "3/2", [0, 24, 48, 72]), (4, "3/16", [0, 3, 6, 9]), (5, "3/32", [0, 2, 3, 4])],
)
def test_denominators_from_1_to_32_are_barred_and_drawn(tmp_path, power, signature, downbeats):
    path = _file(tmp_path, f"d{power}", _ts(3, power) + held_note(24 * QUARTER))
    grid = meter(path)
    assert [str(s) for s in grid.signatures] == [signature] and grid.downbeats[:4] == downbeats
    assert _labels(_drawn(path))[0] == (-0.5, f"bar 1 ({signature})")


@pytest.mark.parametrize("power, said", [(10, "4/1024"), (255, "4/2**255")])
def test_absurd_denominators_are_an_error_naming_the_file_or_a_stated_four_four(tmp_path, power, said):
    path = _file(tmp_path, "absurd", _ts(4, power) + held_note(8 * QUARTER))
    with pytest.raises(ValueError, match=re.escape(f"absurd.mid: time signature {said} at step 0 cannot be barred")):
        meter(path)
    roll, grid, unbarred = roll_and_meter(path)
    assert roll.any() and grid.downbeats == [0, 16] and said in unbarred
    assert _labels(plots.visualize_pianoroll(roll, bar_lines=grid).axes[0])[0][1] == "bar 1 (4/4)"


@pytest.mark.parametrize("bad", ["3/0.5", "4/0", "0/4", (4, 1024), "4/-2", "four/4", (4,)])
def test_broken_meters_given_by_hand_are_refused_by_value(bad):
    with pytest.raises(ValueError, match="time_signature"):
        parse_time_signature(bad)


def test_a_piece_whose_notes_start_late_counts_bars_from_the_files_start(tmp_path):
    rest = b"\x00\xff\x58\x04\x04\x02\x18\x08" + vlq(10 * QUARTER)  # 10 quarters of silence, then one
    path = _file(tmp_path, "late", rest + b"\x90\x3c\x40" + vlq(QUARTER) + b"\x80\x3c\x00" + END_OF_TRACK)
    roll = midi_to_pianoroll(path)
    assert roll.shape[1] == 44 and not roll[:, :40].any()  # the roll keeps the silence: not cropped
    assert meter(path).downbeats == [0, 16, 32]
    assert [text for _, text in _labels(_drawn(path))] == ["bar 1 (4/4)", "2", "3"]


def test_segments_of_32_steps_number_the_bars_of_the_piece_they_come_from():
    grid = meter_grid("3/4", 96)
    labels = [
        _labels(plots.visualize_pianoroll(np.ones((88, 32), bool), bar_lines=grid, start=s).axes[0])
        for s in (0, 32, 64)
    ]
    assert labels[0] == [(-0.5, "bar 1 (3/4)"), (11.5, "2"), (23.5, "3")]
    assert labels[1] == [(3.5, "bar 4 (3/4)"), (15.5, "5"), (27.5, "6")]  # starts mid bar 3: 4 is the first shown
    assert labels[2] == [(7.5, "bar 7 (3/4)"), (19.5, "8")]


def test_thousands_of_bars_of_changing_meter_draw_thinned_and_numbered_from_bar_1():
    pairs = 2_000  # 4,000 bars of 5/8 + 6/8, a signature every bar
    signatures = [TimeSignature(5 if k % 2 == 0 else 6, 8, 22 * (k // 2) + 10 * (k % 2)) for k in range(2 * pairs)]
    grid = meter_grid(signatures, 22 * pairs)
    assert len(grid.downbeats) == 2 * pairs and numbered_downbeats(grid)[0] == 0
    ax = plots.visualize_pianoroll(np.ones((88, 22 * pairs), bool), bar_lines=grid).axes[0]
    labels = _labels(ax)
    assert labels[0] == (-0.5, "bar 1 (5/8)") and 3 <= len(labels) <= 20
    assert 10 <= len(_bar_line_xs(ax)) <= 200 and _beat_line_xs(ax) == []


def test_a_roll_shorter_than_a_bar_and_a_roll_without_a_file_state_their_meter():
    short = plots.visualize_pianoroll(np.ones((88, 8), bool), bar_lines=meter_grid("3/4", 8)).axes[0]
    assert _labels(short) == [(-0.5, "bar 1 (3/4)")] and _bar_line_xs(short) == []
    assert _beat_line_xs(short) == [3.5]
    bare = plots.visualize_pianoroll(np.ones((88, 40), bool)).axes[0]  # no file: MIDI's default 4/4, said so
    assert _labels(bare) == [(-0.5, "bar 1 (4/4)"), (15.5, "2"), (31.5, "3")]
