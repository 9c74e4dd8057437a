"""The run folder: last.pt by time, saves on interruption, best.pt consistent with last.pt, lock and temp sweep."""

import shutil

import pytest
import torch
from filelock import FileLock
from tiny_rolls import tiny_segments

from musicvae_course import train as training
from musicvae_course.core.checkpoint import CheckpointError, load_checkpoint
from musicvae_course.core.data import PianoRollDataset
from musicvae_course.core.model import MusicVAE
from musicvae_course.train import run_folder

QUICK = dict(batch_size=16, threads=1, progress=False)  # 4 steps per epoch on 64 segments
NEVER = 3600.0  # checkpoint_every_s: no save falls due by time inside a test


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    return PianoRollDataset(tiny_segments(64, seed=0)), PianoRollDataset(tiny_segments(32, seed=1))


def new_model(seed=0):
    torch.manual_seed(seed)
    return MusicVAE(latent_dim=8)


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def saves(monkeypatch):
    """The names of the checkpoint files written, in order."""
    written, real = [], run_folder.save_checkpoint

    def counting(model, path, **kwargs):
        written.append(path.name)
        return real(model, path, **kwargs)

    monkeypatch.setattr(run_folder, "save_checkpoint", counting)
    return written


def test_last_pt_is_written_by_time_and_at_the_end_best_pt_before_it(data, tmp_path, saves):
    train, val = data
    training.fit(new_model(), train, val, epochs=2, out_dir=tmp_path / "a", checkpoint_every_s=NEVER, **QUICK)
    assert saves.count("last.pt") == 1 and saves[-1] == "last.pt"  # once, at the end
    assert saves.count("best.pt") <= 1  # the best epoch's weights, copied in memory until then
    state = load_checkpoint(tmp_path / "a" / "last.pt")["training_state"]
    best = load_checkpoint(tmp_path / "a" / "best.pt")["training_state"]
    assert state["epoch"] == 2 and best["epoch"] == state["best_epoch"]
    assert best["val_loss"] == min(row["val_loss"] for row in state["history"])
    saves.clear()
    training.fit(new_model(), train, epochs=2, out_dir=tmp_path / "b", checkpoint_every_s=0, **QUICK)
    assert saves.count("last.pt") == 2  # 0: after every epoch


class Interrupted(PianoRollDataset):
    """Raises KeyboardInterrupt (a Ctrl+C) at one batch of one call of ``batches``."""

    def __init__(self, segments, call, batch):
        super().__init__(segments)
        self.at, self.calls = (call, batch), 0

    def batches(self, *args, **kwargs):
        self.calls += 1
        for i, x in enumerate(super().batches(*args, **kwargs)):
            if (self.calls, i + 1) == self.at:
                raise KeyboardInterrupt
            yield x


def test_an_interruption_writes_the_last_complete_epoch_and_resuming_gives_the_uninterrupted_weights(data, tmp_path):
    train, _ = data
    straight = new_model()
    training.fit(straight, train, epochs=3, **QUICK)
    stopped = Interrupted(train.segments, call=3, batch=2)  # in epoch 3, after two clean epochs
    with pytest.raises(KeyboardInterrupt):
        training.fit(new_model(), stopped, epochs=3, out_dir=tmp_path, checkpoint_every_s=NEVER, **QUICK)
    assert load_checkpoint(tmp_path / "last.pt")["training_state"]["epoch"] == 2  # not the half-done third
    resumed = new_model(seed=99)
    history = training.fit(resumed, train, epochs=3, out_dir=tmp_path, resume=True, checkpoint_every_s=NEVER, **QUICK)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert same_weights(resumed.state_dict(), straight.state_dict())


