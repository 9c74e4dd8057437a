"""music21 works -> piano-roll notes straight from the parsed score: the whole corpus in minutes.

The MIDI route (:func:`.build.export_work`, then ``core.pianoroll.midi_to_pianoroll``) writes and re-reads a MIDI
file per work: 2.5-3.9 s per work here. This module reads the notes from the parsed score itself (the same
preparation as the export: voices merged, chord symbols and grace notes dropped, sounding pitch, repeats expanded
the way music21's MIDI writer expands them, :mod:`.repeats`) and applies the roll's one rounding rule
(``core.pianoroll`` module docstring) to the ticks music21 would have written at 480 per quarter. So the rolls equal
the MIDI route's (``tests/test_corpus_rolls.py`` checks a sample); drums (``Unpitched``) are dropped as the reader
drops channel 10. The whole corpus, 14,918 of 14,922 works, takes 668 s on this 2-core machine from nothing (1,271
CPU-s; music21's parsers are most of it).

Each work's notes are cached as one small ``.npz`` (``pitch, onset, offset`` in steps) or one ``.fail`` text file,
written atomically, so a stopped build continues where it stopped and one failing or slow work (per-work time limit)
never stops the others.

Usage (from the repository root)::

    python -m musicvae_course.corpus.rolls --out corpus-rolls/ [--workers 2] [--timeout 60]
    # then: python scripts/make_bundled_model.py prepare-rolls --rolls corpus-rolls/

Taught indirectly: notebook 03 trains on segments made from such rolls.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import time
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..core.dataset_checks import checked_npz
from ..core.pianoroll import notes_to_pianoroll, segments, ticks_to_steps
from ..core.safe_files import display_name, read_regular_file
from ..fileio import atomic_write, interrupts_held
from .build import _run_jobs, _write_manifest
from .export import (
    MIDI_TICKS_PER_QUARTER,
    _remove_chord_symbols,
    _remove_grace_notes,
    _unshare_elements,
    failure_reason,
    time_limit,
)
from .terms import encoding_terms
from .works import HELDOUT_FILE, corpus_root, list_works, output_name, read_heldout

DEFAULT_TIMEOUT_S = 60  #: per work; the slowest (an Aird's Airs tune, Beethoven quartets) take 10-25 CPU-s
ROLL_MANIFEST_COLUMNS = (
    "key",
    "cache_file",
    "collection",
    "title",
    "composer",
    "licence",
    "redistributable",
    "encoding_holder",
    "split",
    "notes",
    "steps",
    "seconds",
)


@contextlib.contextmanager
def _without_beaming() -> Iterator[None]:
    """Parse without the beams music21's ABC (and MuseData, RomanText) readers add to every part.

    Beams are engraving only: they change no pitch, offset or duration (``tests/test_corpus_rolls.py`` compares with
    the MIDI route, which keeps them), and making them was 36-40% of the time of an Essen, O'Neill or Ryan's tune.
    """
    from music21 import stream

    original = stream.Stream.makeBeams

    def no_beams(self, *, inPlace=False, **_):
        return None if inPlace else self

    stream.Stream.makeBeams = no_beams
    try:
        yield
    finally:
        stream.Stream.makeBeams = original


def _prepared_score(work):
    """Parse ``work`` and prepare it as :func:`.build.export_work` does before writing (without beams)."""
    import music21
    from music21 import converter

    source = corpus_root() / work.corpus_path
    with _without_beaming():
        score = converter.parse(source, number=work.number, forceSource=True, storePickle=False)
    if isinstance(score, music21.stream.Opus):
        score = score.scores[0] if len(score.scores) == 1 else score.mergeScores()
    _unshare_elements(score)
    _remove_chord_symbols(score)
    _remove_grace_notes(score)
    if not score.recurse().notes:
        raise ValueError("no notes after parsing")
    return score


def _has_repeats(score) -> bool:
    """Whether expanding repeats could change ``score`` (repeat barlines, D.C./segno, voltas)."""
    from music21 import bar, repeat, spanner, stream

    if score[repeat.RepeatExpression] or score[spanner.RepeatBracket]:
        return True
    return any(
        isinstance(m.leftBarline, bar.Repeat) or isinstance(m.rightBarline, bar.Repeat) for m in score[stream.Measure]
    )


def score_notes(score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pitched notes of a music21 score as ``(pitch, start_tick, end_tick)`` int64 arrays.

    Ticks are at 480 per quarter (``MIDI_TICKS_PER_QUARTER``), as music21's MIDI writer would write them, with the
    writer's preparation: sounding pitch, repeats expanded (as ``Stream.expandRepeats`` does, without copying the
    notes: :mod:`.repeats`; where music21 cannot expand them the music is read once straight through, as the export
    does). The writer's own ``prepareStreamForMidi`` deep-copies every score, which took most of the time. Tied
    notes stay separate notes (on the roll their union is the tied note); ``Unpitched`` notes (percussion) are
    dropped; a chord gives one note per pitch. A score with repeats is emptied of its notes.
    """
    from .export import _strip_repeats
    from .repeats import expanded_notes, midi_pitches

    if score.atSoundingPitch is False:
        score = score.toSoundingPitch()
    if _has_repeats(score):
        notes = expanded_notes(score, on_failure=_strip_repeats)
    else:
        notes = [
            (pitch, element.offset, element.duration.quarterLength)
            for part in score.parts or [score]
            for element in part.flatten().notes
            for pitch in midi_pitches(element)
        ]
    tpq = MIDI_TICKS_PER_QUARTER
    # the writer rounds the start and the duration to ticks separately, so the end is their sum
    starts = [int(round(float(start) * tpq)) for _, start, _ in notes]
    ends = [s + int(round(float(length) * tpq)) for s, (_, _, length) in zip(starts, notes)]
    return (
        np.asarray([pitch for pitch, _, _ in notes], np.int64),
        np.asarray(starts, np.int64),
        np.asarray(ends, np.int64),
    )


