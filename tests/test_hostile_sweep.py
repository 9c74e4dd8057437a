"""The sweep of what killed writes left removes only leftovers of the file being written.

``sweep_temp_files(folder, name)`` used ``name`` as a glob pattern: saving a checkpoint named ``model[1].pt``
removed the leftovers of ``model1.pt`` (a save that may still be under way elsewhere), and one named ``*``
every ``.x.y.tmp`` file of the folder.
"""

from __future__ import annotations

import os
import time

import torch

from musicvae_course.core.checkpoint import load_checkpoint, save_checkpoint
from musicvae_course.core.model import MusicVAE
from musicvae_course.fileio import sweep_temp_files


def _old(path):
    path.write_bytes(b"partial")
    an_hour_ago = time.time() - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))
    return path


def test_a_name_with_pattern_characters_sweeps_only_its_own_leftovers(tmp_path):
    other = _old(tmp_path / ".model1.pt.k1ll3d.tmp")
    everyone = _old(tmp_path / ".notes.txt.abc.tmp")
    own = _old(tmp_path / ".model[1].pt.k1ll3d.tmp")
    assert sweep_temp_files(tmp_path, "model[1].pt") == [own]
    assert sweep_temp_files(tmp_path, "*") == []
    assert other.exists() and everyone.exists()


def test_save_checkpoint_to_a_bracketed_name_keeps_other_leftovers(tmp_path):
    other = _old(tmp_path / ".model1.pt.k1ll3d.tmp")
    torch.manual_seed(0)
    path = save_checkpoint(MusicVAE(latent_dim=8), tmp_path / "model[1].pt")
    assert other.read_bytes() == b"partial"
    assert load_checkpoint(path)["config"]["latent_dim"] == 8
