#!/usr/bin/env python
"""Make the checkpoint bundled with the kit, from the music21 corpus, reproducibly.

The shipped checkpoint is stage 0 below, trained further on the whole corpus and MMA styles by
``scripts/train_bundled_on_cpu.py`` (``musicvae_course/pretrained/MODEL_CARD.md``). Stage 0, the
first model, took these steps (the middle one is the long one; run it on a GPU if you have one)::

    python -m musicvae_course.corpus --out corpus/                    # MIDI + manifest
    python scripts/make_bundled_model.py prepare --corpus corpus/      # -> corpus/train.npz, heldout.npz
    python -m musicvae_course.train --data corpus/train.npz --split 0.95 0.05 0 \\
        --epochs 40 --beta-warmup-epochs 20 --out runs/bundled          # the card's recipe, shortened
    python scripts/make_bundled_model.py finish --run runs/bundled --corpus corpus/

``prepare`` reads the corpus with the kit's own loader (``data.build_dataset``)
and keeps the held-out works (``musicvae_course/corpus/heldout_works.txt``, marked
``heldout`` in the manifest) out of training entirely. ``finish`` copies the
best checkpoint into the package in the card's format (weights and config
only), records its SHA-256, and evaluates it on the held-out works: frame and
onset F1, ELBO, active units, and sample statistics against the data's. The
figures go to ``musicvae_course/pretrained/heldout_metrics.json``.

A model trained further (``scripts/train_bundled_on_cpu.py`` or ``train_bundled_on_gpu.sh``) is
staged for review beside the bundled one with ``candidate``, evaluated against it with
``scripts/evaluate_bundled_model.py``, and swapped in by copying the staged files over
``musicvae_course/pretrained/`` (the names match) and following the card's *Reproduce* notes::

    python scripts/make_bundled_model.py candidate --run runs/more --mix corpus/mix
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from musicvae_course.core import checkpoint, data, metrics
from musicvae_course.core.seeding import DEFAULT_SEED

REPO = Path(__file__).resolve().parents[1]

N_SAMPLES = 4096  #: prior samples and data segments compared for the statistics
TEMPERATURES = (1.0, 0.7)


def manifest_split(corpora: list[Path]) -> dict[str, list[str]]:
    """Files by split (``train`` / ``heldout``) from the corpora's ``manifest.csv``.

    A work built into two corpus folders (two time-boxed builds) counts once.
    """
    files, seen = {"train": [], "heldout": []}, set()
    for corpus in corpora:
        with open(corpus / "manifest.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                work = (row.get("corpus_path", row["file"]), row.get("number", ""))
                if work not in seen:
                    seen.add(work)
                    files[row["split"]].append(str(corpus / row["file"]))
    return files


def prepare(corpora: list[Path], workers: int | None) -> None:
    out_dir = corpora[0]
    for split, paths in manifest_split(corpora).items():
        ds = data.build_dataset(paths, cache_dir=out_dir / f"cache-{split}", workers=workers)
        out = ds.save_npz(out_dir / f"{split}.npz")
        n_files = len(np.unique(ds.file_ids))
        print(
            f"{split}: {n_files:,} files -> {len(ds):,} segments -> {out} "
            f"({out.stat().st_size / 1e6:.1f} MB); skipped {len(ds.report.skipped)}"
        )


def export(source: Path, target: Path) -> None:
    """Write a checkpoint's weights and plain config only, in the card's format.

    A training checkpoint also holds the optimiser state (three times the
    size); the bundled file needs neither that nor the history.
    """
    best = checkpoint.load_checkpoint(source)
    model, _ = checkpoint.model_from_checkpoint(best, str(source))
    checkpoint.save_checkpoint(model, target, **_plain_config(best))


def _plain_config(saved: dict) -> dict:
    """The config's plain values (a training checkpoint's may hold more)."""
    return {k: v for k, v in saved["config"].items() if isinstance(v, (int, float, str, bool))}


def finish(run: Path, corpus: Path) -> None:
    target = checkpoint.BUNDLED_CHECKPOINT
    export(run / "best.pt", target)
    model = checkpoint.load_pretrained(target)
    digest = checkpoint.sha256_of(target)
    checkpoint.BUNDLED_SHA256_FILE.write_text(f"{digest}  {target.name}\n")
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB), sha256 {digest}")

    torch.set_num_threads(2)
    heldout = data.load_dataset(corpus / "heldout.npz")
    table = metrics.evaluate(model, heldout)
    generator = torch.Generator().manual_seed(DEFAULT_SEED)
    pick = torch.randperm(len(heldout), generator=generator)[:N_SAMPLES]
    data_rolls = heldout.subset(pick.numpy()).segments
    statistics = {"data": metrics.sample_statistics(data_rolls)}
    for temperature in TEMPERATURES:
        samples = model.sample(
            N_SAMPLES, temperature=temperature, generator=torch.Generator().manual_seed(DEFAULT_SEED)
        )
        statistics[f"prior_T{temperature}"] = metrics.sample_statistics(samples)
    history = json.loads((run / "history.json").read_text())
    summary = {
        "heldout_files": int(len(np.unique(heldout.file_ids))),
        "heldout_segments": len(heldout),
        "metrics": {k: float(v) for k, v in table.items()},
        "sample_statistics": {name: {k: float(v) for k, v in stats.items()} for name, stats in statistics.items()},
        "epochs": len(history),
        "training_samples": int(sum(row["samples"] for row in history)),
        "training_seconds": float(sum(row["seconds"] for row in history)),
        "sha256": digest,
    }
    out = checkpoint.PRETRAINED_DIR / "heldout_metrics.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    shutil.copy(run / "history.json", checkpoint.PRETRAINED_DIR / "training_history.json")
    print(json.dumps(summary, indent=2))


CANDIDATE_DIR = REPO / "musicvae_course" / "pretrained_candidate"


TERMS_COLUMNS = ("key", "collection", "licence", "redistributable", "split")  #: of training_corpus.csv


def corpus_terms(manifest: Path, target: Path) -> int:
    """Write ``training_corpus.csv``: every built work with its collection, terms and split.

    ``manifest`` is the rolls build's ``manifest.csv`` (``python -m musicvae_course.corpus.rolls``);
    the table keeps its columns ``TERMS_COLUMNS``, one row per work, in the manifest's order.
    Returns the number of works. A manifest without one of those columns is refused by name.
    """
    import io

    from musicvae_course.fileio import atomic_write

    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in TERMS_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SystemExit(f"{manifest}: not a rolls manifest, no column {', '.join(missing)}")
        rows = [[row[c] for c in TERMS_COLUMNS] for row in reader]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TERMS_COLUMNS)
    writer.writerows(rows)
    atomic_write(target, out.getvalue())
    return len(rows)


def candidate(run: Path, mix_dir: Path, source: str = "best.pt", rolls: Path | None = None) -> None:
    """Stage a retrained checkpoint beside the bundled one, for review before it replaces it.

    Writes ``pretrained_candidate/``: the weights in the card's format, their SHA-256, the
    training history and the training mix (``mix.json`` of ``train_bundled_on_cpu.py prepare``).
    With ``rolls`` (the corpus build's folder), also ``training_corpus.csv`` (``corpus_terms``).
    The evaluation (``scripts/evaluate_bundled_model.py``) and ``MODEL_CARD.md`` go beside them.
    Swapping it in = copying these files over ``musicvae_course/pretrained/`` (the names match).
    """
    CANDIDATE_DIR.mkdir(exist_ok=True)
    target = CANDIDATE_DIR / checkpoint.BUNDLED_CHECKPOINT.name
    export(run / source, target)
    checkpoint.load_pretrained(target)  # loads with weights_only=True, architecture checked
    digest = checkpoint.sha256_of(target)
    (CANDIDATE_DIR / (target.name + ".sha256")).write_text(f"{digest}  {target.name}\n")
    shutil.copy(run / "history.json", CANDIDATE_DIR / "training_history.json")
    shutil.copy(mix_dir / "mix.json", CANDIDATE_DIR / "training_mix.json")
    if rolls is not None:
        corpus_terms(rolls / "manifest.csv", CANDIDATE_DIR / "training_corpus.csv")
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB), sha256 {digest}")


FIT_SEGMENTS = 20_000  #: training-mix segments the prior is matched to (the bundled model's figure)


def match_prior(source: Path, target: Path, mix_dir: Path, n_segments: int = FIT_SEGMENTS) -> None:
    """Fold the Gaussian fitted to a checkpoint's codes into it (``core.prior_match``), card format.

    Fits to ``n_segments`` of ``mix_dir/train.npz`` drawn after the first ``N_SAMPLES`` of the
    evaluation's seeded order, so the segments the prior statistics are compared with are not
    the ones it was fitted to. Prints the report and the largest change of a decoded probability.
    """
    from musicvae_course.core.prior_match import match_prior as fold

    saved = checkpoint.load_checkpoint(source)
    model, _ = checkpoint.model_from_checkpoint(saved, str(source))
    train = data.load_dataset(mix_dir / "train.npz")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(DEFAULT_SEED)).numpy()
    matched, report = fold(model, train.segments[np.sort(order[N_SAMPLES : N_SAMPLES + n_segments])])
    check = torch.as_tensor(train.segments[np.sort(order[:512])]).unsqueeze(1).float()
    with torch.no_grad():
        change = (model.eval().decode(model.encode(check)[0]) - matched.decode(matched.encode(check)[0])).abs().max()
    checkpoint.save_checkpoint(
        matched, target, **_plain_config(saved), prior_matched_to=f"{report.n_segments} segments"
    )
    eig = report.eigenvalues
    print(
        f"wrote {target}: codes' mean |m| {report.mean_norm:.3f}, covariance eigenvalues {eig[0]:.2f}..{eig[-1]:.2f}, "
        f"log-variance refit RMSE {report.log_var_rmse:.4f}; reconstructions change by <= {float(change):.1e}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare", help="corpus MIDI -> train.npz and heldout.npz (in the first)")
    p.add_argument("--corpus", type=Path, nargs="+", default=[REPO / "corpus"])
    p.add_argument("--workers", type=int)
    e = sub.add_parser("export", help="weights and config only, in the card's format")
    e.add_argument("source", type=Path)
    e.add_argument("target", type=Path)
    f = sub.add_parser("finish", help="bundle best.pt and measure it on the held-out works")
    f.add_argument("--run", type=Path, required=True)
    f.add_argument("--corpus", type=Path, default=REPO / "corpus")
    c = sub.add_parser("candidate", help="stage a retrained checkpoint in pretrained_candidate/")
    c.add_argument("--run", type=Path, required=True)
    c.add_argument("--mix", type=Path, default=REPO / "corpus" / "mix")
    c.add_argument("--source", default="best.pt", help="checkpoint file in the run folder")
    c.add_argument("--rolls", type=Path, help="corpus build folder: also write training_corpus.csv")
    t = sub.add_parser("corpus-terms", help="the rolls manifest -> training_corpus.csv (works, terms, split)")
    t.add_argument("--rolls", type=Path, default=REPO / "corpus" / "rolls")
    t.add_argument("--out", type=Path, default=checkpoint.PRETRAINED_DIR / "training_corpus.csv")
    m = sub.add_parser("match-prior", help="fold the Gaussian fitted to the codes into the checkpoint")
    m.add_argument("source", type=Path)
    m.add_argument("target", type=Path)
    m.add_argument("--mix", type=Path, default=REPO / "corpus" / "mix30LF")
    m.add_argument("--segments", type=int, default=FIT_SEGMENTS)
    args = parser.parse_args(argv)
    if args.step == "match-prior":
        match_prior(args.source, args.target, args.mix, args.segments)
    elif args.step == "candidate":
        candidate(args.run, args.mix, args.source, args.rolls)
    elif args.step == "corpus-terms":
        print(f"{args.out}: {corpus_terms(args.rolls / 'manifest.csv', args.out):,} works")
    elif args.step == "prepare":
        prepare(args.corpus, args.workers)
    elif args.step == "export":
        export(args.source, args.target)
    else:
        finish(args.run, args.corpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
