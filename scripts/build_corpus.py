#!/usr/bin/env python
"""Build a MIDI training corpus (and the shipped samples) from music21's bundled corpus.

music21 ships ~15,000 encoded works (kern, ABC, MusicXML) but no MIDI. This script
parses each work with music21, removes grace notes, exports a standard MIDI file
(480 ticks per quarter) and records where every file came from and under which
terms its *encoding* may be used. The compositions are public domain; many of the
encodings are not free to redistribute, so the full corpus is built locally and
never committed: only ``data_samples/`` (redistributable encodings) is.

Usage (from the repository root)::

    /work/venv/bin/python scripts/build_corpus.py --out corpus/ [--workers 2]
        [--limit N] [--collections bach palestrina ...] [--timeout 120]
    /work/venv/bin/python scripts/build_corpus.py --out corpus/ --retry-failures --timeout 600
    /work/venv/bin/python scripts/build_corpus.py --samples data_samples/
    /work/venv/bin/python scripts/build_corpus.py --write-heldout musicvae_course/heldout_works.txt

Outputs of a build (``--out DIR``)::

    DIR/midi/<collection>/<sanitised corpus path>[__n<number>].mid
    DIR/manifest.csv   one row per written file (provenance, licence, split)
    DIR/failures.csv   corpus path, number, reason (one bad work never stops the build)

Read by notebook 03_fine_tuning_on_a_subset.ipynb (through the data module) and
by the training scripts; the held-out list is ``musicvae_course/heldout_works.txt``.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import copy
import csv
import hashlib
import os
import re
import signal
import sys
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

MIDI_TICKS_PER_QUARTER = 480  # music21's default (10,080) makes pretty_midi call files corrupt
DEFAULT_TIMEOUT_S = 120  # per work; Beethoven movements take 10-79 s to export
HELDOUT_FRACTION = 0.05
MIN_HELDOUT_COLLECTION_SIZE = 10  # collections this big get at least one held-out work
SKIPPED_EXTENSIONS = (".rntxt",)  # roman-numeral analyses (Bach, Monteverdi): not music
SKIPPED_COLLECTIONS = ("demos", "theoryExercises")  # music21's test fixtures, not repertoire
#: Collections whose multi-tune ABC files hold the VOICES of one piece (X:1 Cantus,
#: X:2 Altus, ...), not separate tunes: each file is one work, its voices merged.
VOICES_AS_TUNES_COLLECTIONS = ("josquin",)
REPO_ROOT = Path(__file__).resolve().parent.parent
HELDOUT_FILE = REPO_ROOT / "musicvae_course" / "heldout_works.txt"

# ---------------------------------------------------------------------------
# Terms of the encodings
# ---------------------------------------------------------------------------
# music21/corpus/license.txt: the corpus is "distributed with the permission of the
# encoders ... where permitted under United States copyright law. Some encodings ...
# may not be used for commercial uses or have other restrictions: please see the
# licenses embedded in individual compositions or directories". So an encoding is
# redistributable by us only where its own file or directory grants an open licence.
# Everything below was read from the installed music21 10.5.1 corpus (file headers,
# MusicXML <rights>/<credit-words>, directory license.txt files).

#: licence ids that allow us to redistribute a derived MIDI file (with attribution /
#: share-alike where the licence asks for it).
REDISTRIBUTABLE_LICENCES = frozenset({
    "CC0-1.0", "public-domain", "CC-BY", "CC-BY-SA", "CC-BY-SA-3.0", "CC-BY-SA-4.0",
    "GPL-2.0-or-later",
})


@dataclass(frozen=True)
class EncodingTerms:
    """Terms of one encoding: ``licence`` id, who holds it and where we read it."""

    licence: str
    holder: str
    evidence: str

    @property
    def redistributable(self) -> bool:
        return is_redistributable(self.licence)


_UNSTATED = "unstated-permission"  # shipped by permission to music21; no licence to us

#: Terms keyed by corpus directory (first path component).
COLLECTION_TERMS: dict[str, EncodingTerms] = {
    "airdsAirs": EncodingTerms(_UNSTATED, "Jack Campin (ABC transcription, 2009)",
                               "Z: lines in airdsAirs/*.abc; no licence stated"),
    "bach": EncodingTerms(_UNSTATED, "Margaret Greentree (jsbchorales.net), by permission",
                          "MusicXML credit 'PDF (c) Margaret Greentree - used by permission'; "
                          "some files carry no credit; no licence stated"),
    "beach": EncodingTerms("CC-BY-SA", "Michael Scott Cuthbert (2017)",
                           "<rights>: engraving CC-SA-BY; work out of copyright (1915)"),
    "beethoven": EncodingTerms(_UNSTATED, "unnamed (Finale MusicXML); kern by Craig Stuart Sapp",
                               "no licence stated in files"),
    "chopin": EncodingTerms(_UNSTATED, "Craig Stuart Sapp (kern, 2005)", "no licence stated"),
    "ciconia": EncodingTerms("CC-BY-SA-3.0", "Michael Scott Cuthbert (2010)",
                             "<rights>: freely distributed under a CC-BY-SA 3.0 license"),
    "corelli": EncodingTerms("CC-BY", "unnamed encoder (2014)",
                             "<rights>: (c) 2014, Creative Commons License (CC-BY)"),
    "cpebach": EncodingTerms(_UNSTATED, "unnamed", "no licence stated"),
    "demos": EncodingTerms(_UNSTATED, "music21 test files",
                           "corpus/license.txt: music21 assumes no copyright; none stated"),
    "essenFolksong": EncodingTerms("non-commercial-permission",
                                   "Essen (H. Schaffrath, E. Dahlig-Turek); ABC by Seymour Shlien",
                                   "essenFolksong/license.txt: legal status unclear; permission "
                                   "for non-commercial distribution and use in music21"),
    "handel": EncodingTerms(_UNSTATED, "unnamed", "no licence stated"),
    "haydn": EncodingTerms(_UNSTATED, "unnamed (MuseScore 2.1 MusicXML)", "no licence stated"),
    "johnson_j_r": EncodingTerms("CC0-1.0", "Michael Scott Asato Cuthbert",
                                 "<rights>: Public Domain (Encoding by MSAC: CC0)"),
    "joplin": EncodingTerms(_UNSTATED, "unnamed", "no licence stated"),
    "josquin": EncodingTerms("GPL-2.0-or-later", "Laura E. Conrad (1999)",
                             "ABC header: GNU GPL version 2 or later"),
    "leadSheet": EncodingTerms(_UNSTATED, "unnamed", "per-file <rights>, see FILE_TERMS"),
    "liliuokalani": EncodingTerms("CC0-1.0", "Michael Scott Asato Cuthbert",
                                  "<rights>: now public domain; encoding by MSAC, CC0"),
    "luca": EncodingTerms("CC-BY-SA-3.0", "Michael Scott Cuthbert (2010)",
                          "<rights>: freely distributed under a CC-BY-SA 3.0 license"),
    "lusitano": EncodingTerms("CC0-1.0", "Michael Scott Asato Cuthbert (2022)",
                              "<rights>: released as CC0/Public Domain"),
    "miscFolk": EncodingTerms(_UNSTATED, "Jack Campin (ABC, 2000 and 2007)",
                              "ABC header comments; no licence stated"),
    "monteverdi": EncodingTerms(_UNSTATED, "unnamed; two files (c) UT Orpheus Edizioni 2003",
                                "no licence stated; see FILE_TERMS"),
    "mozart": EncodingTerms(_UNSTATED, "unnamed (Finale MusicXML)", "no licence stated"),
    "nottingham-dataset": EncodingTerms(_UNSTATED, "Nottingham Music Database (E. Foxley)",
                                        "no licence stated"),
    "oneills1850": EncodingTerms(_UNSTATED, "Norbert Paap (ABC transcription)",
                                 "Z: lines; no licence stated"),
    "palestrina": EncodingTerms("proprietary-licence-agreement", "John Miller (2000)",
                                "kern !!!YEC: Copyright 2000, John Miller; !!!YEM: rights to all "
                                "derivative electronic formats reserved; licensing agreement"),
    "ryansMammoth": EncodingTerms(_UNSTATED, "Ray Davies and others (ABC)",
                                  "Z: Contributed by ...; no licence stated"),
    "schoenberg": EncodingTerms(_UNSTATED, "unnamed", "no licence stated"),
    "schubert": EncodingTerms(_UNSTATED, "unnamed", "<rights>: 'Copyright (c)' with no holder"),
    "schumann_clara": EncodingTerms(_UNSTATED, "unnamed", "per-file, see FILE_TERMS"),
    "schumann_robert": EncodingTerms(_UNSTATED, "unnamed", "no licence stated"),
    "theoryExercises": EncodingTerms(_UNSTATED, "music21 test files", "no licence stated"),
    "trecento": EncodingTerms(_UNSTATED, "Michael Scott Cuthbert (transcriptions)",
                              "no licence stated (some <rights> 'Copyright (c)' with no holder)"),
    "verdi": EncodingTerms(_UNSTATED, "unnamed", "no licence stated"),
    "weber": EncodingTerms("public-domain", "Oliver Seely",
                           "<rights>: Released to Public Domain in 1998"),
    "webern": EncodingTerms("CC-BY-SA", "Michael Scott Cuthbert (2023)",
                            "<rights>: work P.D. (Canada, EU), US from 2023; edition CC-BY-SA"),
}

#: Per-file exceptions to COLLECTION_TERMS, keyed by corpus path.
FILE_TERMS: dict[str, EncodingTerms] = {
    **{f"bach/bwv{n}.krn": EncodingTerms(
        "proprietary-licence-agreement", "CCARH (1994)",
        "kern !!!YEC: Copyright 1994, CCARH; refer to licensing agreement")
       for n in (277, 281, 366)},
    **{f"monteverdi/madrigal.5.{n}.mxl": EncodingTerms(
        "all-rights-reserved", "UT Orpheus Edizioni (2003)", "<rights>: (c) UT Orpheus 2003")
       for n in (4, 5)},
    **{f"schumann_clara/polonaise_op1n{n}.mxl": EncodingTerms(
        "CC-BY-SA-4.0", "Cypressdome for IMSLP",
        "credit: typeset by Cypressdome for IMSLP, released under the CC BY-SA 4.0 license")
       for n in (1, 2, 3, 4)},
    "leadSheet/fosterBrownHair.mxl": EncodingTerms(
        "public-domain", "unnamed", "<rights>: Public Domain"),
    "leadSheet/berlinAlexandersRagtime.mxl": EncodingTerms(
        "all-rights-reserved", "unnamed", "<rights>: All Rights Reserved"),
}

_UNKNOWN_TERMS = EncodingTerms("unknown", "unknown", "collection not in COLLECTION_TERMS")


def is_redistributable(licence: str) -> bool:
    """True when an encoding under ``licence`` (an id as used in COLLECTION_TERMS) may be
    redistributed in this repository; unknown ids are refused (default deny)."""
    return licence in REDISTRIBUTABLE_LICENCES


def encoding_terms(corpus_path: str) -> EncodingTerms:
    """Terms of the encoding at ``corpus_path`` (e.g. ``'josquin/milleRegrets.abc'``):
    the per-file entry if any, else its collection's, else ``licence='unknown'``."""
    corpus_path = corpus_path.replace("\\", "/")
    if corpus_path in FILE_TERMS:
        return FILE_TERMS[corpus_path]
    return COLLECTION_TERMS.get(corpus_path.split("/", 1)[0], _UNKNOWN_TERMS)