def work_notes(work) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One work's sounding notes in steps: ``(pitch, onset, offset)`` int64 arrays.

    Same rules as ``core.pianoroll.midi_to_pianoroll`` (zero-length notes dropped, one rounding rule); pitches
    outside 21-108 are kept here and dropped when painted (``core.pianoroll.notes_to_pianoroll``). Raises on a work
    music21 cannot read.
    """
    pitch, start, end = score_notes(_prepared_score(work))
    sounding = end > start
    onset, offset = ticks_to_steps(start[sounding], end[sounding], MIDI_TICKS_PER_QUARTER)
    return pitch[sounding], onset, offset


def notes_roll(pitch, onset, offset) -> np.ndarray:
    """``(88, T)`` bool roll of notes in steps (``T`` = last offset); see ``core.pianoroll``."""
    return notes_to_pianoroll(pitch, onset, offset)


def cache_name(work) -> str:
    """Cache file stem of a work (the MIDI route's name, without ``.mid``)."""
    return output_name(work)[: -len(".mid")]


def _with(stem: Path, suffix: str) -> Path:
    """``stem`` + ``suffix`` (not ``Path.with_suffix``: names hold dots, e.g. ``tune.abc__n3``)."""
    return stem.parent / (stem.name + suffix)


def _save_notes(path: Path, pitch, onset, offset, cpu_seconds: float = 0.0) -> None:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        pitch=pitch.astype(np.int16),
        onset=onset.astype(np.int32),
        offset=offset.astype(np.int32),
        cpu_seconds=np.float64(cpu_seconds),
    )
    atomic_write(path, buffer.getvalue())


