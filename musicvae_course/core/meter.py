"""Meter from a MIDI file: where the bars and beats fall on the 16th-note grid.

A piano roll has 4 steps per quarter note (:mod:`musicvae_course.core.pianoroll`), so the roll itself knows
nothing of bars: a bar of 4/4 is 16 steps, of 3/4 or 6/8 12 steps, of 2/2 16, of 2/4 8. The model reads 32 steps
(2 bars *of 4/4*, as its card defines it): that is 2 2/3 bars of 3/4 or 6/8, and 4 bars of 2/4. This module reads
the file's time-signature events and says where the downbeats are, so pictures and titles count real bars.

Rules
-----
* Every time-signature event starts a new bar (the MIDI convention), at its own step; bars of that signature follow
  until the next event or the end of the piece. A file without time-signature events is 4/4 (the MIDI default).
  A first event after step 0 leaves 4/4 bars before it, the last one cut short where it occurs.
* Events are read from every track, as players and notation programs read them (DAW exports and music21 put them
  in other tracks than the first; pretty_midi alone reads the first track's only). A ``PrettyMIDI`` passed in
  holds what it was read with: use a path, or ``load_pretty_midi(path)``, not ``pretty_midi.PrettyMIDI(path)``.
* Several events at the same step (music21 writes one per track) count once: the last one read wins, in file
  order (track by track). One that repeats the signature in force on one of its bar lines (Logic and Cubase
  write the meter every bar) starts nothing and is left out of :class:`Meter` ``signatures``.
* A **pickup** (anacrusis) that the file marks with a short time signature (e.g. 2/8 then 6/8, as MuseScore
  writes irregular bars) comes out right by the first rule; :func:`numbered_downbeats` numbers bars from the first
  full one after it. MIDI has no pickup event, so a file that starts a pickup with the full signature (music21's,
  LilyPond's and abc2midi's exports do) cannot say so: pass ``pickup_steps`` (the pickup's length in steps) and
  the first full bar starts there; :func:`with_pickup_bar` writes it as a short bar.
* Beats: a simple meter beats on its denominator (3/4: every 4 steps, 2/2: every 8); a compound one (6/8, 9/8,
  12/8, 6/4 ...) on the dotted note, three of the denominator (6/8: every 6 steps).

Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

from .midi_events import MAX_TICK
from .midi_limits import MAX_STEPS, LimitError
from .pianoroll import STEPS_PER_BEAT, load_pretty_midi, midi_to_pianoroll, ticks_to_steps
from .safe_files import display_name

STEPS_PER_WHOLE = 4 * STEPS_PER_BEAT  #: steps in a whole note (16)
# Grid positions in 64ths of a step: every bar and beat of a signature the kit bars is a whole number of them
# (16 * numerator / 64 steps at the finest), so the grid is walked in ints; in Fractions 1/64 bars over the
# longest roll (400,000 of them, a 33-byte file) took 4 s.
_SCALE = 64


class TimeSignature(NamedTuple):
    """A time signature that starts at ``step`` (16th notes from the start of the file)."""

    numerator: int
    denominator: int
    step: int = 0

    def __str__(self) -> str:
        return f"{self.numerator}/{self.denominator}"


class Meter(NamedTuple):
    """Where bars and beats fall: ``downbeats`` and ``beats`` are sorted step lists (beats include downbeats);
    ``signatures`` are the time signatures in force, in order; ``end`` is the last step covered (exclusive)."""

    downbeats: list[int]
    beats: list[int]
    signatures: list[TimeSignature]
    end: int


def parse_time_signature(time_signature) -> TimeSignature:
    """``"6/8"``, ``(6, 8)`` or a :class:`TimeSignature` as a :class:`TimeSignature` starting at step 0.

    Raises:
        ValueError: naming the value, if it is not ``numerator/denominator`` with a positive numerator and a
            power-of-two denominator from 1 to 64.
    """
    if isinstance(time_signature, TimeSignature):
        parsed = time_signature
    else:
        try:
            if isinstance(time_signature, str):
                numerator, denominator = (int(part) for part in time_signature.split("/"))
            else:
                numerator, denominator = (int(part) for part in time_signature)
        except (TypeError, ValueError):
            raise ValueError(f"time_signature must be like '6/8' or (6, 8); got {time_signature!r}") from None
        parsed = TimeSignature(numerator, denominator)
    if parsed.numerator < 1 or parsed.denominator not in (1, 2, 4, 8, 16, 32, 64):
        raise ValueError(f"time_signature {time_signature!r}: need numerator >= 1 and denominator 1, 2, 4, ..., 64")
    return parsed


def bar_steps(time_signature) -> Fraction:
    """Steps (16th notes) in one bar: 4/4 -> 16, 3/4 -> 12, 6/8 -> 12, 2/2 -> 16, 5/32 -> 5/2."""
    signature = parse_time_signature(time_signature)
    return Fraction(STEPS_PER_WHOLE * signature.numerator, signature.denominator)


def beat_steps(time_signature) -> Fraction:
    """Steps in one beat: the denominator's note, or three of them in a compound meter (6/8 -> 6 steps)."""
    signature = parse_time_signature(time_signature)
    note = Fraction(STEPS_PER_WHOLE, signature.denominator)
    compound = signature.numerator % 3 == 0 and signature.numerator > 3
    return 3 * note if compound else note


