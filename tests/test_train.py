"""fit: learning, the card's schedule, exact resume, safe saves, the NaN guard, fine-tuning."""

import math
import os

import numpy as np
import pytest
import torch
from tiny_rolls import tiny_segments

from musicvae_course import train as training
from musicvae_course.core import devices
from musicvae_course.core.checkpoint import load_checkpoint
from musicvae_course.core.data import PianoRollDataset
from musicvae_course.core.metrics import evaluate
from musicvae_course.core.model import MusicVAE, vae_loss
from musicvae_course.train.history import load_history
from musicvae_course.ui.curves import plot_history

LATENT = 8
QUICK = dict(batch_size=16, threads=1, progress=False)  # tiny runs: 4 steps per epoch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    torch.set_num_threads(1)  # the test machine is shared: no oversubscription


@pytest.fixture(scope="module")
def data():
    return PianoRollDataset(tiny_segments(64, seed=0)), PianoRollDataset(tiny_segments(32, seed=1))


def new_model(seed=0):
    torch.manual_seed(seed)
    return MusicVAE(latent_dim=LATENT)


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_beta_schedule_is_linear_over_the_warm_up():
    assert [training.beta_schedule(e, 50) for e in (0, 25, 49, 50, 99)] == [0.0, 0.5, 0.98, 1.0, 1.0]
    assert training.beta_schedule(0, 0) == 1.0  # no warm-up: full weight at once
    assert training.beta_schedule(5, 10, beta_max=0.5) == 0.25


def test_free_bits_floor_each_dimension_in_the_objective_not_in_the_reported_kl():
    x = torch.zeros(2, 1, 88, 32)
    logits = torch.full_like(x, -20.0)
    mu = torch.zeros(2, 4)
    mu[:, 0] = 2.0  # KL 2 nats in dimension 0, 0 in the others
    log_var = torch.zeros(2, 4)
    total, reconstruction, kl = vae_loss(logits, x, mu, log_var, beta=0.5, free_bits=0.5)
    assert kl.item() == pytest.approx(2.0)
    assert total.item() == pytest.approx(reconstruction.item() + 0.5 * (2.0 + 3 * 0.5))


def test_training_lowers_the_loss_and_writes_the_run_folder(data, tmp_path):
    train, val = data
    model = new_model()
    before = evaluate(model, train.segments)["reconstruction"]
    history = training.fit(model, train, val, epochs=2, out_dir=tmp_path, **QUICK)
    after = evaluate(model, train.segments)["reconstruction"]
    assert after < before
    assert history[1]["reconstruction"] < 0.9 * history[0]["reconstruction"]
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[0]["beta"] == 0.0 and history[1]["beta"] == pytest.approx(1 / 50)
    assert all(row["samples"] == 64 and math.isfinite(row["val_frame_f1"]) for row in history)
    assert {"last.pt", "best.pt", "history.json", "history.csv"} <= set(os.listdir(tmp_path))
    assert load_history(tmp_path) == history
    checkpoint = load_checkpoint(tmp_path / "last.pt")  # weights_only=True
    assert checkpoint["config"]["latent_dim"] == LATENT and checkpoint["config"]["batch_size"] == 16
    assert checkpoint["training_state"]["epoch"] == 2
    assert not model.training
    fig = plot_history(history)
    assert len(fig.axes) >= 2


def test_resume_gives_the_weights_of_an_uninterrupted_run(data, tmp_path):
    train, val = data
    straight = new_model()
    training.fit(straight, train, val, epochs=2, **QUICK)
    first = new_model()
    training.fit(first, train, val, epochs=1, out_dir=tmp_path, **QUICK)
    resumed = new_model(seed=99)  # other initial weights: everything must come from last.pt
    history = training.fit(resumed, train, val, epochs=2, out_dir=tmp_path, resume=True, **QUICK)
    assert [row["epoch"] for row in history] == [1, 2]
    assert same_weights(resumed, straight)
    assert not same_weights(first, straight)


def test_resume_refuses_changed_settings(data, tmp_path):
    train, _ = data
    training.fit(new_model(), train, epochs=1, out_dir=tmp_path, **QUICK)
    with pytest.raises(ValueError, match="free_bits"):
        training.fit(new_model(), train, epochs=2, out_dir=tmp_path, resume=True, free_bits=1.0, **QUICK)
    with pytest.raises(FileExistsError, match="resume=True"):
        training.fit(new_model(), train, epochs=1, out_dir=tmp_path, **QUICK)