_RIGHTS_PATTERNS = (
    re.compile(r"<rights>\s*([^<]*?)\s*</rights>", re.S),
    re.compile(r"^!!!YEC:\s*(.+)$", re.M),  # kern copyright record
    re.compile(r"^%\s*(Copyright.+)$", re.M | re.I),  # ABC comment
)


def rights_statement(file_path: Path) -> str:
    """The encoding's own rights line (MusicXML ``<rights>``, kern ``!!!YEC``, ABC
    ``% Copyright``), whitespace-collapsed, or ``''`` if the file states none."""
    try:
        if file_path.suffix == ".mxl":
            with zipfile.ZipFile(file_path) as archive:
                text = "".join(archive.read(name)[:200_000].decode("utf8", "replace")
                               for name in archive.namelist()
                               if name.endswith((".xml", ".musicxml"))
                               and not name.startswith("META-INF"))
        else:
            text = file_path.read_bytes()[:200_000].decode("utf8", "replace")
    except (OSError, zipfile.BadZipFile):
        return ""
    for pattern in _RIGHTS_PATTERNS:
        match = pattern.search(text)
        if match and match.group(1).strip():
            return " ".join(match.group(1).split())[:300]
    return ""


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
        return {".abc": "abc", ".krn": "humdrum-kern", ".mxl": "musicxml",
                ".xml": "musicxml", ".musicxml": "musicxml"}.get(suffix, suffix.lstrip("."))


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
    header = ("# Works held out for evaluation only (never trained on). One music21 corpus\n"
              "# path, or path#tune-number for multi-tune ABC files. Made by\n"
              "# scripts/build_corpus.py --write-heldout (5% per collection, by SHA-1 of the key).\n")
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
    return {"grace_notes_removed": grace_notes, "chord_symbols_removed": chord_symbols,
            "repeats": repeats,
            "measures_kept": "" if max_measures is None else max_measures}


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
MANIFEST_COLUMNS = ("file", "corpus_path", "number", "title", "composer", "collection",
                    "source_format", "licence", "redistributable", "encoding_holder",
                    "encoding_rights", "split", "repeats", "grace_notes_removed",
                    "chord_symbols_removed", "measures_kept", "seconds")


