"""What the demo CLI finds already in ``--out``: links, FIFOs and folders under the names it writes.

Each output is written as a new file and renamed into place (``fileio.atomic_write``). Before, ``sample`` wrote
``sample_00.mid`` through a link left there (into the file the link named, outside ``--out``) and blocked forever
opening a FIFO named ``sample_01.mid``.
"""

from __future__ import annotations

import os
import stat

import pytest
import torch

from musicvae_course.__main__ import main
from musicvae_course.core.checkpoint import save_checkpoint
from musicvae_course.core.model import MusicVAE


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(MusicVAE(latent_dim=8), tmp_path_factory.mktemp("ckpt") / "model.pt")


def _sample(checkpoint, out) -> int:
    return main(["sample", "-n", "2", "--checkpoint", str(checkpoint), "--device", "cpu", "--out", str(out)])


def test_a_link_in_out_is_replaced_not_followed(tmp_path, checkpoint):
    victim = tmp_path / "victim.txt"
    victim.write_text("not yours to write")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sample_00.mid").symlink_to(victim)
    (out / "samples.png").symlink_to(victim)
    assert _sample(checkpoint, out) == 0
    assert victim.read_text() == "not yours to write"
    for name in ("sample_00.mid", "samples.png"):
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 0
    assert (out / "sample_00.mid").read_bytes()[:4] == b"MThd"


def test_a_fifo_in_out_is_replaced_not_opened(tmp_path, checkpoint):
    out = tmp_path / "out"
    out.mkdir()
    fifo = out / "sample_01.mid"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so that the old code's open returned instead of blocking
    try:
        assert _sample(checkpoint, out) == 0
    finally:
        os.close(reader)
    assert stat.S_ISREG(os.lstat(fifo).st_mode) and fifo.read_bytes()[:4] == b"MThd"
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_folder_where_an_output_goes_is_one_line(tmp_path, checkpoint, capsys):
    out = tmp_path / "out"
    (out / "samples.png").mkdir(parents=True)
    assert _sample(checkpoint, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "samples.png" in err[0]
    assert (out / "samples.png").is_dir() and not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
