"""Repeat expansion that moves notes instead of deep-copying them.

music21's ``Stream.expandRepeats`` deep-copies every measure it plays, notes included, and a
music21 note is an expensive object to copy: expansion took 70% of an Aird's Airs tune's time
and over 100 s for a Beethoven quartet (which then missed the corpus build's time limit).
The order in which the measures are played depends only on the measures' barlines, volta
brackets and D.C./segno marks, not on their notes. So :func:`expanded_notes` takes the notes
out of the measures (leaving one rest as long as them, so each measure keeps its length), lets
music21 expand the now hollow score (its own rules, layout and errors, cheaply), and puts each
measure's notes into every copy of it, at the copy's offset.
``tests/test_corpus_repeats.py`` checks the result equals ``score.expandRepeats()`` read the
same way.

Taught indirectly: notebook 03 trains on segments read through it.
"""

from __future__ import annotations

from fractions import Fraction


def midi_pitches(element) -> list[int]:
    """MIDI pitches of a note or chord; ``[]`` for rests and unpitched (percussion) notes."""
    from music21 import chord, note

    if isinstance(element, note.Note):
        return [element.pitch.midi]
    if isinstance(element, chord.Chord):
        return [p.midi for p in element.pitches]
    return []


def _measures(part) -> list:
    """The measures directly in ``part`` (what music21's expansion works on), in order."""
    from music21 import stream

    return list(part.getElementsByClass(stream.Measure))


def _hollow(container) -> dict:
    """Take the notes, rests and voices out of every measure in ``container``; return the notes.

    One rest as long as what was taken out stays in each measure, so each measure keeps its
    duration and music21 lays the copies out where it would have laid out the full ones.
    Returns ``{id(measure): [(offset_ql_in_measure, note_or_chord), ...]}``.
    """
    from music21 import note

    contents = {}
    for measure in _measures(container):
        flat = measure.flatten()
        extent = max((e.offset + e.duration.quarterLength for e in flat.notesAndRests), default=0)
        contents[id(measure)] = [(element.offset, element) for element in flat.notes]
        measure.removeByClass(["GeneralNote", "Voice"])
        if extent:
            measure.insert(0, note.Rest(quarterLength=extent))
    return contents


def _original(measure, contents: dict) -> list:
    """The notes of the hollowed measure a copy descends from (follows music21's derivation chain)."""
    seen = measure
    while seen is not None and id(seen) not in contents:
        seen = seen.derivation.origin
    if seen is None:
        raise RuntimeError(f"expanded measure {measure.number} has no original measure")
    return contents[id(seen)]


def _laid_out(measures, contents: dict):
    """``(pitch, start_ql, duration_ql)`` of the notes of ``measures``, each measure where it stands."""
    for measure in measures:
        for within, element in _original(measure, contents):
            for pitch in midi_pitches(element):
                yield pitch, measure.offset + within, element.duration.quarterLength


def _loose_notes(container):
    """Notes placed directly in a part, outside any measure."""
    from music21 import stream

    for element in container.getElementsNotOfClass(stream.Measure):
        for pitch in midi_pitches(element):
            yield pitch, element.offset, element.duration.quarterLength


def _barline(barline):
    """What of a barline matters to the expansion: its repeat sign, if any."""
    from music21 import bar

    return (barline.direction, barline.times) if isinstance(barline, bar.Repeat) else None


def _structure(part) -> list:
    """Everything music21's expansion of a hollowed ``part`` depends on, measure by measure.

    The order measures are played in follows from the repeat barlines, the volta brackets and
    the D.C./segno marks; where each copy lands follows from the measures' offsets and lengths,
    with and without those marks (expansion strips them from its copies).
    """
    from music21 import repeat, spanner

    rows = []
    for m in _measures(part):
        marks = [(type(e).__name__, e.offset) for e in m.getElementsByClass(repeat.RepeatExpression)]
        unmarked = [e.offset + e.duration.quarterLength for e in m if not isinstance(e, repeat.RepeatExpression)]
        brackets = sorted(str(b.number) for b in m.getSpannerSites([spanner.RepeatBracket]))
        ends = (m.highestTime, max(unmarked, default=0))
        rows.append((m.offset, ends, marks, brackets, _barline(m.leftBarline), _barline(m.rightBarline)))
    return rows


def expanded_notes(score, on_failure) -> list[tuple[int, Fraction | float, Fraction | float]]:
    """Pitched notes of ``score`` with its repeats expanded: ``[(midi_pitch, start_ql, duration_ql)]``.

    Offsets are in quarter notes from the start of the expanded score; the same notes, at the
    same offsets, as ``score.expandRepeats()`` flattened part by part. ``score`` is emptied
    of its notes (the caller parsed it for this). Where music21 cannot expand the repeats
    (``repeat.ExpanderException``) the music is read once straight through after
    ``on_failure(score)`` (the export's repeat stripping); any other music21 error propagates.
    Unpitched notes and rests give nothing; a chord gives one note per pitch.
    """
    from music21 import repeat

    parts = list(score.parts) or [score]
    contents: dict = {}
    for part in parts:
        contents.update(_hollow(part))
    notes = [n for part in parts for n in _loose_notes(part)]  # expansion leaves them where they are
    lead = _structure(parts[0]) if len(parts) > 1 else None
    if lead is not None and all(_structure(part) == lead for part in parts[1:]):
        # Parts with the same repeat structure are expanded alike (music21 expands each part on
        # its own), so the first part's expansion serves them all: each of its measures carries
        # the notes of the whole system. A quartet movement then takes seconds, not minutes.
        for part in parts[1:]:
            for first, other in zip(_measures(parts[0]), _measures(part)):
                contents[id(first)] += contents.pop(id(other))
            score.remove(part)
    try:
        expanded = score.expandRepeats()
    except repeat.ExpanderException:
        on_failure(score)
        expanded = score
    for part in list(expanded.parts) or [expanded]:
        notes += _laid_out(_measures(part), contents)
    return notes