@dataclass
class BuildSummary:
    tried: int = 0
    written: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list = field(default_factory=list)

    def line(self) -> str:
        return (f"works tried {self.tried}, written {self.written}, failed {self.failed}, "
                f"{self.seconds:.0f} s")


def _manifest_row(work: Work, file: str, split: str, info: dict) -> dict:
    terms = encoding_terms(work.corpus_path)
    return {
        "file": file, "corpus_path": work.corpus_path,
        "number": "" if work.number is None else work.number,
        "title": work.title, "composer": work.composer, "collection": work.collection,
        "source_format": work.source_format, "licence": terms.licence,
        "redistributable": terms.redistributable, "encoding_holder": terms.holder,
        "encoding_rights": rights_statement(corpus_root() / work.corpus_path),
        "split": split, "repeats": info.get("repeats", ""),
        "grace_notes_removed": info.get("grace_notes_removed", ""),
        "chord_symbols_removed": info.get("chord_symbols_removed", ""),
        "measures_kept": info.get("measures_kept", ""),
        "seconds": f"{info.get('seconds', 0.0):.2f}",
    }


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
        with cf.ProcessPoolExecutor(max_workers=pool_size, max_tasks_per_child=200) as pool:
            futures = {pool.submit(job, w, str(p), timeout_s, m): i
                       for i, (w, p, m) in enumerate(batch)}
            for future in cf.as_completed(futures):
                index = futures[future]
                work, out_path, _ = batch[index]
                try:
                    result = future.result()
                except cf.process.BrokenProcessPool:
                    if pool_size > 1:
                        suspects.append(batch[index])
                        pending = [j for i, j in enumerate(batch)
                                   if i != index and i not in finished] + pending
                        break
                    result = {"ok": False, "seconds": 0.0,
                              "reason": "worker process died (crash or out of memory)"}
                finished.add(index)
                bar.update(1)
                yield work, out_path, result
    bar.close()


