"""Wider styles: chord charts rendered to MIDI by MMA (Musical MIDI Accompaniment).

music21's corpus is folk tunes and early music. MMA (Debian package ``mma``, GPL-2+) turns a
chord chart into a multi-track accompaniment in one of its grooves: pop, rock, swing, latin,
waltz... This module writes charts (common progressions in many keys), renders each groove's
chart with the ``mma`` program, and records the terms. Drums come out on MIDI channel 10 and
are dropped by the kit's reader (``core.pianoroll``); bass, comping, pads and arpeggios remain.

Terms: the grooves are MMA's standard library (``/usr/share/mma/lib/stdlib``, GPL-2+, by
Bob van der Poel and contributors); the MIDI files made from them are recorded as GPL-2+
derived material. The chord progressions are common practice (not copyrightable).

Usage::

    python -m musicvae_course.corpus.mma --out corpus/mma/      # MIDI + manifest.csv, ~1-3 min

Held out entirely (never trained on; used to measure the model on styles' MIDI it never
saw): the grooves in ``HELDOUT_GROOVES`` and the progressions in ``HELDOUT_PROGRESSIONS``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..fileio import atomic_write

MMA_LICENCE = "GPL-2.0-or-later (MMA standard groove library)"
MMA_HOLDER = "Bob van der Poel and MMA contributors"
DEFAULT_TIMEOUT_S = 60  #: per rendered file

#: Grooves by style (names as MMA's ``Groove`` command takes them). Balanced: 8-10 per style.
GROOVES = {
    "pop-rock": [
        "50sRock",
        "60sRock",
        "8Beat",
        "BasicRock",
        "FolkRock",
        "PopBallad",
        "PianoBallad",
        "RockBallad",
        "Twist",
        "SoftRock",
    ],
    "jazz-blues": [
        "Swing",
        "JazzCombo",
        "Bebop",
        "EasySwing",
        "FastSwing",
        "Blues",
        "SlowBlues",
        "Foxtrot",
        "Dixie",
        "JazzGuitar",
    ],
    "latin": ["BossaNova", "Samba", "Rhumba", "ChaCha", "Mambo", "Tango", "Beguine", "Bolero", "Calypso", "Salsa"],
    "waltz": [
        "Waltz",
        "JazzWaltz",
        "CountryWaltz",
        "VieneseWaltz",
        "RockWaltz",
        "LatinWaltz",
        "BroadwayWaltz",
        "FrenchWaltz",
    ],
    "country-folk-march": [
        "CountrySwing",
        "Folk",
        "March",
        "Polka",
        "Hymn",
        "Spiritual",
        "ShowTune",
        "Ballad",
        "Bluegrass",
    ],
}
#: One groove per style never trained on (the "outside" evaluation set).
HELDOUT_GROOVES = ("SoftRock", "JazzGuitar", "Salsa", "FrenchWaltz", "Bluegrass")

#: Progressions as bars of (semitones above the tonic, MMA chord suffix); two chords in a bar
#: share it (4/4 grooves only; in 3/4 grooves each bar takes its first chord).
PROGRESSIONS = {
    "I-V-vi-IV": [[(0, "")], [(7, "")], [(9, "m")], [(5, "")]] * 2,
    "I-vi-IV-V": [[(0, "")], [(9, "m")], [(5, "")], [(7, "")]] * 2,
    "ii-V-I": [[(2, "m7")], [(7, "7")], [(0, "M7")], [(0, "M7")], [(2, "m7")], [(7, "7")], [(0, "6")], [(0, "6")]],
    "blues-12": [
        [(0, "7")],
        [(5, "7")],
        [(0, "7")],
        [(0, "7")],
        [(5, "7")],
        [(5, "7")],
        [(0, "7")],
        [(0, "7")],
        [(7, "7")],
        [(5, "7")],
        [(0, "7")],
        [(7, "7")],
    ],
    "vi-IV-I-V": [[(9, "m")], [(5, "")], [(0, "")], [(7, "")]] * 2,
    "I-IV-V-IV": [[(0, "")], [(5, "")], [(7, "")], [(5, "")]] * 2,
    "circle": [[(9, "m7")], [(2, "m7")], [(7, "7")], [(0, "M7")], [(5, "M7")], [(11, "m7b5")], [(4, "7")], [(9, "m")]],
    "andalusian": [[(0, "m")], [(10, "")], [(8, "")], [(7, "")]] * 2,
    "minor-ii-V-i": [[(2, "m7b5")], [(7, "7")], [(0, "m7")], [(0, "m7")]] * 2,
    "mixolydian": [[(0, "")], [(10, "")], [(5, "")], [(0, "")]] * 2,
    "pachelbel": [[(0, ""), (7, "")], [(9, "m"), (4, "m")], [(5, ""), (0, "")], [(5, ""), (7, "")]] * 2,
    "turnaround": [[(0, "M7"), (9, "m7")], [(2, "m7"), (7, "7")]] * 4,
    "rhythm-A": [[(0, ""), (9, "m7")], [(2, "m7"), (7, "7")], [(4, "m7"), (9, "7")], [(2, "m7"), (7, "7")]] * 2,
    "minor-blues": [
        [(0, "m7")],
        [(5, "m7")],
        [(0, "m7")],
        [(0, "m7")],
        [(5, "m7")],
        [(5, "m7")],
        [(0, "m7")],
        [(0, "m7")],
        [(8, "7")],
        [(7, "7")],
        [(0, "m7")],
        [(7, "7")],
    ],
    "doo-wop": [[(0, "")], [(9, "m")], [(2, "m")], [(7, "7")]] * 2,
    "I-iii-IV-V": [[(0, "")], [(4, "m")], [(5, "")], [(7, "")]] * 2,
    "modal": [[(2, "m7")], [(2, "m7")], [(4, "m7")], [(2, "m7")]] * 2,
    "sus-pop": [[(0, "sus4")], [(0, "")], [(5, "add9")], [(7, "sus4")], [(7, "")], [(9, "m7")], [(5, "")], [(7, "")]],
    "dim-passing": [
        [(0, "")],
        [(1, "dim7")],
        [(2, "m7")],
        [(3, "dim7")],
        [(4, "m7")],
        [(9, "7")],
        [(2, "m7")],
        [(7, "7")],
    ],
    "minor-pop": [[(0, "m")], [(8, "")], [(3, "")], [(10, "")]] * 2,
}
#: Progressions never trained on (with every groove: the "outside" evaluation set).
HELDOUT_PROGRESSIONS = ("doo-wop", "minor-pop", "dim-passing")
NOTE_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
KEYS_PER_PROGRESSION = 3  #: each groove plays each progression in 3 of the 12 keys (by hash)
THREE_BEAT_GROOVES = frozenset(GROOVES["waltz"])


@dataclass(frozen=True)
class Chart:
    """One MMA file to render: a groove over a sequence of progressions in given keys."""

    name: str  # output stem, e.g. 'pop-rock/8Beat'
    style: str
    groove: str
    sections: tuple  # ((progression name, tonic 0-11), ...)
    split: str  # 'train' or 'heldout'
    tempo: int = 120


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode("utf8")).digest()[:8], "big")


def chord_name(tonic: int, step: int, suffix: str) -> str:
    """MMA chord name, e.g. ``chord_name(0, 7, '7') == 'G7'``."""
    return NOTE_NAMES[(tonic + step) % 12] + suffix


def chart_text(chart: Chart, seed: int = 1) -> str:
    """The MMA source of a chart: tempo, groove, a fixed random seed, one line per bar.

    Each bar line is ``<bar number> <chord> [/ <chord> /]``: one chord for the whole bar or,
    in 4/4 grooves, two chords of two beats each.
    """
    three = chart.groove in THREE_BEAT_GROOVES
    lines = [f"// {chart.name}: {MMA_LICENCE}", f"Tempo {chart.tempo}", f"RndSeed {seed}", f"Groove {chart.groove}"]
    bar = 1
    for progression, tonic in chart.sections:
        for chords in PROGRESSIONS[progression]:
            names = [chord_name(tonic, step, suffix) for step, suffix in chords]
            if three or len(names) == 1:
                lines.append(f"{bar} {names[0]}")
            else:
                lines.append(f"{bar} {names[0]} / {names[1]} /")
            bar += 1
    return "\n".join(lines) + "\n"


def charts() -> list[Chart]:
    """Every chart: per groove, a training chart (the training progressions, each in
    ``KEYS_PER_PROGRESSION`` keys) and a held-out one; held-out grooves get one chart of all
    progressions (all of it held out). Keys chosen by a hash: deterministic."""
    out = []
    train_progressions = [p for p in PROGRESSIONS if p not in HELDOUT_PROGRESSIONS]
    for style, grooves in GROOVES.items():
        for groove in grooves:

            def sections(names, groove=groove):
                chosen = []
                for name in names:
                    first = _hash(f"{groove}:{name}") % 12
                    chosen += [(name, (first + 5 * k) % 12) for k in range(KEYS_PER_PROGRESSION)]
                return tuple(chosen)

            if groove in HELDOUT_GROOVES:
                out.append(Chart(f"{style}/{groove}", style, groove, sections(PROGRESSIONS), "heldout"))
                continue
            out.append(Chart(f"{style}/{groove}", style, groove, sections(train_progressions), "train"))
            heldout = sections(HELDOUT_PROGRESSIONS)
            out.append(Chart(f"{style}/{groove}__heldout-progressions", style, groove, heldout, "heldout"))
    return out


def mma_program() -> str:
    """Path of the ``mma`` program; raises ``FileNotFoundError`` saying how to install it."""
    path = shutil.which("mma")
    if path is None:
        raise FileNotFoundError("the 'mma' program is not installed (Debian/Ubuntu: apt-get install mma)")
    return path


def render(text: str, out_mid: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Render MMA source ``text`` to ``out_mid`` with the ``mma`` program.

    Raises ``RuntimeError`` with mma's own message when it refuses the chart or writes no
    file, ``subprocess.TimeoutExpired`` past ``timeout_s``.
    """
    out_mid = Path(out_mid)
    out_mid.parent.mkdir(parents=True, exist_ok=True)
    source = out_mid.with_suffix(".mma")
    atomic_write(source, text)
    tmp = out_mid.with_name(f".{out_mid.name}.part.mid")
    tmp.unlink(missing_ok=True)
    result = subprocess.run(
        [mma_program(), "-m", "10000", str(source), "-f", str(tmp)], capture_output=True, text=True, timeout=timeout_s
    )
    output = result.stdout + "\n" + result.stderr
    error_at = output.find("Error")  # mma wraps long messages over lines
    if result.returncode != 0 or error_at >= 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        message = " ".join(output[max(0, error_at) :].split())[:400]
        raise RuntimeError(f"mma could not render {source}: {message}")
    tmp.replace(out_mid)


