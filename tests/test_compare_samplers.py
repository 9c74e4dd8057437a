"""scripts/compare_samplers.py: the k-means mixture over the codes and the novelty figure of the sampler table."""

from __future__ import annotations

import torch
from scripts_loader import load_script

samplers = load_script("compare_samplers")


def _three_blobs(n_each: int = 200, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0] * dim, [10.0] * dim, [-10.0] + [0.0] * (dim - 1)])
    sizes = torch.tensor([n_each, 2 * n_each, n_each])
    points = torch.cat([c + 0.1 * torch.randn(int(s), dim, generator=g) for c, s in zip(centres, sizes)])
    return points, sizes


def test_kmeans_finds_well_separated_clusters():
    points, sizes = _three_blobs()
    labels = samplers.kmeans(points, 3, iterations=20, generator=torch.Generator().manual_seed(1))
    found = sorted(torch.bincount(labels, minlength=3).tolist())
    assert found == sorted(sizes.tolist())
    # every blob is one cluster
    bounds = torch.cumsum(sizes, 0)
    for start, stop in zip([0, *bounds[:-1].tolist()], bounds.tolist()):
        assert labels[start:stop].unique().numel() == 1


def test_code_mixture_draws_around_its_clusters_by_their_size_and_spread():
    points, sizes = _three_blobs()
    log_var = torch.full_like(points, -20.0)  # posterior variance ~0: the spread is the clusters' own
    g = torch.Generator().manual_seed(2)
    mixture = samplers.CodeMixture(points, log_var, 3, g)
    draws = mixture.draw(4000, spread=1.0, generator=g)
    nearest = torch.cdist(draws, mixture.centres).argmin(1)
    share = torch.bincount(nearest, minlength=3).double() / 4000
    assert torch.allclose(share, mixture.weights, atol=0.03)
    assert sorted((mixture.weights * sizes.sum()).round().tolist()) == sorted(sizes.double().tolist())
    distance = (draws - mixture.centres[nearest]).std()
    assert 0.05 < distance < 0.2  # the blobs' 0.1
    wider = mixture.draw(4000, spread=2.0, generator=g)
    assert (wider - mixture.centres[torch.cdist(wider, mixture.centres).argmin(1)]).std() > 1.5 * distance


def test_novelty_is_one_for_copies_and_low_for_unrelated_rolls():
    g = torch.Generator().manual_seed(3)
    training = torch.rand(600, 88 * 32, generator=g) < 0.05
    copies = training[: samplers.N_NOVELTY].reshape(-1, 1, 88, 32)
    assert samplers.novelty(copies, training.float()) == 1.0
    unrelated = torch.rand(samplers.N_NOVELTY, 1, 88, 32, generator=g) < 0.05
    assert samplers.novelty(unrelated, training.float()) < 0.3
