"""The works of music21's corpus: listing them, their ids and output names, the fixed held-out list, build order.

Used by the MIDI builder (:mod:`.build`), the score-to-roll builder (:mod:`.rolls`) and the samples (:mod:`.samples`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..core.safe_files import check_place_for_file
from ..fileio import atomic_write

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
    """Write the held-out ``keys`` (one a line, under a comment header) to ``path``, whole or not at all.

    Raises:
        FileExistsError: ``path`` is a folder.
    """
    header = (
        "# Works held out for evaluation only (never trained on). One music21 corpus\n"
        "# path, or path#tune-number for multi-tune ABC files. Made by\n"
        "# python -m musicvae_course.corpus --write-heldout (5% per collection, by SHA-1 of the key).\n"
    )
    # written whole, as a new file renamed into place: opening a FIFO given as PATH blocked forever, a link was
    # written through (into the file it named), an interruption left half a list
    check_place_for_file(path, "held-out list")
    atomic_write(path, header + "".join(k + "\n" for k in keys))


def check_corpus_path(corpus_path) -> None:
    """``ValueError`` unless ``corpus_path`` is a path inside music21's corpus (``collection/file``), as
    ``list_works`` gives: a failures.csv row of ``/x`` had ``retry_failures`` parse ``/x`` and, when that failed,
    delete ``/x.mid``, a file outside the build it had never written."""
    parts = corpus_path.split("/") if isinstance(corpus_path, str) else []
    if (
        len(parts) < 2
        or any(part in ("", ".", "..") or "\\" in part for part in parts)
        or not corpus_path.isprintable()
    ):
        raise ValueError(f"not a path of music21's corpus (collection/file): {corpus_path!r}")


def output_name(work: Work) -> str:
    """Relative MIDI path for a work: ``<collection>/<rest of path, '/' -> '__'>[__n<k>].mid``.

    The full path is kept because many files share a name (``movement1.mxl``); characters
    other than letters, digits, ``._-`` become ``_``.
    """
    check_corpus_path(work.corpus_path)
    rest = work.corpus_path.split("/", 1)[1] if "/" in work.corpus_path else work.corpus_path
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", rest.replace("/", "__"))
    if work.number is not None:
        stem += f"__n{work.number}"
    return f"{work.collection}/{stem}.mid"


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
    if limit is not None and not (isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1):
        raise ValueError(f"limit must be None or a whole number >= 1, got {limit!r}")  # -1 dropped the last work
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
