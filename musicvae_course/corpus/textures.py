"""Texture groups for the training mix, made from its sources: fast one-voice lines, melodies
laid over accompaniments, and fast figuration in several voices.

Style groups balance *where* music comes from; these balance *how it sounds*. Both answer a
measured gap: runs of sixteenths were 0.4% of the mix but a quarter of Ryan's Mammoth's held-out
segments (and the model's worst), and no source had a melody over an accompaniment, the texture of
songs and game music (the weakest outside sets); and sixteenth-note figuration under or over other
voices (string quartets, keyboard writing) held 69% of the bundled model's errors on Beethoven's
held-out quartet. :mod:`.mix` names their groups (``FAST_LINES``, ``LAYERED``, ``FAST_POLYPHONY``)
and balances them like the others.

Taught indirectly: the bundled model's card (``MODEL_CARD.md``) reports the mix.
"""

from __future__ import annotations

import numpy as np
import torch

from ..core import metrics
from ..core.data import PianoRollDataset
from ..core.pianoroll import LOWEST_PITCH, N_PITCHES, SEGMENT_STEPS
from .mix import collection_of


def onset_counts(segments) -> np.ndarray:
    """Notes started in each ``(N, 88, 32)`` bool segment (the kit's one onset rule, ``metrics.onsets``)."""
    return metrics.onsets(torch.from_numpy(np.asarray(segments, dtype=bool))).sum(dim=(1, 2)).numpy()


