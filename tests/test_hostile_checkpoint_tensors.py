"""Checkpoints whose tensors are not plain dense CPU weights, and weights that are not finite, on every path.

A sparse (COO or CSR) or meta-device tensor passed ``torch.load(weights_only=True)`` and then raised
``NotImplementedError`` or ``RuntimeError`` naming no file; NaN weights given to training's ``--init``
(``load_checkpoint`` without ``model_from_checkpoint``) were loaded into the model as they were.
"""

from __future__ import annotations

import pytest
import torch

from musicvae_course.core.checkpoint import CheckpointError, load_checkpoint, load_pretrained
from musicvae_course.core.model import MusicVAE
from musicvae_course.train.inputs import load_weights


def _state():
    return {k: v.clone() for k, v in MusicVAE(latent_dim=8).state_dict().items()}


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda t: torch.empty(t.shape, device="meta"), "on the 'meta' device"),
        (lambda t: t.to_sparse(), "sparse_coo tensor"),
        (lambda t: t.to_sparse_csr(), "sparse_csr tensor"),
    ],
    ids=["meta", "sparse-coo", "sparse-csr"],
)
def test_a_tensor_that_is_not_dense_in_memory_is_refused_by_name(tmp_path, make, kind):
    state = _state()
    state["fc_mu.weight"] = make(state["fc_mu.weight"])
    path = tmp_path / "odd.pt"
    torch.save({"config": {"latent_dim": 8}, "model_state": state}, path)
    with pytest.raises(CheckpointError, match=rf"odd\.pt: tensor model_state\.fc_mu\.weight is .*{kind}"):
        load_pretrained(path)


@pytest.mark.parametrize("wrapped", [True, False], ids=["card-format", "bare-state-dict"])
def test_load_checkpoint_refuses_nan_weights_for_every_caller(tmp_path, wrapped):
    state = _state()
    state["fc_log_var.bias"][3] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save({"config": {"latent_dim": 8}, "model_state": state} if wrapped else state, path)
    with pytest.raises(CheckpointError, match=r"nan\.pt: tensor fc_log_var\.bias holds NaN"):
        load_checkpoint(path)
    model = MusicVAE(latent_dim=8)
    with pytest.raises(CheckpointError, match=r"fc_log_var\.bias holds NaN"):
        load_weights(model, path)  # training's --init
    assert torch.isfinite(model.fc_log_var.bias).all()
