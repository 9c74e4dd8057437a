"""core.prior_match: folding the Gaussian fitted to the codes into the model's linear layers."""

from __future__ import annotations

import pytest
import torch
from tiny_rolls import tiny_segments

from musicvae_course.core import checkpoint
from musicvae_course.core.model import MusicVAE
from musicvae_course.core.prior_match import match_prior


def _model_with_skewed_codes(latent_dim: int = 8) -> MusicVAE:
    """A model whose codes have a mean far from 0 and very unequal, correlated variances."""
    torch.manual_seed(0)
    model = MusicVAE(latent_dim=latent_dim).eval()
    with torch.no_grad():
        mix = torch.randn(latent_dim, latent_dim) * torch.linspace(0.2, 5.0, latent_dim)
        model.fc_mu.weight.copy_(mix @ model.fc_mu.weight)
        model.fc_mu.bias.add_(3.0)
    return model


def _codes(model: MusicVAE, rolls) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model.encode(torch.as_tensor(rolls).unsqueeze(1).float())


def test_matched_model_decodes_every_segment_as_before_and_leaves_the_original_alone():
    model = _model_with_skewed_codes()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rolls = tiny_segments(400, seed=1)
    matched, _ = match_prior(model, rolls)
    x = torch.as_tensor(tiny_segments(64, seed=2)).unsqueeze(1).float()  # not the fitting segments
    with torch.no_grad():
        old = model.decode(model.encode(x)[0])
        new = matched.decode(matched.encode(x)[0])
    assert torch.allclose(old, new, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_codes_of_the_fitting_data_are_standard_normal_in_aggregate():
    model = _model_with_skewed_codes()
    rolls = tiny_segments(400, seed=1)
    mu_before, _ = _codes(model, rolls)
    assert mu_before.mean(0).norm() > 1.0  # the case the fold is for
    matched, report = match_prior(model, rolls)
    mu, log_var = _codes(matched, rolls)
    aggregate = torch.cov(mu.T.double()) + torch.diag(log_var.exp().mean(0).double())
    assert mu.mean(0).abs().max() < 1e-3
    assert torch.allclose(aggregate, torch.eye(8, dtype=torch.float64), atol=0.05)
    assert torch.all(report.eigenvalues[:-1] >= report.eigenvalues[1:])
    assert report.n_segments == 400 and report.log_var_rmse < 0.05


def test_matched_model_saves_and_loads_in_the_card_format(tmp_path):
    matched, _ = match_prior(_model_with_skewed_codes(), tiny_segments(200, seed=3))
    path = checkpoint.save_checkpoint(matched, tmp_path / "matched.pt", prior_matched_to="200 segments")
    loaded = checkpoint.load_pretrained(path)
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(loaded.decode(z), matched.decode(z), atol=1e-6)


def test_too_few_segments_for_the_covariance_is_refused_by_name():
    with pytest.raises(ValueError, match="has 8 segments.*8-dimensional"):
        match_prior(_model_with_skewed_codes(), tiny_segments(8))