def window_in_bars(n_steps: int, time_signature) -> Fraction:
    """How many bars of ``time_signature`` ``n_steps`` steps span: 32 steps are 2 bars of 4/4, 8/3 of 3/4 or 6/8."""
    return Fraction(int(n_steps)) / bar_steps(time_signature)


def time_signatures(midi) -> list[TimeSignature]:
    """The file's time signatures with the step each starts at (one per step; 4/4 at 0 if the file has none).

    Args:
        midi: a MIDI path or a ``pretty_midi.PrettyMIDI`` (events from every track when read by the kit's
            ``load_pretty_midi``; see the module docstring).

    Returns:
        :class:`TimeSignature` list sorted by step; the first starts at step 0 (a file whose first event comes
        later is 4/4 until then).

    Raises:
        ValueError: naming the file (when given a path), for an event :func:`parse_time_signature` refuses
            (e.g. 4/128).
    """
    pm = load_pretty_midi(midi)
    return _time_signatures(pm, None if midi is pm else midi)


def _time_signatures(pm, path) -> list[TimeSignature]:
    by_step: dict[int, TimeSignature] = {}
    for event in pm.time_signature_changes:
        # ticks, not seconds: the grid follows the beat whatever the tempo
        step = round(pm.time_to_tick(event.time) * STEPS_PER_BEAT / pm.resolution)
        try:
            by_step[step] = parse_time_signature((event.numerator, event.denominator))._replace(step=step)
        except ValueError:
            where = "" if path is None else f"{display_name(str(path))}: "
            # the event stores the denominator as a power of 2: a byte of 255 is a 78-digit number, said as 2**255
            power = event.denominator.bit_length() - 1
            denominator = event.denominator if power <= 64 or event.denominator != 1 << power else f"2**{power}"
            raise ValueError(
                f"{where}time signature {event.numerator}/{denominator} at step {step} cannot be barred: "
                "the kit needs numerator >= 1 and denominator 1, 2, 4, ..., 64"
            ) from None
    if 0 not in by_step:
        by_step[0] = TimeSignature(4, 4, 0)
    return [by_step[step] for step in sorted(by_step)]


def write_time_signatures(pm, time_signatures):
    """Give a ``pretty_midi.PrettyMIDI`` (e.g. from ``pianoroll_to_midi``) a meter, so notation programs bar it.

    Args:
        pm: the ``PrettyMIDI`` to change (its time-signature events are replaced).
        time_signatures: one signature from the start (``"3/4"``, ``(6, 8)``), or a list of
            :class:`TimeSignature`, each at its ``step`` (4 per quarter note; what :func:`time_signatures` of the
            source file returns). An empty list leaves none, which MIDI reads as 4/4.

    Returns:
        ``pm``, for chaining: ``write_time_signatures(pianoroll_to_midi(roll), "3/4").write(path)``.

    Raises:
        ValueError: naming the value, for a signature :func:`parse_time_signature` refuses or a step that is
            not an int >= 0 or lies past ``MAX_TICK`` of ``pm`` (pretty_midi's limit).

    ``python -m musicvae_course reconstruct`` writes its MIDI files with the source's meter this way;
    ``notebooks/01_loading_the_pretrained_vae.ipynb`` teaches reading a file's meter (:func:`bar_lines`).
    """
    one = isinstance(time_signatures, (str, TimeSignature)) or (
        isinstance(time_signatures, tuple)
        and len(time_signatures) == 2
        and all(isinstance(part, int) for part in time_signatures)
    )
    if one:  # "3/4" or (3, 4); a tuple of two TimeSignature stays a list of two
        time_signatures = [time_signatures]
    events = sorted((parse_time_signature(signature) for signature in time_signatures), key=lambda s: s.step)
    for event in events:
        if isinstance(event.step, bool) or not isinstance(event.step, int) or event.step < 0:
            raise ValueError(f"time_signatures: a step must be an int >= 0, got {event!r}")
        if event.step * pm.resolution / STEPS_PER_BEAT >= MAX_TICK:  # pretty_midi would raise an IndexError
            raise ValueError(f"time_signatures: step {event.step:,} is past this file's last tick (MAX_TICK)")
    import pretty_midi

    pm.time_signature_changes = [
        # ticks, not seconds, as time_signatures() reads them: right at any tempo
        pretty_midi.TimeSignature(
            event.numerator, event.denominator, pm.tick_to_time(round(event.step * pm.resolution / STEPS_PER_BEAT))
        )
        for event in events
    ]
    return pm


