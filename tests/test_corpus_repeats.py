"""Repeat expansion without copying notes (corpus/repeats.py) gives music21's own expansion."""

from __future__ import annotations

import copy

import pytest

from musicvae_course.corpus import rolls
from musicvae_course.corpus import works as corpus_works
from musicvae_course.corpus.repeats import expanded_notes, midi_pitches

music21 = pytest.importorskip("music21")
from music21 import bar, converter, repeat, spanner, stream  # noqa: E402


def _music21_expansion(score) -> list:
    """The reference: ``score.expandRepeats()`` (or straight through), flattened part by part."""
    try:
        score = score.expandRepeats()
    except repeat.ExpanderException:
        pass
    return sorted(
        (pitch, float(e.offset), float(e.duration.quarterLength))
        for part in score.parts or [score]
        for e in part.flatten().notes
        for pitch in midi_pitches(e)
    )


def _fast(score, on_failure=lambda s: None) -> list:
    return sorted((p, float(s), float(d)) for p, s, d in expanded_notes(score, on_failure))


def _score(*bars: str, parts: int = 1):
    """A score of ``parts`` identical parts from tinynotation bars (4/4)."""
    return stream.Score([converter.parse("tinynotation: 4/4 " + " ".join(bars)) for _ in range(parts)])


def _measures(part):
    return list(part.getElementsByClass(stream.Measure))


def _repeat(ms, first, last, times=None):
    ms[first].leftBarline = bar.Repeat(direction="start")
    ms[last].rightBarline = bar.Repeat(direction="end", times=times)


def _voltas(part):
    ms = _measures(part)
    _repeat(ms, 0, 2)
    part.insert(0, spanner.RepeatBracket(ms[2], number=1))
    part.insert(0, spanner.RepeatBracket(ms[3], number=2))


def _da_capo_al_fine(part):
    ms = _measures(part)
    ms[1].append(repeat.Fine())
    ms[-1].append(repeat.DaCapoAlFine())


def _segno_at_the_barline(part):
    # a mark after the last note of the bar, as in a pickup bar whose segno sits where the full
    # bar would end (Mozart K. 80/iv): music21's copy loses the mark, so the bar gets shorter
    ms = _measures(part)
    ms[0].insert(ms[0].highestTime + 2.0, repeat.Segno())
    ms[-1].append(repeat.DalSegno())


BARS = ("c4 d8 e8 f2", "g4 a4 b4 c'4", "d'2 e'2", "f'1", "g'4 a'4 b'2", "c''1")
CASES = {
    "repeat three times": lambda part: _repeat(_measures(part), 2, 3, times=3),
    "two repeats": lambda part: (_repeat(_measures(part), 1, 2), _repeat(_measures(part), 4, 5)),
    "first and second endings": _voltas,
    "da capo al fine": _da_capo_al_fine,
    "segno at the barline": _segno_at_the_barline,
}


@pytest.mark.parametrize("alike", [True, False], ids=["parts alike", "parts differ"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_expansion_lays_out_the_notes_as_music21_expands_them(case, alike):
    score = _score(*BARS, parts=2)  # the second part an octave lower
    score.parts[1].transpose(-12, inPlace=True)
    for part in score.parts if alike else score.parts[:1]:  # alike: one expansion serves both
        CASES[case](part)
    expected = _music21_expansion(copy.deepcopy(score))
    assert len(expected) > len(_music21_expansion(_score(*BARS, parts=2)))  # repeats were taken
    assert _fast(score) == expected


def test_voices_and_chords_keep_their_offsets():
    score = _score("c4 d4 e4 f4", "g1", "a1")
    ms = _measures(score.parts[0])
    two_voices = stream.Measure(number=ms[1].number)
    for line in ("g2 a2", "<c e>1"):
        voice = stream.Voice(converter.parse("tinynotation: " + line).flatten().notes)
        two_voices.insert(0, voice)
    score.parts[0].replace(ms[1], two_voices)
    _repeat(_measures(score.parts[0]), 0, 1)
    reference = copy.deepcopy(score)
    assert _fast(score) == _music21_expansion(reference)


def test_badly_formed_repeats_are_read_straight_through_after_the_callback():
    score = _score(*BARS)
    _measures(score.parts[0])[1].leftBarline = bar.Repeat(direction="start")  # a start without an end
    with pytest.raises(repeat.ExpanderException):
        copy.deepcopy(score).expandRepeats()
    called = []
    notes = _fast(score, on_failure=called.append)
    assert called == [score]
    assert notes == _music21_expansion(_score(*BARS))  # each bar once, where it is written


@pytest.mark.parametrize(
    "work",
    [corpus_works.Work("airdsAirs/book2.abc", 276), corpus_works.Work("mozart/k80/movement4.mxl")],
    ids=lambda w: w.key,
)
def test_corpus_works_with_voltas_and_segno_match_music21(work):
    score = rolls._prepared_score(work)
    reference = copy.deepcopy(score)
    assert rolls._has_repeats(score)
    assert _fast(score) == _music21_expansion(reference)


def test_parsing_without_beaming_restores_music21_afterwards():
    original = stream.Stream.makeBeams
    with pytest.raises(ZeroDivisionError), rolls._without_beaming():
        assert stream.Stream.makeBeams is not original
        part = converter.parse("tinynotation: 4/4 c8 d e f g a b c'")
        assert part.makeBeams(inPlace=True) is None
        assert not any(n.beams.beamsList for n in part.recurse().notes)
        raise ZeroDivisionError
    assert stream.Stream.makeBeams is original