def _notes_arrays(path) -> dict:
    """A note cache file's arrays, checked (a FIFO hung the manifest, a zeroed file stopped it): else ValueError."""
    try:
        with checked_npz(Path(path)) as handle, np.load(handle, allow_pickle=False) as f:  # checked as it is read
            arrays = {name: f[name] for name in ("pitch", "onset", "offset", "cpu_seconds") if name in f.files}
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{display_name(path)}: damaged note cache ({err})") from None
    notes = [arrays.get(name) for name in ("pitch", "onset", "offset")]
    if any(a is None or a.ndim != 1 or a.dtype.kind not in "iu" for a in notes) or len({len(a) for a in notes}) > 1:
        raise ValueError(f"{display_name(path)}: damaged note cache (not int pitch, onset, offset of one length)")
    return arrays


def load_notes(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a cached work: ``(pitch, onset, offset)`` int64 arrays in steps; ``ValueError`` for a damaged file."""
    return tuple(_notes_arrays(path)[name].astype(np.int64) for name in ("pitch", "onset", "offset"))


def _roll_job(work, out_stem: str, timeout_s: int, _unused=None) -> dict:
    """Worker: cache one work's notes (``.npz``) or its failure (``.fail``); never raises."""
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        with time_limit(timeout_s):
            pitch, onset, offset = work_notes(work)
        # CPU seconds, not wall: on a shared machine wall time says more about the neighbours
        _save_notes(Path(out_stem + ".npz"), pitch, onset, offset, time.process_time() - cpu_start)
        steps = int(offset.max()) if offset.size else 0
        return {"ok": True, "seconds": time.perf_counter() - start, "notes": int(pitch.size), "steps": steps}
    except Exception as err:  # noqa: BLE001 - any music21 failure (or the time limit) skips this work only
        reason = failure_reason(err, timeout_s)
    atomic_write(Path(out_stem + ".fail"), reason + "\n")
    return {"ok": False, "seconds": time.perf_counter() - start, "reason": reason}


def _cached_ok(path: Path, damaged: list) -> bool:
    """Whether ``path`` is a usable note cache; a damaged one (zeroed, cut, a FIFO) is noted in ``damaged`` and
    removed, to be parsed again: it was counted as cached, and failed only in the manifest."""
    try:
        return os.path.lexists(path) and bool(_notes_arrays(path))
    except ValueError as err:
        damaged.append(display_name(str(err)))
    with contextlib.suppress(OSError):  # a folder stays: the parse's write over it reports it
        path.unlink()
    return False


def build_rolls(
    works,
    out_dir,
    workers: int = 2,
    timeout_s: int = DEFAULT_TIMEOUT_S,
    retry_failed: bool = False,
    progress: bool = True,
    job=None,
) -> dict:
    """Cache every work's notes under ``out_dir/notes/`` (resumable); return counts.

    Works already cached (``.npz``, or ``.fail`` unless ``retry_failed``) are not parsed again, so a killed build
    continues where it stopped. ``job`` replaces the worker function (tests). ``workers=0`` runs the works in this
    process, one by one. Returns ``{'works', 'cached_before', 'done', 'failed', 'seconds'}``.
    """
    start = time.perf_counter()
    notes_dir = Path(out_dir) / "notes"
    todo, cached, damaged = [], 0, []
    for work in works:
        stem = notes_dir / cache_name(work)
        if _cached_ok(_with(stem, ".npz"), damaged) or (not retry_failed and _with(stem, ".fail").exists()):
            cached += 1
            continue
        stem.parent.mkdir(parents=True, exist_ok=True)
        _with(stem, ".fail").unlink(missing_ok=True)
        todo.append((work, str(stem), None))
    if damaged:
        warnings.warn(f"{len(damaged)} damaged note cache file(s) parsed again, e.g. {damaged[0]}", stacklevel=2)
    done = failed = 0
    if workers == 0:  # in this process, one by one (debugging, tests): no pool to start
        results = ((w, p, (job or _roll_job)(w, p, timeout_s)) for w, p, _ in todo)
    else:
        results = _pooled(todo, workers, timeout_s, progress, job or _roll_job)
    for _, _, result in results:
        done += result["ok"]
        failed += not result["ok"]
    return {
        "works": len(works),
        "cached_before": cached,
        "done": done,
        "failed": failed,
        "seconds": time.perf_counter() - start,
    }


POOL_CHUNK = 1000  #: works per pool: music21's caches grow with every parse, a fresh pool drops them


def _pooled(todo, workers, timeout_s, progress, job):
    """Run jobs in pools of ``POOL_CHUNK`` works each; yield ``(work, stem, result)``. Not ``build._run_jobs``
    directly: its pools recycle workers (``max_tasks_per_child``), and Python 3.11's ``ProcessPoolExecutor`` then
    hangs once every worker has reached the limit (seen here: a build stopped for good at 2 x 200 works). A fresh
    pool per chunk bounds the caches without recycling. A chunk whose pool breaks (a worker killed) is finished by
    ``_run_jobs``, which isolates the culprit."""
    import concurrent.futures as cf

    from tqdm import tqdm

    from .build import _die_with_parent

    bar = tqdm(total=len(todo), unit="work", disable=not progress, smoothing=0.05)
    for first in range(0, len(todo), POOL_CHUNK):
        chunk, finished = todo[first : first + POOL_CHUNK], set()
        try:
            with cf.ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent) as pool:
                futures = {pool.submit(job, w, s, timeout_s): i for i, (w, s, _) in enumerate(chunk)}
                for future in cf.as_completed(futures):
                    index = futures[future]
                    result = future.result()
                    finished.add(index)
                    bar.update(1)
                    yield chunk[index][0], chunk[index][1], result
        except cf.process.BrokenProcessPool:
            rest = [j for i, j in enumerate(chunk) if i not in finished]
            for item in _run_jobs(rest, workers, timeout_s, False, job=job):
                bar.update(1)
                yield item
    bar.close()


