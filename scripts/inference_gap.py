#!/usr/bin/env python
"""Where a checkpoint's reconstruction errors are: in its encoder or in its decoder.

    OMP_NUM_THREADS=2 python scripts/inference_gap.py musicvae_course/pretrained/musicvae_music21.pt \\
        --mix corpus/mix30LF --threads 2

The model card's figures decode ``z = mu``, the encoder's answer for a segment. This script also
decodes a *refined* code: ``mu`` moved by Adam steps (``STEPS``: 25 and 100) on that one segment's reconstruction
loss (BCE over its 88 x 32 cells), the decoder's weights fixed. If the refined codes reconstruct a
set far better than ``mu``, the decoder can draw that music and the encoder does not find the code
for it (the "amortisation gap" of Cremer et al. 2018, *Inference Suboptimality in Variational
Autoencoders*; Kim et al. 2018 close it with such steps, *Semi-Amortized Variational
Autoencoders*); if they do not, the decoder is the limit. Measured for the model card, not used by
the kit: the kit's ``encode`` stays the card's one pass.

Sets: the held-out collections of ``MIX/heldout_music21.npz`` with >= 100 segments and, with
``--outside``, the outside-source sets of ``scripts/evaluate_bundled_model.py``; a seeded sample of
at most ``--max-segments`` each. Prints one Markdown table: frame F1 from ``mu``, from the refined
code at a few step counts, and how far the code moved (``|z - mu| / |mu|``, the mean over segments).
"""

from __future__ import annotations

import argparse
import runpy
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from musicvae_course.core import checkpoint, data, metrics
from musicvae_course.core.seeding import DEFAULT_SEED
from musicvae_course.corpus import mix

STEPS = (25, 100)  #: refinement steps reported
LEARNING_RATE = 0.02  #: Adam's step on the codes (in the units of z, whose prior is N(0, I))
MIN_SEGMENTS = 100  #: as scripts/evaluate_bundled_model.py: smaller collections are left out


def refine_codes(model, x: torch.Tensor, steps, lr: float = LEARNING_RATE) -> dict[int, torch.Tensor]:
    """Codes ``(B, latent_dim)`` after Adam steps from ``mu`` on ``x``'s reconstruction loss.

    Args:
        model: a ``MusicVAE`` (put in eval mode; its weights are not changed and get no gradient).
        x: ``(B, 1, 88, 32)`` rolls in [0, 1], 4 steps per quarter note.
        steps: the step counts wanted, e.g. ``(0, 25, 100)``; 0 is ``mu`` itself. One run of
            ``max(steps)`` steps gives them all.
        lr: Adam's learning rate on ``z``.

    Returns:
        ``{count: z}`` for every count in ``steps``. Each segment's code moves on its own loss only
        (the batch's summed BCE has no cross terms).
    """
    model.eval()
    with torch.no_grad():
        mu, _ = model.encode(x)
    z = mu.clone().requires_grad_(True)
    codes = {0: mu} if 0 in steps else {}
    optimiser = torch.optim.Adam([z], lr=lr)
    weights = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)  # only z learns; the checkpoint stays as loaded
    try:
        for step in range(1, max(steps) + 1):
            optimiser.zero_grad()
            F.binary_cross_entropy_with_logits(model.decode_logits(z), x, reduction="sum").backward()
            optimiser.step()
            if step in steps:
                codes[step] = z.detach().clone()
    finally:
        for p, flag in zip(model.parameters(), weights):
            p.requires_grad_(flag)
    return codes


def frame_f1(model, z: torch.Tensor, x: torch.Tensor) -> float:
    """Frame F1 of ``decode(z)`` thresholded at 0.5 against ``x`` (the convention of ``core.metrics``)."""
    with torch.no_grad():
        predicted = model.decode(z)
    return float(metrics.frame_scores(predicted, x)["f1"])


def gap_row(model, ds: data.PianoRollDataset, steps=STEPS, max_segments: int = 300, batch: int = 300) -> dict:
    """Frame F1 from ``mu`` and from codes refined ``steps`` times, on a seeded sample of ``ds``."""
    pick = torch.randperm(len(ds), generator=torch.Generator().manual_seed(DEFAULT_SEED))[:max_segments]
    x = torch.from_numpy(np.asarray(ds.segments[np.sort(pick.numpy())], np.float32)).unsqueeze(1)
    row: dict = {"segments": len(x)}
    parts = [refine_codes(model, x[start : start + batch], (0, *steps)) for start in range(0, len(x), batch)]
    mu = torch.cat([part[0] for part in parts])
    for n in (0, *steps):
        codes = torch.cat([part[n] for part in parts])
        row[f"f1_{n}"] = frame_f1(model, codes, x)
        row[f"moved_{n}"] = float(((codes - mu).norm(dim=1) / mu.norm(dim=1)).mean())
    return row


def markdown(rows: dict, steps=STEPS) -> str:
    head = "| set | segments | F1 from mu | " + " | ".join(f"F1 after {n} steps (moved)" for n in steps) + " |"
    lines = [head, "|" + "---|" * (3 + len(steps))]
    for name, row in rows.items():
        cells = " | ".join(f"{row[f'f1_{n}']:.3f} ({row[f'moved_{n}']:.2f})" for n in steps)
        lines.append(f"| {name} | {row['segments']:,} | {row['f1_0']:.3f} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--mix", type=Path, default=Path("corpus/mix30LF"), help="folder made by prepare")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-segments", type=int, default=300, help="per set (seeded sample)")
    parser.add_argument("--outside", action="store_true", help="also the outside-source MIDI sets")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = checkpoint.load_pretrained(args.checkpoint)
    # the evaluation script's own split by collection and outside sets: both scripts measure the same segments
    evaluation = runpy.run_path(str(Path(__file__).resolve().parent / "evaluate_bundled_model.py"))
    held = evaluation["_by_source"](data.load_dataset(args.mix / "heldout_music21.npz"), mix.collection_of)
    sets = {name: ds for name, ds in held.items() if len(ds) >= MIN_SEGMENTS}
    if args.outside:
        for name, files in evaluation["outside_sets"]().items():
            sets[name] = data.build_dataset(files, workers=0, progress=False)
    rows = {}
    for name, ds in sets.items():
        rows[name] = gap_row(model, ds, max_segments=args.max_segments)
        print(f"{name}: {rows[name]['f1_0']:.4f} -> {rows[name][f'f1_{STEPS[-1]}']:.4f}", file=sys.stderr, flush=True)
    print(markdown(rows))
    print(f"{time.perf_counter() - start:.0f} s, {args.threads} threads", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
