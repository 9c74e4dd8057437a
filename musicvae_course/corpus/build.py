"""Build a MIDI training corpus (and the shipped samples) from music21's bundled corpus.

music21 ships ~15,000 encoded works (kern, ABC, MusicXML) but no MIDI. This script
parses each work with music21, removes grace notes, exports a standard MIDI file
(480 ticks per quarter) and records where every file came from and under which
terms its *encoding* may be used. The compositions are public domain; many of the
encodings are not free to redistribute, so the full corpus is built locally and
never committed: only ``data_samples/`` (redistributable encodings) is.

The encodings' terms are in ``terms.py`` and the shipped samples in
``samples.py`` (both beside this file).

Usage (from the repository root)::

    python -m musicvae_course.corpus --out corpus/ [--workers 2]
        [--limit N] [--collections bach palestrina ...] [--timeout 120]
    python -m musicvae_course.corpus --out corpus/ --retry-failures --timeout 600
    python -m musicvae_course.corpus --samples data_samples/
    python -m musicvae_course.corpus --write-heldout musicvae_course/corpus/heldout_works.txt

Outputs of a build (``--out DIR``)::

    DIR/midi/<collection>/<sanitised corpus path>[__n<number>].mid
    DIR/manifest.csv   one row per written file (provenance, licence, split)
    DIR/failures.csv   corpus path, number, reason (one bad work never stops the build)

Read by notebook 03_fine_tuning_on_a_subset.ipynb (through the data module) and
by the training scripts; the held-out list is ``musicvae_course/corpus/heldout_works.txt``.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import csv
import hashlib
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from .terms import encoding_terms, rights_statement

MIDI_TICKS_PER_QUARTER = 480  # music21's default (10,080) makes pretty_midi call files corrupt
DEFAULT_TIMEOUT_S = 120  # per work; Beethoven movements take 10-79 s to export
HELDOUT_FRACTION = 0.05
MIN_HELDOUT_COLLECTION_SIZE = 10  # collections this big get at least one held-out work
SKIPPED_EXTENSIONS = (".rntxt",)  # roman-numeral analyses (Bach, Monteverdi): not music
SKIPPED_COLLECTIONS = ("demos", "theoryExercises")  # music21's test fixtures, not repertoire
#: Collections whose multi-tune ABC files hold the VOICES of one piece (X:1 Cantus,
#: X:2 Altus, ...), not separate tunes: each file is one work, its voices merged.
VOICES_AS_TUNES_COLLECTIONS = ("josquin",)
HELDOUT_FILE = Path(__file__).resolve().with_name("heldout_works.txt")


# ---------------------------------------------------------------------------
# Works
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Work:
    """One work of music21's core corpus: a file, or one tune of a multi-tune ABC file."""

    corpus_path: str  # e.g. 'essenFolksong/altdeu10.abc'
    number: int | None = None  # tune number inside a multi-work file
    title: str = ""
    composer: str = ""

    @property
    def key(self) -> str:
        """``corpus_path`` or ``corpus_path#number``: the id used in heldout_works.txt."""
        return self.corpus_path if self.number is None else f"{self.corpus_path}#{self.number}"

    @property
    def collection(self) -> str:
        return self.corpus_path.split("/", 1)[0]

    @property
    def source_format(self) -> str:
        suffix = Path(self.corpus_path).suffix.lower()
        return {
            ".abc": "abc",
            ".krn": "humdrum-kern",
            ".mxl": "musicxml",
            ".xml": "musicxml",
            ".musicxml": "musicxml",
        }.get(suffix, suffix.lstrip("."))


def corpus_root() -> Path:
    """Directory of music21's bundled core corpus."""
    from music21 import common

    return Path(common.getCorpusFilePath())


