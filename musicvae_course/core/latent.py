"""The latent space as plain functions: encoding, interpolation points, principal and attribute directions.

Taught in ``notebooks/02_latent_space_with_widgets.ipynb``; the widgets in :mod:`musicvae_course.ui.widgets`
are built on these, and the CLI and tests use them without ipywidgets.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch

from .metrics import binary_rolls
from .model import MusicVAE, input_batches, interpolate, model_input
from .pianoroll import LOWEST_PITCH, N_PITCHES
from .types import RollData, RollLike


@contextlib.contextmanager
def _evaluating(model: MusicVAE) -> Iterator[None]:
    """Eval mode and no autograd for the block; the model's mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def encode_roll(model: MusicVAE, roll: RollLike) -> torch.Tensor:
    """The encoder's mean for one roll: ``(latent_dim,)`` on the CPU. ``roll``: one
    ``(88, 32)`` roll (any single-roll shape), bool or probabilities."""
    tensor = model_input(roll, "roll")
    if tensor.shape[0] != 1:
        raise ValueError(f"roll must be a single roll, got a batch of {tensor.shape[0]}")
    with _evaluating(model):
        mu, _ = model.encode(tensor.to(model.device))
    return mu[0].cpu()


def encode_means(model: MusicVAE, data: RollData, batch_size: int = 256) -> torch.Tensor:
    """Encoder means of every segment: ``(N, latent_dim)`` float32 on the CPU.

    Args:
        data: a ``PianoRollDataset``, or rolls ``(N, 88, 32)`` / ``(N, 1, 88, 32)``
            (tensor or array, bool or probabilities).
    """
    with _evaluating(model):
        means = [
            model.encode(batch.to(model.device).float())[0].float().cpu() for batch in input_batches(data, batch_size)
        ]
    if not means:
        raise ValueError("data holds no segments")
    return torch.cat(means)


def latent_point(z1: torch.Tensor, z2: torch.Tensor, t: float, method: str = "linear") -> torch.Tensor:
    """The point at fraction ``t`` in [0, 1] from ``z1`` to ``z2``: ``(latent_dim,)`` float32 on the CPU.

    :func:`~musicvae_course.core.model.interpolate` at one ``t`` (a slider needs any ``t``, not a grid).
    """
    return interpolate(z1.float().cpu(), z2.float().cpu(), [t], method)[0]


class PrincipalDirections(NamedTuple):
    """``directions``: ``(k, latent_dim)`` orthonormal rows, largest variance first;
    ``stds``: ``(k,)`` standard deviation of the encoded means along each;
    ``mean``: ``(latent_dim,)`` mean of the encoded means (a natural ``z_base``)."""

    directions: torch.Tensor
    stds: torch.Tensor
    mean: torch.Tensor


def principal_directions(model: MusicVAE, data: RollData, k: int = 8, batch_size: int = 256) -> PrincipalDirections:
    """Principal components of the encoder means of ``data``.

    Args:
        data: as in :func:`encode_means`; at least 2 segments.
        k: number of directions, ``1 <= k <= latent_dim``.

    Returns:
        :class:`PrincipalDirections`. Each direction's sign is fixed so its
        largest component is positive (SVD signs are arbitrary), so results
        reproduce across machines.
    """
    means = encode_means(model, data, batch_size).double()
    n, latent_dim = means.shape
    if n < 2:
        raise ValueError(f"principal_directions needs at least 2 segments, got {n}")
    if not 1 <= k <= latent_dim:
        raise ValueError(f"k must be in 1..{latent_dim}, got {k}")
    centre = means.mean(dim=0)
    # Eigen-decomposition of the (latent_dim x latent_dim) covariance: exact,
    # and cheaper than an SVD of the (N x latent_dim) data when N is large.
    covariance = (means - centre).T @ (means - centre) / (n - 1)
    variances, vectors = torch.linalg.eigh(covariance)  # ascending
    order = torch.argsort(variances, descending=True)[:k]
    directions = vectors[:, order].T  # (k, latent_dim)
    largest = directions.gather(1, directions.abs().argmax(dim=1, keepdim=True))
    directions = directions * torch.sign(largest)
    stds = variances[order].clamp_min(0).sqrt()
    return PrincipalDirections(directions.float(), stds.float(), centre.float())


def note_density(rolls: RollLike) -> np.ndarray:
    """Fraction of cells that are on, per roll.

    Args:
        rolls: ``(88, T)``, ``(N, 88, T)`` or ``(N, 1, 88, T)``; bool or
            probabilities (on at >= 0.5).

    Returns:
        ``(N,)`` float64 in [0, 1] (``N = 1`` for a single roll).
    """
    on = binary_rolls(rolls)
    return on.mean(axis=(1, 2))


def mean_pitch(rolls: RollLike) -> np.ndarray:
    """Mean MIDI pitch of the cells that are on, per roll (NaN for an empty roll).

    Args: as in :func:`note_density`.

    Returns:
        ``(N,)`` float64 MIDI pitches in [21, 108], or NaN.
    """
    on = binary_rolls(rolls)
    weights = on.sum(axis=2)  # (N, 88): steps each pitch is on
    pitches = LOWEST_PITCH + np.arange(N_PITCHES)
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weights @ pitches / np.maximum(total, 1), np.nan)


def attribute_vector(
    model: MusicVAE,
    data: RollData,
    attribute_fn: Callable[[np.ndarray], np.ndarray] = note_density,
    fraction: float = 0.25,
    batch_size: int = 256,
) -> torch.Tensor:
    """A latent direction for a musical attribute: mean ``z`` of high minus low segments.

    Segments are ranked by ``attribute_fn``; the direction is the mean encoder
    mean of the top ``fraction`` minus that of the bottom ``fraction``
    (segments where the attribute is NaN, e.g. the mean pitch of an empty
    roll, are left out). Adding the whole vector to a ``z`` moves it, on
    average, from the low group to the high group.

    Args:
        data: as in :func:`encode_means`.
        attribute_fn: ``(B, 1, 88, 32)`` float rolls -> ``(B,)`` numbers, e.g.
            :func:`note_density` or :func:`mean_pitch`.
        fraction: share of segments in each group, in (0, 0.5].

    Returns:
        ``(latent_dim,)`` float32 (not normalised: its length is meaningful).
    """
    if not 0.0 < fraction <= 0.5:
        raise ValueError(f"fraction must be in (0, 0.5], got {fraction}")
    means, values = [], []
    with _evaluating(model):
        for batch in input_batches(data, batch_size):
            batch = batch.float()
            means.append(model.encode(batch.to(model.device))[0].float().cpu())
            values.append(np.asarray(attribute_fn(batch.cpu().numpy()), dtype=np.float64).reshape(-1))
    means, values = torch.cat(means), np.concatenate(values)
    if values.shape[0] != means.shape[0]:
        raise ValueError(f"attribute_fn returned {values.shape[0]} values for {means.shape[0]} segments")
    valid = np.flatnonzero(~np.isnan(values))
    group = int(len(valid) * fraction)
    if group < 1:
        raise ValueError(f"too few segments with a defined attribute ({len(valid)}) for two groups")
    ranked = valid[np.argsort(values[valid], kind="stable")]
    low, high = torch.as_tensor(ranked[:group]), torch.as_tensor(ranked[-group:])
    return means[high].mean(dim=0) - means[low].mean(dim=0)
