"""Fast MIDI -> piano roll with symusic, giving the same rolls as the reference.

:func:`musicvae_course.core.pianoroll.midi_to_pianoroll` (pretty_midi) is the
definition; this module parses with symusic's C++ core (about 100x faster
than pretty_midi on a small file) and then applies the *same* code for the grid:
``pianoroll.ticks_to_steps`` and ``pianoroll.notes_to_pianoroll``. It does not
use symusic's own ``resample``/``pianoroll``, which round onset and duration
separately and so disagree with the reference at tuplets.
Used by :func:`musicvae_course.core.data.build_dataset`
(taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``).

Where the two parsers differ, and what we do about it
-----------------------------------------------------
* **Overlapping notes of one pitch on one channel.** pretty_midi ends *all*
  open notes of that pitch at the first note-off (as a synthesiser releases
  the key); symusic pairs note-ons and note-offs first-in-first-out, and drops
  note-ons that are never closed. Without overlaps both give the same notes
  (and the same roll); with overlaps the reference's roll cannot always be
  recovered from symusic's notes. So a file with an overlap (or two notes of
  one pitch starting on one tick) is read with the reference instead:
  exact, just slower for that file. symusic splits a MIDI track into one track
  per (channel, program) and keeps the track name, so tracks that share a name
  but not a program are checked together.
* **The one difference left: a re-struck key with no note-off of its own.**
  A note-on on a key that is already sounding, followed by only one note-off:
  pretty_midi ends both notes there, symusic ends the first and drops the
  second, leaving no trace to detect. Both cover the same ticks; the rolls
  differ only where the dropped note would have been stretched to the
  reference's one-step minimum (it starts within half a step of the note-off):
  then the reference has one more step. Seen in 8 of 2,000 seeded random
  files built to provoke it (``tests/midi_corpus.make_messy_midi``), in none
  of the music21 exports; ``tests/test_data.py`` checks this bound.
* **Tempo events outside track 0** (pretty-midi#209): irrelevant, both paths
  work in ticks.
* **pretty_midi's "likely corrupt" limit** (largest tick > 10,000,000) is
  mirrored, so both paths refuse the same files (symusic's last event tick
  stands in for mido's, which can differ by a trailing meta event).
* Files mido refuses but symusic reads (rare byte-level damage) are read here;
  the reference raises on them.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from .pianoroll import N_PITCHES, midi_to_pianoroll, notes_to_pianoroll, ticks_to_steps

MAX_TICK = 10_000_000  #: pretty_midi's limit above which a file is "likely corrupt"
MAX_SECONDS = 3600.0  #: default length limit: longer files are refused as absurd


class MidiSkip(ValueError):
    """A file that cannot or should not become a roll; the message says why."""


def read_pianoroll(midi, max_seconds: float | None = MAX_SECONDS) -> tuple[np.ndarray, bool]:
    """Read one MIDI file into a roll, fast, with the reference's rules.

    Args:
        midi: path to a ``.mid`` file, or its bytes.
        max_seconds: refuse files whose last note ends later than this many
            seconds (tempo map applied); ``None`` for no limit.

    Returns:
        ``(roll, used_reference)``: ``roll`` is ``(88, T)`` bool, 4 steps per
        quarter note, identical to ``pianoroll.midi_to_pianoroll``;
        ``used_reference`` is True where overlapping notes sent the file to
        the reference reader (see module docstring).

    Raises:
        MidiSkip: empty, not MIDI, corrupt or truncated, no notes, drums only,
            too long; the message names the reason (without the path).
    """
    data = Path(midi).read_bytes() if isinstance(midi, (str, Path)) else bytes(midi)
    score = _parse(data)
    tracks = [track for track in score.tracks if len(track.notes)]
    pitched = [track for track in tracks if not track.is_drum]
    if not tracks:
        raise MidiSkip("no notes")
    if not pitched:
        raise MidiSkip("drums only (channel 10)")
    if max_seconds is not None and _may_last_longer(score, max_seconds):
        seconds = score.to("second").end()
        if seconds > max_seconds:
            raise MidiSkip(f"too long: {seconds / 60:.0f} min (limit {max_seconds / 60:.0f} min)")
    notes = [track.notes.numpy() for track in pitched]
    start = np.concatenate([n["time"] for n in notes]).astype(np.int64)
    end = start + np.concatenate([n["duration"] for n in notes])
    pitch = np.concatenate([n["pitch"] for n in notes]).astype(np.int64)
    key = pitch
    if len(pitched) > 1:
        key = key + 128 * np.repeat(_pairing_groups(pitched), [len(n["time"]) for n in notes])
    if _has_same_pitch_overlap(key, start, end):
        return _reference_roll(data), True
    sounding = end > start  # zero-length (grace) notes have no duration on the grid
    onset, offset = ticks_to_steps(start[sounding], end[sounding], score.ticks_per_quarter)
    return notes_to_pianoroll(pitch[sounding], onset, offset), False


def _may_last_longer(score, max_seconds: float) -> bool:
    """Cheap bound: could the last event be later than ``max_seconds``? (Slowest tempo throughout.)"""
    slowest = max([500_000] + [tempo.mspq for tempo in score.tempos])  # microseconds per quarter
    return score.end() / score.ticks_per_quarter * slowest / 1e6 > max_seconds


def midi_to_pianoroll_fast(midi) -> np.ndarray:
    """Like ``pianoroll.midi_to_pianoroll`` but with symusic: ``(88, T)`` bool.

    Files without pitched notes give an ``(88, 0)`` roll, as in the reference;
    no length limit. Raises ``ValueError`` naming the file if it is unreadable.
    """
    try:
        return read_pianoroll(midi, max_seconds=None)[0]
    except MidiSkip as err:
        if str(err).startswith(("no notes", "drums only")):
            return np.zeros((N_PITCHES, 0), dtype=bool)
        raise ValueError(f"{midi if isinstance(midi, (str, Path)) else '<bytes>'}: {err}") from err


def read_pianoroll_reference(midi, max_seconds: float | None = MAX_SECONDS) -> np.ndarray:
    """``read_pianoroll``'s twin on the pretty_midi reference: same skips, same roll, slower.

    Returns ``(88, T)`` bool; raises ``MidiSkip`` for the same reasons.
    """

    data = _check_bytes(Path(midi).read_bytes() if isinstance(midi, (str, Path)) else bytes(midi))
    pm = _reference_midi(data)
    instruments = [instrument for instrument in pm.instruments if instrument.notes]
    if not instruments:
        raise MidiSkip("no notes")
    if all(instrument.is_drum for instrument in instruments):
        raise MidiSkip("drums only (channel 10)")
    if max_seconds is not None and pm.get_end_time() > max_seconds:
        raise MidiSkip(f"too long: {pm.get_end_time() / 60:.0f} min (limit {max_seconds / 60:.0f} min)")
    return midi_to_pianoroll(pm)


def _check_bytes(data: bytes) -> bytes:
    if len(data) == 0:
        raise MidiSkip("empty file (0 bytes)")
    if data[:4] != b"MThd":
        raise MidiSkip(f"not a MIDI file (starts with {data[:8]!r})")
    return data


def _parse(data: bytes):
    import symusic

    try:
        score = symusic.Score.from_midi(_check_bytes(data), ttype="tick")
    except MidiSkip:
        raise
    except Exception as err:  # minimidi raises RuntimeError with a description
        raise MidiSkip(f"corrupt or truncated MIDI ({err})") from err
    if score.end() + 1 > MAX_TICK:
        raise MidiSkip(f"largest tick {score.end()} > {MAX_TICK:,}: likely corrupt")
    return score


def _pairing_groups(tracks) -> np.ndarray:
    """One id per symusic track, shared by tracks that may be one MIDI track and channel.

    symusic splits a (track, channel) by program and keeps the name; so tracks
    with one name and different programs may pair note-offs together.
    """
    names = [track.name for track in tracks]
    programs_by_name: dict[str, set] = {}
    for track in tracks:
        programs_by_name.setdefault(track.name, set()).add(track.program)
    name_ids = {name: i for i, name in enumerate(dict.fromkeys(names))}
    return np.array(
        [len(tracks) + name_ids[t.name] if len(programs_by_name[t.name]) > 1 else i for i, t in enumerate(tracks)],
        dtype=np.int64,
    )


def _has_same_pitch_overlap(key, start, end) -> bool:
    """True if two notes of one ``key`` (pairing group x 128 + pitch) overlap or start on one tick.

    Sorted by (key, start), a note overlaps an earlier one of its key iff it
    starts before the running maximum of their ends. Keys go in the high 32
    bits (ticks < 2**31), so a running maximum never leaks across keys.
    """
    keyed = key << 32
    order = np.argsort(keyed | start)
    keyed_start, keyed_end = (keyed | start)[order], (keyed | end)[order]
    running_end = np.maximum.accumulate(keyed_end)
    return bool(np.any((keyed_start[1:] < running_end[:-1]) | (keyed_start[1:] == keyed_start[:-1])))


def _reference_roll(data: bytes) -> np.ndarray:
    return midi_to_pianoroll(_reference_midi(data))


def _reference_midi(data: bytes):
    import pretty_midi

    try:
        with warnings.catch_warnings():
            # "tempo events on non-zero tracks": harmless on a tick grid.
            warnings.simplefilter("ignore", RuntimeWarning)
            return pretty_midi.PrettyMIDI(io.BytesIO(data))
    except Exception as err:  # mido raises many types for damaged files
        raise MidiSkip(f"corrupt MIDI ({type(err).__name__}: {err})") from err
