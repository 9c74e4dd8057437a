"""Exporting one work of music21's corpus to a standard MIDI file (runs in the builder's worker processes)."""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import time
from pathlib import Path
from typing import Iterator

from .works import Work, corpus_root

MIDI_TICKS_PER_QUARTER = 480  # music21's default (10,080) makes pretty_midi call files corrupt


# ---------------------------------------------------------------------------
# Export (runs in worker processes)
# ---------------------------------------------------------------------------
class WorkTimeout(Exception):
    """A work took longer than the per-work time limit."""


def _on_alarm(signum, frame):
    raise WorkTimeout()


@contextlib.contextmanager
def time_limit(timeout_s: int) -> Iterator[None]:
    """Raise :class:`WorkTimeout` in the block after ``timeout_s`` seconds (>= 1; SIGALRM, so worker processes'
    main thread only); the previous handler is restored after."""
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(max(1, int(timeout_s)))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def failure_reason(err: BaseException, timeout_s: int) -> str:
    """One line for a failures report: the time limit, or the error's type and its first 300 characters."""
    if isinstance(err, WorkTimeout):
        return f"timeout after {timeout_s} s"
    return f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"


def _unshare_elements(score) -> None:
    """Give each measure its own copy of objects the ABC parser shares between measures.

    music21's ABC reader reuses one TimeSignature object when a tune returns to an
    earlier meter; the MIDI writer then fails with "object already found in this
    Stream". Copies make the stream a proper tree again.
    """
    from music21 import stream

    seen = set()
    for measure in list(score.recurse().getElementsByClass(stream.Measure)):
        for element in list(measure.elements):
            if id(element) in seen and not isinstance(element, stream.Stream):
                measure.replace(element, copy.deepcopy(element))
            seen.add(id(element))


def _remove_grace_notes(score) -> int:
    """Drop grace notes (zero duration): they leave hanging notes in some MIDI readers."""
    graces = [n for n in score.recurse().notes if n.duration.isGrace]
    for note in graces:
        note.activeSite.remove(note)
    return len(graces)


def _remove_chord_symbols(score) -> int:
    """Drop chord symbols (harmony.Harmony): annotations, not written notes. music21's
    MIDI writer sounds each one as a chord held until the next (in ABC, even section
    letters like "A" become held A-major chords across all voices)."""
    from music21 import harmony

    symbols = list(score.recurse().getElementsByClass(harmony.Harmony))
    for symbol in symbols:
        symbol.activeSite.remove(symbol)
    return len(symbols)


def _strip_repeats(score) -> None:
    """Remove repeat barlines, volta brackets and D.C./segno marks (play straight through)."""
    from music21 import bar, repeat, spanner, stream

    for measure in score.recurse().getElementsByClass(stream.Measure):
        if isinstance(measure.leftBarline, bar.Repeat):
            measure.leftBarline = None
        if isinstance(measure.rightBarline, bar.Repeat):
            measure.rightBarline = bar.Barline("regular")
    for mark in list(score.recurse().getElementsByClass(repeat.RepeatExpression)):
        mark.activeSite.remove(mark)
    for bracket in list(score.recurse().getElementsByClass(spanner.RepeatBracket)):
        for site in list(bracket.sites.get()):
            if site is not None and hasattr(site, "remove"):
                site.remove(bracket)


def export_work(work: Work, out_path: Path, max_measures: int | None = None) -> dict:
    """Parse one work with music21 and write it as a MIDI file.

    Repeats are expanded (music21's MIDI writer does this); where music21 cannot expand
    them, they are removed and the music is written once straight through
    (``repeats='not_expanded'``). ``max_measures`` keeps only the first measures.
    Grace notes and chord symbols are removed first (see the helpers for why); the
    voices of a multi-voice file (``Work.number`` None, e.g. Josquin) become one score.
    Returns ``{'grace_notes_removed', 'chord_symbols_removed', 'repeats',
    'measures_kept'}``; raises on failure.
    """
    import music21
    from music21 import converter

    music21.defaults.ticksPerQuarter = MIDI_TICKS_PER_QUARTER
    source = corpus_root() / work.corpus_path
    # storePickle=False: don't fill music21's scratch dir with 15,000 cache files
    score = converter.parse(source, number=work.number, forceSource=True, storePickle=False)
    if isinstance(score, music21.stream.Opus):
        score = score.scores[0] if len(score.scores) == 1 else score.mergeScores()
    if max_measures is not None:
        score = score.measures(1, max_measures)
    _unshare_elements(score)
    chord_symbols = _remove_chord_symbols(score)
    grace_notes = _remove_grace_notes(score)
    if not score.recurse().notes:
        raise ValueError("no notes after parsing")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # written to a new file, then renamed over out_path: a link left at out_path was followed (the MIDI landed in
    # the file it named, outside the build), a FIFO blocked, a killed worker left half a file under the real name
    partial = out_path.with_name(f".{out_path.name}.{os.getpid()}.partial.mid")
    repeats = "expanded"
    try:
        try:
            score.write("midi", fp=str(partial))
        except music21.repeat.ExpanderException:
            _strip_repeats(score)
            repeats = "not_expanded"
            score.write("midi", fp=str(partial))
        os.replace(partial, out_path)
    finally:
        partial.unlink(missing_ok=True)
    return {
        "grace_notes_removed": grace_notes,
        "chord_symbols_removed": chord_symbols,
        "repeats": repeats,
        "measures_kept": "" if max_measures is None else max_measures,
    }


def _export_job(work: Work, out_path: str, timeout_s: int, max_measures: int | None):
    """Worker entry: export one work under a time limit; never raises.

    The limit is a SIGALRM in the worker (music21 is pure Python, so the alarm
    interrupts it between bytecodes); a pool-level timeout could not stop the task.
    """
    start = time.perf_counter()
    try:
        with time_limit(timeout_s):
            info = export_work(work, Path(out_path), max_measures)
        return {"ok": True, "seconds": time.perf_counter() - start, **info}
    except Exception as err:  # noqa: BLE001 - any music21 failure (or the time limit) skips this work only
        reason = failure_reason(err, timeout_s)
    Path(out_path).unlink(missing_ok=True)  # no half-written file
    return {"ok": False, "seconds": time.perf_counter() - start, "reason": reason}
