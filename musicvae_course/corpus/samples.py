"""The redistributable sample pieces shipped in data_samples/.

A fixed list of works (SAMPLE_WORKS), each exported like the corpus (see
musicvae_course/corpus/build.py) but cut to its first measures, plus a manifest and a
README generated from it. Run through ``python -m musicvae_course.corpus --samples
data_samples/``. The samples are what notebook 03_fine_tuning_on_a_subset.ipynb
filters by composer and style.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..fileio import atomic_write
from .build import DEFAULT_TIMEOUT_S, BuildSummary, _run_jobs, _write_manifest
from .terms import LICENCE_NAMES, check_redistributable, encoding_terms, rights_statement
from .works import Work, corpus_root

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
    SampleSpec(
        "johnson_j_r/lift_every_voice.mxl",
        "johnson_lift_every_voice_hymn.mid",
        "chorale",
        "Lift Every Voice and Sing",
        "J. Rosamond Johnson",
        note="four-part (SATB) hymn: stand-in for a Bach chorale",
    ),
    SampleSpec(
        "liliuokalani/aloha_oe.mxl",
        "liliuokalani_aloha_oe_song.mid",
        "chorale",
        "Aloha Oe",
        "Liliuokalani",
        note="SATB chorus with solo voice and piano: hymn-like song",
    ),
    SampleSpec(
        "leadSheet/fosterBrownHair.mxl",
        "foster_jeanie_with_the_light_brown_hair.mid",
        "folk",
        "Jeanie with the Light Brown Hair",
        "Stephen Foster",
        note="parlour-song melody (chord symbols dropped): stand-in for a folk tune",
    ),
    *(
        SampleSpec(
            f"josquin/{stem}.abc",
            f"josquin_{name}.mid",
            "renaissance",
            title,
            "Josquin des Prez",
            note="voices (one ABC tune each) merged into one score",
        )
        for stem, name, title in (
            ("adieuMesAmours", "adieu_mes_amours", "Adieu mes amours"),
            ("fortunaDunGranTempo", "fortuna_dun_gran_tempo", "Fortuna d'un gran tempo"),
            (
                "laDeplorationDeLaMorteDeJohannesOckeghem",
                "deploration_sur_la_mort_d_ockeghem",
                "La deploration de la mort de Johannes Ockeghem",
            ),
            ("laPlusDesPlus", "la_plus_des_plus", "La plus des plus"),
            ("milleRegrets", "mille_regretz", "Mille regretz"),
            ("oVenusBant", "o_venus_bant", "O Venus bant"),
            ("petiteCamusette", "petite_camusette", "Petite camusette"),
            ("4vPerIlludAveProlatum", "per_illud_ave_prolatum", "Per illud ave prolatum"),
        )
    ),
    SampleSpec(
        "lusitano/allor_che_ignuda.mxl",
        "lusitano_allor_che_ignuda_madrigal.mid",
        "renaissance",
        "Allor che ignuda d'herb et fior la terra",
        "Vicente Lusitano",
    ),
    SampleSpec(
        "ciconia/quod_jactatur.xml",
        "ciconia_quod_jactatur.mid",
        "other",
        "Quod jactatur",
        "Johannes Ciconia",
        note="late-medieval canon (c. 1400); the encoding has its single written line",
    ),
    SampleSpec(
        "luca/gloria.xml", "luca_gloria.mid", "other", "Gloria", "D. Luca", note="trecento mass movement (14th century)"
    ),
    *(
        SampleSpec(
            f"schumann_clara/polonaise_op1n{n}.mxl",
            f"clara_schumann_polonaise_op1_no{n}_piano.mid",
            "keyboard",
            f"Polonaise, Op. 1 No. {n}",
            "Clara Schumann",
            note="solo piano",
        )
        for n in (1, 2, 3, 4)
    ),
    SampleSpec(
        "corelli/opus3no1/1grave.xml",
        "corelli_trio_sonata_op3_no1_grave.mid",
        "strings",
        "Trio Sonata Op. 3 No. 1: Grave",
        "Arcangelo Corelli",
        note="two violins and continuo (organ/violone line)",
    ),
    SampleSpec(
        "weber/concertino_clarinet.mxl",
        "weber_clarinet_concertino_op26.mid",
        "other",
        "Clarinet Concertino, Op. 26",
        "Carl Maria von Weber",
        note="clarinet and piano",
    ),
    SampleSpec(
        "beach/prayer_of_a_tired_child.musicxml",
        "beach_prayer_of_a_tired_child.mid",
        "other",
        "Prayer of a Tired Child, Op. 75 No. 4",
        "Amy Beach",
        note="four treble voices (SSAA) and piano",
    ),
    SampleSpec(
        "webern/webern_dormi_jesu_op_16_no_2.mxl",
        "webern_dormi_jesu_op16_no2.mid",
        "other",
        "Dormi Jesu, Op. 16 No. 2",
        "Anton Webern",
        note="voice and clarinet; twelve-tone canon",
    ),
)

SAMPLE_MANIFEST_COLUMNS = (
    "file",
    "title",
    "composer",
    "style",
    "corpus_path",
    "number",
    "collection",
    "source_format",
    "encoding_holder",
    "licence",
    "redistributable",
    "encoding_rights",
    "measures_kept",
    "steps",
    "note",
)
SAMPLES_COMMAND = "python -m musicvae_course.corpus --samples data_samples/"


def build_samples(
    out_dir,
    specs=SAMPLE_WORKS,
    workers: int = 2,
    timeout_s: int = DEFAULT_TIMEOUT_S,
    max_measures: int = SAMPLE_MAX_MEASURES,
) -> BuildSummary:
    """Write the shipped samples: ``out_dir/<spec.file>`` and ``out_dir/manifest.csv``.

    Every spec must name a redistributable encoding (ValueError otherwise, before any
    work) and a known style. Each piece keeps its first ``max_measures`` measures and
    must load with ``musicvae_course.core.pianoroll.midi_to_pianoroll`` into a non-empty
    roll of at least 32 steps, else it is reported as a failure.
    """
    from ..core.pianoroll import SEGMENT_STEPS, midi_to_pianoroll

    start = time.perf_counter()
    for spec in specs:
        check_redistributable(spec.corpus_path)
        if spec.style not in SAMPLE_STYLES:
            raise ValueError(f"{spec.file}: style {spec.style!r} not in {SAMPLE_STYLES}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_file = {spec.file: spec for spec in specs}
    jobs = [
        (Work(spec.corpus_path, spec.number, spec.title, spec.composer), out_dir / spec.file, max_measures)
        for spec in specs
    ]
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
        rows.append(
            {
                "file": spec.file,
                "title": spec.title,
                "composer": spec.composer,
                "style": spec.style,
                "corpus_path": work.corpus_path,
                "number": "" if work.number is None else work.number,
                "collection": work.collection,
                "source_format": work.source_format,
                "encoding_holder": terms.holder,
                "licence": terms.licence,
                "redistributable": terms.redistributable,
                "encoding_rights": rights_statement(corpus_root() / work.corpus_path),
                "measures_kept": f"first {max_measures}",
                "steps": roll.shape[1],
                "note": spec.note,
            }
        )
    order = {spec.file: i for i, spec in enumerate(specs)}
    rows.sort(key=lambda r: order[r["file"]])
    _write_manifest(out_dir / "manifest.csv", rows, SAMPLE_MANIFEST_COLUMNS)
    atomic_write(out_dir / "README.md", samples_readme(rows, max_measures))  # whole or not at all, as the manifest
    summary.seconds = time.perf_counter() - start
    return summary


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
        "`COLLECTION_TERMS` in `musicvae_course/corpus/terms.py` for every collection. So some",
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
        "| file | work | composer | style | music21 corpus path | encoding by | licence | steps | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            "| "
            + " | ".join(
                cell(x)
                for x in (
                    f"`{row['file']}`",
                    row["title"],
                    row["composer"],
                    row["style"],
                    f"`{row['corpus_path']}`",
                    row["encoding_holder"],
                    LICENCE_NAMES.get(row["licence"], row["licence"]),
                    row["steps"],
                    row["note"],
                )
            )
            + " |"
        )
    lines += [
        "",
        "`steps`: length in sixteenth notes as read by `musicvae_course.core.pianoroll.midi_to_pianoroll`.",
        "",
    ]
    return "\n".join(lines)