def build_corpus(works, out_dir, workers: int = 2, timeout_s: int = DEFAULT_TIMEOUT_S,
                 heldout=None, max_measures: int | None = None,
                 progress: bool = True) -> BuildSummary:
    """Export ``works`` to ``out_dir/midi/`` and write ``manifest.csv`` and ``failures.csv``.

    Args:
        works: list of :class:`Work` (e.g. from :func:`list_works`).
        out_dir: output directory (created).
        workers: worker processes (>= 1).
        timeout_s: per-work time limit in seconds; a work over it is skipped and reported.
        heldout: set of held-out keys (``Work.key``); default: the committed
            ``musicvae_course/heldout_works.txt`` if present, else :func:`heldout_keys`.
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
    with open(out_dir / "failures.csv", "w", newline="", encoding="utf8") as failures_file, \
            open(out_dir / "manifest.csv", "w", newline="", encoding="utf8") as manifest_file:
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
                failure = (work.corpus_path, "" if work.number is None else work.number,
                           result["reason"])
                failures.writerow(failure)
                failures_file.flush()
                summary.failures.append(failure)
                summary.failed += 1
    rows.sort(key=lambda r: r["file"])
    with open(out_dir / "manifest.csv", "w", newline="", encoding="utf8") as manifest_file:
        writer = csv.DictWriter(manifest_file, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    summary.seconds = time.perf_counter() - start
    return summary


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf8") as f:
        return list(csv.DictReader(f))


def retry_failures(out_dir, workers: int = 2, timeout_s: int = 600, heldout=None,
                   progress: bool = True) -> BuildSummary:
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
            rows.append(_manifest_row(work, out_path.relative_to(out_dir).as_posix(), split,
                                      result))
            summary.written += 1
        else:
            summary.failures.append((work.corpus_path,
                                     "" if work.number is None else work.number,
                                     result["reason"]))
            summary.failed += 1
    rows.sort(key=lambda r: r["file"])
    with open(out_dir / "manifest.csv", "w", newline="", encoding="utf8") as manifest_file:
        writer = csv.DictWriter(manifest_file, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with open(out_dir / "failures.csv", "w", newline="", encoding="utf8") as failures_file:
        writer = csv.writer(failures_file)
        writer.writerow(["corpus_path", "number", "reason"])
        writer.writerows(summary.failures)
    summary.seconds = time.perf_counter() - start
    return summary


# ---------------------------------------------------------------------------
# Shipped samples (data_samples/)
# ---------------------------------------------------------------------------
SAMPLE_MAX_MEASURES = 64  # keeps every sample short (<= 64 written bars) and the folder small
SAMPLE_STYLES = ("chorale", "folk", "renaissance", "keyboard", "strings", "other")


@dataclass(frozen=True)
class SampleSpec:
    """One shipped sample: which corpus work, its file name and its style label."""

    corpus_path: str
    file: str  # name inside data_samples/
    style: str  # one of SAMPLE_STYLES
    title: str
    composer: str
    number: int | None = None
    note: str = ""  # scoring, and why this style label where it is a stand-in


#: The fixed list of shipped samples. Only encodings whose terms allow redistribution
#: (see COLLECTION_TERMS/FILE_TERMS): no Bach chorale, folk-tune, keyboard-sonata or
#: string-quartet encoding in music21's corpus states such terms, so stand-ins are
#: labelled in ``note``.
SAMPLE_WORKS: tuple[SampleSpec, ...] = (
    SampleSpec("johnson_j_r/lift_every_voice.mxl", "johnson_lift_every_voice_hymn.mid",
               "chorale", "Lift Every Voice and Sing", "J. Rosamond Johnson",
               note="four-part (SATB) hymn: stand-in for a Bach chorale"),
    SampleSpec("liliuokalani/aloha_oe.mxl", "liliuokalani_aloha_oe_song.mid", "chorale",
               "Aloha Oe", "Liliuokalani",
               note="SATB chorus with solo voice and piano: hymn-like song"),
    SampleSpec("leadSheet/fosterBrownHair.mxl", "foster_jeanie_with_the_light_brown_hair.mid",
               "folk", "Jeanie with the Light Brown Hair", "Stephen Foster",
               note="parlour-song melody (chord symbols dropped): stand-in for a folk tune"),
    *(SampleSpec(f"josquin/{stem}.abc", f"josquin_{name}.mid", "renaissance", title,
                 "Josquin des Prez", note="voices (one ABC tune each) merged into one score")
      for stem, name, title in (
          ("adieuMesAmours", "adieu_mes_amours", "Adieu mes amours"),
          ("fortunaDunGranTempo", "fortuna_dun_gran_tempo", "Fortuna d'un gran tempo"),
          ("laDeplorationDeLaMorteDeJohannesOckeghem", "deploration_sur_la_mort_d_ockeghem",
           "La deploration de la mort de Johannes Ockeghem"),
          ("laPlusDesPlus", "la_plus_des_plus", "La plus des plus"),
          ("milleRegrets", "mille_regretz", "Mille regretz"),
          ("oVenusBant", "o_venus_bant", "O Venus bant"),
          ("petiteCamusette", "petite_camusette", "Petite camusette"),
          ("4vPerIlludAveProlatum", "per_illud_ave_prolatum", "Per illud ave prolatum"))),
    SampleSpec("lusitano/allor_che_ignuda.mxl", "lusitano_allor_che_ignuda_madrigal.mid",
               "renaissance", "Allor che ignuda d'herb et fior la terra", "Vicente Lusitano"),
    SampleSpec("ciconia/quod_jactatur.xml", "ciconia_quod_jactatur.mid", "other",
               "Quod jactatur", "Johannes Ciconia",
               note="late-medieval canon (c. 1400); the encoding has its single written line"),
    SampleSpec("luca/gloria.xml", "luca_gloria.mid", "other", "Gloria", "D. Luca",
               note="trecento mass movement (14th century)"),
    *(SampleSpec(f"schumann_clara/polonaise_op1n{n}.mxl",
                 f"clara_schumann_polonaise_op1_no{n}_piano.mid", "keyboard",
                 f"Polonaise, Op. 1 No. {n}", "Clara Schumann", note="solo piano")
      for n in (1, 2, 3, 4)),
    SampleSpec("corelli/opus3no1/1grave.xml", "corelli_trio_sonata_op3_no1_grave.mid",
               "strings", "Trio Sonata Op. 3 No. 1: Grave", "Arcangelo Corelli",
               note="two violins and continuo (organ/violone line)"),
    SampleSpec("weber/concertino_clarinet.mxl", "weber_clarinet_concertino_op26.mid", "other",
               "Clarinet Concertino, Op. 26", "Carl Maria von Weber",
               note="clarinet and piano"),
    SampleSpec("beach/prayer_of_a_tired_child.musicxml", "beach_prayer_of_a_tired_child.mid",
               "other", "Prayer of a Tired Child, Op. 75 No. 4", "Amy Beach",
               note="four treble voices (SSAA) and piano"),
    SampleSpec("webern/webern_dormi_jesu_op_16_no_2.mxl", "webern_dormi_jesu_op16_no2.mid",
               "other", "Dormi Jesu, Op. 16 No. 2", "Anton Webern",
               note="voice and clarinet; twelve-tone canon"),
)

SAMPLE_MANIFEST_COLUMNS = ("file", "title", "composer", "style", "corpus_path", "number",
                           "collection", "source_format", "encoding_holder", "licence",
                           "redistributable", "encoding_rights", "measures_kept", "steps",
                           "note")
SAMPLES_COMMAND = "python scripts/build_corpus.py --samples data_samples/"


def check_redistributable(corpus_path: str) -> EncodingTerms:
    """The terms of ``corpus_path``; raises ValueError unless they allow redistribution."""
    terms = encoding_terms(corpus_path)
    if not terms.redistributable:
        raise ValueError(f"{corpus_path}: encoding licence {terms.licence!r} does not allow "
                         f"redistribution ({terms.evidence})")
    return terms


def build_samples(out_dir, specs=SAMPLE_WORKS, workers: int = 2,
                  timeout_s: int = DEFAULT_TIMEOUT_S,
                  max_measures: int = SAMPLE_MAX_MEASURES) -> BuildSummary:
    """Write the shipped samples: ``out_dir/<spec.file>`` and ``out_dir/manifest.csv``.

    Every spec must name a redistributable encoding (ValueError otherwise, before any
    work) and a known style. Each piece keeps its first ``max_measures`` measures and
    must load with ``musicvae_course.pianoroll.midi_to_pianoroll`` into a non-empty
    roll of at least 32 steps, else it is reported as a failure.
    """
    from musicvae_course.pianoroll import SEGMENT_STEPS, midi_to_pianoroll

    start = time.perf_counter()
    for spec in specs:
        check_redistributable(spec.corpus_path)
        if spec.style not in SAMPLE_STYLES:
            raise ValueError(f"{spec.file}: style {spec.style!r} not in {SAMPLE_STYLES}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_file = {spec.file: spec for spec in specs}
    jobs = [(Work(spec.corpus_path, spec.number, spec.title, spec.composer),
             out_dir / spec.file, max_measures) for spec in specs]
    summary = BuildSummary(tried=len(jobs))
    rows = []
    for work, out_path, result in _run_jobs(jobs, workers, timeout_s, progress=False):
        spec = by_file[out_path.name]
        if result["ok"]:
            roll = midi_to_pianoroll(out_path)
            if roll.shape[1] < SEGMENT_STEPS or not roll.any():
                result = {"ok": False, "reason": f"roll too short or empty: {roll.shape}"}
                out_path.unlink()
        if not result["ok"]:
            summary.failed += 1
            summary.failures.append((work.corpus_path, work.number or "", result["reason"]))
            continue
        summary.written += 1
        terms = encoding_terms(work.corpus_path)
        rows.append({
            "file": spec.file, "title": spec.title, "composer": spec.composer,
            "style": spec.style, "corpus_path": work.corpus_path,
            "number": "" if work.number is None else work.number,
            "collection": work.collection, "source_format": work.source_format,
            "encoding_holder": terms.holder, "licence": terms.licence,
            "redistributable": terms.redistributable,
            "encoding_rights": rights_statement(corpus_root() / work.corpus_path),
            "measures_kept": f"first {max_measures}", "steps": roll.shape[1],
            "note": spec.note,
        })
    order = {spec.file: i for i, spec in enumerate(specs)}
    rows.sort(key=lambda r: order[r["file"]])
    with open(out_dir / "manifest.csv", "w", newline="", encoding="utf8") as manifest_file:
        writer = csv.DictWriter(manifest_file, fieldnames=SAMPLE_MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "README.md").write_text(samples_readme(rows, max_measures), encoding="utf8")
    summary.seconds = time.perf_counter() - start
    return summary


_LICENCE_NAMES = {
    "CC0-1.0": "CC0 1.0 (public domain dedication)",
    "public-domain": "public domain (as stated in the file)",
    "CC-BY": "CC BY (version not stated)",
    "CC-BY-SA": "CC BY-SA (version not stated)",
    "CC-BY-SA-3.0": "CC BY-SA 3.0",
    "CC-BY-SA-4.0": "CC BY-SA 4.0",
    "GPL-2.0-or-later": "GNU GPL 2.0 or later",
}


def samples_readme(rows, max_measures: int = SAMPLE_MAX_MEASURES) -> str:
    """``data_samples/README.md`` text for the manifest ``rows`` (kept in sync by the script)."""
    def cell(text) -> str:
        return str(text).replace("|", "/").replace("\n", " ")

    lines = [
        "# Sample MIDI files",
        "",
        f"{len(rows)} short pieces for the notebooks and tests, written by",
        f"`{SAMPLES_COMMAND}` from music21's bundled corpus (music21 10.5.1):",
        "each work is parsed with music21, grace notes and chord symbols are removed, repeats",
        f"are expanded, only the first {max_measures} measures are kept, and the result is",
        "exported as MIDI (480 ticks per quarter). `manifest.csv` holds the same table,",
        "machine-readable (`style` is one of " + ", ".join(SAMPLE_STYLES) + ").",
        "",
        "## Why these pieces",
        "",
        "The compositions are all public domain, but most *encodings* in music21's corpus",
        "were shipped to music21 by permission, with no licence that lets us pass them on",
        "(Bach chorales: Margaret Greentree's encodings, no licence; folk-tune collections:",
        "none stated, Essen is non-commercial only; Palestrina: (c) John Miller with a",
        "licence agreement; Beethoven, Mozart and Haydn quartets: none stated). Only",
        "encodings whose own file or directory grants an open licence are used here; see",
        "`COLLECTION_TERMS` in `scripts/build_corpus.py` for every collection. So some",
        "styles have stand-ins, named in the `note` column:",
        "",
        "* **chorale**: J. Rosamond Johnson's four-part hymn and Liliuokalani's SATB song",
        "  instead of Bach chorales;",
        "* **folk**: one song melody (Stephen Foster) instead of a folk-tune collection:",
        "  no folk collection in the corpus states a redistributable licence;",
        "* **strings**: one Corelli trio-sonata movement (no string-quartet encoding is",
        "  redistributable);",
        "* **keyboard**: Clara Schumann's four Polonaises Op. 1.",
        "",
        "## Licences of the encodings",
        "",
        "The MIDI files are derived from the encodings and keep their terms: CC BY files",
        "need attribution (the `encoding_holder` column); CC BY-SA files must be shared",
        "under the same licence; the Josquin files are derived from Laura E. Conrad's ABC",
        "transcriptions (1999), GNU GPL 2.0 or later: the source is the ABC in music21's",
        "corpus (`music21/corpus/josquin/`) and this script. CC0 and public-domain files",
        "carry no conditions.",
        "",
        "## Files",
        "",
        "| file | work | composer | style | music21 corpus path | encoding by | licence "
        "| steps | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(cell(x) for x in (
            f"`{row['file']}`", row["title"], row["composer"], row["style"],
            f"`{row['corpus_path']}`", row["encoding_holder"],
            _LICENCE_NAMES.get(row["licence"], row["licence"]), row["steps"],
            row["note"])) + " |")
    lines += ["", "`steps`: length in sixteenth notes as read by "
              "`musicvae_course.pianoroll.midi_to_pianoroll`.", ""]
    return "\n".join(lines)


#: Collections of single-line folk tunes; everything else is (mostly) polyphonic.
FOLK_COLLECTIONS = ("essenFolksong", "oneills1850", "airdsAirs", "ryansMammoth", "miscFolk",
                    "nottingham-dataset")


def build_order(works) -> list[Work]:
    """Polyphonic collections first (slowest, most valuable), folk tunes last; within
    each group by stable hash, so an interrupted build has a fair sample of each."""
    # Salted: heldout_keys() takes the lowest unsalted hashes, so an unsalted order
    # would build the held-out works first and a partial build would be mostly held out.
    return sorted(works, key=lambda w: (w.collection in FOLK_COLLECTIONS,
                                        _stable_hash("order:" + w.key), w.key))


def limit_works(works, limit: int | None = None, folk_fraction: float = 1.0) -> list[Work]:
    """Deterministic subsets for trials and time-boxed builds.

    ``folk_fraction``: keep this share of the folk-tune collections (FOLK_COLLECTIONS);
    ``limit``: then keep this many works. Both choose by a salted SHA-1 of the key, a
    different order from :func:`heldout_keys`, so a subset holds its fair share of
    held-out works rather than mostly held-out ones.
    """
    if not 0.0 <= folk_fraction <= 1.0:
        raise ValueError(f"folk_fraction must be in [0, 1], got {folk_fraction}")
    scale = float(2 ** 64)
    works = [w for w in works if w.collection not in FOLK_COLLECTIONS
             or _stable_hash("folk:" + w.key) / scale < folk_fraction]
    if limit is None:
        return list(works)
    return sorted(works, key=lambda w: (_stable_hash("limit:" + w.key), w.key))[:limit]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="build the MIDI corpus into this directory")
    parser.add_argument("--samples", type=Path, help="write the redistributable samples here")
    parser.add_argument("--write-heldout", type=Path, metavar="PATH",
                        help="write the held-out list (all works) to PATH")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, help="only this many works (deterministic spread)")
    parser.add_argument("--collections", nargs="+", help="corpus directories to include")
    parser.add_argument("--folk-fraction", type=float, default=1.0,
                        help="share of the folk-tune collections to build (deterministic)")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S,
                        help="per-work time limit, seconds")
    parser.add_argument("--retry-failures", action="store_true",
                        help="with --out: retry the works in OUT/failures.csv (use a longer "
                             "--timeout) and update the manifest")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if not (args.out or args.samples or args.write_heldout):
        parser.error("give --out, --samples and/or --write-heldout")
    if args.write_heldout:
        keys = heldout_keys(list_works())
        write_heldout(keys, args.write_heldout)
        print(f"held-out list: {len(keys)} works -> {args.write_heldout}")
    if args.samples:
        summary = build_samples(args.samples, workers=args.workers, timeout_s=args.timeout)
        print(f"samples: {summary.line()}")
    if args.out and args.retry_failures:
        summary = retry_failures(args.out, workers=args.workers, timeout_s=args.timeout,
                                 progress=not args.no_progress)
        print(f"retry: {summary.line()} -> {args.out}")
    elif args.out:
        works = build_order(limit_works(list_works(args.collections), args.limit,
                                        args.folk_fraction))
        summary = build_corpus(works, args.out, workers=args.workers, timeout_s=args.timeout,
                               progress=not args.no_progress)
        print(f"corpus: {summary.line()} -> {args.out}")
        for path, number, reason in summary.failures[:20]:
            print(f"  failed: {path}{'#' + str(number) if number != '' else ''}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
