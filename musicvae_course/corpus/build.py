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
import csv
import io
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..fileio import atomic_write, interrupts_held
from .export import _export_job
from .terms import encoding_terms, rights_statement
from .works import (
    HELDOUT_FILE,
    Work,
    check_corpus_path,
    corpus_root,
    heldout_keys,
    list_works,
    output_name,
    read_heldout,
)

DEFAULT_TIMEOUT_S = 120  # per work; Beethoven movements take 10-79 s to export
POOL_CHUNK_PER_WORKER = 200  # works per worker before its pool is replaced

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
            # A fresh pool per chunk recycles the workers (music21 keeps caches that grow over works). Not
            # max_tasks_per_child: Python 3.11's pool stalled once every worker had reached it (seen here).
            chunk = POOL_CHUNK_PER_WORKER * max(1, workers)
            batch, pool_size, pending = pending[:chunk], workers, pending[chunk:]
        finished = set()
        with cf.ProcessPoolExecutor(max_workers=pool_size, initializer=_die_with_parent) as pool:
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
    # Rows go, as they come, to *.partial.csv (a long build is inspectable before it ends); manifest.csv and
    # failures.csv are replaced whole at the end: a rebuild opened them for writing at its start, and one
    # interrupted then had emptied the previous build's manifest (its MIDI files still there, listed nowhere).
    partial = {name: out_dir / name.replace(".csv", ".partial.csv") for name in ("failures.csv", "manifest.csv")}
    with (
        open(partial["failures.csv"], "w", newline="", encoding="utf8") as failures_file,
        open(partial["manifest.csv"], "w", newline="", encoding="utf8") as manifest_file,
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
    text = io.StringIO(newline="")
    csv.writer(text).writerows([("corpus_path", "number", "reason"), *summary.failures])
    with interrupts_held():  # the pair, as one: the manifest and the failures of the same build
        _write_manifest(out_dir / "manifest.csv", sorted(rows, key=lambda r: r["file"]))
        atomic_write(out_dir / "failures.csv", text.getvalue())
    for path in partial.values():
        path.unlink(missing_ok=True)
    summary.seconds = time.perf_counter() - start
    return summary


def _write_manifest(path: Path, rows, columns=MANIFEST_COLUMNS) -> None:
    """Written whole or not at all: a retry killed while rewriting it lost every row of the build."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, text.getvalue())


def _failed_work(row: dict) -> Work:
    """The work a failures.csv row names; ``ValueError`` for a row that names none (or a path outside the corpus)."""
    corpus_path, number = row.get("corpus_path"), row.get("number") or ""
    check_corpus_path(corpus_path)
    if number and not (number.isascii() and number.isdigit() and len(number) < 10):
        raise ValueError(f"not a tune number: {number!r}")
    return Work(corpus_path, int(number) if number else None)


MAX_TABLE_BYTES = 64 * 1024 * 1024  #: a manifest or failures table read back (15,000 works take about 8 MB)


def read_table(path: Path, columns=()) -> list[dict]:
    """The rows of a CSV table the corpus tools wrote, bounded: ``ValueError`` naming the file when it is not a
    readable regular file (a FIFO blocked the read for ever), is over ``MAX_TABLE_BYTES``, is not UTF-8 text, or
    lacks one of ``columns`` (a bare ``KeyError`` came later)."""
    from ..core.midi_limits import LimitError
    from ..core.safe_files import FileSkip, display_name, read_regular_file

    if not Path(path).exists() and not Path(path).is_symlink():
        raise FileNotFoundError(f"no such table: {display_name(path)}")
    try:
        text = read_regular_file(path, MAX_TABLE_BYTES).decode("utf8")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except (FileSkip, LimitError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{display_name(path)}: not a readable table ({err})") from None
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{display_name(path)}: columns {missing} missing (has {list(rows[0])[:20]})")
    return rows


def retry_failures(
    out_dir, workers: int = 2, timeout_s: int = 600, heldout=None, progress: bool = True
) -> BuildSummary:
    """Try the works in ``out_dir/failures.csv`` again (e.g. timeouts on a busy machine)
    with a longer ``timeout_s``; add the ones that now succeed to ``manifest.csv`` and
    leave only the rest in ``failures.csv``. Same arguments as :func:`build_corpus`.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    failed = read_table(out_dir / "failures.csv")
    rows = read_table(out_dir / "manifest.csv")
    if rows and tuple(rows[0]) != MANIFEST_COLUMNS:  # checked before the work, not when writing it at the end
        raise ValueError(f"{out_dir / 'manifest.csv'}: columns {list(rows[0])[:20]} are not {list(MANIFEST_COLUMNS)}")
    if heldout is None:
        heldout = read_heldout() if HELDOUT_FILE.exists() else set(heldout_keys(list_works()))
    known = {w.key: w for w in list_works({str(f.get("corpus_path")).split("/", 1)[0] for f in failed})}
    works, unusable = [], []
    for f in failed:
        try:
            work = _failed_work(f)
        except ValueError as err:  # kept in failures.csv as it was, with the reason it was not tried
            unusable.append((f.get("corpus_path"), f.get("number") or "", f"not retried: {err}"))
            continue
        works.append(known.get(work.key, work))
    jobs = [(w, out_dir / "midi" / output_name(w), None) for w in works]
    summary = BuildSummary(tried=len(jobs), failures=unusable, failed=len(unusable))
    for work, out_path, result in _run_jobs(jobs, workers, timeout_s, progress):
        if result["ok"]:
            split = "heldout" if work.key in heldout else "train"
            rows.append(_manifest_row(work, out_path.relative_to(out_dir).as_posix(), split, result))
            summary.written += 1
        else:
            summary.failures.append((work.corpus_path, "" if work.number is None else work.number, result["reason"]))
            summary.failed += 1
    text = io.StringIO(newline="")
    csv.writer(text).writerows([("corpus_path", "number", "reason"), *summary.failures])
    with interrupts_held():  # a retry moves works from one file to the other: both or neither
        _write_manifest(out_dir / "manifest.csv", sorted(rows, key=lambda r: r["file"]))
        atomic_write(out_dir / "failures.csv", text.getvalue())
    summary.seconds = time.perf_counter() - start
    return summary