def _one_voice(segments: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: segments with at most one note sounding at every step (and at least one note)."""
    return segments.sum(axis=1).max(axis=1) == 1


def fast_lines(ds: PianoRollDataset, min_onsets: int = 20) -> PianoRollDataset:
    """The segments of ``ds``'s music21 sources that are one fast line: one note at a time and at
    least ``min_onsets`` notes in the 32 steps (runs of sixteenths: reels, hornpipes, violin parts).

    Such segments are 0.4% of the balanced mix but a quarter of Ryan's Mammoth's held-out ones, and
    they were what the model reconstructed worst (frame F1 0.2-0.5 on a run of 31 sixteenths), so
    ``mix.balance`` gives them a group of their own. Sources become ``fast-line/<collection>/...``.
    """
    segments = ds.segments
    return _music21_group(ds, _one_voice(segments) & (onset_counts(segments) >= min_onsets), "fast-line")


def _music21_group(ds: PianoRollDataset, wanted: np.ndarray, prefix: str) -> PianoRollDataset:
    """The ``wanted`` (``(N,)`` bool) segments of ``ds`` that come from music21 sources, their sources
    renamed ``<prefix>/<collection>/...`` (only the sources that gave a segment)."""
    music21 = np.array([f.startswith("music21/") for f in ds.files], bool)[ds.file_ids]
    picked = ds.subset(np.flatnonzero(music21 & wanted))
    used, ids = np.unique(picked.file_ids, return_inverse=True)
    names = [f"{prefix}/" + ds.files[i].split("/", 1)[1] for i in used]
    return PianoRollDataset.from_packed(picked.packed, ids.astype(np.int64), names)


_CHUNK = 65_536  #: segments per pass in ``fast_polyphony`` (a few hundred MB of temporaries)


def one_step_cells(segments) -> np.ndarray:
    """``(N,)`` int: cells of each ``(N, 88, 32)`` bool segment that sound for one step only (off
    before and after: a sixteenth note that is not repeated), the texture the model fits slowest."""
    roll = torch.from_numpy(np.asarray(segments, dtype=bool))
    ends = metrics.onsets(roll.flip(-1)).flip(-1)  # a note's last step: an onset of the roll played backwards
    return (metrics.onsets(roll) & ends).sum(dim=(1, 2)).numpy()


def fast_polyphony(ds: PianoRollDataset, min_one_step: int = 16) -> PianoRollDataset:
    """The segments of ``ds``'s music21 sources that are fast figuration in several voices: two or
    more notes at once somewhere, and at least ``min_one_step`` cells that sound for one sixteenth
    only (:func:`one_step_cells`; 16 is half the cells of one voice running in sixteenths).

    Measured on the bundled model (stage 14): the 16% of Beethoven's held-out quartet segments with
    20 or more such cells were reconstructed with frame F1 0.87 and held 69% of its errors, the
    segments with none 0.995; ``mix.balance`` can give them a group of their own
    (``FAST_POLYPHONY``) to weigh them more. Sources become ``fast-polyphony/<collection>/...``.
    """
    segments = ds.segments
    wanted = np.zeros(len(ds), bool)
    for start in range(0, len(ds), _CHUNK):  # in chunks: the pool is ~1 M segments, 2.8 KB each
        part = segments[start : start + _CHUNK]
        wanted[start : start + len(part)] = (part.sum(axis=1).max(axis=1) >= 2) & (one_step_cells(part) >= min_one_step)
    return _music21_group(ds, wanted, "fast-polyphony")


def _best_key_shift(melody_classes: np.ndarray, accompaniment_classes: np.ndarray) -> int:
    """Semitones in -6..5 that best lay a melody's pitch classes over an accompaniment's (most shared
    weight), so a tune in G over a progression in E flat is moved to E flat rather than clashing."""
    fit = [melody_classes @ np.roll(accompaniment_classes, -k) for k in range(-6, 6)]
    return int(np.argmax(fit)) - 6


def layer(melodies: PianoRollDataset, accompaniments: PianoRollDataset, n: int, seed: int = 0) -> PianoRollDataset:
    """``n`` segments of a single-line melody laid over an accompaniment, the texture of most
    songs and game music, which neither source has alone (MMA renders accompaniment only).

    Each segment ORs a random one-voice segment of ``melodies`` (at most one note at a time, at
    least 4 onsets), moved to the accompaniment's key (:func:`_best_key_shift`) and to the octave
    whose lowest note lies 1-12 semitones above the accompaniment's highest (or an octave lower
    where that leaves the 88 keys), with a random segment of ``accompaniments``; pairs that still
    do not fit are drawn again.
    Sources are ``layered/<accompaniment style>/<melody source>+<accompaniment stem>``.
    Deterministic for a ``seed``.
    """
    rng = np.random.default_rng(seed)
    mel = melodies.segments
    tunes = np.flatnonzero(_one_voice(mel) & (onset_counts(mel) >= 4))
    acc = accompaniments.segments
    backing = np.flatnonzero(acc.any(axis=(1, 2)))
    if n and (not len(tunes) or not len(backing)):
        raise ValueError(f"layer: no usable melody ({len(tunes)}) or accompaniment ({len(backing)}) segments")
    classes = (np.arange(N_PITCHES) + LOWEST_PITCH) % 12
    out, names = np.zeros((n, N_PITCHES, SEGMENT_STEPS), bool), []
    for _ in range(20 * n + 100):
        if len(names) == n:
            break
        i, j = int(rng.choice(tunes)), int(rng.choice(backing))
        m, a = mel[i], acc[j]
        m_rows, a_rows = np.flatnonzero(m.any(axis=1)), np.flatnonzero(a.any(axis=1))
        m_classes = np.bincount(classes[m_rows], weights=m[m_rows].sum(axis=1), minlength=12)
        a_classes = np.bincount(classes[a_rows], weights=a[a_rows].sum(axis=1), minlength=12)
        shift = _best_key_shift(m_classes, a_classes)
        shift += 12 * int(np.ceil((a_rows[-1] + 1 - (m_rows[0] + shift)) / 12))  # lowest note 1-12 above
        if m_rows[-1] + shift >= N_PITCHES:
            shift -= 12  # a high tune over a wide accompaniment: an octave lower, inside its top
        if m_rows[-1] + shift >= N_PITCHES or m_rows[0] + shift < 0:
            continue
        out[len(names), m_rows + shift] = m[m_rows]
        out[len(names)] |= a
        backing_source = accompaniments.files[accompaniments.file_ids[j]]  # mma/<style>/<stem>
        style, stem = collection_of(backing_source).split("/")[-1], backing_source.split("/")[-1]
        names.append(f"layered/{style}/{melodies.files[melodies.file_ids[i]]}+{stem}")
    if len(names) < n:
        raise RuntimeError(f"layer: only {len(names)} of {n} pairs fit inside the 88 keys")
    files = sorted(set(names))
    position = {name: k for k, name in enumerate(files)}
    return PianoRollDataset(out, np.array([position[x] for x in names], np.int64), files)
