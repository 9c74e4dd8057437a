"""What a dataset is made from, and checkpoints whose names and values are megabytes long or oddly typed.

Before: ``PianoRollDataset`` took ``file_ids`` of strings (``invalid literal for int()``), cut fractions to whole
numbers, took negative ids (``select_files`` then picked files from the end of ``files``) and ids past ``files``
(a bare ``IndexError`` later), made three files of ``files="abc"``, accepted float ``packed`` rows (every batch
then raised ``NotImplementedError``) and refused an empty ``(0, 88, 32)`` array with numpy's ``cannot reshape``.
A checkpoint whose ``latent_dim`` was a 3 MB string, or with a 1 MB tensor name, was refused in a message of
megabytes; one with keys of mixed types raised ``TypeError``; a whole number over 255 bytes was refused with
"Weights only load failed" and nothing else; and every entry's name was built as the walk went (a 1 MB key shared
by 250,000 small dicts: 20 s of copying for a 9.5 MB file).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_rolls import tiny_segments

from musicvae_course.core import checkpoint_checks
from musicvae_course.core.checkpoint import CheckpointError, load_checkpoint, load_pretrained
from musicvae_course.core.data import PianoRollDataset
from musicvae_course.core.model import MusicVAE


@pytest.mark.parametrize(
    "file_ids, words",
    [
        (["a", "b", "c"], r"file_ids must be whole numbers of shape \(N,\), got <U1"),
        ([0.5, 1.0, 1.7], r"file_ids must be whole numbers, found e\.g\. \[0\.5, 1\.7\]"),
        ([-1, 0, 0], r"file_ids must be in 0\.\.1 \(indices into the 2 files\), found -1\.\.0"),
        ([0, 1, 5], r"file_ids must be in 0\.\.1 \(indices into the 2 files\), found 0\.\.5"),
        ([[0, 0, 0]], r"file_ids must be whole numbers of shape \(N,\), got int64 of shape \(1, 3\)"),
    ],
)
def test_file_ids_that_are_not_indices_into_files_are_refused_by_name(file_ids, words):
    with pytest.raises(ValueError, match=words):
        PianoRollDataset(tiny_segments(3), file_ids, ["a.mid", "b.mid"])


def test_whole_float_file_ids_are_taken_as_ints():
    assert PianoRollDataset(tiny_segments(3), np.array([0.0, 1.0, 1.0]), ["a", "b"]).file_ids.tolist() == [0, 1, 1]


def test_files_given_as_one_string_is_refused():
    with pytest.raises(ValueError, match=r"files must be a list of file names, got one str: 'abc'"):
        PianoRollDataset(tiny_segments(3), [0, 0, 0], "abc")


@pytest.mark.parametrize(
    "packed, words",
    [
        (np.zeros((3, 352)), r"packed segments must be uint8 .* got float64"),
        (torch.zeros((3, 352), dtype=torch.int32), r"packed segments must be uint8 .* got torch\.int32"),
        ([[0] * 352], r"packed segments must have shape \(N, 352\), got list"),
    ],
)
def test_packed_rows_of_another_type_are_refused_when_made(packed, words):
    with pytest.raises(ValueError, match=words):
        PianoRollDataset.from_packed(packed)


def test_an_empty_array_of_segments_is_an_empty_dataset():
    ds = PianoRollDataset(np.zeros((0, 88, 32), np.float32))
    assert len(ds) == 0 and ds.segments.shape == (0, 88, 32)


def test_segments_of_different_sizes_are_refused_naming_the_argument():
    with pytest.raises(ValueError, match=r"segments must be an array of shape \(N, 88, 32\)"):
        PianoRollDataset([np.zeros((88, 32)), np.zeros((88, 31))])


@pytest.fixture(scope="module")
def state():
    torch.manual_seed(0)
    return MusicVAE(latent_dim=8).state_dict()


def test_a_latent_dim_megabytes_long_is_refused_in_a_short_message(tmp_path, state):
    torch.save({"config": {"latent_dim": "8" * 300_000}, "model_state": state}, tmp_path / "long.pt")
    with pytest.raises(CheckpointError, match=r"long\.pt: config latent_dim='8888.*' is not a whole number") as err:
        load_pretrained(tmp_path / "long.pt")
    assert len(str(err.value)) < 400


def test_a_tensor_name_megabytes_long_is_cut_short_in_the_message(tmp_path, state):
    torch.save(
        {"config": {"latent_dim": 8}, "model_state": {**state, "x" * 300_000: torch.zeros(3)}}, tmp_path / "k.pt"
    )
    with pytest.raises(
        CheckpointError, match=r"k\.pt: does not fit .* left over: x+\.\.\. \(300,000 characters\)"
    ) as err:
        load_pretrained(tmp_path / "k.pt")
    assert len(str(err.value)) < 600


def test_a_file_of_keys_of_mixed_types_is_not_a_checkpoint(tmp_path):
    torch.save({1: "a", "b": 2}, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match=r"mixed\.pt: not a MusicVAE checkpoint: .* found \['1', 'b'\]"):
        load_checkpoint(tmp_path / "mixed.pt")


def test_a_whole_number_torch_will_not_load_is_named_by_its_pickle_opcode(tmp_path, state):
    torch.save({"config": {"latent_dim": 10**1000}, "model_state": state}, tmp_path / "long_int.pt")
    with pytest.raises(CheckpointError, match=r"long_int\.pt: refused to load: .*Unsupported operand 139 .*LONG4"):
        load_pretrained(tmp_path / "long_int.pt")


class _CountedKey(str):
    """A key that counts how often it is formatted into a name."""

    formatted = 0

    def __format__(self, spec):
        type(self).formatted += 1
        return super().__format__(spec)

    def __str__(self):
        type(self).formatted += 1
        return super().__str__()


def test_walking_a_checkpoint_builds_no_names_until_a_message_needs_one(state):
    _CountedKey.formatted = 0
    notes = [{_CountedKey("k"): i} for i in range(50)]
    checkpoint_checks.check_loaded({"config": {"notes": notes}, "model_state": state}, "x.pt")
    assert _CountedKey.formatted == 0
    with pytest.raises(CheckpointError, match=r"x\.pt: tensor config\.notes\.0\.k is a sparse_coo tensor"):
        checkpoint_checks.check_loaded({"config": {"notes": [{_CountedKey("k"): torch.eye(2).to_sparse()}]}}, "x.pt")


def test_a_hugging_face_style_folder_is_refused_naming_the_weights_inside_and_its_config_is_never_read(tmp_path, state):
    folder = tmp_path / "music-vae-lmd"
    folder.mkdir()
    (folder / "config.json").write_text('{"latent_dim": 1000000000}')
    torch.save({"config": {"latent_dim": 8}, "model_state": state}, folder / "best_model.pt")
    with pytest.raises(CheckpointError, match=r"music-vae-lmd: not a regular file: a folder; pass the weights file "):
        load_pretrained(folder)
    assert load_pretrained(folder / "best_model.pt").latent_dim == 8
    (folder / "best_model.pt").rename(folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors \(safetensors is not read by this kit"):
        load_pretrained(folder)
