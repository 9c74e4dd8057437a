#!/usr/bin/env python
"""Compare checkpoints on the same sets: held-out works by collection, MIDI from outside the
training sources, and prior-sample statistics against the data. Output: JSON + Markdown tables
(for the model card).

    python scripts/evaluate_bundled_model.py --checkpoint old=musicvae_course/pretrained/musicvae_music21.pt \\
        --checkpoint new=musicvae_course/pretrained_candidate/musicvae_music21.pt \\
        --mix corpus/mix --out musicvae_course/pretrained_candidate/evaluation

Sets (all decoded from ``z = mu``, threshold 0.5, frame F1 as ``core.metrics.evaluate``):

* held-out works: ``MIX/heldout_music21.npz`` (the fixed list ``corpus/heldout_works.txt``), by
  collection; targets apply to collections with >= 100 held-out segments (target 0.98).
* outside the training sources (target 0.90): music21's own test MIDI files (``midi/testPrimitive``,
  not part of its corpus), the MIDI files of Debian mma's documentation examples and pattern
  library (hand-written MIDI and demos, not our charts), two sets of game music composed as
  multi-track General MIDI (Debian ``openttd-openmsx``, GPL-2.0: ragtime, jazz, pop, latin;
  ``planetblupi-music-midi``, GPL-3+), and, reported apart, our MMA renders of grooves and
  progressions never trained on (``MIX/heldout_mma.npz``). A set whose package is not
  installed is left out (and says so).
* prior samples (4,096, seeded, T = 1.0, the default) against 4,096 segments of the balanced
  training mix (``MIX/train.npz``): polyphony, density, pitch-class entropy, scale consistency
  (target: within 10%).
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from musicvae_course.core import checkpoint, data, metrics
from musicvae_course.core.seeding import DEFAULT_SEED
from musicvae_course.corpus import mix

REPO = Path(__file__).resolve().parents[1]

N_SAMPLES = 4096
MIN_SEGMENTS = 100  #: collections smaller than this are reported but not held to the target
HELDOUT_TARGET, OUTSIDE_TARGET, STATISTICS_TOLERANCE = 0.98, 0.90, 0.10
COMPARED_STATISTICS = ("polyphony", "density", "pitch_class_entropy", "scale_consistency")


def outside_sets() -> dict[str, list[str]]:
    """MIDI files from outside every training source, by source (sets with no file left out)."""
    import music21

    m21 = Path(music21.__file__).parent / "midi" / "testPrimitive"
    sets = {
        "music21 test MIDI": sorted(glob.glob(str(m21 / "*.mid"))),
        "Debian mma examples + pattern MIDI": sorted(
            glob.glob("/usr/share/doc/mma/examples/**/*.mid", recursive=True)
            + glob.glob("/usr/share/mma/lib/**/*.mid", recursive=True)
        ),
        "OpenMSX game music (openttd-openmsx)": sorted(glob.glob("/usr/share/games/openttd/baseset/openmsx/*.mid")),
        "Planet Blupi game music (planetblupi-music-midi)": sorted(glob.glob("/usr/share/planetblupi/music/*.mid")),
    }
    for name in [name for name, files in sets.items() if not files]:
        print(f"outside set {name!r}: no files (package not installed); left out", file=sys.stderr)
        del sets[name]
    return sets


def _by_source(ds: data.PianoRollDataset, key) -> dict[str, data.PianoRollDataset]:
    names = np.array([key(f) for f in ds.files])[ds.file_ids]
    return {name: ds.subset(names == name) for name in sorted(set(names))}


MAX_SEGMENTS = 1000  #: per set, a seeded random sample (CPU time on a shared machine); 0: all


def _capped(ds: data.PianoRollDataset) -> data.PianoRollDataset:
    if not MAX_SEGMENTS or len(ds) <= MAX_SEGMENTS:
        return ds
    pick = torch.randperm(len(ds), generator=torch.Generator().manual_seed(DEFAULT_SEED))[:MAX_SEGMENTS]
    return ds.subset(np.sort(pick.numpy()))


def frame_scores(model, ds) -> dict:
    n_total = len(ds)
    table = metrics.evaluate(model, _capped(ds), batch_size=512)
    return {
        "segments_in_set": n_total,
        **{k: float(table[k]) for k in ("n_segments", "frame_f1", "frame_precision", "frame_recall", "onset_f1")},
    }


def evaluate_checkpoint(path: Path, sets: dict, data_rolls: np.ndarray) -> dict:
    model = checkpoint.load_pretrained(path)
    out: dict = {"heldout": {}, "outside": {}}
    out["heldout"]["all"] = frame_scores(model, sets["heldout"])
    for name, part in _by_source(sets["heldout"], mix.collection_of).items():
        out["heldout"][name] = frame_scores(model, part)
    for name, ds in sets["outside"].items():
        out["outside"][name] = frame_scores(model, ds)
    for name, part in _by_source(sets["mma_heldout"], mix.collection_of).items():
        out["outside"]["MMA unseen grooves/progressions: " + name.split("/")[1]] = frame_scores(model, part)
    out["outside"]["MMA unseen, all"] = frame_scores(model, sets["mma_heldout"])
    if sets["outside"]:
        out["outside"]["outside sources, all (not MMA renders)"] = frame_scores(model, sets["outside_all"])
    samples = model.sample(N_SAMPLES, temperature=1.0, generator=torch.Generator().manual_seed(DEFAULT_SEED))
    out["statistics"] = {"prior_T1.0": metrics.sample_statistics(samples)}
    return out


def markdown(results: dict, data_stats: dict) -> str:
    names = list(results)
    head = "| set | segments | " + " | ".join(f"{n} frame F1" for n in names) + " |"
    rule = "|---|---|" + "---|" * len(names)
    lines = ["### Held-out works by collection (target 0.98 where >= 100 segments)", "", head, rule]
    first = results[names[0]]
    for key in first["heldout"]:
        n = int(first["heldout"][key]["segments_in_set"])
        scores = " | ".join(f"{results[m]['heldout'][key]['frame_f1']:.3f}" for m in names)
        mark = "" if n >= MIN_SEGMENTS or key == "all" else " (small)"
        lines.append(f"| {key}{mark} | {n:,} | {scores} |")
    lines += ["", "### MIDI from outside the training sources (target 0.90)", "", head, rule]
    for key in first["outside"]:
        n = int(first["outside"][key]["segments_in_set"])
        scores = " | ".join(f"{results[m]['outside'][key]['frame_f1']:.3f}" for m in names)
        lines.append(f"| {key} | {n:,} | {scores} |")
    lines += [
        "",
        "### Prior samples (4,096, T = 1.0) against the data (balanced training mix; target within 10%)",
        "",
    ]
    lines.append("| statistic | data | " + " | ".join(f"{n} (diff)" for n in names) + " |")
    lines.append("|---|---|" + "---|" * len(names))
    for stat in ("empty_fraction", *COMPARED_STATISTICS, "pitch_range", "groove_consistency"):
        ref = data_stats[stat]
        cells = []
        for m in names:
            value = results[m]["statistics"]["prior_T1.0"][stat]
            diff = f" ({(value - ref) / ref:+.0%})" if stat in COMPARED_STATISTICS and ref else ""
            cells.append(f"{value:.3f}{diff}")
        lines.append(f"| {stat} | {ref:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    global MAX_SEGMENTS, N_SAMPLES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", required=True, help="NAME=PATH (repeat)")
    parser.add_argument("--mix", type=Path, default=REPO / "corpus" / "mix")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-segments", type=int, default=MAX_SEGMENTS, help="per set (seeded sample); 0: all")
    parser.add_argument("--samples", type=int, default=N_SAMPLES, help="prior samples and data segments compared")
    args = parser.parse_args(argv)
    MAX_SEGMENTS, N_SAMPLES = args.max_segments, args.samples
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    outside_files = outside_sets()
    outside = {name: data.build_dataset(files, workers=0, progress=False) for name, files in outside_files.items()}
    sets = {
        "heldout": data.load_dataset(args.mix / "heldout_music21.npz"),
        "mma_heldout": data.load_dataset(args.mix / "heldout_mma.npz"),
        "outside": outside,
        "outside_all": mix.concat(list(outside.values())) if outside else None,
    }
    val = data.load_dataset(args.mix / "train.npz")  # the balanced mix the model is trained to reproduce
    pick = torch.randperm(len(val), generator=torch.Generator().manual_seed(DEFAULT_SEED))[:N_SAMPLES]
    data_rolls = val.subset(pick.numpy()).segments
    data_stats = metrics.sample_statistics(data_rolls)
    results = {}
    for spec in args.checkpoint:
        name, path = spec.split("=", 1)
        results[name] = evaluate_checkpoint(Path(path), sets, data_rolls)
        print(f"{name}: evaluated in {time.perf_counter() - start:.0f} s", flush=True)
    summary = {
        "data_statistics": data_stats,
        "results": results,
        "outside_files": {k: len(v) for k, v in outside_files.items()},
        "seconds": time.perf_counter() - start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    text = markdown(results, data_stats)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