def roll_manifest(works, out_dir, heldout=None) -> list[dict]:
    """One row per work with a cached result (provenance, terms, split, notes or failure), written to
    ``out_dir/manifest.csv`` (works with notes) and ``out_dir/failures.csv``, as a pair (``interrupts_held``)."""
    out_dir = Path(out_dir)
    heldout = read_heldout(HELDOUT_FILE) if heldout is None else heldout
    rows, failures = [], []
    for work in works:
        stem = out_dir / "notes" / cache_name(work)
        try:
            pitch, _, offset = load_notes(_with(stem, ".npz")) if _with(stem, ".npz").exists() else (None,) * 3
        except ValueError as err:  # one damaged cache file is reported, never stops the manifest
            failures.append((work.key, str(err)))
            continue
        if pitch is not None:
            terms = encoding_terms(work.corpus_path)
            rows.append(
                {
                    "key": work.key,
                    "cache_file": _with(stem, ".npz").relative_to(out_dir).as_posix(),
                    "collection": work.collection,
                    "title": work.title,
                    "composer": work.composer,
                    "licence": terms.licence,
                    "redistributable": terms.redistributable,
                    "encoding_holder": terms.holder,
                    "split": "heldout" if work.key in heldout else "train",
                    "notes": int(pitch.size),
                    "steps": int(offset.max()) if offset.size else 0,
                    "seconds": "",
                }
            )
        elif _with(stem, ".fail").exists():
            try:  # a regular file's first 64 KB: a FIFO in its place hung the manifest
                reason = read_regular_file(_with(stem, ".fail"), 1 << 16).decode("utf8", "replace").strip()
            except (ValueError, OSError) as err:
                reason = f"unreadable failure note ({err})"
            failures.append((work.key, reason))
    text = io.StringIO()
    csv.writer(text).writerows([("key", "reason"), *failures])
    with interrupts_held():
        _write_manifest(out_dir / "manifest.csv", rows, ROLL_MANIFEST_COLUMNS)
        atomic_write(out_dir / "failures.csv", text.getvalue())
    return rows


