"""TrainConfig, the settings' checks, the data fit accepts, and the training command's errors."""

import dataclasses
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from tiny_rolls import tiny_segments

from musicvae_course import train as training
from musicvae_course.core.data import PianoRollDataset
from musicvae_course.core.model import MusicVAE
from musicvae_course.train import TrainConfig, loop
from musicvae_course.train.cli import build_parser, main
from musicvae_course.train.config import config_from_call
from musicvae_course.train.inputs import TrainingDataError, training_data

QUICK = dict(batch_size=16, threads=1, progress=False)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    torch.set_num_threads(1)


def test_the_defaults_are_the_card_recipe_and_fine_tuning_has_its_own():
    recipe = TrainConfig().resolved()
    assert (recipe.lr, recipe.batch_size, recipe.beta_warmup_epochs, recipe.free_bits, recipe.grad_clip) == (
        1e-3,
        256,
        50,
        0.5,
        1.0,
    )
    assert (recipe.lr_patience, recipe.lr_factor, recipe.min_lr, recipe.epochs) == (10, 0.5, 1e-5, 100)
    tuned = TrainConfig(init="some.pt").resolved()
    assert (tuned.lr, tuned.beta_warmup_epochs) == (training.FINE_TUNE_LR, training.FINE_TUNE_BETA_WARMUP_EPOCHS)
    assert TrainConfig(init="some.pt", lr=3e-4).resolved().lr == 3e-4  # a value given wins over the default


def test_every_setting_says_what_it_means_and_is_in_the_generated_documentation():
    for spec in dataclasses.fields(TrainConfig):
        assert spec.metadata["meaning"], spec.name
        assert f"    {spec.name} = " in TrainConfig.__doc__


@pytest.mark.parametrize(
    "name, value",
    [
        ("epochs", 0),
        ("epochs", -1),
        ("epochs", 1.5),
        ("lr", 0),
        ("lr", -1e-3),
        ("lr", math.nan),
        ("grad_clip", 0),
        ("max_samples", 0),
        ("batch_size", 0),
        ("free_bits", -0.1),
        ("beta_max", math.inf),
        ("lr_factor", 1.0),
        ("threads", 0),
        ("threads", 10**5),
        ("time_budget_s", 0),
        ("checkpoint_every_s", -1),
        ("precision", "fp16"),
        ("progress", "yes"),
        ("seed", -3),
    ],
)
def test_a_value_outside_its_rule_is_refused_naming_the_setting_and_the_value(name, value):
    with pytest.raises(training.SettingError, match=name) as error:
        TrainConfig(**{name: value})
    assert repr(value) in str(error.value) or str(value) in str(error.value)


def test_safe_casts_are_made_and_none_turns_clipping_off():
    config = TrainConfig(epochs=10.0, lr=np.float32(0.5), grad_clip=None, progress=np.bool_(False))
    assert config.epochs == 10 and type(config.epochs) is int and type(config.lr) is float
    assert config.grad_clip is None and config.progress is False


def test_fit_refuses_an_unknown_setting_listing_the_valid_names():
    data = PianoRollDataset(tiny_segments(16))
    with pytest.raises(training.UnknownSettingError, match=r"'lrr' \(did you mean 'lr'\?\).*epochs, batch_size"):
        training.fit(MusicVAE(latent_dim=8), data, lrr=1e-3)
    with pytest.raises(TypeError):  # an unknown keyword is a TypeError, as for any Python function
        training.fit(MusicVAE(latent_dim=8), data, epoch=3)


def test_a_device_that_is_not_a_name_or_not_here_is_refused_before_training():
    data = PianoRollDataset(tiny_segments(16))
    with pytest.raises(training.SettingError, match="device 'gpu' is not a device name"):
        training.fit(MusicVAE(latent_dim=8), data, device="gpu", **QUICK)
    if not torch.cuda.is_available():
        with pytest.raises(training.SettingError, match="device 'cuda': .* has no cuda device"):
            training.fit(MusicVAE(latent_dim=8), data, device="cuda", **QUICK)


def test_epochs_may_come_as_the_fourth_argument_or_inside_a_config():
    assert config_from_call(3, {"lr": 1e-2}) == TrainConfig(epochs=3, lr=1e-2)
    assert config_from_call(TrainConfig(epochs=4), {"seed": 1}).epochs == 4
    with pytest.raises(training.SettingError, match="twice"):
        config_from_call(3, {"epochs": 4})


def test_rolls_with_nan_infinity_or_values_outside_0_1_are_refused_naming_the_argument():
    rolls = tiny_segments(8).astype(np.float32)
    for bad, said in ((math.nan, "NaN"), (math.inf, "values in"), (-1.0, "values in"), (2.0, "values in")):
        poisoned = rolls.copy()
        poisoned[3, 40, 5] = bad
        with pytest.raises(TrainingDataError, match=f"train.*{said}|{said}.*"):
            training_data(poisoned, "train")
    with pytest.raises(TrainingDataError, match="val.* empty"):
        training_data(np.zeros((0, 88, 32), bool), "val")
    with pytest.raises(TrainingDataError, match="32 steps"):
        training_data(np.zeros((4, 88, 16), bool), "train")


