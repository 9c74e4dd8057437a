"""MIDI <-> binary piano roll, on the beat grid.

This is the *reference* converter: readable, built on pretty_midi, and the definition every faster path in
:mod:`musicvae_course.core.data` is checked against. Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb``.

Conventions (the model card's, made precise)
--------------------------------------------
* A roll is ``(88, T)``: row ``i`` is MIDI pitch ``LOWEST_PITCH + i`` (21 = A0 ... 108 = C8), column ``t`` is
  one sixteenth note.
* "16th notes at 120 BPM normalised" means we quantise on the file's own beat grid (MIDI ticks), not in
  seconds: one step is a quarter of a quarter note whatever the tempo, and tempo changes do not move the grid.
  Quantising in seconds (pretty_midi's ``get_piano_roll(fs)``) only works for files with a single tempo
  (craffel/pretty-midi#210).
* A "bar" is 16 steps, i.e. a 4/4 bar. In other meters a 32-step window is
  simply 8 quarter notes (e.g. 2 2/3 bars of 3/4).

The one rounding rule (shared with the fast path)
-------------------------------------------------
``onset = round(start_tick * 4 / ticks_per_quarter)`` and ``offset = round(end_tick * 4 / ticks_per_quarter)``
(round half to even, as numpy does); the note covers steps ``onset .. max(offset, onset + 1) - 1``.
So a non-zero note shorter than a sixteenth still sounds for one step.
Notes of zero length in ticks (grace notes) are dropped: they have no duration on this grid. Notes outside
MIDI 21-108 are dropped (an 88-key roll has no row for them). Drum tracks are skipped: their pitches name
instruments, not notes. Overlapping notes of the same pitch merge (the roll is a union). In a file, a note-off
(or a note-on of velocity 0) closes every open note of its key (track, channel, pitch) that started on an
earlier tick, so a re-struck key ends at the first note-off (pretty_midi's rule; ``midi_events`` reproduces it).
A format-2 file's tracks are independent sequences: they follow one another (``midi_events.smf_bytes``).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np

from .midi_events import DRUM_CHANNEL, MidiFormatError, MidiLimitError, division_error, parse_notes, smf_bytes
from .midi_limits import MAX_MIDI_BYTES, MAX_STEPS, LimitError, roll_too_long
from .midi_mido import mido_reads_as_parse_notes, with_every_tracks_time_signatures
from .safe_files import FileSkip, display_name, read_regular_file, time_limit

LOWEST_PITCH = 21  #: MIDI pitch of row 0 (A0)
N_PITCHES = 88  #: rows of a roll; highest pitch is 108 (C8)
HIGHEST_PITCH = LOWEST_PITCH + N_PITCHES - 1
STEPS_PER_BEAT = 4  #: sixteenth notes per quarter note
STEPS_PER_BAR = 16  #: steps in one 4/4 bar
SEGMENT_STEPS = 32  #: steps in one model input (2 bars of 4/4)
SEGMENT_STRIDE = 16  #: hop between training segments (1 bar)

PathLike = Union[str, os.PathLike]


def ticks_to_steps(start_ticks, end_ticks, ticks_per_quarter: int):
    """Apply the module's one rounding rule to arrays of note ticks.

    Args:
        start_ticks, end_ticks: integer arrays of equal shape, in MIDI ticks.
        ticks_per_quarter: the file's resolution (PPQ), > 0.

    Returns:
        ``(onset, offset)`` int64 arrays in steps (sixteenths), with
        ``offset >= onset + 1`` wherever ``end_ticks > start_ticks``.
    """
    start = np.asarray(start_ticks, dtype=np.float64)
    end = np.asarray(end_ticks, dtype=np.float64)
    scale = STEPS_PER_BEAT / float(ticks_per_quarter)
    onset = np.rint(start * scale).astype(np.int64)
    offset = np.maximum(np.rint(end * scale).astype(np.int64), onset + 1)
    return onset, offset


def notes_to_pianoroll(pitch, onset, offset, n_steps: int | None = None, max_steps: int = MAX_STEPS) -> np.ndarray:
    """Paint notes given in steps into an ``(88, T)`` bool roll.

    Args:
        pitch: int array of MIDI pitches; those outside 21-108 are dropped.
        onset, offset: int arrays in steps; a note covers ``[onset, offset)``.
        n_steps: length ``T`` of the roll; default: the last offset.
        max_steps: refuse (``LimitError``, before allocating) a roll longer than this (``MAX_STEPS``).

    Returns:
        ``(88, T)`` bool array.
    """
    pitch = np.asarray(pitch, dtype=np.int64)
    onset = np.asarray(onset, dtype=np.int64)
    offset = np.asarray(offset, dtype=np.int64)
    keep = (pitch >= LOWEST_PITCH) & (pitch <= HIGHEST_PITCH) & (offset > onset)
    pitch, onset, offset = pitch[keep], onset[keep], offset[keep]
    if n_steps is None:
        n_steps = int(offset.max()) if offset.size else 0
    if n_steps > max_steps:
        raise roll_too_long(n_steps, max_steps)
    flat = np.zeros(N_PITCHES * n_steps, dtype=bool)
    onset, offset = np.maximum(onset, 0), np.minimum(offset, n_steps)
    inside = offset > onset
    pitch, onset, offset = pitch[inside], onset[inside], offset[inside]
    if int((offset - onset).sum()) > flat.size:
        # notes stacked on a key (5,000 held at once in a 15 KB file) would index 7.6 GB of cells one by one: merge
        # each pitch's overlapping notes first (sorted by pitch, then onset), so that no cell is indexed twice
        order = np.lexsort((onset, pitch))
        pitch, onset, offset = pitch[order], onset[order], offset[order]
        reach = np.maximum.accumulate(pitch * (n_steps + 1) + offset) - pitch * (n_steps + 1)  # furthest end yet
        first = np.flatnonzero(np.r_[True, (pitch[1:] != pitch[:-1]) | (onset[1:] > reach[:-1])])  # of each run
        pitch, onset, offset = pitch[first], onset[first], reach[np.append(first[1:] - 1, len(pitch) - 1)]
    lengths = offset - onset
    if lengths.size:
        # Index every covered cell at once: O(cells on), no loop over notes, no pass over the (mostly silent) grid
        first_cell = (pitch - LOWEST_PITCH) * n_steps + onset
        position_in_note = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        flat[np.repeat(first_cell, lengths) + position_in_note] = True
    return flat.reshape(N_PITCHES, n_steps)


def existing_path(midi) -> Path:
    """``midi`` as a ``Path`` that exists; else ``TypeError``/``FileNotFoundError`` saying what to pass."""
    if not isinstance(midi, (str, os.PathLike)):  # bytes or a file object: Path() said "expected str, bytes or ..."
        raise TypeError(f"expected the path of a MIDI file or a pretty_midi.PrettyMIDI, got {type(midi).__name__}")
    if not os.path.lexists(midi):  # the name as given: Path() makes "https://x/a.mid" "https:/x/a.mid"
        url = " (a web address: download the file first)" if "://" in display_name(os.fspath(midi)) else ""
        raise FileNotFoundError(f"MIDI file not found: {display_name(os.fspath(midi))}{url}")
    return Path(midi)


def load_pretty_midi(midi, max_steps: int = MAX_STEPS):
    """A ``pretty_midi.PrettyMIDI`` from a path (or the object itself); errors name the file. Only regular files
    are read (see ``safe_files``), at most ``MAX_MIDI_BYTES`` of them, within ``READ_TIMEOUT_S`` (``ReadTimeout``)."""
    import pretty_midi

    from .midi_limits import READ_TIMEOUT_S

    if isinstance(midi, pretty_midi.PrettyMIDI):
        return midi
    path = existing_path(midi)
    try:  # mido takes ~25 us per event: 2 M meta events (8 MB) kept time_signatures busy for 45 s, unbounded
        with time_limit(READ_TIMEOUT_S, f"reading {display_name(path)}"):
            return pretty_midi_from_bytes(read_regular_file(path, MAX_MIDI_BYTES), max_steps)
    except (FileSkip, LimitError, ValueError) as err:
        raise ValueError(f"{display_name(path)}: not a readable MIDI file ({err})") from None


REFERENCE_BOUNDS_CHECK = True  #: bound a roll before pretty_midi allocates its tick tables (benchmarks turn it off)


def _check_bounds(data: bytes, division: int, max_steps: int):
    """Refuse, before pretty_midi sees it, a file whose roll would be longer than ``max_steps`` or that is over a
    limit of ``midi_events`` (``MidiLimitError``); return its note table, or its parse error (said if mido fails too).
    pretty_midi allocates tables as long as the last tick (hundreds of MB for 44 bytes), mido an object per event.
    """
    try:
        table = parse_notes(data)
    except MidiLimitError:
        raise
    except MidiFormatError as err:
        return err
    # the notes the roll is made of, as the fast reader takes them: a drum or a note off the keyboard adds no step
    rolled = (table.channel != DRUM_CHANNEL) & (table.pitch >= LOWEST_PITCH) & (table.pitch <= HIGHEST_PITCH)
    if rolled.any():
        steps = int(ticks_to_steps(table.start[rolled], table.end[rolled], division)[1].max())
        if steps > max_steps:
            raise roll_too_long(steps, max_steps)
    return table


def pretty_midi_from_bytes(data: bytes, max_steps: int = MAX_STEPS):
    """The reference parse: ``pretty_midi.PrettyMIDI`` of a file's (or a RIFF MIDI file's) bytes; ``ValueError``
    saying why not. A time division of 0 or in SMPTE frames is refused from the header first (pretty_midi would
    divide by it). Time signatures come from every track, not pretty_midi's first only
    (``with_every_tracks_time_signatures``)."""
    import pretty_midi

    data = smf_bytes(data)  # a RIFF MIDI (.rmi) file: the MIDI file inside it; format 2: its sequences in turn
    if data[:4] != b"MThd":  # said plainly: mido's words for these are "EOFError" and "MThd not found"
        raise ValueError("empty file (0 bytes)" if not data else f"not a MIDI file (starts with {data[:8]!r})")
    division = int.from_bytes(data[12:14], "big") if len(data) >= 14 else 1
    if (refused := division_error(division)) is not None:  # the fast reader's words
        raise refused
    table = _check_bounds(data, division, max_steps) if REFERENCE_BOUNDS_CHECK else None
    try:
        with warnings.catch_warnings(), mido_reads_as_parse_notes():
            warnings.simplefilter("ignore", RuntimeWarning)  # "tempo events on non-zero tracks": harmless on a grid
            pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    except Exception as err:  # mido raises many types for damaged files; the fast parser's words say more ("EOFError")
        why = f"corrupt or truncated MIDI ({type(err).__name__}: {err})"
        raise ValueError(str(table) if isinstance(table, MidiFormatError) else why) from None
    return pm if table is None or isinstance(table, MidiFormatError) else with_every_tracks_time_signatures(pm, table)


def midi_to_pianoroll(midi, max_steps: int = MAX_STEPS, timeout: float | None = None) -> np.ndarray:
    """Read a MIDI file into a binary piano roll on the sixteenth-note grid.

    Args:
        midi: a path to a ``.mid`` file, or a ``pretty_midi.PrettyMIDI``.
        max_steps: refuse files longer than this many steps, before allocating the roll (``MAX_STEPS``).
        timeout: seconds the whole read may take (default ``READ_TIMEOUT_S``).

    Returns:
        ``(88, T)`` bool array, 4 steps per quarter note; row ``i`` is MIDI pitch ``21 + i``. ``T`` is the end of
        the last note (0 for a file without pitched notes). See the module docstring for the rounding, drum,
        grace-note and range rules.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not readable MIDI, not a regular file, or over a limit (the message names it).
        ReadTimeout: reading took longer than ``timeout``.

    Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb``.
    """
    from .midi_limits import READ_TIMEOUT_S

    with time_limit(READ_TIMEOUT_S if timeout is None else timeout, f"reading {display_name(str(midi))}"):
        return _midi_to_pianoroll(midi, max_steps)


def _midi_to_pianoroll(midi, max_steps: int) -> np.ndarray:
    pm = load_pretty_midi(midi, max_steps)
    starts, ends, pitches = [], [], []
    for instrument in pm.instruments:
        if instrument.is_drum:
            continue
        for note in instrument.notes:
            # pretty_midi stores seconds; time_to_tick inverts its own tempo map: the file's ticks at any tempo
            starts.append(pm.time_to_tick(note.start))
            ends.append(pm.time_to_tick(note.end))
            pitches.append(note.pitch)
    starts, ends = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
    sounding = ends > starts  # drop grace notes (zero ticks long)
    onset, offset = ticks_to_steps(starts[sounding], ends[sounding], pm.resolution)
    try:
        return notes_to_pianoroll(np.asarray(pitches, np.int64)[sounding], onset, offset, max_steps=max_steps)
    except LimitError as err:
        name = display_name(str(midi)) if isinstance(midi, (str, os.PathLike)) else "MIDI"
        raise LimitError(f"{name}: {err}") from None


def segments(
    roll, length: int = SEGMENT_STEPS, stride: int = SEGMENT_STRIDE, min_notes: int = 1, max_windows: int | None = None
) -> np.ndarray:
    """Cut a roll into fixed-length windows, as the model card trains on.

    Args:
        roll: ``(88, T)`` array, bool or exactly {0, 1} (anything else, NaN included, is refused: threshold
            probabilities with ``binarize`` first).
        length: steps per window (32 = 2 bars of 4/4).
        stride: steps between window starts (16 = 1 bar).
        min_notes: keep a window only if at least this many notes start in it
            (a note already sounding at the window's first step counts).
        max_windows: refuse (``LimitError``, before allocating) a roll that would give more windows than this.

    Returns:
        ``(N, 88, length)`` bool array. The roll's tail is padded with silence to a whole number of strides, so
        a piece shorter than ``length`` still gives one window and no bar at the end is lost.

    Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
    """
    roll = to_numpy(roll) if _is_tensor(roll) else np.asarray(roll)
    if roll.ndim != 2 or roll.shape[0] != N_PITCHES:
        raise ValueError(f"roll must have shape (88, T), got {roll.shape}")
    if roll.dtype != bool:
        if not np.issubdtype(roll.dtype, np.number) or np.iscomplexobj(roll):
            raise ValueError(f"roll must be bool or 0/1 numbers, got dtype {roll.dtype}")
        if roll.size and not ((roll == 0) | (roll == 1)).all():
            bad = roll[(roll != 0) & (roll != 1)].ravel()[:3].tolist()
            raise ValueError(f"roll must hold only 0 and 1, found e.g. {bad} (threshold probabilities with binarize)")
        roll = roll.astype(bool)
    if int(length) != length or int(stride) != stride or length < 1 or stride < 1:
        raise ValueError(f"length and stride must be whole numbers >= 1, got {length}, {stride}")
    n_steps = roll.shape[1]
    if n_steps == 0:
        return np.zeros((0, N_PITCHES, length), dtype=bool)
    n_windows = 1 + max(0, -(-(n_steps - length) // stride))  # ceil, at least 1
    if max_windows is not None and n_windows > max_windows:
        raise LimitError(f"{n_windows:,} windows, more than the limit of {max_windows:,} (MAX_SEGMENTS_PER_FILE)")
    padded_steps = length + (n_windows - 1) * stride
    padded = np.zeros((N_PITCHES, padded_steps), dtype=bool)
    padded[:, :n_steps] = roll
    starts = np.arange(0, padded_steps - length + 1, stride)
    # Count notes per window from per-step onset counts (a cumulative sum), so
    # only the windows kept are ever copied.
    onsets = padded.copy()
    onsets[:, 1:] &= ~padded[:, :-1]
    onsets_before = np.concatenate([[0], np.cumsum(onsets.sum(axis=0))])
    notes = onsets_before[starts + length] - onsets_before[starts]
    later = starts > 0  # a note already sounding at a window's first step counts too
    notes[later] += (padded[:, starts[later]] & padded[:, starts[later] - 1]).sum(axis=0)
    kept = starts[notes >= min_notes]
    windows = np.lib.stride_tricks.sliding_window_view(padded, length, axis=1)[:, kept]
    return np.ascontiguousarray(windows.transpose(1, 0, 2))  # (N, 88, length)


def pianoroll_to_midi(
    roll, threshold: float = 0.5, bpm: float = 120.0, program: int = 0, velocity: int = 80, path: PathLike | None = None
):
    """Write a roll as MIDI: each run of consecutive active steps is one note.

    A binary roll cannot tell a held note from a repeated one
    (salu133445/pypianoroll#12). This function chooses *held*: steps that are
    on back to back at one pitch become a single note. So a roll -> MIDI ->
    roll round trip is exact, while two repeated quarter notes come back as
    one half note. To keep repeats apart, leave a silent step between them.

    Args:
        roll: ``(88, T)`` array, or anything that squeezes to it (e.g. the
            model's ``(1, 1, 88, 32)`` output); bool or probabilities in [0, 1].
        threshold: a cell is on where ``roll >= threshold`` (bool rolls: True).
        bpm: tempo of the written file, quarter notes per minute.
        program: General MIDI program of the single instrument (0 = piano).
        velocity: MIDI velocity of every note, 1-127.
        path: if given, also write the file there.

    Returns:
        ``pretty_midi.PrettyMIDI`` with one instrument, resolution 480
        ticks per quarter (120 ticks per step).

    Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb``.
    """
    import pretty_midi

    _check_midi_arguments(threshold, bpm, program, velocity)
    cells = single_roll(roll)
    if cells.dtype != bool:
        cells = cells >= threshold
    seconds_per_step = 60.0 / bpm / STEPS_PER_BEAT
    pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=float(bpm))
    instrument = pretty_midi.Instrument(program=int(program))
    padded = np.pad(cells, ((0, 0), (1, 1)))
    edges = np.diff(padded.astype(np.int8), axis=1)  # +1 at onsets, -1 at offsets
    for row in np.flatnonzero(edges.any(axis=1)):  # sounding pitches only: widgets call this per change
        starts = np.flatnonzero(edges[row] == 1)
        ends = np.flatnonzero(edges[row] == -1)
        for start, end in zip(starts, ends):
            instrument.notes.append(
                pretty_midi.Note(
                    velocity=int(velocity),
                    pitch=LOWEST_PITCH + int(row),
                    start=start * seconds_per_step,
                    end=end * seconds_per_step,
                )
            )
    instrument.notes.sort(key=lambda note: (note.start, note.pitch))
    pm.instruments.append(instrument)
    if path is not None:
        pm.write(str(path))
    return pm


MAX_BPM = 1000.0  #: fastest tempo pianoroll_to_midi writes (and 1 BPM the slowest)


def _check_midi_arguments(threshold, bpm, program, velocity) -> None:
    """Refuse, by name, what would write a wrong or silent file (velocity 0 notes vanish in every player)."""

    def number(value):
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)

    if not (number(threshold) and 0.0 < threshold <= 1.0):
        raise ValueError(f"threshold must be a probability in (0, 1], got {threshold!r}")
    if not (number(bpm) and np.isfinite(bpm) and 1.0 <= bpm <= MAX_BPM):
        raise ValueError(f"bpm must be a number in [1, {MAX_BPM:g}] (quarter notes per minute), got {bpm!r}")
    if not (number(program) and int(program) == program and 0 <= program <= 127):
        raise ValueError(f"program must be a whole number in 0..127 (General MIDI), got {program!r}")
    if not (number(velocity) and int(velocity) == velocity and 1 <= velocity <= 127):
        raise ValueError(f"velocity must be a whole number in 1..127 (0 would silence every note), got {velocity!r}")


def _is_tensor(roll) -> bool:
    return hasattr(roll, "detach")  # a torch.Tensor, without importing torch here


def _is_bool(roll) -> bool:
    return str(roll.dtype) in ("bool", "torch.bool")


def roll_batch(roll, name: str = "roll"):
    """The kit's one roll-shape normaliser: any accepted roll or batch -> ``(B, 88, T)``.

    Args:
        roll: ``(88, T)``, ``(1, 88, T)``, ``(1, 1, 88, T)``, ``(B, 88, T)`` or ``(B, 1, 88, T)`` (the model's
            ``(B, 1, 88, 32)`` included); a torch tensor, a numpy array or nested lists; bool, or numbers in
            [0, 1] (probabilities; logits are refused: apply a sigmoid first).
        name: the argument's name, used in error messages.

    Returns:
        ``(rolls, is_batch)``: ``rolls`` is ``(B, 88, T)`` of the input's kind (a tensor stays a tensor on its
        device and dtype; anything else becomes a numpy array); ``is_batch`` is False for a single roll.

    Raises:
        ValueError: naming ``name``: wrong shape, no rolls, NaN, or values outside [0, 1] (0 steps is accepted).
    """
    array = roll if _is_tensor(roll) else np.asarray(roll)
    shape = tuple(array.shape)
    if array.ndim == 4 and shape[1] == 1:
        array, is_batch = array[:, 0], shape[0] != 1
    elif array.ndim == 3:
        is_batch = shape[0] != 1
    elif array.ndim == 2:
        array, is_batch = array[None], False
    else:
        array, is_batch = None, False
    if array is None or array.shape[1] != N_PITCHES:
        raise ValueError(f"{name} must have shape (88, T), (1, 88, T), (B, 88, T) or (B, 1, 88, T); got {shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {shape})")
    if not _is_bool(array) and array.shape[2] > 0:
        if (array != array).any():  # NaN, for tensors and arrays alike
            raise ValueError(f"{name} contains NaN")
        plain = array.detach() if _is_tensor(array) else array  # float() of a tensor that requires grad warns
        low, high = float(plain.min()), float(plain.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"{name} has values in [{low:.3g}, {high:.3g}]; expected bool or probabilities in [0, 1] "
                "(logits? apply a sigmoid)"
            )
    return array, is_batch


def binarize(roll, threshold: float = 0.5):
    """The kit's one binariser: on where ``roll >= threshold``; a bool roll is returned as it is.

    Any shape; a tensor stays a tensor on its device, anything else becomes a numpy array. ``threshold`` is a
    probability in (0, 1].
    """
    roll = roll if _is_tensor(roll) else np.asarray(roll)
    return roll if _is_bool(roll) else roll >= threshold


def single_roll(roll, name: str = "roll") -> np.ndarray:
    """One roll as an ``(88, T)`` numpy array (bool or float). Shapes and values as :func:`roll_batch`;
    a batch of more than one roll is refused with a ``ValueError`` naming ``name``."""
    rolls, is_batch = roll_batch(roll, name)
    if is_batch:
        raise ValueError(f"{name} must be one (88, T) roll, got a batch of {rolls.shape[0]}")
    return to_numpy(rolls[0])


def to_numpy(roll) -> np.ndarray:
    """A tensor (any device, bf16 included) or array as a numpy array; bool stays bool, other types float32."""
    if _is_tensor(roll):
        roll = roll.detach().cpu()
        roll = roll.numpy() if _is_bool(roll) else roll.float().numpy()
    roll = np.asarray(roll)
    return roll if roll.dtype == bool else roll.astype(np.float32, copy=False)


def pitch_name(pitch: int) -> str:
    """Scientific pitch name of a MIDI pitch, e.g. ``60 -> 'C4'``."""
    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    return f"{names[pitch % 12]}{pitch // 12 - 1}"
