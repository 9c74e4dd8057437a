"""The training mix: music21 works (from cached notes) and MMA styles, grouped, transposed, balanced.

Sources become *style groups* (``STYLE_GROUPS``: folk songs, folk dance tunes, early music,
baroque to romantic, MMA's pop-rock, jazz-blues, latin, waltz, country-folk-march, and three
texture groups made from those by ``corpus/textures.py``: fast one-voice lines, melodies over
accompaniments, and fast figuration in several voices). Each
group is brought to the same number of segments (``balance``): large groups are subsampled,
small ones are enlarged with transposed copies (``transpose_segments``, within the 88 keys) and,
only then, repeats.
So no one style dominates; :func:`mix_report` says what went in.

A segment's source is kept in the dataset's ``files``: ``music21/<collection>/<work key>``,
``mma/<style>/<groove file>``, ``fast-line/<collection>/<work key>``,
``fast-polyphony/<collection>/<work key>`` or ``layered/<style>/<melody source>+<groove file>``,
so every figure can be broken down by collection or style.

Taught indirectly: the bundled model's card (``MODEL_CARD.md``) reports this mix.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..core.data import PianoRollDataset, build_dataset
from ..core.pianoroll import N_PITCHES, SEGMENT_STEPS
from .build import read_table
from .rolls import work_segments
from .works import FOLK_COLLECTIONS

#: music21 collection -> style group (collections not listed: "baroque-romantic"). Folk tunes are
#: two groups: the dance-tune books (reels, jigs, hornpipes: fast, leaping lines the model found
#: hardest) would otherwise get a small corner of one group dominated by Essen's songs.
FOLK_DANCE = ("oneills1850", "ryansMammoth")
EARLY = ("palestrina", "trecento", "josquin", "monteverdi", "ciconia", "luca", "weber", "johnsonProject")
MMA_STYLES = ("pop-rock", "jazz-blues", "latin", "waltz", "country-folk-march")
LAYERED = "melody-over-accompaniment"  #: made by ``textures.layer``; sources ``layered/<style>/...``
FAST_LINES = "fast-line"  #: picked by ``textures.fast_lines``; sources ``fast-line/<collection>/...``
#: picked by ``textures.fast_polyphony``; sources ``fast-polyphony/<collection>/...``; last in the
#: order, so a mix that adds it draws every other group as before
FAST_POLYPHONY = "fast-polyphony"
STYLE_GROUPS = (
    "folk-song",
    "folk-dance",
    "early",
    "baroque-romantic",
    *MMA_STYLES,
    LAYERED,
    FAST_LINES,
    FAST_POLYPHONY,
)
TEXTURE_PREFIXES = {"layered": LAYERED, "fast-line": FAST_LINES, "fast-polyphony": FAST_POLYPHONY}
DEFAULT_TRANSPOSITIONS = (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6)  #: semitones tried for small groups


def style_group(source: str) -> str:
    """Style group of a segment's source name (``music21/<collection>/...`` or ``mma/<style>/...``)."""
    parts = source.split("/")
    if parts[0] not in ("music21", "mma", *TEXTURE_PREFIXES) or len(parts) < 2:
        # a path here means a source was not named: it must not fall into a group by default
        raise ValueError(
            f"source {source!r} is not named music21/<collection>/..., mma/<style>/..., "
            "layered/<style>/..., fast-line/<collection>/... or fast-polyphony/<collection>/..."
        )
    if parts[0] == "mma":
        return parts[1]
    if parts[0] in TEXTURE_PREFIXES:
        return TEXTURE_PREFIXES[parts[0]]
    collection = parts[1]
    if collection in FOLK_DANCE:
        return "folk-dance"
    if collection in FOLK_COLLECTIONS:
        return "folk-song"
    if collection in EARLY:
        return "early"
    return "baroque-romantic"


def collection_of(source: str) -> str:
    """``music21/<collection>``, ``mma/<style>`` or ``layered/<style>`` of a source name."""
    return "/".join(source.split("/")[:2])


