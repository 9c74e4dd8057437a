"""MIDI -> segments: the fast event-parser path against the pretty_midi reference, same files, one run.

Each path does the whole per-file job of ``build_dataset`` (read bytes, hash,
parse, roll, cut 2-bar segments, pack bits) in this process with threads pinned
to 1, the two paths alternating file by file (best of ``--repeats``). Prints
CPU files/s of both and their ratio for real multi-voice files (target >= 10x),
single-voice files and all; with ``--pool`` also a process pool on all cores and
how long LMD-full would take. There is no fallback: the fast path never calls
the reference.

    python benchmarks/bench_loader.py [FOLDER ...] [--repeats 3] [--n-folk 200] [--pool]

Default files: data_samples/ plus a music21 corpus generated into
``--corpus-dir`` (kept between runs). Pass folders (e.g. a slice of LMD) to
measure on other music; LMD files are larger than folk tunes, so the LMD
figure from the default corpus is optimistic.
"""

import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_name] = "1"  # before numpy/torch load: pin the BLAS/OpenMP pools too

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from musicvae_course.core import midi_events, pianoroll  # noqa: E402
from musicvae_course.core.data import list_midi_files  # noqa: E402
from musicvae_course.core.read_pool import read_file, read_files  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LMD_FULL_FILES = 178_561  # files in lmd_full.tar.gz (Raffel 2016)
TARGET_RATIO = 10.0


class _NoBar:
    def update(self, n=1):
        pass


def generated_corpus(folder: Path, n_folk: int) -> list[Path]:
    """The tests' music21 corpus (tests/midi_corpus.py), made once into ``folder``."""
    done = folder / "complete.txt"
    if not done.is_file():
        spec = importlib.util.spec_from_file_location("midi_corpus", ROOT / "tests" / "midi_corpus.py")
        midi_corpus = importlib.util.module_from_spec(spec)
        # Registered before it runs so its pool workers' function pickles by name.
        sys.modules["midi_corpus"] = midi_corpus
        spec.loader.exec_module(midi_corpus)
        paths, wall, cpu = midi_corpus.make_music21_corpus(folder, n_folk=n_folk)
        print(f"generated {len(paths)} MIDI files from music21 in {wall:.1f} s ({cpu:.1f} CPU-s)")
        done.write_text("ok")
    return sorted(folder.rglob("*.mid"))


def _voices(path) -> int:
    """Most pitched notes sounding at once in the file (> 1: several voices, parts or hands)."""
    table = midi_events.parse_notes(path.read_bytes())
    pitched = table.channel != midi_events.DRUM_CHANNEL
    ticks = np.concatenate([table.start[pitched], table.end[pitched]])
    change = np.concatenate([np.ones(pitched.sum(), np.int64), -np.ones(pitched.sum(), np.int64)])
    order = np.lexsort((change, ticks))  # at one tick, ends before starts
    return int(np.cumsum(change[order]).max()) if len(order) else 0


def time_single(paths, repeats):
    """Per path: best-of-``repeats`` (wall, CPU) seconds per file, in this process.

    The two paths alternate file by file, so a busy machine slows both alike.
    """
    wall = {"fast": [0.0] * len(paths), "reference": [0.0] * len(paths)}
    cpu = {"fast": [0.0] * len(paths), "reference": [0.0] * len(paths)}
    results = {}
    for repeat in range(repeats):
        for i, path in enumerate(paths):
            for reader in ("fast", "reference"):
                wall_start, cpu_start = time.perf_counter(), time.process_time()
                results[reader, i] = read_file(str(path), 3600.0, reader)
                took_wall, took_cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start
                wall[reader][i] = took_wall if repeat == 0 else min(wall[reader][i], took_wall)
                cpu[reader][i] = took_cpu if repeat == 0 else min(cpu[reader][i], took_cpu)
    return wall, cpu, results