def _end_step(pm) -> int:
    """Last step of the piece (exclusive): where a roll of all its notes, drums too, ends by the roll's rule
    (``pianoroll.ticks_to_steps``: a note shorter than a step covers one, one of no length none). The end of the
    last note rounded alone left out the bar of a 1-tick note on its downbeat, which the roll shows."""
    sounding = [note for instrument in pm.instruments for note in instrument.notes if note.end > note.start]
    if not sounding:
        return 0
    last_start, last_end = max(note.start for note in sounding), max(note.end for note in sounding)
    _, offset = ticks_to_steps([pm.time_to_tick(last_start)], [pm.time_to_tick(last_end)], pm.resolution)
    return int(offset[0])  # max(its end, the last onset + 1): rounding is monotonic, so the roll's last offset


def short_bar(steps, step: int = 0) -> TimeSignature:
    """A time signature whose bar is ``steps`` sixteenths long, starting at ``step``: in 64ths, then reduced down to
    quarters (4 -> 1/4, 2 -> 1/8, 6 -> 3/8, 3 -> 3/16, 8 -> 2/4, 16 -> 4/4). Steps may be a Fraction of 64ths."""
    numerator, denominator = int(Fraction(steps) * 4), 64
    if numerator < 1 or numerator != Fraction(steps) * 4:
        raise ValueError(f"a bar of {steps} steps has no time signature (need a whole number of 64ths, > 0)")
    while numerator % 2 == 0 and denominator > 4:
        numerator, denominator = numerator // 2, denominator // 2
    return TimeSignature(numerator, denominator, step)


def with_pickup_bar(signatures, pickup_steps: int) -> list[TimeSignature]:
    """``signatures`` (:class:`TimeSignature` list from step 0) with a pickup of ``pickup_steps`` that the file did
    not mark written as a short first bar, as MuseScore marks one (1/4 at 0, then 3/4 at 4): a MIDI file written
    with these bars as :func:`meter_grid` ``(signatures, end, pickup_steps)`` does, in this module, players and
    notation programs. Unchanged where nothing is to mark: no pickup, or a signature change inside it.
    """
    signatures = sorted(signatures, key=lambda s: s.step)
    if not pickup_steps or not signatures or signatures[0].step != 0:
        return signatures
    if len(signatures) > 1 and signatures[1].step <= pickup_steps:
        return signatures
    return [short_bar(pickup_steps), signatures[0]._replace(step=int(pickup_steps)), *signatures[1:]]