MANIFEST_COLUMNS = ("file", "style", "groove", "progressions", "keys", "split", "licence", "holder", "seconds")


def build_mma(out_dir, selected=None, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[dict]:
    """Render ``selected`` charts (default: :func:`charts`) into ``out_dir/midi/``; resumable.

    A chart whose MIDI file already exists is not rendered again; one that fails is reported
    in ``failures.csv`` and the others go on. Writes ``manifest.csv`` (``MANIFEST_COLUMNS``) and
    returns its rows.
    """
    out_dir = Path(out_dir)
    rows, failures = [], []
    for chart in selected if selected is not None else charts():
        out_mid = out_dir / "midi" / f"{chart.name}.mid"
        start = time.perf_counter()
        if not out_mid.exists():
            try:
                render(chart_text(chart), out_mid, timeout_s)
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                failures.append((chart.name, str(err)[:300]))
                continue
        rows.append(
            {
                "file": out_mid.relative_to(out_dir).as_posix(),
                "style": chart.style,
                "groove": chart.groove,
                "progressions": " ".join(sorted({p for p, _ in chart.sections})),
                "keys": " ".join(sorted({NOTE_NAMES[k] for _, k in chart.sections})),
                "split": chart.split,
                "licence": MMA_LICENCE,
                "holder": MMA_HOLDER,
                "seconds": f"{time.perf_counter() - start:.2f}",
            }
        )
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=MANIFEST_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "manifest.csv", text.getvalue())
    text = io.StringIO()
    csv.writer(text).writerows([("chart", "reason"), *failures])
    atomic_write(out_dir / "failures.csv", text.getvalue())
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Render MMA accompaniments (wider styles) to MIDI.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per file, seconds")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = build_mma(args.out, timeout_s=args.timeout)
    failed = sum(1 for _ in open(args.out / "failures.csv")) - 1
    print(f"mma: {len(rows)} files, {failed} failed, {time.perf_counter() - start:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
