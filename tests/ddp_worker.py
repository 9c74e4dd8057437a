"""One rank of the two-process test in test_train.py; run by torchrun, not by pytest.

Trains a tiny model with ``fit`` under DistributedDataParallel (gloo, CPU) and
saves this rank's final weights and history as ``OUT/rank<R>.pt``.
"""

import os
import sys
from pathlib import Path

import torch

# torchrun runs this file as a script, so its own folder (tests/) is already first on sys.path.
from tiny_rolls import tiny_segments

from musicvae_course.core.data import PianoRollDataset
from musicvae_course.core.model import MusicVAE
from musicvae_course.train import fit

out = Path(sys.argv[1])
torch.manual_seed(0)  # the same initial weights on both ranks, as the CLI's seed_everything
model = MusicVAE(latent_dim=8)
history = fit(
    model,
    PianoRollDataset(tiny_segments(64, seed=0)),
    PianoRollDataset(tiny_segments(16, seed=1)),
    epochs=2,
    batch_size=16,
    threads=1,
    progress=False,
    out_dir=out / "run",
)
torch.save({"state": model.state_dict(), "history": history}, out / f"rank{os.environ['RANK']}.pt")
