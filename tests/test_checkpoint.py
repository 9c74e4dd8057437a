"""Checkpoints: the card's format, safe loading, clear errors, renamed keys."""

import os
import pickle

import pytest
import torch

from musicvae_course.core import checkpoint as ckpt
from musicvae_course.core.checkpoint import CheckpointError, load_checkpoint, load_pretrained, save_checkpoint
from musicvae_course.core.model import MusicVAE


@pytest.fixture(scope="module")
def trained_like_model():
    torch.manual_seed(0)
    model = MusicVAE(latent_dim=32)
    # Give BatchNorm non-default statistics, as a trained model has.
    model.train()
    with torch.no_grad():
        model((torch.rand(16, 1, 88, 32) > 0.9).float())
    return model.eval()


def _x():
    torch.manual_seed(1)
    return (torch.rand(3, 1, 88, 32) > 0.9).float()


def test_save_load_gives_identical_outputs_in_the_cards_format(tmp_path, trained_like_model):
    path = save_checkpoint(trained_like_model, tmp_path / "best_model.pt", epochs=3)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"config", "model_state"}
    assert raw["config"] == {"latent_dim": 32, "epochs": 3}
    loaded = load_pretrained(path)
    assert not loaded.training
    assert torch.equal(loaded(_x())[0], trained_like_model(_x())[0])
    assert loaded.load_report.renamed == {}


def test_bare_state_dict_is_accepted(tmp_path, trained_like_model):
    path = tmp_path / "bare.pt"
    torch.save(trained_like_model.state_dict(), path)
    loaded = load_pretrained(path)  # latent_dim inferred from the mu layer
    assert loaded.latent_dim == 32
    assert torch.equal(loaded(_x())[0], trained_like_model(_x())[0])


def test_training_checkpoint_with_extra_state_is_accepted(tmp_path, trained_like_model):
    path = save_checkpoint(
        trained_like_model, tmp_path / "last.pt", training_state={"epoch": 4, "history": [{"loss": 1.0}]}
    )
    assert load_checkpoint(path)["training_state"]["epoch"] == 4
    assert torch.equal(load_pretrained(path)(_x())[0], trained_like_model(_x())[0])


def test_renamed_keys_are_mapped_by_order_and_shape(tmp_path, trained_like_model):
    renamed = {
        f"layer{i}.{k.rsplit('.', 1)[-1]}": v
        for i, (k, v) in enumerate(trained_like_model.state_dict().items())
        if not k.endswith("num_batches_tracked")
    }  # an older file: no counters
    path = tmp_path / "renamed.pt"
    torch.save({"config": {"latent_dim": 32}, "model_state": renamed}, path)
    with pytest.warns(UserWarning) as caught:
        loaded = load_pretrained(path)
    messages = [str(w.message) for w in caught]
    assert any("matched by architecture order and shape" in m for m in messages)
    assert any("BY ORDER" in m and "swapped" in m for m in messages)  # names cannot tell mu from log-var
    assert loaded.load_report.heads == "by order"
    assert torch.equal(loaded(_x())[0], trained_like_model(_x())[0])
    assert loaded.load_report.renamed["fc_mu.weight"].startswith("layer")
    assert all(k.endswith("num_batches_tracked") for k in loaded.load_report.filled)


def test_missing_tensor_is_named(tmp_path, trained_like_model):
    state = {
        f"x{i}.{k.rsplit('.', 1)[-1]}": v
        for i, (k, v) in enumerate(trained_like_model.state_dict().items())
        if not k.startswith("decoder.2.")
    }  # drop the first decoder BatchNorm
    path = tmp_path / "nobn.pt"
    torch.save({"config": {"latent_dim": 32}, "model_state": state}, path)
    with pytest.raises(CheckpointError, match=r"nobn\.pt.*decoder\.2\.weight \(128,\)"):
        load_pretrained(path)


def test_wrong_shapes_are_named(tmp_path, trained_like_model):
    path = save_checkpoint(trained_like_model, tmp_path / "dim32.pt")
    raw = torch.load(path, weights_only=True)
    raw["config"]["latent_dim"] = 64
    torch.save(raw, path)
    with pytest.raises(
        CheckpointError,
        match=r"dim32\.pt.*fc_mu\.weight: file \(32, 2560\) "
        r"vs model \(64, 2560\)",
    ):
        load_pretrained(path)


def test_truncated_file(tmp_path, trained_like_model):
    path = save_checkpoint(trained_like_model, tmp_path / "cut.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt: not a readable PyTorch checkpoint"):
        load_pretrained(path)


