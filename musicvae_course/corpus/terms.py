"""Terms under which each encoding in music21's bundled corpus may be used.

The compositions are public domain; the *encodings* are not all free to pass on.
music21/corpus/license.txt: the corpus is "distributed with the permission of the
encoders ... where permitted under United States copyright law. Some encodings ...
may not be used for commercial uses or have other restrictions: please see the
licenses embedded in individual compositions or directories". So an encoding is
redistributable by us only where its own file or directory grants an open licence.
Everything below was read from the installed music21 10.5.1 corpus (file headers,
MusicXML <rights>/<credit-words>, directory license.txt files).

Used by scripts/build_corpus.py (manifest columns) and scripts/corpus_samples.py
(only redistributable encodings are shipped in data_samples/, which notebook
03_fine_tuning_on_a_subset.ipynb fine-tunes on).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

#: licence ids that allow us to redistribute a derived MIDI file (with attribution /
#: share-alike where the licence asks for it).
REDISTRIBUTABLE_LICENCES = frozenset(
    {
        "CC0-1.0",
        "public-domain",
        "CC-BY",
        "CC-BY-SA",
        "CC-BY-SA-3.0",
        "CC-BY-SA-4.0",
        "GPL-2.0-or-later",
    }
)


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
    "airdsAirs": EncodingTerms(
        _UNSTATED, "Jack Campin (ABC transcription, 2009)", "Z: lines in airdsAirs/*.abc; no licence stated"
    ),
    "bach": EncodingTerms(
        _UNSTATED,
        "Margaret Greentree (jsbchorales.net), by permission",
        "MusicXML credit 'PDF (c) Margaret Greentree - used by permission'; "
        "some files carry no credit; no licence stated",
    ),
    "beach": EncodingTerms(
        "CC-BY-SA", "Michael Scott Cuthbert (2017)", "<rights>: engraving CC-SA-BY; work out of copyright (1915)"
    ),
    "beethoven": EncodingTerms(
        _UNSTATED, "unnamed (Finale MusicXML); kern by Craig Stuart Sapp", "no licence stated in files"
    ),
    "chopin": EncodingTerms(_UNSTATED, "Craig Stuart Sapp (kern, 2005)", "no licence stated"),
    "ciconia": EncodingTerms(
        "CC-BY-SA-3.0", "Michael Scott Cuthbert (2010)", "<rights>: freely distributed under a CC-BY-SA 3.0 license"
    ),
    "corelli": EncodingTerms("CC-BY", "unnamed encoder (2014)", "<rights>: (c) 2014, Creative Commons License (CC-BY)"),
    "cpebach": EncodingTerms(_UNSTATED, "unnamed", "no licence stated"),
    "demos": EncodingTerms(
        _UNSTATED, "music21 test files", "corpus/license.txt: music21 assumes no copyright; none stated"
    ),
    "essenFolksong": EncodingTerms(
        "non-commercial-permission",
        "Essen (H. Schaffrath, E. Dahlig-Turek); ABC by Seymour Shlien",
        "essenFolksong/license.txt: legal status unclear; permission "
        "for non-commercial distribution and use in music21",
    ),
    "handel": EncodingTerms(_UNSTATED, "unnamed", "no licence stated"),
    "haydn": EncodingTerms(_UNSTATED, "unnamed (MuseScore 2.1 MusicXML)", "no licence stated"),
    "johnson_j_r": EncodingTerms(
        "CC0-1.0", "Michael Scott Asato Cuthbert", "<rights>: Public Domain (Encoding by MSAC: CC0)"
    ),
    "joplin": EncodingTerms(_UNSTATED, "unnamed", "no licence stated"),
    "josquin": EncodingTerms("GPL-2.0-or-later", "Laura E. Conrad (1999)", "ABC header: GNU GPL version 2 or later"),
    "leadSheet": EncodingTerms(_UNSTATED, "unnamed", "per-file <rights>, see FILE_TERMS"),
    "liliuokalani": EncodingTerms(
        "CC0-1.0", "Michael Scott Asato Cuthbert", "<rights>: now public domain; encoding by MSAC, CC0"
    ),
    "luca": EncodingTerms(
        "CC-BY-SA-3.0", "Michael Scott Cuthbert (2010)", "<rights>: freely distributed under a CC-BY-SA 3.0 license"
    ),
    "lusitano": EncodingTerms(
        "CC0-1.0", "Michael Scott Asato Cuthbert (2022)", "<rights>: released as CC0/Public Domain"
    ),
    "miscFolk": EncodingTerms(_UNSTATED, "Jack Campin (ABC, 2000 and 2007)", "ABC header comments; no licence stated"),
    "monteverdi": EncodingTerms(
        _UNSTATED, "unnamed; two files (c) UT Orpheus Edizioni 2003", "no licence stated; see FILE_TERMS"
    ),
    "mozart": EncodingTerms(_UNSTATED, "unnamed (Finale MusicXML)", "no licence stated"),
    "nottingham-dataset": EncodingTerms(_UNSTATED, "Nottingham Music Database (E. Foxley)", "no licence stated"),
    "oneills1850": EncodingTerms(_UNSTATED, "Norbert Paap (ABC transcription)", "Z: lines; no licence stated"),
    "palestrina": EncodingTerms(
        "proprietary-licence-agreement",
        "John Miller (2000)",
        "kern !!!YEC: Copyright 2000, John Miller; !!!YEM: rights to all "
        "derivative electronic formats reserved; licensing agreement",
    ),
    "ryansMammoth": EncodingTerms(_UNSTATED, "Ray Davies and others (ABC)", "Z: Contributed by ...; no licence stated"),
    "schoenberg": EncodingTerms(_UNSTATED, "unnamed", "no licence stated"),
    "schubert": EncodingTerms(_UNSTATED, "unnamed", "<rights>: 'Copyright (c)' with no holder"),
    "schumann_clara": EncodingTerms(_UNSTATED, "unnamed", "per-file, see FILE_TERMS"),
    "schumann_robert": EncodingTerms(_UNSTATED, "unnamed", "no licence stated"),
    "theoryExercises": EncodingTerms(_UNSTATED, "music21 test files", "no licence stated"),
    "trecento": EncodingTerms(
        _UNSTATED,
        "Michael Scott Cuthbert (transcriptions)",
        "no licence stated (some <rights> 'Copyright (c)' with no holder)",
    ),
    "verdi": EncodingTerms(_UNSTATED, "unnamed", "no licence stated"),
    "weber": EncodingTerms("public-domain", "Oliver Seely", "<rights>: Released to Public Domain in 1998"),
    "webern": EncodingTerms(
        "CC-BY-SA", "Michael Scott Cuthbert (2023)", "<rights>: work P.D. (Canada, EU), US from 2023; edition CC-BY-SA"
    ),
}

#: Per-file exceptions to COLLECTION_TERMS, keyed by corpus path.
FILE_TERMS: dict[str, EncodingTerms] = {
    **{
        f"bach/bwv{n}.krn": EncodingTerms(
            "proprietary-licence-agreement",
            "CCARH (1994)",
            "kern !!!YEC: Copyright 1994, CCARH; refer to licensing agreement",
        )
        for n in (277, 281, 366)
    },
    **{
        f"monteverdi/madrigal.5.{n}.mxl": EncodingTerms(
            "all-rights-reserved", "UT Orpheus Edizioni (2003)", "<rights>: (c) UT Orpheus 2003"
        )
        for n in (4, 5)
    },
    **{
        f"schumann_clara/polonaise_op1n{n}.mxl": EncodingTerms(
            "CC-BY-SA-4.0",
            "Cypressdome for IMSLP",
            "credit: typeset by Cypressdome for IMSLP, released under the CC BY-SA 4.0 license",
        )
        for n in (1, 2, 3, 4)
    },
    "leadSheet/fosterBrownHair.mxl": EncodingTerms("public-domain", "unnamed", "<rights>: Public Domain"),
    "leadSheet/berlinAlexandersRagtime.mxl": EncodingTerms(
        "all-rights-reserved", "unnamed", "<rights>: All Rights Reserved"
    ),
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
                text = "".join(
                    archive.read(name)[:200_000].decode("utf8", "replace")
                    for name in archive.namelist()
                    if name.endswith((".xml", ".musicxml")) and not name.startswith("META-INF")
                )
        else:
            text = file_path.read_bytes()[:200_000].decode("utf8", "replace")
    except (OSError, zipfile.BadZipFile):
        return ""
    for pattern in _RIGHTS_PATTERNS:
        match = pattern.search(text)
        if match and match.group(1).strip():
            return " ".join(match.group(1).split())[:300]
    return ""


def check_redistributable(corpus_path: str) -> EncodingTerms:
    """The terms of ``corpus_path``; raises ValueError unless they allow redistribution."""
    terms = encoding_terms(corpus_path)
    if not terms.redistributable:
        raise ValueError(
            f"{corpus_path}: encoding licence {terms.licence!r} does not allow redistribution ({terms.evidence})"
        )
    return terms


LICENCE_NAMES = {
    "CC0-1.0": "CC0 1.0 (public domain dedication)",
    "public-domain": "public domain (as stated in the file)",
    "CC-BY": "CC BY (version not stated)",
    "CC-BY-SA": "CC BY-SA (version not stated)",
    "CC-BY-SA-3.0": "CC BY-SA 3.0",
    "CC-BY-SA-4.0": "CC BY-SA 4.0",
    "GPL-2.0-or-later": "GNU GPL 2.0 or later",
}