def test_an_interrupted_save_leaves_the_previous_checkpoint_loadable(data, tmp_path, monkeypatch):
    train, _ = data
    training.fit(new_model(), train, epochs=1, out_dir=tmp_path, **QUICK)
    real_save = torch.save

    def save_half_then_fail(obj, file, *args, **kwargs):
        real_save(obj, file, *args, **kwargs)
        file.seek(file.tell() // 2)
        file.truncate()
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(OSError, match="simulated"):
        training.fit(new_model(), train, epochs=2, out_dir=tmp_path, resume=True, **QUICK)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt")["training_state"]["epoch"] == 1
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


class PoisonedDataset(PianoRollDataset):
    """Yields NaN in one batch of one epoch (counted by calls to ``batches``)."""

    def __init__(self, segments, epoch, batch):
        super().__init__(segments)
        self.poison, self.calls = (epoch, batch), 0

    def batches(self, *args, **kwargs):
        self.calls += 1
        for i, x in enumerate(super().batches(*args, **kwargs)):
            yield torch.full_like(x, math.nan) if (self.calls, i + 1) == self.poison else x


def test_nan_loss_stops_with_epoch_batch_and_term_and_keeps_the_last_checkpoint(data, tmp_path):
    poisoned = PoisonedDataset(data[0].segments, epoch=2, batch=3)
    model = new_model()
    with pytest.raises(training.TrainingDiverged, match=r"epoch 2, batch 3 of 4: reconstruction"):
        training.fit(model, poisoned, epochs=3, out_dir=tmp_path, **QUICK)
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint["training_state"]["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in checkpoint["model_state"].values())
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad step never landed


def test_max_samples_stops_mid_epoch(data):
    history = training.fit(new_model(), data[0], epochs=5, max_samples=32, **QUICK)
    assert len(history) == 1
    assert history[0]["samples"] == 32 and history[0]["stopped_early"] == "max_samples"


def test_fine_tuning_starts_from_init_and_can_freeze_the_encoder(data, tmp_path):
    train, _ = data
    pretrained = new_model(seed=5)
    training.fit(pretrained, train, epochs=1, out_dir=tmp_path, **QUICK)
    tuned = new_model(seed=6)
    history = training.fit(tuned, train, epochs=1, init=tmp_path / "last.pt", freeze_encoder=True, **QUICK)
    assert history[0]["lr"] == training.FINE_TUNE_LR and history[0]["beta"] == 1.0
    assert all(p.requires_grad for p in tuned.parameters())  # frozen only while fit ran
    before, after = pretrained.state_dict(), tuned.state_dict()
    for name in before:
        unchanged = torch.equal(before[name], after[name])
        if name.startswith(training.ENCODER_PARTS):  # weights and BatchNorm statistics
            assert unchanged, name
        elif name.endswith("weight"):
            assert not unchanged, name


def test_cpu_threads_helper():
    assert 1 <= devices.default_cpu_threads() <= devices.MAX_DEFAULT_THREADS
    assert devices.default_cpu_threads(processes=64) == 1
    previous = torch.get_num_threads()
    try:
        assert devices.set_cpu_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)
    with pytest.raises(ValueError):
        devices.set_cpu_threads(0)
    with pytest.raises(ValueError, match=f"threads must be from 1 to {devices.usable_cpus()}"):
        devices.set_cpu_threads(100_000)  # OpenMP's threads crashed the process


def test_two_processes_with_ddp_end_with_identical_weights(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(repo / "tests" / "ddp_worker.py"),
        str(tmp_path),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    states = [rank["state"] for rank in ranks]
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])  # incl. BatchNorm buffers
    initial = new_model().state_dict()
    assert not torch.equal(states[0]["fc_mu.weight"], initial["fc_mu.weight"])
    history = ranks[0]["history"]
    assert [row["samples"] for row in history] == [64, 64]  # two shards of 32 make one epoch
    assert [row["loss"] for row in history] == [row["loss"] for row in ranks[1]["history"]]
    # only rank 0 writes the run folder, and what it wrote is rank 0's model
    saved = load_checkpoint(tmp_path / "run" / "last.pt")["model_state"]
    assert all(torch.equal(saved[k], states[0][k]) for k in saved)


def test_command_line_trains_resumes_and_evaluates_on_the_test_split(tmp_path, capsys):
    from musicvae_course.train.cli import main

    files = [f"piece_{i}.mid" for i in range(10)]
    PianoRollDataset(tiny_segments(80), file_ids=np.repeat(np.arange(10), 8), files=files).save_npz(
        tmp_path / "tiny.npz"
    )
    run = tmp_path / "run"
    common = [
        "--data",
        str(tmp_path / "tiny.npz"),
        "--out",
        str(run),
        "--latent-dim",
        "8",
        "--batch-size",
        "16",
        "--threads",
        "1",
        "--no-progress",
        "--split",
        "0.6",
        "0.2",
        "0.2",
    ]
    assert main(common + ["--epochs", "1"]) == 0
    assert load_checkpoint(run / "last.pt")["config"]["latent_dim"] == 8
    assert main(common + ["--epochs", "2", "--resume"]) == 0
    assert [row["epoch"] for row in load_history(run)] == [1, 2]
    assert [row["samples"] for row in load_history(run)] == [48, 48]  # 6 of 10 files
    assert (run / "test_metrics.json").is_file() and "frame_f1" in capsys.readouterr().out