def test_file_that_is_no_checkpoint(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("these are my lecture notes")
    with pytest.raises(CheckpointError, match=r"notes\.pt"):
        load_pretrained(text)
    tensor_only = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(CheckpointError, match=r"tensor\.pt: not a MusicVAE checkpoint"):
        load_pretrained(tensor_only)
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_pretrained(tmp_path / "absent.pt")


class _CreatesAFile:
    """Unpickling this would call os.system and create a file."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    target = tmp_path / "pwned"
    for name, payload in [
        ("evil.pt", {"config": {}, "model_state": _CreatesAFile(target)}),
        ("evil_zip.pt", _CreatesAFile(target)),
    ]:
        path = tmp_path / name
        if name == "evil_zip.pt":
            torch.save(payload, path)  # torch's zip format wrapping the pickle
        else:
            path.write_bytes(pickle.dumps(payload))  # a raw legacy pickle
        with pytest.raises(CheckpointError, match=rf"{name}: refused to load"):
            load_pretrained(path)
        assert not target.exists()


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, trained_like_model, monkeypatch):
    path = save_checkpoint(trained_like_model, tmp_path / "best.pt", epochs=1)
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(trained_like_model, path, epochs=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]  # no temp file left


def test_bundled_checkpoint_is_verified(tmp_path, monkeypatch, trained_like_model):
    bundled = save_checkpoint(trained_like_model, tmp_path / "bundled.pt")
    digest = tmp_path / "bundled.pt.sha256"
    monkeypatch.setattr(ckpt, "BUNDLED_CHECKPOINT", bundled)
    monkeypatch.setattr(ckpt, "BUNDLED_SHA256_FILE", digest)
    digest.write_text(ckpt.sha256_of(bundled) + "  bundled.pt\n")
    assert load_pretrained().latent_dim == 32
    digest.write_text("0" * 64 + "\n")
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_pretrained()
    monkeypatch.setattr(ckpt, "BUNDLED_CHECKPOINT", tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="No checkpoint is bundled"):
        load_pretrained()


def test_hub_offline_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ConnectionError, match=r"XR-Lin/music-vae-lmd.*load_pretrained\('path"):
        load_pretrained("hub")


# --- the card's two decoder variants, in the card's format --------------------------------


def _card_names(state: dict, log_var_first: bool = False) -> dict:
    """The card's format as its src/model.py might name it: Sequential indices, ``fc_mu``/``fc_var`` heads."""
    named = {k.replace("fc_log_var", "fc_var"): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    if log_var_first:  # the heads stored in the other order
        heads = {k: named.pop(k) for k in ["fc_var.weight", "fc_var.bias", "fc_mu.weight", "fc_mu.bias"]}
        named = {**heads, **named}
    return named


@pytest.mark.parametrize("batchnorm", [True, False])
@pytest.mark.parametrize("log_var_first", [False, True])
def test_both_decoder_variants_of_the_card_load_from_sequential_names(tmp_path, batchnorm, log_var_first):
    torch.manual_seed(3)
    original = MusicVAE(latent_dim=24, decoder_batchnorm=batchnorm)
    original.train()
    with torch.no_grad():
        original((torch.rand(8, 1, 88, 32) > 0.9).float())  # non-default BatchNorm statistics
    original.eval()
    path = tmp_path / "best_model.pt"
    torch.save({"config": {"latent_dim": 24}, "model_state": _card_names(original.state_dict(), log_var_first)}, path)
    with pytest.warns(UserWarning, match="other names"):
        loaded = load_pretrained(path)
    assert loaded.decoder_batchnorm is batchnorm and loaded.load_report.decoder_batchnorm is batchnorm
    assert loaded.load_report.heads == "by name"  # fc_mu / fc_var say which is which, whatever the order
    assert loaded.load_report.renamed["fc_log_var.weight"] == "fc_var.weight"
    x = _x()
    for ours, theirs in zip(loaded(x), original(x)):
        assert torch.equal(ours, theirs)
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.decoder)
    assert has_bn is batchnorm


def test_a_saved_variant_without_decoder_batchnorm_reloads_as_itself(tmp_path):
    model = MusicVAE(latent_dim=8, decoder_batchnorm=False).eval()
    path = save_checkpoint(model, tmp_path / "nobn.pt")
    assert load_checkpoint(path)["config"]["decoder_batchnorm"] is False
    loaded = load_pretrained(path)
    assert not loaded.decoder_batchnorm and loaded.load_report.renamed == {}
    assert torch.equal(loaded(_x())[0], model(_x())[0])
