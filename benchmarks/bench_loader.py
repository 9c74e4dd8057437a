"""MIDI -> segments: the symusic fast path against the pretty_midi reference, same files, one run.

Each path does the whole per-file job of ``build_dataset`` (read bytes, hash,
parse, roll, cut 2-bar segments, pack bits), first in this process with
threads pinned to 1, then in a process pool on all cores. Prints files/s of
both, the ratio (target >= 10x per core), and how long LMD-full would take.

    python benchmarks/bench_loader.py [FOLDER ...] [--repeats 3] [--n-folk 200]

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
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from musicvae_course.core import midi_fast  # noqa: E402
from musicvae_course.core.data import list_midi_files  # noqa: E402
from musicvae_course.core.segment_cache import read_file, read_files  # noqa: E402

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
        spec.loader.exec_module(midi_corpus)
        paths, wall, cpu = midi_corpus.make_music21_corpus(folder, n_folk=n_folk)
        print(f"generated {len(paths)} MIDI files from music21 in {wall:.1f} s ({cpu:.1f} CPU-s)")
        done.write_text("ok")
    return sorted(folder.rglob("*.mid"))


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
    args = parser.parse_args()
    torch.set_num_threads(1)

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
    fallbacks = sum(results["fast", i]["fallback"] for i in range(len(paths)))
    same = sum(
        results["fast", i]["reason"] == results["reference", i]["reason"]
        and np.array_equal(results["fast", i].get("packed"), results["reference", i].get("packed"))
        for i in range(len(paths))
    )
    print(
        f"same segments (or same skip reason) from both paths: {same}/{len(paths)} files; "
        f"the fast path sent {fallbacks} to the reference (overlapping notes)"
    )
    sizes = np.array([p.stat().st_size for p in paths])
    for label, chosen in [("all files", sizes >= 0), ("files <= 2 KB", sizes <= 2048), ("files > 2 KB", sizes > 2048)]:
        if not chosen.any():
            continue
        rates = {
            clock: {r: chosen.sum() / np.sum(np.array(times[r])[chosen]) for r in times}
            for clock, times in (("wall", wall), ("CPU", cpu))
        }
        print(
            f"1 process, {label} ({chosen.sum()}): "
            + " | ".join(
                f"{clock}: fast {rate['fast']:6.0f} files/s, reference {rate['reference']:5.0f} files/s, "
                f"ratio {rate['fast'] / rate['reference']:.1f}x"
                for clock, rate in rates.items()
            )
            + f" (target {TARGET_RATIO:.0f}x)"
        )
    # Where the time goes: bytes -> roll only, without the work both paths share
    # (file I/O, hashing, pianoroll.segments, packing).
    datas = [p.read_bytes() for p in paths]
    roll_cpu = {}
    for reader, read in (
        ("fast", lambda d: midi_fast.read_pianoroll(d, 3600.0)),
        ("reference", lambda d: midi_fast.read_pianoroll_reference(d, 3600.0)),
    ):
        began = time.process_time()
        for data in datas:
            try:
                read(data)
            except midi_fast.MidiSkip:
                pass
        roll_cpu[reader] = (time.process_time() - began) / len(datas)
    shared = sum(cpu["fast"]) / len(paths) - roll_cpu["fast"]
    print(
        f"CPU per file, bytes -> roll only: fast {roll_cpu['fast'] * 1e6:.0f} us, reference "
        f"{roll_cpu['reference'] * 1e6:.0f} us, ratio {roll_cpu['reference'] / roll_cpu['fast']:.1f}x; "
        f"work both paths share (I/O, hash, segments, packing): about {shared * 1e6:.0f} us"
    )
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