def meter_grid(signatures, end: int, pickup_steps: int = 0) -> Meter:
    """Downbeats and beats for a list of time signatures up to step ``end`` (exclusive).

    Args:
        signatures: :class:`TimeSignature` list (or one signature, e.g. ``"3/4"``, for a bare roll).
        end: steps covered; grid lines at ``step < end`` are returned (``end`` itself is not a downbeat).
        pickup_steps: length of a pickup the signatures do not mark; the first full bar starts there.

    Returns:
        :class:`Meter`. Steps are rounded to whole 16ths where a bar is not a whole number of them (5/32).

    Raises:
        ValueError: ``pickup_steps`` < 0; ``LimitError`` for ``end`` over ``MAX_STEPS`` (the longest roll).
    """
    if isinstance(signatures, (str, tuple)) or not isinstance(signatures, list):
        signatures = [parse_time_signature(signatures)]
    signatures = sorted((parse_time_signature(s) for s in signatures), key=lambda s: s.step)
    if pickup_steps < 0:
        raise ValueError(f"pickup_steps must be >= 0, got {pickup_steps}")
    # past the end: kept as read, unmeasured (a file may hold 100,000 of them after its last note)
    inside = [s for s in signatures[1:] if s.step < end]
    signatures = _without_repeats([*signatures[:1], *inside], pickup_steps) + signatures[1 + len(inside) :]
    if end > MAX_STEPS:
        raise LimitError(f"end {end:,} is more steps than the longest roll (MAX_STEPS, {MAX_STEPS:,})")
    downbeats: list[int] = []
    beats: list[int] = []
    scaled_end = int(end) * _SCALE
    for index, signature in enumerate(signatures):
        if index and signature.step * _SCALE >= scaled_end:
            break  # this one and all after start past the end: 100,000 events after the last note took a second
        # a signature's bars stop at the next one or at the end: a file may place events far past its last note
        stop = min(signatures[index + 1].step * _SCALE, scaled_end) if index + 1 < len(signatures) else scaled_end
        bar, beat = int(bar_steps(signature) * _SCALE), int(beat_steps(signature) * _SCALE)
        start = signature.step * _SCALE
        if index == 0 and pickup_steps:
            # the pickup's beats count back from the first full bar, from the last one before the end
            first = start + round(Fraction(pickup_steps) * _SCALE)
            position = first - beat
            if position >= scaled_end:
                position -= ((position - scaled_end) // beat + 1) * beat
            while position >= start:
                beats.append(_unscaled(position))
                position -= beat
            start = first
        position = start
        while position < stop:
            downbeats.append(_unscaled(position))
            beat_position, bar_stop = position, min(position + bar, stop)
            while beat_position < bar_stop:
                beats.append(_unscaled(beat_position))
                beat_position += beat
            position += bar
    return Meter(sorted(set(downbeats)), sorted(set(beats)), signatures, int(end))


def _without_repeats(signatures: list[TimeSignature], pickup_steps: int = 0) -> list[TimeSignature]:
    """``signatures`` less each one that repeats the signature in force on one of its bar lines: Logic and Cubase
    write the meter again every bar (or every few), which starts no new bar, and a score prints it once. One that
    repeats it mid-bar stays: it starts a new bar there, by the MIDI convention."""
    kept: list[TimeSignature] = []
    origin = Fraction(0)  # where the bars of the signature in force are counted from
    for signature in signatures:
        if kept and (signature.numerator, signature.denominator) == tuple(kept[-1][:2]):
            bar = bar_steps(kept[-1])
            # on a bar line of its own, or of the file's (from the signature's step) where a pickup moves them
            if (signature.step - origin) % bar == 0 or (signature.step - kept[-1].step) % bar == 0:
                continue
        kept.append(signature)
        origin = Fraction(signature.step + (pickup_steps if len(kept) == 1 else 0))
    return kept


def _unscaled(position: int) -> int:
    """The step nearest ``position / _SCALE``, ties to even as Python's ``round``."""
    steps, rest = divmod(position, _SCALE)
    return steps + (2 * rest > _SCALE or (2 * rest == _SCALE and steps % 2 == 1))


def meter(midi, pickup_steps: int = 0) -> Meter:
    """The :class:`Meter` of a MIDI file (path or ``PrettyMIDI``): its downbeats and beats up to its last note.

    ``pickup_steps`` as in :func:`meter_grid`. Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb``.
    """
    pm = load_pretty_midi(midi)
    end = min(_end_step(pm), MAX_STEPS)  # a drum part may run on past the longest roll: no roll shows those bars
    return meter_grid(_time_signatures(pm, None if midi is pm else midi), end, pickup_steps)


def roll_and_meter(midi, pickup_steps: int = 0):
    """A MIDI file (path or ``PrettyMIDI``) parsed once: ``(roll, meter, unbarred)``.

    ``roll``: ``(88, T)`` bool, 4 steps per quarter note (:func:`~musicvae_course.core.pianoroll.midi_to_pianoroll`);
    ``meter``: its :class:`Meter` (``pickup_steps`` as in :func:`meter_grid`); ``unbarred``: ``None``, or why its
    time signatures cannot be barred (4/128), and then ``meter`` is MIDI's default 4/4 over the roll: a picture in
    the wrong bars beats refusing the notes. Used by the ``reconstruct``/``interpolate`` commands and the drawing
    widget's upload (notebook 02).
    """
    pm = load_pretty_midi(midi)
    roll = midi_to_pianoroll(pm)
    try:
        return roll, meter(pm, pickup_steps), None
    except ValueError as err:
        where = "" if pm is midi else f"{display_name(str(midi))}: "
        return roll, meter_grid("4/4", max(roll.shape[1], 1), pickup_steps), f"{where}{err}"


def bar_lines(midi, pickup_steps: int = 0) -> list[int]:
    """The step (4 per quarter note) of every downbeat of a MIDI file, from its time signatures.

    Args:
        midi: a MIDI path or a ``pretty_midi.PrettyMIDI``.
        pickup_steps: length in steps of a pickup the file does not mark (see the module docstring); 0: none,
            or one the file marks with a short time signature.

    Returns:
        Sorted list of ints: every downbeat at a step before the end of the last note. 4/4 from 0 gives
        ``[0, 16, 32, ...]``, 6/8 ``[0, 12, 24, ...]``, a 1-beat pickup before 4/4 ``[4, 20, 36, ...]``; a
        change of signature starts a new bar where it occurs.

    Raises:
        FileNotFoundError, ValueError: the file is missing or not MIDI (the message names it).

    Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb``.
    """
    return meter(midi, pickup_steps).downbeats


def numbered_downbeats(grid: Meter) -> list[int]:
    """The downbeats of ``grid`` that start numbered bars: all but a first bar shorter than the next, a pickup that
    the file marks with a short time signature (MuseScore exports its pickup bar as 1/8 before 6/8) and a score
    numbers 0, as a pickup given in steps is. Bar 1 is then the first full bar however the pickup was said (as
    ``ui.rolldraw`` starts a window there); a piece that truly opens with one shorter bar counts it as a pickup too.
    Where a pickup was given in steps (the first downbeat is after step 0), the first downbeat is bar 1: a 7/8 bar
    after it is not a pickup because a 5/4 bar follows. A marked pickup followed by a single bar (1/4 then 4/4, the
    piece ending in that bar) is told by the signature that starts the bar. A short bar later in the piece (a
    LilyPond ``\\partial`` mid-piece, a repeat's split bar, a change of signature mid-bar) counts as one bar, as
    LilyPond and MuseScore number it. A meter that changes at each of the first two bar lines (5/8, 6/8, 5/8 ...)
    has no pickup: its first bar is bar 1.
    """
    downbeats = list(grid.downbeats)
    if len(downbeats) < 2 or downbeats[0] != 0:
        return downbeats
    if _changes_every_bar(grid):
        return downbeats
    if len(downbeats) >= 3:
        following = downbeats[2] - downbeats[1]
    else:  # a pickup and one bar, or less of it (a file cut short, a window): the signature says how long a bar is
        in_force = [s for s in grid.signatures if isinstance(s, TimeSignature) and s.step <= downbeats[1]]
        following = bar_steps(in_force[-1]) if in_force and in_force[-1].step == downbeats[1] else 0
    return downbeats[1:] if downbeats[1] < following else downbeats


def _changes_every_bar(grid: Meter) -> bool:
    """Whether the meter changes at the first two bar lines (5/8, 6/8, 5/8 ...; 7/8, 2/4, 3/4 ...): a piece in
    changing meter opens with a full bar, not a pickup, however short it is. A pickup the file marks with a short
    signature is followed by more than one bar of the next (2/8 then 6/8 ...)."""
    starts = [s.step for s in grid.signatures if isinstance(s, TimeSignature)]
    return len(grid.downbeats) >= 3 and starts[:3] == grid.downbeats[:3]


def bar_number_span(downbeats, start: int, stop: int) -> str:
    """Which bars the steps ``start .. stop - 1`` cover, in words: ``"bars 1-5"``, ``"pickup and bars 1-5"``.

    Bar 1 is the bar that starts at ``downbeats[0]``; steps before it are the pickup. Used for figure titles, so
    a window of 64 steps of 6/8 is not called "bars 1-4".
    """
    downbeats = sorted(int(d) for d in downbeats)
    if stop <= start:
        raise ValueError(f"empty span: start {start}, stop {stop}")
    numbers = [
        i + 1 for i, d in enumerate(downbeats) if d < stop and (i + 1 == len(downbeats) or downbeats[i + 1] > start)
    ]
    pickup = not downbeats or start < downbeats[0]
    if not numbers:
        return "pickup"
    span = f"bar {numbers[0]}" if len(numbers) == 1 else f"bars {numbers[0]}-{numbers[-1]}"
    return f"pickup and {span}" if pickup else span