def build_statistics(works, out_dir) -> dict:
    """What a (possibly partial) build cost, by collection, and the whole corpus extrapolated.

    Uses the CPU seconds each cached work recorded (parse + notes, in its worker). Returns ``{collection: {works,
    cached, failed, timed, cpu_seconds, mean_cpu_s}, 'all': {..., 'estimated_cpu_seconds'}}``: the estimate adds
    each collection's mean over its timed works times its works not yet timed.
    """
    out_dir = Path(out_dir)
    stats: dict = {}
    for work in works:
        row = stats.setdefault(work.collection, dict(works=0, cached=0, failed=0, timed=0, cpu_seconds=0.0))
        row["works"] += 1
        stem = out_dir / "notes" / cache_name(work)
        if _with(stem, ".npz").exists():
            row["cached"] += 1
            with contextlib.suppress(ValueError, TypeError, KeyError):  # damaged, or older: cached, not timed
                row["cpu_seconds"] += float(_notes_arrays(_with(stem, ".npz"))["cpu_seconds"])
                row["timed"] += 1
        elif _with(stem, ".fail").exists():
            row["failed"] += 1
    total = dict(works=0, cached=0, failed=0, timed=0, cpu_seconds=0.0, estimated_cpu_seconds=0.0)
    overall_mean = sum(r["cpu_seconds"] for r in stats.values()) / max(1, sum(r["timed"] for r in stats.values()))
    for row in stats.values():
        row["mean_cpu_s"] = row["cpu_seconds"] / row["timed"] if row["timed"] else overall_mean
        for key in ("works", "cached", "failed", "timed", "cpu_seconds"):
            total[key] += row[key]
        total["estimated_cpu_seconds"] += row["cpu_seconds"] + row["mean_cpu_s"] * (row["works"] - row["timed"])
    stats["all"] = total
    return stats


def work_segments(path) -> np.ndarray:
    """``(N, 88, 32)`` bool training segments of one cached work (``core.pianoroll.segments``)."""
    return segments(notes_roll(*load_notes(path)))


def fair_order(works, heldout=None) -> list:
    """Build order for a time-boxed build: held-out works first (every collection's evaluation set), then round-robin
    over collections (each in a salted hash order), so a build stopped holds a fair share of every collection."""
    from .works import _stable_hash

    heldout = read_heldout(HELDOUT_FILE) if heldout is None else heldout
    ordered = []
    for first in (True, False):
        queues: dict[str, list] = {}
        for work in sorted(works, key=lambda w: (_stable_hash("order:" + w.key), w.key)):
            if (work.key in heldout) == first:
                queues.setdefault(work.collection, []).append(work)
        rounds = [q for _, q in sorted(queues.items())]
        depth = max((len(q) for q in rounds), default=0)
        ordered += [q[i] for i in range(depth) for q in rounds if i < len(q)]
    return ordered


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Cache the notes of music21's corpus works from parsed scores.")
    parser.add_argument("--out", type=Path, required=True, help="cache folder (created; reused to resume)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="per-work time limit, seconds")
    parser.add_argument("--collections", nargs="+", help="corpus directories to include")
    parser.add_argument("--retry-failed", action="store_true", help="parse works that failed before again")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--stats", action="store_true", help="only report what the cached build cost (CPU s)")
    args = parser.parse_args(argv)
    works = fair_order(list_works(args.collections))
    if args.stats:
        stats = build_statistics(works, args.out)
        for name, row in sorted(stats.items(), key=lambda kv: -kv[1]["works"]):
            print(name, {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()})
        return 0
    summary = build_rolls(works, args.out, args.workers, args.timeout, args.retry_failed, not args.no_progress)
    rows = roll_manifest(works, args.out)
    print(
        f"rolls: {summary['works']} works, {summary['cached_before']} cached before, {summary['done']} done, "
        f"{summary['failed']} failed, {summary['seconds']:.0f} s; manifest {len(rows)} works -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
