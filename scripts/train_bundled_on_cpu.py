#!/usr/bin/env python
"""Continue training the bundled checkpoint on the whole music21 corpus plus MMA styles, on CPU.

Steps (from the repository root; each resumable)::

    nice -n 5 python -m musicvae_course.corpus.rolls --out corpus/rolls --workers 2   # notes, minutes
    nice -n 5 python -m musicvae_course.corpus.mma --out corpus/mma                   # MMA renders
    python scripts/train_bundled_on_cpu.py prepare          # -> corpus/mix/*.npz, mix.json
    nice -n 5 python scripts/train_bundled_on_cpu.py train --until 18:55   # fit, resumable
    python scripts/evaluate_bundled_model.py ...             # tables for the model card

``prepare`` groups the sources by style (``corpus.mix.STYLE_GROUPS``), balances them to
``--per-group`` segments each (small groups enlarged by transposition within the 88 keys),
gives fast one-voice lines a group of their own (``textures.fast_lines``: runs of sixteenths, rare in
every collection and the model's worst) and, when ``--group-size fast-polyphony=N`` asks for it,
fast figuration in several voices (``textures.fast_polyphony``: where the quartets' errors are),
adds as many segments of folk melodies laid over MMA accompaniments (``textures.layer``: the texture
of songs and game music, which no source has alone), and cuts a validation set by source (2% of
sources, for the scheduler and ``best.pt``; its layered segments are made from those sources only).
Held-out music21 works (``corpus/heldout_works.txt``) and the held-out MMA grooves and
progressions never enter training.

``train`` starts from the bundled checkpoint (``init``) with the kit's own
``musicvae_course.train.fit``: fine-tune settings (lr 3e-4, halved after an epoch without a
better validation -ELBO, beta 1 from the start, free bits 0.5, batch 256, clip 1.0), one
thread, and ``out_dir`` + ``resume`` so a stopped run continues where it stopped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np

from musicvae_course.core import checkpoint, data
from musicvae_course.corpus import mix, rolls, textures
from musicvae_course.corpus import works as corpus_works

REPO = Path(__file__).resolve().parents[1]

MIX_DIR = REPO / "corpus" / "mix"
FINE_TUNE = {
    "lr": 3e-4,
    "lr_patience": 1,
    "lr_factor": 0.5,
    "min_lr": 1e-5,
    "beta_warmup_epochs": 0,
    "beta_max": 1.0,
    "free_bits": 0.5,
    "batch_size": 256,
    "grad_clip": 1.0,
}


def validation_sources(files, fraction: float, seed: int) -> np.ndarray:
    """Bool mask over ``files``: ``fraction`` of each style group's sources, at least one per group
    (MMA styles have only 8-9 sources each; a plain random 2% would leave them out of validation)."""
    rng = np.random.default_rng(seed)
    groups = np.array([mix.style_group(f) for f in files])
    is_val = np.zeros(len(files), bool)
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        if len(members) < 2:
            continue
        n = max(1, round(fraction * len(members)))
        is_val[rng.choice(members, n, replace=False)] = True
    return is_val


def _layered(pool, n: int, seed: int):
    """``n`` folk melodies laid over MMA accompaniments, both from ``pool`` (``textures.layer``)."""
    groups = np.array([mix.style_group(f) for f in pool.files])[pool.file_ids]
    melodies = pool.subset(np.isin(groups, ("folk-song", "folk-dance")))
    return textures.layer(melodies, pool.subset(np.isin(groups, mix.MMA_STYLES)), n, seed=seed)


def _with_textures(pool, sizes: dict | None):
    """``pool`` plus its fast one-voice segments again, as the ``fast-line`` group
    (``textures.fast_lines``), and, only when ``sizes`` asks for it, its fast figuration in several
    voices, as the ``fast-polyphony`` group (``textures.fast_polyphony``; last, so the other groups
    are drawn as in a mix without it)."""
    parts = [pool, textures.fast_lines(pool)]
    if mix.FAST_POLYPHONY in (sizes or {}):
        parts.append(textures.fast_polyphony(pool))
    return mix.concat(parts)


def prepare(
    rolls_dir: Path, mma_dir: Path, out: Path, per_group: int, val_fraction: float, sizes: dict | None = None
) -> dict:
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    works = corpus_works.list_works()
    manifest = rolls.roll_manifest(works, rolls_dir)
    m21_train = mix.music21_dataset(rolls_dir, "train")
    m21_heldout = mix.music21_dataset(rolls_dir, "heldout")
    mma_train = mix.mma_dataset(mma_dir, "train", cache_dir=out / "cache-mma-train")
    mma_heldout = mix.mma_dataset(mma_dir, "heldout", cache_dir=out / "cache-mma-heldout")
    pool = mix.concat([m21_train, mma_train])
    # validation by source (no source in both), before balancing: the scheduler sees unseen works
    is_val = validation_sources(pool.files, val_fraction, seed=2026)
    val = pool.subset(is_val[pool.file_ids])
    train_pool = pool.subset(~is_val[pool.file_ids])
    train = mix.concat(
        [
            mix.balance(_with_textures(train_pool, sizes), per_group, seed=2026, sizes=sizes),
            _layered(train_pool, per_group, 2028),
        ]
    )
    n_val = max(1, per_group // 20)
    val_sizes = {group: max(1, n // 20) for group, n in (sizes or {}).items()}
    val = mix.concat(
        [mix.balance(_with_textures(val, val_sizes), n_val, seed=2027, sizes=val_sizes), _layered(val, n_val, 2029)]
    )
    train.save_npz(out / "train.npz")
    val.save_npz(out / "val.npz")
    m21_heldout.save_npz(out / "heldout_music21.npz")
    mma_heldout.save_npz(out / "heldout_mma.npz")
    summary = {
        "works_cached": len(manifest),
        "works_total": len(works),
        "pool_segments": {
            "music21_train": len(m21_train),
            "music21_heldout": len(m21_heldout),
            "mma_train": len(mma_train),
            "mma_heldout": len(mma_heldout),
        },
        "pool_mix": mix.mix_report(train_pool),
        "train_segments": len(train),
        "val_segments": len(val),
        "train_mix": mix.mix_report(train),
        "group_shares": mix.group_shares(train),
        "per_group": per_group,
        "group_sizes": sizes or {},
        "seconds": time.perf_counter() - start,
    }
    (out / "mix.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if not k.endswith("_mix")}, indent=2))
    return summary


def train(
    out_dir: Path,
    mix_dir: Path,
    until: str | None,
    epochs: int,
    threads: int,
    init: Path,
    lr: float,
    seed: int,
    beta_max: float = FINE_TUNE["beta_max"],
    device: str = "cpu",
    precision: str = "auto",
) -> None:
    from musicvae_course.core.model import MusicVAE
    from musicvae_course.train import fit

    train_ds = data.load_dataset(mix_dir / "train.npz")
    val_ds = data.load_dataset(mix_dir / "val.npz")
    budget = None
    if until:
        hour, minute = (int(x) for x in until.split(":"))
        now = dt.datetime.now()
        end = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if end <= now:  # 00:30 asked for at 23:50 means tomorrow's, not a run of 60 s
            end += dt.timedelta(days=1)
        budget = max(60.0, (end - now).total_seconds())
    model = MusicVAE(latent_dim=256)
    print(f"train {len(train_ds):,} val {len(val_ds):,} segments; time budget {budget} s", flush=True)
    history = fit(
        model,
        train_ds,
        val_ds,
        epochs=epochs,
        out_dir=out_dir,
        resume=True,
        init=init,
        threads=threads,
        device=device,
        precision=precision,
        time_budget_s=budget,
        progress=False,
        seed=seed,
        **{**FINE_TUNE, "lr": lr, "beta_max": beta_max},
    )
    for row in history[-3:]:
        print({k: row.get(k) for k in ("epoch", "lr", "neg_elbo", "val_loss", "val_frame_f1", "samples_per_s")})


def _group_sizes(specs: list[str]) -> dict[str, int]:
    """``["fast-line=90000"]`` -> ``{"fast-line": 90000}``; a malformed spec is refused by name."""
    sizes = {}
    for spec in specs:
        group, _, n = spec.partition("=")
        if not n.isdigit() or group not in mix.STYLE_GROUPS:
            raise SystemExit(f"--group-size {spec!r}: expected GROUP=N with GROUP one of {', '.join(mix.STYLE_GROUPS)}")
        sizes[group] = int(n)
    return sizes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--rolls", type=Path, default=REPO / "corpus" / "rolls")
    p.add_argument("--mma", type=Path, default=REPO / "corpus" / "mma")
    p.add_argument("--out", type=Path, default=MIX_DIR)
    p.add_argument(
        "--per-group",
        type=int,
        default=30_000,
        help="segments per group (the shipped model: 30,000; stages 3-6: 10,000)",
    )
    p.add_argument(
        "--group-size",
        action="append",
        default=[],
        metavar="GROUP=N",
        help="another size for one style group (repeat); stage 10: fast-line=90000",
    )
    p.add_argument("--val-fraction", type=float, default=0.02)
    t = sub.add_parser("train")
    t.add_argument("--out", type=Path, default=REPO / "runs" / "bundled-cpu")
    t.add_argument("--until", help="HH:MM local time to stop (the run stays resumable)")
    t.add_argument("--epochs", type=int, default=100)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--mix", type=Path, default=MIX_DIR, help="folder made by prepare")
    t.add_argument("--init", type=Path, default=checkpoint.BUNDLED_CHECKPOINT, help="weights to start from")
    t.add_argument("--lr", type=float, default=FINE_TUNE["lr"])
    t.add_argument("--seed", type=int, default=2026, help="batch order; a second stage takes another")
    t.add_argument(
        "--beta-max",
        type=float,
        default=FINE_TUNE["beta_max"],
        help="KL weight (the card's 1.0; lower keeps more of each segment in z, at the prior's expense)",
    )
    t.add_argument("--device", default="cpu", help="cpu (default), or cuda where a GPU is lent")
    t.add_argument(
        "--precision", default="auto", choices=["auto", "fp32", "bf16"], help="auto: bf16 on CUDA, else fp32"
    )
    args = parser.parse_args(argv)
    if args.step == "prepare":
        prepare(args.rolls, args.mma, args.out, args.per_group, args.val_fraction, _group_sizes(args.group_size))
    else:
        train(
            out_dir=args.out,
            mix_dir=args.mix,
            until=args.until,
            epochs=args.epochs,
            threads=args.threads,
            init=args.init,
            lr=args.lr,
            seed=args.seed,
            beta_max=args.beta_max,
            device=args.device,
            precision=args.precision,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