def list_works(collections=None) -> list[Work]:
    """All music works of music21's core corpus, sorted by key.

    Reads music21's metadata bundle (~5-15 s). Skips roman-numeral analyses (``.rntxt``),
    music21's test fixtures (SKIPPED_COLLECTIONS) and the whole-file entries of
    multi-tune ABC files (each tune is listed on its own), except in
    VOICES_AS_TUNES_COLLECTIONS, where the whole file is the work.
    ``collections``: optional iterable of corpus directory names to keep.
    """
    from music21 import corpus

    # One slice: iterating the bundle indexes it entry by entry, each index copying
    # every entry (O(n^2): ~4 minutes for 15,000 entries).
    entries = corpus.corpora.CoreCorpus().metadataBundle[:]
    numbered_files = {str(e.sourcePath) for e in entries if e.number is not None}
    wanted = set(collections) if collections else None
    first_titles = {}  # voices-as-tunes files: whole-file entries have no title
    for entry in entries:
        title = getattr(entry.metadata, "title", None)
        if entry.number is not None and title:
            first_titles.setdefault(str(entry.sourcePath), str(title).strip())
    works = {}
    for entry in entries:
        path = str(entry.sourcePath).replace("\\", "/")
        if path.endswith(SKIPPED_EXTENSIONS) or path.split("/", 1)[0] in SKIPPED_COLLECTIONS:
            continue
        voices_as_tunes = path.split("/", 1)[0] in VOICES_AS_TUNES_COLLECTIONS
        if voices_as_tunes and entry.number is not None:
            continue  # one voice of a piece; the piece is its whole-file entry
        if entry.number is None and path in numbered_files and not voices_as_tunes:
            continue  # the whole-file duplicate of a collection of tunes
        if wanted is not None and path.split("/", 1)[0] not in wanted:
            continue
        meta = entry.metadata
        title = str(getattr(meta, "title", None) or first_titles.get(path, "")).strip()
        composer = str(getattr(meta, "composer", None) or "").strip()
        work = Work(path, None if entry.number is None else int(entry.number), title, composer)
        works[work.key] = work
    return sorted(works.values(), key=lambda w: (w.corpus_path, w.number or 0))


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode("utf8")).digest()[:8], "big")


def heldout_keys(works, fraction: float = HELDOUT_FRACTION) -> list[str]:
    """Deterministic held-out works, stratified by collection.

    In each collection, works are ordered by a SHA-1 hash of their key and the first
    ``round(fraction * n)`` are held out (at least one where the collection has
    ``MIN_HELDOUT_COLLECTION_SIZE`` works or more). Independent of seeds, machines and
    the order of ``works``. Returns sorted keys (``corpus_path`` or ``corpus_path#number``).
    """
    by_collection: dict[str, list[Work]] = {}
    for work in works:
        by_collection.setdefault(work.collection, []).append(work)
    chosen = []
    for members in by_collection.values():
        n_heldout = round(fraction * len(members))
        if len(members) >= MIN_HELDOUT_COLLECTION_SIZE:
            n_heldout = max(n_heldout, 1)
        members = sorted(members, key=lambda w: (_stable_hash(w.key), w.key))
        chosen.extend(w.key for w in members[:n_heldout])
    return sorted(chosen)


