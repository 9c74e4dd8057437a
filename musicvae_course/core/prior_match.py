"""Re-express a trained model's latent space so that its prior ``N(0, I)`` matches its codes.

A VAE trained with a small KL weight (the bundled model: beta 0.1) leaves its codes correlated:
the aggregate posterior ``q(z) = E_x q(z | x)`` of the bundled model has per-dimension variances
close to 1 but eigenvalues from 0.48 to 4.65, so ``z ~ N(0, I)`` lands where no training segment
was encoded and decodes to thin, less tonal rolls. :func:`match_prior` fits one Gaussian
``N(m, C)`` to the codes (``C`` = covariance of the means + mean posterior variance) and folds the
whitening ``z' = A (z - m)``, ``A = Lambda^(-1/2) U^T`` (``C = U Lambda U^T``), into the model's
linear layers: the encoder's mean head outputs ``z'``, the decoder's input layer undoes it. The
model then decodes every encoded segment exactly as before (same ``mu`` path, up to float
rounding), and its prior ``N(0, I)`` *is* the fitted Gaussian (Ghosh et al. 2020's "ex-post
density estimation" with one component, but inside the checkpoint, in the card's format, so
``MusicVAE.sample`` and every notebook draw from it).

The new latent dimensions are the principal directions of the old codes, each scaled to variance 1,
in order of the old variance along them (dimension 0: the direction the codes varied most in).

Only the posterior variance cannot be folded exactly: in the new coordinates it is
``A diag(sigma^2) A^T``, not diagonal. The log-variance head is refitted (ridge regression on the
encoder's features) to the diagonal of that matrix; it matters only for posterior draws and the KL
term, and :class:`PriorMatch` reports how well it fits.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch

from .model import LOG_VAR_RANGE, MusicVAE, input_batches
from .types import RollData

RIDGE = 1e-3  #: relative ridge for the log-variance refit (times the mean feature power)


class PriorMatch(NamedTuple):
    """What :func:`match_prior` did, for the model card.

    ``eigenvalues``: ``(latent_dim,)`` of the codes' covariance before, largest first;
    ``mean_norm``: ``|m|``; ``log_var_rmse``: RMS error of the refitted log-variance head on the
    fitting segments, in natural-log units (0.1 is a 10% error in the variance);
    ``n_segments``: segments the Gaussian was fitted to.
    """

    eigenvalues: torch.Tensor
    mean_norm: float
    log_var_rmse: float
    n_segments: int


def _features(model: MusicVAE, data: RollData, batch_size: int):
    """Encoder features ``h (N, 2560)``, means and log-variances ``(N, latent_dim)``, float64 on the CPU."""
    hs, mus, log_vars = [], [], []
    with torch.no_grad():
        for batch in input_batches(data, batch_size):
            h = model.features(batch.to(model.device))
            mu, log_var = model.heads(h)
            hs.append(h.double().cpu())
            mus.append(mu.double().cpu())
            log_vars.append(log_var.double().cpu())
    if not hs:
        raise ValueError("data holds no segments")
    return torch.cat(hs), torch.cat(mus), torch.cat(log_vars)


def match_prior(model: MusicVAE, data: RollData, batch_size: int = 512) -> tuple[MusicVAE, PriorMatch]:
    """A copy of ``model`` whose prior ``N(0, I)`` is the Gaussian fitted to its codes of ``data``.

    Args:
        model: a trained ``MusicVAE`` (left unchanged; the copy is in eval mode).
        data: the segments to fit to, ``(N, 88, 32)`` rolls or a ``PianoRollDataset``; a few
            thousand at least (the covariance has ``latent_dim * (latent_dim + 1) / 2`` entries).
            The bundled model used 20,000 segments of its training mix.
        batch_size: segments encoded at a time.

    Returns:
        ``(matched, report)``: the re-expressed model and a :class:`PriorMatch`.

    Reconstructions through the means are unchanged; see the module docstring for why and for
    what changes.
    """
    model = copy.deepcopy(model).eval()
    h, mu, log_var = _features(model, data, batch_size)
    n, dim = mu.shape
    if n <= dim:
        raise ValueError(f"data has {n} segments; fitting a {dim}-dimensional Gaussian needs more than {dim}")
    mean = mu.mean(0)
    covariance = torch.cov(mu.T) + torch.diag(log_var.exp().mean(0))
    eigenvalues, vectors = torch.linalg.eigh(covariance)
    eigenvalues, vectors = eigenvalues.flip(0), vectors.flip(1)  # largest first
    whiten = vectors.T / eigenvalues.sqrt().unsqueeze(1)  # A
    unwhiten = vectors * eigenvalues.sqrt()  # A^-1

    # targets for the log-variance head: diag(A diag(sigma^2) A^T) of every segment
    target = (log_var.exp() @ (whiten**2).T).log()
    features = torch.cat([h, torch.ones(n, 1, dtype=h.dtype)], 1)
    gram = features.T @ features
    ridge = RIDGE * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
    solution = torch.linalg.solve(gram + ridge, features.T @ target)
    rmse = float(((features @ solution).clamp(*LOG_VAR_RANGE) - target).pow(2).mean().sqrt())

    dtype = model.fc_mu.weight.dtype
    with torch.no_grad():
        w_mu, b_mu = model.fc_mu.weight.double(), model.fc_mu.bias.double()
        model.fc_mu.weight.copy_((whiten @ w_mu).to(dtype))
        model.fc_mu.bias.copy_((whiten @ (b_mu - mean)).to(dtype))
        model.fc_log_var.weight.copy_(solution[:-1].T.to(dtype))
        model.fc_log_var.bias.copy_(solution[-1].to(dtype))
        w_in, b_in = model.decoder_input.weight.double(), model.decoder_input.bias.double()
        model.decoder_input.weight.copy_((w_in @ unwhiten).to(dtype))
        model.decoder_input.bias.copy_((b_in + w_in @ mean).to(dtype))
    return model, PriorMatch(eigenvalues.float(), float(mean.norm()), rmse, n)