def time_pool(paths, reader, workers):
    began = time.perf_counter()
    read_files([str(p) for p in paths], workers, 3600.0, reader, _NoBar())
    return time.perf_counter() - began


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-folk", type=int, default=200)
    parser.add_argument("--corpus-dir", type=Path, default=Path(tempfile.gettempdir()) / "musicvae-bench-corpus")
    parser.add_argument("--pool", action="store_true", help="also time a process pool on all cores")
    args = parser.parse_args()
    torch.set_num_threads(1)
    # The reference as pretty_midi alone: without the kit's pre-parse that bounds a file before pretty_midi
    # allocates (it would slow the reference and flatter the ratio).
    pianoroll.REFERENCE_BOUNDS_CHECK = False

    paths = (
        list_midi_files(args.folders)
        if args.folders
        else (list_midi_files(ROOT / "data_samples") + generated_corpus(args.corpus_dir, args.n_folk))
    )
    mean_kb = statistics.fmean(p.stat().st_size for p in paths) / 1024
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"{len(paths)} files, mean {mean_kb:.1f} KB | torch threads={torch.get_num_threads()}, "
        f"OMP/MKL threads=1, cores={cores}, load average {os.getloadavg()[0]:.1f}"
    )

    for p in paths:  # warm the OS file cache so neither path pays for the disk
        p.read_bytes()
    read_file(str(paths[0]), 3600.0, "fast"), read_file(str(paths[0]), 3600.0, "reference")  # imports
    wall, cpu, results = time_single(paths, args.repeats)
    same = sum(
        results["fast", i]["reason"] == results["reference", i]["reason"]
        and np.array_equal(results["fast", i].get("packed"), results["reference", i].get("packed"))
        for i in range(len(paths))
    )
    print(f"same segments (or same skip reason) from both paths: {same}/{len(paths)} files (no fallback exists)")
    multi_voice = np.array([_voices(p) > 1 for p in paths])
    sizes = np.array([p.stat().st_size for p in paths])
    print(f"{'files':<34} {'n':>4} | {'fast files/s':>12} {'reference files/s':>17} {'ratio':>6} (CPU, 1 thread)")
    for label, chosen in [
        ("real multi-voice files", multi_voice),
        ("single-voice files", ~multi_voice),
        ("files > 2 KB", sizes > 2048),
        ("all files", sizes >= 0),
    ]:
        if not chosen.any():
            continue
        fast = chosen.sum() / np.sum(np.array(cpu["fast"])[chosen])
        reference = chosen.sum() / np.sum(np.array(cpu["reference"])[chosen])
        print(f"{label:<34} {chosen.sum():>4} | {fast:>12.0f} {reference:>17.0f} {fast / reference:>5.1f}x")
    fast = multi_voice.sum() / np.sum(np.array(cpu["fast"])[multi_voice]) if multi_voice.any() else 0.0
    reference = multi_voice.sum() / np.sum(np.array(cpu["reference"])[multi_voice]) if multi_voice.any() else 1.0
    print(
        f"HEADLINE real multi-voice files, 1 thread: fast {fast:.0f} files/s, reference {reference:.0f} files/s, "
        f"ratio {fast / reference:.1f}x (target >= {TARGET_RATIO:.0f}x)"
    )
    if not args.pool:
        return
    fast_rate = len(paths) / sum(wall["fast"])
    reference_rate = len(paths) / sum(wall["reference"])

    pool_fast = len(paths) / time_pool(paths, "fast", cores)
    pool_reference = len(paths) / time_pool(paths, "reference", cores)
    print(
        f"{cores} processes: fast {pool_fast:8.0f} files/s | reference {pool_reference:6.0f} files/s | "
        f"fast/reference = {pool_fast / pool_reference:.1f}x (pool start-up included)"
    )

    best = max(pool_fast, fast_rate)
    print(
        f"LMD-full ({LMD_FULL_FILES:,} files) at {best:.0f} files/s: {LMD_FULL_FILES / best / 60:.1f} min "
        f"(reference: {LMD_FULL_FILES / max(pool_reference, reference_rate) / 3600:.1f} h); "
        f"files here average {mean_kb:.1f} KB; LMD's are larger, so expect longer"
    )


if __name__ == "__main__":
    main()
