"""Hostile checkpoints: size bombs, unsound tensors, code in pickles, odd file-system entries, swapped heads.

Each is refused before anything large is allocated, with a message naming the file and the tensor or limit;
nothing in the file ever runs.
"""

from __future__ import annotations

import os
import pickle
import sys
import tracemalloc
import zipfile

import pytest
import torch

from musicvae_course.core import checkpoint, checkpoint_checks, midi_limits
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


def _refused_within(path, match: str, limit_bytes: int) -> None:
    """``load_pretrained(path)`` raises a CheckpointError matching ``match``, having traced under ``limit_bytes``."""
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=match):
            load_pretrained(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < limit_bytes


def test_a_tiny_file_asking_for_a_huge_latent_size_is_refused_before_allocating(tmp_path):
    path = _save(tmp_path / "big_latent.pt", {"latent_dim": 200_000}, {"fc_mu.bias": torch.zeros(3)})
    assert path.stat().st_size < 4096
    _refused_within(path, r"big_latent\.pt: config latent_dim=200000 .*1\.\.8192", 32 * MB)


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


@pytest.mark.parametrize("where", ["model_state", "training_state"])
def test_a_tensor_whose_shape_is_far_larger_than_its_storage_is_refused_before_any_computation(tmp_path, state, where):
    # a (50000, 50000) view of one stored float (stride 0): 4 bytes in the zip, 10 GB at its first computation
    # (a raw "DefaultCPUAllocator: can't allocate memory"; 20000 x 20000 was allocated: 1.6 GB)
    view = torch.zeros(1).as_strided((50_000, 50_000), (0, 0))
    saved = {"config": {"latent_dim": 8}, "model_state": dict(state)}
    if where == "model_state":
        saved["model_state"]["encoder.0.weight"] = view
    else:
        saved["training_state"] = {"optimizer": {"state": {0: {"exp_avg": view}}}}
    path = tmp_path / "view.pt"
    torch.save(saved, path)
    words = "model_state.encoder.0.weight" if where == "model_state" else "training_state.optimizer.state.0.exp_avg"
    _refused_within(path, rf"view\.pt: tensor {words} of shape \(50000, 50000\).*MAX_CHECK", 64 * MB)


def test_containers_nested_thousands_deep_are_refused_by_name(tmp_path, state):
    # a config nested 2,000 deep was loaded, and then the model's load_report could not be printed (RecursionError)
    deep: dict = {}
    for _ in range(2_000):
        deep = {"a": deep}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)  # to write it
    try:
        path = _save(tmp_path / "deep.pt", {"latent_dim": 8, "deep": deep}, dict(state))
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(CheckpointError, match=r"deep\.pt: containers nested more than 100 deep, at config\.deep\.a"):
        load_pretrained(path)


def test_containers_shared_so_often_that_walking_them_never_ends_are_refused(tmp_path, state, monkeypatch):
    # 60 lists of two references to the next: a small pickle, 2**60 entries; its load_report's repr never ended
    shared: list = []
    for _ in range(60):
        shared = [shared, shared]
    path = _save(tmp_path / "shared.pt", {"latent_dim": 8, "shared": shared}, dict(state))
    monkeypatch.setattr(checkpoint_checks, "MAX_CHECKPOINT_ENTRIES", 10_000)  # the default takes 2 s to reach
    with pytest.raises(CheckpointError, match=r"shared\.pt: more than 10,000 entries .*MAX_CHECKPOINT_ENTRIES"):
        load_pretrained(path)


def test_a_pickle_over_its_limit_is_refused_before_loading_even_when_deflated(tmp_path, state, monkeypatch):
    # 1,000,000 keys sharing one tensor: 3 MB deflated, 20 MB of pickle: 30 s and 430 MB to load, then refused
    path = tmp_path / "keys.pt"
    torch.save({f"k{i}": torch.zeros(1) for i in range(3000)}, path)
    with zipfile.ZipFile(path) as archive:
        entries = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries:
            archive.writestr(name, data, zipfile.ZIP_DEFLATED if name.endswith(".pkl") else zipfile.ZIP_STORED)
    monkeypatch.setattr(checkpoint_checks, "MAX_CHECKPOINT_PICKLE_BYTES", 16_384)
    with pytest.raises(CheckpointError, match=r"keys\.pt: entry keys/data\.pkl is [\d,]+ bytes of pickled .*16,384"):
        load_checkpoint(path)
    bundled = zipfile.ZipFile(load_pretrained.__globals__["_bundled_path"]())
    pickled = max(info.file_size for info in bundled.infolist() if info.filename.endswith(".pkl"))
    assert pickled * 100 < midi_limits.MAX_CHECKPOINT_PICKLE_BYTES  # far above the kit's own checkpoints


def test_a_state_dict_of_thousands_of_tensors_is_refused_and_leftovers_are_listed_briefly(tmp_path, state, monkeypatch):
    # matching 1,000,000 tensors by shape took 36 s and its message listed every one of them (14 MB)
    many = {**state, **{f"extra{i}": torch.zeros(1) for i in range(50)}}
    path = _save(tmp_path / "many.pt", {"latent_dim": 8}, many)
    with pytest.raises(CheckpointError, match=r"left over: extra0 \(1,\), .*extra19 \(1,\), and 30 more\.$"):
        load_pretrained(path)
    monkeypatch.setattr(checkpoint, "MAX_CHECKPOINT_TENSORS", 60)
    with pytest.raises(CheckpointError, match=r"many\.pt: [\d,]+ entries in its state dict, more than .*60 .*TENSORS"):
        load_checkpoint(path)