def transpose_segments(segments, semitones: int) -> np.ndarray:
    """Shift ``(N, 88, 32)`` bool segments by ``semitones``; keep only those whose notes all stay
    inside MIDI 21-108 (no note is cut off). Returns ``(M, 88, 32)`` bool, ``M <= N``."""
    segments = np.asarray(segments, dtype=bool)
    if semitones == 0:
        return segments.copy()
    rows = segments.any(axis=2)  # (N, 88): pitches used
    if semitones > 0:
        fits = ~rows[:, N_PITCHES - semitones :].any(axis=1)
    else:
        fits = ~rows[:, :-semitones].any(axis=1)
    kept = segments[fits]
    out = np.zeros_like(kept)
    if semitones > 0:
        out[:, semitones:] = kept[:, : N_PITCHES - semitones]
    else:
        out[:, :semitones] = kept[:, -semitones:]
    return out


def music21_dataset(rolls_dir, split: str) -> PianoRollDataset:
    """Segments of the cached works of one split (``'train'`` or ``'heldout'``) of a rolls build
    (``rolls.roll_manifest``'s ``manifest.csv``); ``files`` are ``music21/<collection>/<key>``.

    A work whose cached notes cannot be rolled (over a ``core.midi_limits`` limit, a damaged
    cache file) is skipped with a warning naming it; every other work is kept."""
    rolls_dir = Path(rolls_dir)
    table = read_table(rolls_dir / "manifest.csv", ("split", "cache_file", "key", "collection"))
    rows = [r for r in table if r["split"] == split]
    blocks, ids, files = [], [], []
    for row in rows:
        try:
            segs = work_segments(rolls_dir / row["cache_file"])
        except (ValueError, OSError) as error:  # LimitError is a ValueError; a bad npz raises either
            warnings.warn(f"skipped {row['key']} ({row['cache_file']}): {error}", stacklevel=2)
            continue
        if len(segs):
            blocks.append(segs)
            ids.append(np.full(len(segs), len(files)))
            files.append(f"music21/{row['collection']}/{row['key']}")
    if not blocks:
        return PianoRollDataset(np.zeros((0, N_PITCHES, SEGMENT_STEPS), bool), np.zeros(0, np.int64), [])
    return PianoRollDataset(np.concatenate(blocks), np.concatenate(ids), files)


def mma_dataset(mma_dir, split: str, cache_dir=None, workers: int = 1) -> PianoRollDataset:
    """Segments of the MMA renders of one split, read by the kit's own loader
    (``core.data.build_dataset``: drums dropped); ``files`` are ``mma/<style>/<file stem>``."""
    mma_dir = Path(mma_dir).resolve()  # the loader reports resolved paths: key the names the same way
    rows = [r for r in read_table(mma_dir / "manifest.csv", ("split", "file", "style")) if r["split"] == split]
    paths = [str(mma_dir / r["file"]) for r in rows]
    ds = build_dataset(paths, cache_dir=cache_dir, workers=workers, progress=False)
    names = {str(mma_dir / r["file"]): f"mma/{r['style']}/{Path(r['file']).stem}" for r in rows}
    files = [names[str(Path(f).resolve())] for f in ds.files]
    return PianoRollDataset.from_packed(ds.packed, ds.file_ids, files)


def _group_indices(ds: PianoRollDataset) -> dict[str, np.ndarray]:
    groups = np.array([style_group(f) for f in ds.files])[ds.file_ids] if len(ds) else np.array([])
    return {g: np.flatnonzero(groups == g) for g in STYLE_GROUPS if (groups == g).any()}


