"""Fast MIDI -> piano roll, giving the same rolls as the reference, with no fallback.

:func:`musicvae_course.core.pianoroll.midi_to_pianoroll` (pretty_midi) is the definition. This module parses
the bytes with :mod:`musicvae_course.core.midi_events` (one loop over the events, the reference's note pairing:
a note-off closes every open note of its key that started earlier, re-struck keys and velocity-0 note-ons
included) and then applies the *same* code for the grid: ``pianoroll.ticks_to_steps`` and
``pianoroll.notes_to_pianoroll``. Files with overlapping notes of one pitch need no pretty_midi pass.
Used by :func:`musicvae_course.core.data.build_dataset` (taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``).

Why not symusic's notes: symusic pairs note-ons and note-offs first-in-first-out and drops note-ons that are
never closed, so where one pitch overlaps itself its notes differ from the reference's and the difference cannot
be undone afterwards (see ``midi_events``). Why not symusic's own ``resample``/``pianoroll``: they round onset
and duration separately and disagree with the reference at tuplets.

Work is bounded before any roll is allocated: file size (``MAX_MIDI_BYTES``), notes (``MAX_NOTES``), events
(``MAX_EVENTS``), steps (``MAX_STEPS``, from the note table), all in :mod:`musicvae_course.core.midi_limits`.
Events without notes that mido cannot decode (a key signature of 64 sharps, a short time signature, sysex bytes
over 127) are read by both readers: the reference is mended (``midi_mido.mido_reads_as_parse_notes``). Files mido
refuses for other byte-level damage but this parser reads are rare; the reference raises on them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .midi_events import DRUM_CHANNEL, MidiFormatError, parse_notes, seconds_at, smf_bytes
from .midi_limits import MAX_MIDI_BYTES, MAX_STEPS, LimitError, roll_too_long
from .pianoroll import (
    HIGHEST_PITCH,
    LOWEST_PITCH,
    N_PITCHES,
    existing_path,
    midi_to_pianoroll,
    notes_to_pianoroll,
    pretty_midi_from_bytes,
    ticks_to_steps,
)
from .safe_files import FileSkip, display_name, read_regular_file

MAX_SECONDS = 3600.0  #: default length limit: longer files are refused as absurd


class MidiSkip(ValueError):
    """A file that cannot or should not become a roll; the message says why."""


def read_pianoroll(midi, max_seconds: float | None = MAX_SECONDS, max_steps: int = MAX_STEPS) -> np.ndarray:
    """Read one MIDI file into a roll, fast, with the reference's rules.

    Args:
        midi: path to a ``.mid`` file (a regular file; symlinks are followed), or its bytes.
        max_seconds: refuse files whose last note ends later than this many seconds (the first track's tempo
            map applied, as the reference applies it); ``None`` for no limit.
        max_steps: refuse files longer than this many sixteenth steps (``MAX_STEPS``), before allocating.

    Returns:
        ``(88, T)`` bool roll, 4 steps per quarter note, identical to ``pianoroll.midi_to_pianoroll``.

    Raises:
        MidiSkip: empty, not MIDI, corrupt or truncated, no notes, drums only, too long, over a limit; the message
            names the reason (without the path).
    """
    data = _file_bytes(midi)
    try:
        table = parse_notes(_check_bytes(data))
    except MidiFormatError as err:
        raise MidiSkip(str(err)) from None
    if not len(table.pitch):
        raise MidiSkip("no notes")
    pitched = table.channel != DRUM_CHANNEL
    if not pitched.any():
        raise MidiSkip("drums only (channel 10)")
    onset, offset = ticks_to_steps(table.start[pitched], table.end[pitched], table.ticks_per_quarter)
    on_keys = (table.pitch[pitched] >= LOWEST_PITCH) & (table.pitch[pitched] <= HIGHEST_PITCH)
    if on_keys.any() and int(offset[on_keys].max()) > max_steps:  # before seconds, in the order the reference checks
        raise MidiSkip(str(roll_too_long(int(offset[on_keys].max()), max_steps)))
    if max_seconds is not None:
        seconds = seconds_at(int(table.end.max()), table.tempos, table.ticks_per_quarter)
        if seconds > max_seconds:
            raise _too_long(seconds, max_seconds)
    try:
        return notes_to_pianoroll(table.pitch[pitched], onset, offset, max_steps=max_steps)
    except ValueError as err:
        raise MidiSkip(str(err)) from None


def midi_to_pianoroll_fast(midi) -> np.ndarray:
    """Like ``pianoroll.midi_to_pianoroll`` but fast: ``(88, T)`` bool.

    Files without pitched notes give an ``(88, 0)`` roll, as in the reference; no length limit in seconds.
    Raises what the reference raises, in its words: ``FileNotFoundError``, or ``ValueError`` naming the file if it
    is unreadable or over a limit.
    """
    name = "<bytes>" if isinstance(midi, (bytes, bytearray, memoryview)) else display_name(existing_path(midi))
    try:
        return read_pianoroll(midi, max_seconds=None)
    except MidiSkip as err:
        if str(err).startswith(("no notes", "drums only")):
            return np.zeros((N_PITCHES, 0), dtype=bool)
        # display_name: a name with a newline or an escape sequence cannot forge a line of the message
        raise ValueError(f"{name}: not a readable MIDI file ({err})") from err


def read_pianoroll_reference(midi, max_seconds: float | None = MAX_SECONDS, max_steps: int = MAX_STEPS) -> np.ndarray:
    """``read_pianoroll``'s twin on the pretty_midi reference: same skips, same roll, slower.

    Returns ``(88, T)`` bool; raises ``MidiSkip`` for the same reasons.
    """
    pm = _reference_midi(_check_bytes(_file_bytes(midi)), max_steps)
    instruments = [instrument for instrument in pm.instruments if instrument.notes]
    if not instruments:
        raise MidiSkip("no notes")
    if all(instrument.is_drum for instrument in instruments):
        raise MidiSkip("drums only (channel 10)")
    # the last note's end, as read_pianoroll: pm.get_end_time() also counts markers, lyrics and tempo events
    end = max(note.end for instrument in instruments for note in instrument.notes)
    if max_seconds is not None and end > max_seconds * (1 - 1e-9):
        # near the limit, measured as read_pianoroll measures (an exact sum over the tempo map): pretty_midi's
        # seconds are a sum of floats, and a file ending on the limit (1 hour at 150 BPM) was a hair over it here only
        times, tempi = pm.get_tempo_changes()
        tempos = [(pm.time_to_tick(time), round(60_000_000 / bpm)) for time, bpm in zip(times, tempi)]
        seconds = seconds_at(pm.time_to_tick(end), tempos, pm.resolution)
        if seconds > max_seconds:
            raise _too_long(seconds, max_seconds)
    try:
        return midi_to_pianoroll(pm, max_steps=max_steps)
    except ValueError as err:
        raise MidiSkip(str(err)) from None


def _too_long(seconds: float, max_seconds: float) -> MidiSkip:
    length, limit = f"{seconds / 60:.0f} min", f"{max_seconds / 60:.0f} min"
    for digits in (3, 6, 9):  # just over: "60 min (limit 60 min)" would not say why; seconds, as many digits as tell
        if length == limit:
            length, limit = f"{seconds:,.{digits}f} s", f"{max_seconds:,.{digits}f} s"
    return MidiSkip(f"too long: {length} (limit {limit})")


def _file_bytes(midi) -> bytes:
    if isinstance(midi, (str, Path)):
        try:
            return read_regular_file(midi, max_bytes=MAX_MIDI_BYTES)
        except (FileSkip, LimitError) as err:
            raise MidiSkip(str(err)) from None
    data = bytes(midi)
    if len(data) > MAX_MIDI_BYTES:
        raise MidiSkip(f"{len(data):,} bytes: larger than MAX_MIDI_BYTES ({MAX_MIDI_BYTES:,})")
    return data


def _check_bytes(data: bytes) -> bytes:
    if len(data) == 0:
        raise MidiSkip("empty file (0 bytes)")
    try:
        data = smf_bytes(data)  # a RIFF MIDI (.rmi) file is read as the MIDI file inside it
    except MidiFormatError as err:
        raise MidiSkip(str(err)) from None
    if data[:4] != b"MThd":
        raise MidiSkip(f"not a MIDI file (starts with {data[:8]!r})")
    return data


def _reference_midi(data: bytes, max_steps: int = MAX_STEPS):
    try:
        return pretty_midi_from_bytes(data, max_steps)
    except ValueError as err:
        raise MidiSkip(str(err)) from None