def test_probabilities_are_binarised_at_one_half_and_a_dataset_of_ones_own_is_scanned():
    soft = np.full((2, 1, 88, 32), 0.01, np.float32)
    soft[0, 0, 40, :4] = 0.7
    dataset = training_data(torch.from_numpy(soft), "train")
    assert dataset.segments.sum() == 4 and dataset.segments[0, 40, :4].all()

    class Mine:  # not a PianoRollDataset: read once before training
        def __len__(self):
            return 2

        def batches(self, batch_size, shuffle=True, **kwargs):
            yield torch.tensor(soft).masked_fill(torch.tensor(soft) == 0.7, math.nan)

    with pytest.raises(TrainingDataError, match="val: segment 0 holds NaN"):
        training_data(Mine(), "val")


def test_nan_in_validation_batches_or_a_non_finite_validation_loss_stop_training_with_a_clear_error(
    tmp_path, monkeypatch
):
    class NanBatches(PianoRollDataset):  # a subclass of the kit's dataset is not scanned before training
        def batches(self, *args, **kwargs):
            for x in super().batches(*args, **kwargs):
                yield torch.full_like(x, math.nan)

    train = PianoRollDataset(tiny_segments(16))
    with pytest.raises(TrainingDataError, match="val: .*NaN"):
        training.fit(MusicVAE(latent_dim=8), train, NanBatches(tiny_segments(8)), epochs=1, out_dir=tmp_path, **QUICK)
    real = loop.summarize_sums
    monkeypatch.setattr(loop, "summarize_sums", lambda *a: {**real(*a), "neg_elbo": math.inf})  # overflow in eval
    with pytest.raises(training.TrainingDiverged, match="validation -ELBO is inf after epoch 1"):
        training.fit(MusicVAE(latent_dim=8), train, train, epochs=1, out_dir=tmp_path, overwrite=True, **QUICK)
    assert not (tmp_path / "best.pt").exists()


def test_every_setting_is_a_flag_of_the_command_with_its_meaning_as_help():
    parser = build_parser()
    dests = {action.dest: action for action in parser._actions}
    for spec in dataclasses.fields(TrainConfig):
        assert spec.name in dests and spec.metadata["meaning"] in dests[spec.name].help
    args = parser.parse_args(
        ["--data", "d", "--out", "o", "--grad-clip", "none", "--no-progress", "--time-budget", "5", "--epochs", "1e1"]
    )
    assert (args.grad_clip, args.progress, args.time_budget_s, args.out_dir) == (None, False, 5.0, "o")
    config = TrainConfig(**{spec.name: getattr(args, spec.name) for spec in dataclasses.fields(TrainConfig)})
    assert config.epochs == 10 and config.lr is None


@pytest.mark.parametrize(
    "extra, said",
    [
        (["--epochs", "0"], "--epochs: epochs must be >= 1; got 0"),
        (["--lr", "0"], "lr must be > 0"),
        (["--grad-clip", "0"], "grad_clip must be > 0 (or None to turn it off)"),
        (["--max-samples", "0"], "max_samples must be >= 1"),
        (["--split", "0.5", "0.6", "0.1"], "--split 0.5 0.6 0.1: fractions must be >= 0 and sum to 1; got 0.5 0.6 0.1"),
        (["--latent-dim", "0"], "--latent-dim"),
        (["--latent-dim", "100000000"], "--latent-dim: latent_dim must be a whole number in 1..8192"),
        (["--threads", "100000"], "--threads: threads must be at most"),  # was a segmentation fault
    ],
)
def test_command_line_user_errors_print_one_line_and_exit_2(tmp_path, capsys, extra, said):
    PianoRollDataset(tiny_segments(8), file_ids=np.arange(8), files=[f"f{i}" for i in range(8)]).save_npz(
        tmp_path / "d.npz"
    )
    status = main(["--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "run"), "--threads", "1", *extra])
    err = capsys.readouterr().err
    assert status == 2 and said in err and len(err.strip().splitlines()) == 1, err


def test_command_line_reports_a_missing_file_or_a_bad_flag_in_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    command = [sys.executable, "-m", "musicvae_course.train", "--threads", "1", "--out", str(tmp_path)]
    missing = subprocess.run(command + ["--data", str(tmp_path / "nope.npz")], capture_output=True, text=True)
    assert missing.returncode == 2 and "nope.npz: no such file" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as bad_flag:
        main(["--data", "x", "--out", str(tmp_path), "--lr", "fast"])
    err = capsys.readouterr().err
    assert bad_flag.value.code == 2 and "--lr" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert main(["--data", str(tmp_path / "junk.npz"), "--out", str(tmp_path)]) == 2
    with pytest.raises(training.SettingError, match="not a readable data cache"):  # --debug: raised, traceback shown
        main(["--data", str(tmp_path / "junk.npz"), "--out", str(tmp_path), "--debug"])


def test_the_command_stopped_by_sigterm_saves_and_exits_130_without_a_traceback(tmp_path):
    import signal
    import time

    files = [f"piece_{i}.mid" for i in range(4)]
    PianoRollDataset(tiny_segments(32), file_ids=np.repeat(np.arange(4), 8), files=files).save_npz(tmp_path / "d.npz")
    run = tmp_path / "run"
    command = [sys.executable, "-m", "musicvae_course.train", "--data", str(tmp_path / "d.npz"), "--out", str(run)]
    flags = ["--epochs", "100000", "--latent-dim", "8", "--batch-size", "16", "--threads", "1", "--no-progress"]
    process = subprocess.Popen(command + flags + ["--checkpoint-every-s", "0"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "last.pt").exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130 and "interrupted" in err and "--resume" in err and "Traceback" not in err, err
    assert not [name for name in os.listdir(run) if name.endswith(".tmp")], os.listdir(run)