def read_heldout(path: Path = HELDOUT_FILE) -> set[str]:
    """Keys listed in a held-out file (blank lines and ``#`` comments ignored)."""
    lines = Path(path).read_text(encoding="utf8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def write_heldout(keys, path: Path = HELDOUT_FILE) -> None:
    header = (
        "# Works held out for evaluation only (never trained on). One music21 corpus\n"
        "# path, or path#tune-number for multi-tune ABC files. Made by\n"
        "# python -m musicvae_course.corpus --write-heldout (5% per collection, by SHA-1 of the key).\n"
    )
    Path(path).write_text(header + "".join(k + "\n" for k in keys), encoding="utf8")


def output_name(work: Work) -> str:
    """Relative MIDI path for a work: ``<collection>/<rest of path, '/' -> '__'>[__n<k>].mid``.

    The full path is kept because many files share a name (``movement1.mxl``); characters
    other than letters, digits, ``._-`` become ``_``.
    """
    rest = work.corpus_path.split("/", 1)[1] if "/" in work.corpus_path else work.corpus_path
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", rest.replace("/", "__"))
    if work.number is not None:
        stem += f"__n{work.number}"
    return f"{work.collection}/{stem}.mid"


# ---------------------------------------------------------------------------
# Export (runs in worker processes)
# ---------------------------------------------------------------------------
class WorkTimeout(Exception):
    """A work took longer than the per-work time limit."""


def _on_alarm(signum, frame):
    raise WorkTimeout()


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
    repeats = "expanded"
    try:
        score.write("midi", fp=str(out_path))
    except music21.repeat.ExpanderException:
        _strip_repeats(score)
        repeats = "not_expanded"
        score.write("midi", fp=str(out_path))
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
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(max(1, int(timeout_s)))
    try:
        info = export_work(work, Path(out_path), max_measures)
        return {"ok": True, "seconds": time.perf_counter() - start, **info}
    except WorkTimeout:
        reason = f"timeout after {timeout_s} s"
    except Exception as err:  # noqa: BLE001 - any music21 failure skips this work only
        reason = f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    Path(out_path).unlink(missing_ok=True)  # no half-written file
    return {"ok": False, "seconds": time.perf_counter() - start, "reason": reason}


# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------
MANIFEST_COLUMNS = (
    "file",
    "corpus_path",
    "number",
    "title",
    "composer",
    "collection",
    "source_format",
    "licence",
    "redistributable",
    "encoding_holder",
    "encoding_rights",
    "split",
    "repeats",
    "grace_notes_removed",
    "chord_symbols_removed",
    "measures_kept",
    "seconds",
)


@dataclass
class BuildSummary:
    tried: int = 0
    written: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list = field(default_factory=list)

    def line(self) -> str:
        return f"works tried {self.tried}, written {self.written}, failed {self.failed}, {self.seconds:.0f} s"


def _manifest_row(work: Work, file: str, split: str, info: dict) -> dict:
    terms = encoding_terms(work.corpus_path)
    return {
        "file": file,
        "corpus_path": work.corpus_path,
        "number": "" if work.number is None else work.number,
        "title": work.title,
        "composer": work.composer,
        "collection": work.collection,
        "source_format": work.source_format,
        "licence": terms.licence,
        "redistributable": terms.redistributable,
        "encoding_holder": terms.holder,
        "encoding_rights": rights_statement(corpus_root() / work.corpus_path),
        "split": split,
        "repeats": info.get("repeats", ""),
        "grace_notes_removed": info.get("grace_notes_removed", ""),
        "chord_symbols_removed": info.get("chord_symbols_removed", ""),
        "measures_kept": info.get("measures_kept", ""),
        "seconds": f"{info.get('seconds', 0.0):.2f}",
    }


def _die_with_parent() -> None:
    """Pool initializer: ask Linux to SIGTERM this worker when its parent dies.

    A build stopped from outside (``timeout``, ``kill``) otherwise leaves its pool
    workers running as orphans, still exporting. No-op where prctl is unavailable.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _run_jobs(jobs, workers, timeout_s, progress, job=None):
    """Run ``(work, out_path, max_measures)`` jobs; yield ``(work, out_path, result)``
    for each, in completion order. ``job`` is the worker function (default
    :func:`_export_job`; tests pass a stand-in).

    If a worker process dies (e.g. killed for memory), the pool breaks: the job that
    reported it is retried alone in a one-process pool (so only a culprit fails, as
    "worker process died"), and the jobs not yet done go to a fresh pool.
    """
    from tqdm import tqdm

    job = job or _export_job
    bar = tqdm(total=len(jobs), unit="work", disable=not progress, smoothing=0.05)
    pending, suspects = list(jobs), []
    while pending or suspects:
        if suspects:
            batch, pool_size = [suspects.pop(0)], 1
        else:
            batch, pool_size, pending = pending, workers, []
        finished = set()
        # max_tasks_per_child recycles workers: music21 keeps caches that grow over works
        with cf.ProcessPoolExecutor(
            max_workers=pool_size, max_tasks_per_child=200, initializer=_die_with_parent
        ) as pool:
            futures = {pool.submit(job, w, str(p), timeout_s, m): i for i, (w, p, m) in enumerate(batch)}
            for future in cf.as_completed(futures):
                index = futures[future]
                work, out_path, _ = batch[index]
                try:
                    result = future.result()
                except cf.process.BrokenProcessPool:
                    if pool_size > 1:
                        suspects.append(batch[index])
                        pending = [j for i, j in enumerate(batch) if i != index and i not in finished] + pending
                        break
                    result = {"ok": False, "seconds": 0.0, "reason": "worker process died (crash or out of memory)"}
                finished.add(index)
                bar.update(1)
                yield work, out_path, result
    bar.close()


def build_corpus(
    works,
    out_dir,
    workers: int = 2,
    timeout_s: int = DEFAULT_TIMEOUT_S,
    heldout=None,
    max_measures: int | None = None,
    progress: bool = True,
) -> BuildSummary:
    """Export ``works`` to ``out_dir/midi/`` and write ``manifest.csv`` and ``failures.csv``.

    Args:
        works: list of :class:`Work` (e.g. from :func:`list_works`).
        out_dir: output directory (created).
        workers: worker processes (>= 1).
        timeout_s: per-work time limit in seconds; a work over it is skipped and reported.
        heldout: set of held-out keys (``Work.key``); default: the committed
            ``musicvae_course/corpus/heldout_works.txt`` if present, else :func:`heldout_keys`.
        max_measures: keep only the first measures of each work (None: all).

    Returns:
        :class:`BuildSummary`; each failure is ``(corpus_path, number, reason)``.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    midi_dir = out_dir / "midi"
    midi_dir.mkdir(parents=True, exist_ok=True)
    if heldout is None:
        heldout = read_heldout() if HELDOUT_FILE.exists() else set(heldout_keys(list_works()))
    jobs = [(w, midi_dir / output_name(w), max_measures) for w in works]
    if len({p for _, p, _ in jobs}) != len(jobs):
        raise ValueError("two works map to the same output file; check output_name()")
    summary = BuildSummary(tried=len(jobs))
    rows = []
    # Both files are written row by row and flushed, so a long build is usable (and
    # inspectable) before it ends; the manifest is rewritten sorted at the end.
    with (
        open(out_dir / "failures.csv", "w", newline="", encoding="utf8") as failures_file,
        open(out_dir / "manifest.csv", "w", newline="", encoding="utf8") as manifest_file,
    ):
        failures = csv.writer(failures_file)
        failures.writerow(["corpus_path", "number", "reason"])
        manifest = csv.DictWriter(manifest_file, fieldnames=MANIFEST_COLUMNS)
        manifest.writeheader()
        for work, out_path, result in _run_jobs(jobs, workers, timeout_s, progress):
            if result["ok"]:
                split = "heldout" if work.key in heldout else "train"
                row = _manifest_row(work, out_path.relative_to(out_dir).as_posix(), split, result)
                manifest.writerow(row)
                manifest_file.flush()
                rows.append(row)
                summary.written += 1
            else:
                failure = (work.corpus_path, "" if work.number is None else work.number, result["reason"])
                failures.writerow(failure)
                failures_file.flush()
                summary.failures.append(failure)
                summary.failed += 1
    _write_manifest(out_dir / "manifest.csv", sorted(rows, key=lambda r: r["file"]))
    summary.seconds = time.perf_counter() - start
    return summary


def _write_manifest(path: Path, rows, columns=MANIFEST_COLUMNS) -> None:
    with open(path, "w", newline="", encoding="utf8") as manifest_file:
        writer = csv.DictWriter(manifest_file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf8") as f:
        return list(csv.DictReader(f))


def retry_failures(
    out_dir, workers: int = 2, timeout_s: int = 600, heldout=None, progress: bool = True
) -> BuildSummary:
    """Try the works in ``out_dir/failures.csv`` again (e.g. timeouts on a busy machine)
    with a longer ``timeout_s``; add the ones that now succeed to ``manifest.csv`` and
    leave only the rest in ``failures.csv``. Same arguments as :func:`build_corpus`.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    failed = _read_csv(out_dir / "failures.csv")
    rows = _read_csv(out_dir / "manifest.csv")
    if heldout is None:
        heldout = read_heldout() if HELDOUT_FILE.exists() else set(heldout_keys(list_works()))
    known = {w.key: w for w in list_works({f["corpus_path"].split("/", 1)[0] for f in failed})}
    works = []
    for f in failed:
        work = Work(f["corpus_path"], int(f["number"]) if f["number"] else None)
        works.append(known.get(work.key, work))
    jobs = [(w, out_dir / "midi" / output_name(w), None) for w in works]
    summary = BuildSummary(tried=len(jobs))
    for work, out_path, result in _run_jobs(jobs, workers, timeout_s, progress):
        if result["ok"]:
            split = "heldout" if work.key in heldout else "train"
            rows.append(_manifest_row(work, out_path.relative_to(out_dir).as_posix(), split, result))
            summary.written += 1
        else:
            summary.failures.append((work.corpus_path, "" if work.number is None else work.number, result["reason"]))
            summary.failed += 1
    _write_manifest(out_dir / "manifest.csv", sorted(rows, key=lambda r: r["file"]))
    with open(out_dir / "failures.csv", "w", newline="", encoding="utf8") as failures_file:
        writer = csv.writer(failures_file)
        writer.writerow(["corpus_path", "number", "reason"])
        writer.writerows(summary.failures)
    summary.seconds = time.perf_counter() - start
    return summary


#: Collections of single-line folk tunes; everything else is (mostly) polyphonic.
FOLK_COLLECTIONS = ("essenFolksong", "oneills1850", "airdsAirs", "ryansMammoth", "miscFolk", "nottingham-dataset")


def build_order(works) -> list[Work]:
    """Polyphonic collections first (slowest, most valuable), folk tunes last; within
    each group by stable hash, so an interrupted build has a fair sample of each."""
    # Salted: heldout_keys() takes the lowest unsalted hashes, so an unsalted order
    # would build the held-out works first and a partial build would be mostly held out.
    return sorted(works, key=lambda w: (w.collection in FOLK_COLLECTIONS, _stable_hash("order:" + w.key), w.key))


def limit_works(works, limit: int | None = None, folk_fraction: float = 1.0) -> list[Work]:
    """Deterministic subsets for trials and time-boxed builds.

    ``folk_fraction``: keep this share of the folk-tune collections (FOLK_COLLECTIONS);
    ``limit``: then keep this many works. Both choose by a salted SHA-1 of the key, a
    different order from :func:`heldout_keys`, so a subset holds its fair share of
    held-out works rather than mostly held-out ones.
    """
    if not 0.0 <= folk_fraction <= 1.0:
        raise ValueError(f"folk_fraction must be in [0, 1], got {folk_fraction}")
    scale = float(2**64)
    works = [
        w
        for w in works
        if w.collection not in FOLK_COLLECTIONS or _stable_hash("folk:" + w.key) / scale < folk_fraction
    ]
    if limit is None:
        return list(works)
    return sorted(works, key=lambda w: (_stable_hash("limit:" + w.key), w.key))[:limit]