def balance(
    ds: PianoRollDataset,
    per_group: int,
    seed: int = 0,
    transpositions=DEFAULT_TRANSPOSITIONS,
    sizes: Mapping[str, int] | None = None,
) -> PianoRollDataset:
    """A dataset with ``per_group`` segments from every style group present in ``ds``.

    ``sizes`` overrides ``per_group`` for the groups it names (``{"fast-line": 90_000}``): a
    fine-tuning stage can weigh a texture the model still gets wrong more heavily. Groups are
    drawn in ``STYLE_GROUPS`` order, so one size changed leaves the groups before it as they were.

    A group with more segments is subsampled (without replacement); one with fewer keeps every
    segment once and is filled up with transposed copies (``transpositions``, random per
    segment, within the 88 keys), then with repeats only if still short. Deterministic for a
    ``seed``. ``files`` keep the source, with ``@+k`` appended for copies transposed by ``k``
    semitones.
    """
    rng = np.random.default_rng(seed)
    segments = ds.segments
    blocks, ids, files = [], [], []
    sizes = dict(sizes or {})
    unknown = set(sizes) - set(STYLE_GROUPS)
    if unknown:
        raise ValueError(f"sizes names unknown style groups {sorted(unknown)}; known: {', '.join(STYLE_GROUPS)}")
    for group, index in _group_indices(ds).items():
        n_wanted = sizes.get(group, per_group)
        if len(index) >= n_wanted:
            chosen = rng.choice(index, n_wanted, replace=False)
            blocks.append(segments[chosen])
            names = [ds.files[i] for i in ds.file_ids[chosen]]
        else:
            parts, names = [segments[index]], [ds.files[i] for i in ds.file_ids[index]]
            shifts = rng.choice(np.asarray(transpositions), len(index) * len(transpositions))
            order = np.tile(index, len(transpositions))
            for shift in np.unique(shifts):
                picked = order[shifts == shift]
                moved_rows = segments[picked]
                fits = _fits(moved_rows, int(shift))
                parts.append(transpose_segments(moved_rows, int(shift)))
                names += [f"{ds.files[i]}@{int(shift):+d}" for i in ds.file_ids[picked[fits]]]
            pool = np.concatenate(parts)
            # every original once, then transposed copies (then repeats) for the rest
            n_original, n_copies = len(index), len(pool) - len(index)
            extra = n_wanted - n_original
            take = np.concatenate(
                [np.arange(n_original), n_original + rng.choice(n_copies, extra, replace=n_copies < extra)]
                if n_copies
                else [np.arange(n_original), rng.choice(n_original, extra, replace=True)]
            )
            blocks.append(pool[take])
            names = [names[i] for i in take]
        unique = sorted(set(names))
        position = {name: len(files) + k for k, name in enumerate(unique)}
        files += unique
        ids.append(np.array([position[n] for n in names], np.int64))
    return PianoRollDataset(np.concatenate(blocks), np.concatenate(ids), files)


def _fits(segments: np.ndarray, semitones: int) -> np.ndarray:
    rows = segments.any(axis=2)
    if semitones > 0:
        return ~rows[:, N_PITCHES - semitones :].any(axis=1)
    if semitones < 0:
        return ~rows[:, :-semitones].any(axis=1)
    return np.ones(len(segments), bool)


def concat(datasets) -> PianoRollDataset:
    """One dataset from several (``files`` renumbered)."""
    blocks, ids, files = [], [], []
    for ds in datasets:
        if len(ds) == 0:
            continue
        blocks.append(np.asarray(ds.packed))
        ids.append(ds.file_ids + len(files))
        files += list(ds.files)
    return PianoRollDataset.from_packed(np.concatenate(blocks), np.concatenate(ids), files)


def mix_report(ds: PianoRollDataset) -> list[dict]:
    """Rows ``{group, collection, segments, share, sources, transposed}`` for a dataset's
    sources, by style group then collection, largest first; ``share`` of all segments."""
    names = [ds.files[i] for i in ds.file_ids]
    counts = Counter(names)
    by_collection: dict[tuple, dict] = {}
    for name, n in counts.items():
        base = name.split("@")[0]
        key = (style_group(base), collection_of(base))
        row = by_collection.setdefault(key, {"segments": 0, "sources": set(), "transposed": 0})
        row["segments"] += n
        row["sources"].add(base)
        row["transposed"] += n if "@" in name else 0
    total = max(1, len(ds))
    rows = [
        {
            "group": g,
            "collection": c,
            "segments": v["segments"],
            "share": v["segments"] / total,
            "sources": len(v["sources"]),
            "transposed": v["transposed"],
        }
        for (g, c), v in by_collection.items()
    ]
    return sorted(rows, key=lambda r: (STYLE_GROUPS.index(r["group"]), -r["segments"]))


def group_shares(ds: PianoRollDataset) -> dict[str, float]:
    """Share of segments per style group (sums to 1)."""
    shares: Counter = Counter()
    for row in mix_report(ds):
        shares[row["group"]] += row["share"]
    return dict(shares)
