"""scripts/inference_gap.py: a code refined on its segment's loss reconstructs it better; the model stays as loaded."""

from __future__ import annotations

import torch
from scripts_loader import load_script
from tiny_rolls import tiny_segments

from musicvae_course.core.data import PianoRollDataset
from musicvae_course.core.model import MusicVAE

gap = load_script("inference_gap")


def _model_and_rolls():
    torch.manual_seed(0)
    model = MusicVAE(latent_dim=8).eval()
    x = torch.from_numpy(tiny_segments(6, seed=3).astype("float32")).unsqueeze(1)
    return model, x


def test_zero_steps_is_mu_and_refined_codes_fit_their_segment_better():
    model, x = _model_and_rolls()
    mu, _ = model.encode(x)
    codes = gap.refine_codes(model, x, (0, 60), lr=0.1)
    assert torch.equal(codes[0], mu.detach()) and set(codes) == {0, 60}
    z = codes[60]
    assert torch.equal(gap.refine_codes(model, x, (20, 60), lr=0.1)[60], z)  # snapshots do not disturb the run
    loss = torch.nn.functional.binary_cross_entropy_with_logits
    with torch.no_grad():
        per_segment = [loss(model.decode_logits(c), x, reduction="none").sum(dim=(1, 2, 3)) for c in (mu, z)]
    assert (per_segment[1] < per_segment[0]).all()  # every segment's own code, not a batch average


def test_refining_changes_no_weight_and_restores_requires_grad():
    model, x = _model_and_rolls()
    model.decoder_input.weight.requires_grad_(False)  # a caller's choice, kept
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gap.refine_codes(model, x, (5,))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    assert flags["decoder_input.weight"] is False and flags["fc_mu.weight"] is True


def test_gap_row_reports_every_step_count_on_a_seeded_sample():
    model, _ = _model_and_rolls()
    ds = PianoRollDataset(tiny_segments(12, seed=4))
    row = gap.gap_row(model, ds, steps=(3, 10), max_segments=8, batch=5)
    again = gap.gap_row(model, ds, steps=(3, 10), max_segments=8, batch=5)
    assert row == again and row["segments"] == 8 and row["moved_0"] == 0.0
    assert 0 < row["moved_3"] < row["moved_10"]
    assert all(0.0 <= row[f"f1_{n}"] <= 1.0 for n in (0, 3, 10))
    assert "| 8 |" in gap.markdown({"tiny": row}, steps=(3, 10))
