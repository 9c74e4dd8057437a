"""Hostile checkpoints: size bombs, unsound tensors, code in pickles, odd file-system entries, swapped heads.

Each is refused before anything large is allocated, with a message naming the file and the tensor or limit;
nothing in the file ever runs.
"""

from __future__ import annotations

import os
import pickle
import tracemalloc
import zipfile

import pytest
import torch

from musicvae_course.core.checkpoint import CheckpointError, load_checkpoint, load_pretrained, save_checkpoint
from musicvae_course.core.model import MusicVAE

MB = 1 << 20


@pytest.fixture(scope="module")
def state():
    torch.manual_seed(0)
    return MusicVAE(latent_dim=8).state_dict()


def _save(path, config, model_state):
    torch.save({"config": config, "model_state": model_state}, path)
    return path


def test_a_tiny_file_asking_for_a_huge_latent_size_is_refused_before_allocating(tmp_path):
    path = _save(tmp_path / "big_latent.pt", {"latent_dim": 200_000}, {"fc_mu.bias": torch.zeros(3)})
    assert path.stat().st_size < 4096
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=r"big_latent\.pt: config latent_dim=200000 .*1\.\.8192"):
            load_pretrained(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 32 * MB


def test_config_and_tensors_disagreeing_on_the_latent_size_is_refused_before_building(tmp_path, state):
    path = _save(tmp_path / "liar.pt", {"latent_dim": 4000}, dict(state))
    with pytest.raises(CheckpointError, match=r"fc_mu\.weight: file \(8, 2560\) vs model \(4000, 2560\)"):
        load_pretrained(path)


def _bomb(path, inflated: int, stored_note: str = "data/0") -> None:
    """A zip whose one deflated entry declares ``inflated`` bytes of zeros (written in chunks: little memory)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"config": {}, "model_state": {}}))
        with archive.open(f"archive/{stored_note}", "w", force_zip64=True) as entry:
            chunk = bytes(MB)
            for _ in range(inflated // MB):
                entry.write(chunk)


def test_a_deflate_bomb_is_refused_by_its_ratio(tmp_path):
    path = tmp_path / "bomb.pt"
    _bomb(path, 16 * MB)
    assert path.stat().st_size < MB
    with pytest.raises(CheckpointError, match=r"bomb\.pt: entry archive/data/0 inflates .*compression bomb"):
        load_checkpoint(path)


def test_a_checkpoint_declaring_more_than_the_limit_is_refused(tmp_path, state):
    path = _save(tmp_path / "large.pt", {"latent_dim": 8}, dict(state))
    with pytest.raises(
        CheckpointError, match=r"large\.pt: declares .* MB of data, more than the limit .*MAX_CHECKPOINT"
    ):
        load_checkpoint(path, max_bytes=MB)
    assert load_checkpoint(path)["config"]["latent_dim"] == 8  # the default limit lets it through


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda s: s.__setitem__("fc_mu.weight", torch.full_like(s["fc_mu.weight"], float("nan"))), "NaN or inf"),
        (lambda s: s.__setitem__("decoder_input.bias", s["decoder_input.bias"] / 0), "NaN or inf"),
        (lambda s: s.__setitem__("fc_mu.weight", s["fc_mu.weight"].long()), "torch.int64"),
        (lambda s: s.__setitem__("fc_mu.weight", s["fc_mu.weight"].to(torch.complex64)), "torch.complex64"),
        (lambda s: s.__setitem__("fc_mu.bias", s["fc_mu.bias"] > 0), "torch.bool"),
        (lambda s: s.__setitem__("encoder.2.running_var", -torch.ones(32)), "negative variances"),
        (lambda s: s.__setitem__("encoder.2.num_batches_tracked", torch.tensor(1.5)), "integer counter"),
    ],
    ids=["nan", "inf", "int64", "complex", "bool", "negative_variance", "float_counter"],
)
def test_unsound_tensors_are_refused_by_name(tmp_path, state, change, words):
    bad = {k: v.clone() for k, v in state.items()}
    change(bad)
    path = _save(tmp_path / "bad.pt", {"latent_dim": 8}, bad)
    with pytest.raises(CheckpointError, match=rf"bad\.pt: tensor [\w.]+ .*{words}"):
        load_pretrained(path)


def test_half_precision_weights_are_accepted_as_float32(tmp_path, state):
    path = _save(
        tmp_path / "half.pt", {"latent_dim": 8}, {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    )
    model = load_pretrained(path)
    assert model.fc_mu.weight.dtype == torch.float32


def test_a_legacy_pickle_naming_code_is_refused_and_never_runs(tmp_path):
    target = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {target}",))

    for protocol in (2, 5):
        path = tmp_path / f"evil{protocol}.pt"
        path.write_bytes(pickle.dumps({"model_state": Evil()}, protocol=protocol))
        with pytest.raises(CheckpointError, match=rf"evil{protocol}\.pt: refused to load.*system"):
            load_pretrained(path)
    assert not target.exists()


def test_the_legacy_format_is_refused_with_what_to_do(tmp_path, state):
    path = tmp_path / "old.pt"
    torch.save({"config": {"latent_dim": 8}, "model_state": state}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"old\.pt: .*legacy .*re-save it"):
        load_pretrained(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX file system entries")
@pytest.mark.parametrize("kind", ["fifo", "device", "folder", "dangling", "loop"])
def test_odd_entries_named_like_a_checkpoint_are_refused_without_blocking(tmp_path, kind):
    path = tmp_path / "model.pt"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        os.symlink("/dev/zero", path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "dangling":
        os.symlink("gone.pt", path)
    else:
        os.symlink("model.pt", path)
    words = {"fifo": "FIFO", "device": "device", "folder": "folder", "dangling": "dangling", "loop": "loop"}[kind]
    with pytest.raises(CheckpointError, match=rf"model\.pt: .*{words}"):
        load_pretrained(path)


def test_a_renamed_checkpoint_with_log_var_first_keeps_mu_and_log_var_apart(tmp_path):
    torch.manual_seed(1)
    model = MusicVAE(latent_dim=8).eval()
    state = {
        k.replace("fc_log_var", "logvar_head").replace("fc_mu", "mu_head"): v for k, v in model.state_dict().items()
    }
    heads = [k for k in state if k.startswith("logvar_head")] + [k for k in state if k.startswith("mu_head")]
    reordered = {**{k: state[k] for k in heads}, **{k: v for k, v in state.items() if k not in heads}}
    path = _save(tmp_path / "swapped.pt", {"latent_dim": 8}, reordered)
    with pytest.warns(UserWarning, match="other names"):
        loaded = load_pretrained(path)
    x = (torch.rand(2, 1, 88, 32) > 0.9).float()
    _, mu, log_var = loaded(x)
    _, mu_true, log_var_true = model(x)
    assert loaded.load_report.heads == "by name"
    assert torch.equal(mu, mu_true) and torch.equal(log_var, log_var_true)


def test_killed_saves_leave_no_temporary_files_behind_at_the_next_save(tmp_path):
    model = MusicVAE(latent_dim=8)
    leftover = tmp_path / ".last.pt.abc123.tmp"
    leftover.write_bytes(b"\0" * 1000)
    old = 1_000_000_000
    os.utime(leftover, (old, old))  # a killed save, long ago
    running = tmp_path / ".last.pt.def456.tmp"
    running.write_bytes(b"\0")  # a save in progress right now: kept
    save_checkpoint(model, tmp_path / "last.pt")
    assert not leftover.exists() and running.exists()
