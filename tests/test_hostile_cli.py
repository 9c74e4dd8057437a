"""The demo CLI misused: every user error is one line on stderr and exit status 2, no traceback
(``--debug`` shows it); bugs keep their traceback."""

from __future__ import annotations

import os

import pytest
import torch

from musicvae_course.__main__ import main
from musicvae_course.core.checkpoint import save_checkpoint
from musicvae_course.core.model import MusicVAE


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(MusicVAE(latent_dim=8), tmp_path_factory.mktemp("ckpt") / "model.pt")


def _cases(tmp_path, checkpoint):
    text = tmp_path / "notes.mid"
    text.write_text("not midi")
    bad_ckpt = tmp_path / "bad.pt"
    bad_ckpt.write_bytes(b"garbage")
    fifo = tmp_path / "fifo.mid"
    os.mkfifo(fifo)
    out = str(tmp_path / "out")
    ck = ["--checkpoint", str(checkpoint), "--device", "cpu", "--out", out]
    return {
        "missing_midi": (["reconstruct", str(tmp_path / "nope.mid"), *ck], "nope.mid"),
        "not_midi": (["reconstruct", str(text), *ck], "notes.mid"),
        "fifo_midi": (["reconstruct", str(fifo), *ck], "FIFO"),
        "missing_checkpoint": (["sample", "--checkpoint", str(tmp_path / "no.pt"), "--out", out], "no.pt"),
        "bad_checkpoint": (["sample", "--checkpoint", str(bad_ckpt), "--out", out], "bad.pt"),
        "bad_device": (["sample", *ck[:2], "--device", "toaster", "--out", out], "toaster"),
        "interpolate_segment": (["interpolate", "--from", str(text), *ck], "notes.mid"),
        "out_is_a_file": (["sample", "-n", "1", *ck[:4], "--out", str(text)], "notes.mid"),
    }


CASES = [
    "missing_midi",
    "not_midi",
    "fifo_midi",
    "missing_checkpoint",
    "bad_checkpoint",
    "bad_device",
    "interpolate_segment",
    "out_is_a_file",
]


@pytest.mark.parametrize("case", CASES)
def test_user_errors_are_one_line_and_exit_2(tmp_path, checkpoint, capsys, case):
    argv, words = _cases(tmp_path, checkpoint)[case]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and words in err, err


def test_debug_shows_the_traceback(tmp_path, checkpoint):
    with pytest.raises(FileNotFoundError, match="nope.mid"):
        main(
            [
                "reconstruct",
                str(tmp_path / "nope.mid"),
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(tmp_path),
                "--debug",
            ]
        )


@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "-n", "0"],
        ["sample", "-n", "-3"],
        ["sample", "-n", "100000000"],
        ["sample", "--temperature", "nan"],
        ["sample", "--bpm", "0"],
        ["sample", "--threshold", "2"],
        ["interpolate", "--steps", "1"],
        ["reconstruct", "x.mid", "--max-segments", "0"],
        ["sample", "-n", "three"],
    ],
)
def test_out_of_range_arguments_are_usage_errors(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err and "error: argument" in err


def test_a_real_bug_keeps_its_traceback(tmp_path, checkpoint, monkeypatch):
    import musicvae_course.__main__ as cli

    def broken(*args, **kwargs):
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(cli, "_write", broken)
    with pytest.raises(KeyError):
        main(["sample", "-n", "1", "--checkpoint", str(checkpoint), "--device", "cpu", "--out", str(tmp_path)])