def test_a_kill_between_the_two_saves_never_leaves_best_pt_behind_last_pt(data, tmp_path, monkeypatch, recwarn):
    train, val = data  # validation -ELBO improves in epoch 2 (training -ELBO does not, beta rises)
    training.fit(new_model(), train, val, epochs=1, out_dir=tmp_path, checkpoint_every_s=0, **QUICK)
    shutil.copy(tmp_path / "best.pt", tmp_path / "best_epoch1.pt")
    real = run_folder.save_checkpoint

    def killed_before_last(model, path, **kwargs):  # best.pt lands, then the process "dies"
        if path.name == "last.pt":
            raise KeyboardInterrupt
        return real(model, path, **kwargs)

    monkeypatch.setattr(run_folder, "save_checkpoint", killed_before_last)
    with pytest.raises(KeyboardInterrupt):
        training.fit(new_model(), train, val, epochs=2, out_dir=tmp_path, resume=True, checkpoint_every_s=0, **QUICK)
    monkeypatch.undo()
    last, best = (load_checkpoint(tmp_path / name) for name in ("last.pt", "best.pt"))
    assert last["training_state"]["epoch"] == 1 and best["training_state"]["epoch"] == 2  # ahead: resuming repeats it
    training.fit(new_model(), train, val, epochs=2, out_dir=tmp_path, resume=True, **QUICK)
    last, again = (load_checkpoint(tmp_path / name) for name in ("last.pt", "best.pt"))
    assert last["training_state"]["best_epoch"] == again["training_state"]["epoch"] == 2
    assert same_weights(again["model_state"], best["model_state"])  # the repeated epoch 2, bit for bit
    # a best.pt left behind (a kit that wrote last.pt first, killed in between) is repaired on resume
    shutil.copy(tmp_path / "best_epoch1.pt", tmp_path / "best.pt")
    training.fit(new_model(), train, val, epochs=2, out_dir=tmp_path, resume=True, **QUICK)
    repaired = load_checkpoint(tmp_path / "best.pt")
    assert repaired["training_state"]["epoch"] == 2 and same_weights(repaired["model_state"], last["model_state"])
    assert any("rewritten from epoch 2" in str(w.message) for w in recwarn)


def test_stale_temp_files_are_swept_and_a_second_run_on_the_folder_is_refused(data, tmp_path):
    train, _ = data
    tmp_path.mkdir(exist_ok=True)
    stale = tmp_path / ".last.pt.k1ll3d.tmp"
    stale.write_bytes(b"\0" * 1000)
    notes = tmp_path / ".my_notes.tmp"  # not the kit's: kept
    notes.write_text("mine")
    with FileLock(tmp_path / ".fit.lock"):  # another run holds the folder
        with pytest.raises(training.RunFolderBusy, match="in use by another training run"):
            training.fit(new_model(), train, epochs=1, out_dir=tmp_path, max_samples=16, **QUICK)
    assert stale.exists()  # nothing touched while the other run held the lock
    training.fit(new_model(), train, epochs=1, out_dir=tmp_path, max_samples=16, **QUICK)
    assert not stale.exists() and notes.exists()
    with pytest.raises(FileExistsError, match="resume=True"):
        training.fit(new_model(), train, epochs=1, out_dir=tmp_path, **QUICK)


def _set(key, value):
    return lambda state: state.__setitem__(key, value)


def _moments(change):
    return lambda state: [slot.update(change(slot)) for slot in state["optimizer"]["state"].values()]


DAMAGED_STATES = {  # what resuming raised before: a traceback from deep inside the loop or torch
    "epoch as text": (_set("epoch", "1"), "epoch is '1'"),  # accepted, then counted as text
    "negative epoch": (_set("epoch", -5), "epoch is -5"),  # ValueError from the random generator
    "history as text": (_set("history", "x"), "history is not a list"),  # AttributeError
    "NaN samples": (_set("samples_seen", float("nan")), "samples_seen is nan"),  # ValueError
    "no optimizer": (lambda state: state.pop("optimizer"), "no optimizer state"),  # KeyError
    "lr as text": (lambda state: state["optimizer"]["param_groups"][0].update(lr="fast"), "learning rate of 'fast'"),
    "NaN moments": (_moments(lambda slot: {"exp_avg": slot["exp_avg"] * float("nan")}), "exp_avg holds NaN"),
    "moments of another shape": (_moments(lambda slot: {"exp_avg": torch.zeros(3)}), "exp_avg has shape (3,)"),
    "scheduler best as text": (lambda state: state["scheduler"].update(best="x"), "scheduler's best is 'x'"),
    "state a list": (lambda state: state.clear() or state.update(epoch=[1]), "epoch is [1]"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGED_STATES))
def test_a_damaged_training_state_is_named_before_resuming(data, tmp_path, damage):
    change, said = DAMAGED_STATES[damage]
    training.fit(new_model(), *data, epochs=1, out_dir=tmp_path, **QUICK)
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    change(checkpoint["training_state"])
    torch.save(checkpoint, tmp_path / "last.pt")
    with pytest.raises(CheckpointError) as error:
        training.fit(new_model(), *data, epochs=2, out_dir=tmp_path, resume=True, **QUICK)
    assert str(tmp_path / "last.pt") in str(error.value) and said in str(error.value)
