"""The card's architecture, shapes, gradients and loss."""

import math

import pytest
import torch
import torch.nn.functional as F

from musicvae_course.core.model import (
    LOG_VAR_RANGE,
    MusicVAE,
    count_parameters,
    interpolate,
    interpolate_latents,
    kl_per_dimension,
    vae_loss,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MusicVAE(latent_dim=256)


def test_encoder_intermediate_shapes_match_the_card(model):
    x = torch.rand(2, 1, 88, 32)
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    expected = [(32, 44, 16), (64, 22, 8), (128, 11, 4), (256, 5, 2)]
    h = x
    shapes = []
    for layer in model.encoder:
        h = layer(h)
        if isinstance(layer, torch.nn.BatchNorm2d):
            shapes.append(tuple(h.shape[1:]))
    assert len(convs) == 4
    assert shapes == expected
    assert tuple(h.shape) == (2, 2560)


def test_decoder_intermediate_shapes_match_the_card(model):
    h = model.decoder_input(torch.randn(3, 256)).view(-1, 256, 5, 2)
    shapes = []
    for layer in model.decoder:
        h = layer(h)
        if isinstance(layer, torch.nn.ConvTranspose2d):
            shapes.append(tuple(h.shape[1:]))
    assert shapes == [(128, 11, 4), (64, 22, 8), (32, 44, 16), (1, 88, 32)]


def test_parameter_count_is_the_one_the_docstring_states(model):
    n = count_parameters(model)
    assert f"{n:,}" in MusicVAE.__doc__
    assert 3_300_000 < n < 3_400_000


def test_forward_returns_probabilities_and_gaussian_parameters(model):
    model.train()
    x = (torch.rand(4, 1, 88, 32) > 0.9).float()
    x_recon, mu, log_var = model(x)
    assert x_recon.shape == x.shape and mu.shape == (4, 256) and log_var.shape == (4, 256)
    assert x_recon.min() >= 0 and x_recon.max() <= 1
    assert log_var.min() >= LOG_VAR_RANGE[0] and log_var.max() <= LOG_VAR_RANGE[1]


def test_eval_mode_reconstruction_is_deterministic(model):
    model.eval()
    x = (torch.rand(2, 1, 88, 32) > 0.9).float()
    assert torch.equal(model(x)[0], model(x)[0])
    model.train()


def test_every_parameter_receives_a_gradient():
    torch.manual_seed(1)
    m = MusicVAE(latent_dim=16)
    x = (torch.rand(8, 1, 88, 32) > 0.9).float()
    logits, mu, log_var = m.forward_logits(x)
    total, _, _ = vae_loss(logits, x, mu, log_var, beta=1.0, free_bits=0.0)
    total.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_wrong_input_shape_names_the_expected_shape(model):
    with pytest.raises(ValueError, match=r"\(B, 1, 88, 32\)"):
        model.encode(torch.zeros(1, 88, 32))


def test_sample_uses_generator_and_temperature(model):
    model.eval()
    a = model.sample(3, generator=torch.Generator().manual_seed(5))
    b = model.sample(3, generator=torch.Generator().manual_seed(5))
    c = model.sample(3, generator=torch.Generator().manual_seed(5), temperature=0.0)
    assert a.shape == (3, 1, 88, 32) and torch.equal(a, b)
    # temperature 0 decodes the prior mean z = 0 for every draw
    assert torch.allclose(c, model.decode(torch.zeros(1, 256)).expand(3, -1, -1, -1))


def test_many_samples_are_decoded_a_chunk_at_a_time_with_the_same_values(model, monkeypatch):
    """16,384 samples in one decoder pass peaked at 5.4 GB; MAX_SAMPLES (65,536) would have taken about 21 GB."""
    from musicvae_course.core import model as model_module

    model.eval()
    whole = model.sample(5, generator=torch.Generator().manual_seed(7))
    monkeypatch.setattr(model_module, "SAMPLE_CHUNK", 2)
    batches = []
    hook = model.decoder_input.register_forward_hook(lambda module, args, out: batches.append(len(args[0])))
    try:
        chunked = model.sample(5, generator=torch.Generator().manual_seed(7))
    finally:
        hook.remove()
    assert batches == [2, 2, 1]
    assert chunked.shape == whole.shape and torch.allclose(chunked, whole, atol=1e-6)


def test_interpolation_endpoints_and_slerp_norm():
    z1, z2 = torch.randn(256), torch.randn(256)
    for method in ("linear", "slerp"):
        path = interpolate_latents(z1, z2, steps=5, method=method)
        assert path.shape == (5, 256)
        assert torch.allclose(path[0], z1, atol=1e-5) and torch.allclose(path[-1], z2, atol=1e-5)
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    mid = interpolate_latents(a, b, steps=3, method="slerp")[1]
    assert torch.allclose(mid.norm(), torch.tensor(1.0), atol=1e-6)  # on the circle
    assert torch.allclose(interpolate_latents(a, b, 3, "linear")[1].norm(), torch.tensor(math.sqrt(0.5)))
    with pytest.raises(ValueError, match="method"):
        interpolate_latents(a, b, 3, "cubic")
    for t in (math.nan, math.inf, -0.1):  # NaN passed the range check and gave a code of NaNs
        with pytest.raises(ValueError, match=r"t must be in \[0, 1\]"):
            interpolate(a, b, [0.5, t])


def test_model_interpolate_decodes_each_point(model):
    model.eval()
    z1, z2 = torch.randn(1, 256), torch.randn(1, 256)
    rolls = model.interpolate(z1, z2, steps=4, method="slerp")
    assert rolls.shape == (4, 1, 88, 32)
    assert torch.allclose(rolls[0], model.decode(z1)[0], atol=1e-6)


def test_kl_by_hand():
    mu = torch.tensor([[1.0, 0.0]])
    log_var = torch.tensor([[0.0, math.log(2.0)]])
    # 0.5 * (mu^2 + var - 1 - log var)
    expected = torch.tensor([[0.5, 0.5 * (2.0 - 1.0 - math.log(2.0))]])
    assert torch.allclose(kl_per_dimension(mu, log_var), expected)


def test_loss_by_hand_with_free_bits_and_beta():
    x = torch.zeros(2, 1, 88, 32)
    x[0, 0, 10, 3] = 1.0
    logits = torch.zeros_like(x)  # p = 0.5 everywhere: BCE = ln 2 per cell
    mu = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    log_var = torch.zeros(2, 2)
    total, recon, kl = vae_loss(logits, x, mu, log_var, beta=0.5, free_bits=0.25)
    assert torch.allclose(recon, torch.tensor(88 * 32 * math.log(2.0)))
    assert torch.allclose(kl, torch.tensor(0.5))  # dim 0: 0.5, dim 1: 0
    # free bits lift dim 1 to 0.25 in the objective only
    assert torch.allclose(total, recon + 0.5 * (0.5 + 0.25))


def test_loss_matches_bce_on_probabilities():
    torch.manual_seed(3)
    x = (torch.rand(4, 1, 88, 32) > 0.8).float()
    logits = torch.randn_like(x)
    _, recon, _ = vae_loss(logits, x, torch.zeros(4, 8), torch.zeros(4, 8))
    reference = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="sum") / 4
    assert torch.allclose(recon, reference, rtol=1e-5)


def test_loss_runs_under_cpu_autocast():
    m = MusicVAE(latent_dim=8)
    x = (torch.rand(2, 1, 88, 32) > 0.9).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, mu, log_var = m.forward_logits(x)
        total, recon, kl = vae_loss(logits, x, mu, log_var)
    assert total.dtype == torch.float32 and torch.isfinite(total)
