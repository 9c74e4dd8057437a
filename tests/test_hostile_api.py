"""API misuse: wrong dtypes, NaN and out-of-range values, absurd arguments, duplicated files.

What is safe to cast is cast (bool or float64 into the model); the rest is refused with an error naming the
argument, never silently turned into notes or a silent MIDI file.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from midi_corpus import _write_notes
from tiny_rolls import tiny_segments

from musicvae_course.core.data import PianoRollDataset, build_dataset, split_by_file
from musicvae_course.core.model import MusicVAE
from musicvae_course.core.pianoroll import pianoroll_to_midi, segments


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MusicVAE(latent_dim=8).eval()


@pytest.fixture(scope="module")
def x():
    return torch.from_numpy(tiny_segments(3)[:, None])  # bool (3, 1, 88, 32)


@pytest.mark.parametrize("dtype", [torch.bool, torch.float64, torch.float16, torch.uint8, torch.int64])
def test_the_model_casts_safe_input_types(model, x, dtype):
    expected = model(x.float())
    for ours, theirs in zip(model(x.to(dtype)), expected):
        assert ours.dtype == torch.float32 and torch.allclose(ours, theirs, atol=1e-6)


def test_the_model_takes_a_numpy_roll(model, x):
    assert torch.equal(model(x.numpy())[0], model(x.float())[0])


@pytest.mark.parametrize(
    "bad, error, words",
    [
        (torch.zeros(2, 1, 88, 32, dtype=torch.complex64), TypeError, "complex"),
        (torch.full((2, 1, 88, 32), float("nan")), ValueError, "NaN"),
        (torch.full((2, 1, 88, 32), 2.0), ValueError, r"values in \[2, 2\]"),
        (-torch.ones(2, 1, 88, 32), ValueError, r"\[-1, -1\]"),
        (torch.zeros(2, 88, 32), ValueError, r"\(B, 1, 88, 32\)"),
        ("a roll", TypeError, "str"),
    ],
    ids=["complex", "nan", "above_one", "negative", "wrong_shape", "string"],
)
def test_the_model_refuses_what_it_cannot_read_by_name(model, bad, error, words):
    with pytest.raises(error, match=words):
        model(bad)


@pytest.mark.parametrize("value", [float("nan"), 0.01, -1.0, 2.0])
def test_non_binary_values_never_become_notes(value):
    rolls = tiny_segments(2).astype(np.float32)
    rolls[0, 5, 5] = value
    with pytest.raises(ValueError, match="segments must hold only 0 and 1"):
        PianoRollDataset(rolls)
    with pytest.raises(ValueError, match="roll must hold only 0 and 1"):
        segments(np.concatenate(list(rolls), axis=-1))


def test_zero_one_numbers_are_accepted_as_binary():
    rolls = tiny_segments(2)
    assert np.array_equal(PianoRollDataset(rolls.astype(np.float64)).segments, rolls)
    assert np.array_equal(segments(rolls[0].astype(np.uint8)), segments(rolls[0]))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"velocity": 0}, "velocity"),
        ({"velocity": 128}, "velocity"),
        ({"velocity": 60.5}, "velocity"),
        ({"bpm": 0}, "bpm"),
        ({"bpm": float("nan")}, "bpm"),
        ({"bpm": float("inf")}, "bpm"),
        ({"bpm": 1e9}, "bpm"),
        ({"threshold": 0}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"program": 128}, "program"),
    ],
)
def test_midi_writing_arguments_are_checked_by_name(kwargs, words, tmp_path):
    with pytest.raises(ValueError, match=words):
        pianoroll_to_midi(tiny_segments(1)[0], path=tmp_path / "out.mid", **kwargs)
    assert not (tmp_path / "out.mid").exists()


def test_rolls_with_nan_are_refused_when_writing_midi():
    roll = np.full((88, 8), np.nan, np.float32)
    with pytest.raises(ValueError, match="NaN"):
        pianoroll_to_midi(roll)


def test_split_by_file_keeps_identical_files_together(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(10):
        _write_notes(folder / f"piece_{i}.mid", [(50 + i, 0, 480), (60 + i, 480, 1920)])
    for i in range(10):  # each piece twice more, under other names
        shutil.copy(folder / f"piece_{i}.mid", folder / f"copy_a_{i}.mid")
        shutil.copy(folder / f"piece_{i}.mid", folder / f"copy_b_{i}.mid")
    ds = build_dataset(folder, workers=0, progress=False)
    for seed in range(5):
        parts = split_by_file(ds, (0.6, 0.2, 0.2), seed=seed)
        contents = [{bytes(row) for row in part.packed} for part in parts]
        assert not (contents[0] & contents[1] or contents[0] & contents[2] or contents[1] & contents[2])
        assert sum(len(p) for p in parts) == len(ds)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"workers": -1}, "workers"),
        ({"max_files": 0}, "max_files"),
        ({"timeout": 0}, "timeout"),
        ({"max_seconds": float("nan")}, "max_seconds"),
        ({"reader": "fastest"}, "reader"),
        ({"fraction": 0}, "fraction"),
    ],
)
def test_build_arguments_are_checked_by_name(tmp_path, kwargs, words):
    _write_notes(tmp_path / "a.mid", [(60, 0, 480)])
    with pytest.raises(ValueError, match=words):
        build_dataset(tmp_path, progress=False, **kwargs)


def test_split_fractions_are_checked(tmp_path):
    ds = PianoRollDataset(tiny_segments(4), np.arange(4), [f"{i}.mid" for i in range(4)])
    for fractions in [(0.5, float("nan")), (1.5, -0.5), (0.5, 0.1)]:
        with pytest.raises(ValueError, match="fractions"):
            split_by_file(ds, fractions)


def test_a_dataset_npz_declaring_too_much_is_refused_before_loading(tmp_path, monkeypatch):
    from musicvae_course.core import midi_limits
    from musicvae_course.core.data import load_dataset

    path = PianoRollDataset(tiny_segments(4), np.arange(4), [f"{i}.mid" for i in range(4)]).save_npz(tmp_path / "d.npz")
    assert len(load_dataset(path)) == 4
    monkeypatch.setattr(midi_limits, "MAX_DATASET_BYTES", 100)
    with pytest.raises(ValueError, match=r"d\.npz: declares .*MAX_DATASET_BYTES"):
        load_dataset(path)
    (tmp_path / "x.npz").write_text("not a zip")
    with pytest.raises(ValueError, match=r"x\.npz: not a dataset"):
        load_dataset(tmp_path / "x.npz")


def _npy_header(shape, descr: str) -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    header += " " * (63 - len(header) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()


def _odd_npz(path, kind):
    import zipfile

    if kind == "huge_shape":  # 138 bytes declaring 352 TB: numpy tried to allocate it (a bare MemoryError)
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("packed.npy", _npy_header((10**12, 352), "|u1"))
        return r"packed\.npy of shape \(1000000000000, 352\) declares 352,000,000,000,000 bytes, holds 138"
    arrays = {"packed": np.zeros((2, 352), np.uint8), "file_ids": np.array([0, 1]), "files": np.array(["a", "b"])}
    arrays.update(
        {
            "objects": {"packed": np.array([{}, 1], dtype=object)},  # "Object arrays cannot be loaded ..."
            "no_packed": {"packed": None},  # "KeyError: 'packed is not a file in the archive'"
            "float_rows": {"packed": np.zeros((2, 352))},  # accepted, then unpackbits failed on every segment
            "ids_past_files": {"file_ids": np.array([0, 7])},  # accepted: split_by_file named no file for id 7
        }[kind]
    )
    np.savez(path, **{name: array for name, array in arrays.items() if array is not None})
    return {
        "objects": "packed.npy of shape \\(2,\\) declares objects",
        "no_packed": "not a dataset .npz of save_npz .*has \\{'file_ids'",
        "float_rows": "not a dataset .npz of save_npz .*'packed': 'float64\\(2, 352\\)'",
        "ids_past_files": "file_ids 0..7 outside the 2 files",
    }[kind]


@pytest.mark.parametrize("kind", ["huge_shape", "objects", "no_packed", "float_rows", "ids_past_files"])
def test_a_dataset_npz_that_save_npz_did_not_write_is_refused_naming_the_file(tmp_path, kind):
    from musicvae_course.core.data import load_dataset

    path = tmp_path / "odd.npz"
    words = _odd_npz(path, kind)
    with pytest.raises(ValueError, match=rf"odd\.npz: .*{words}"):
        load_dataset(path)


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n": -2}, {"n": 10**9}, {"n": 2.5}, {"temperature": float("nan")}])
def test_sampling_arguments_are_checked_before_allocating(model, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        model.sample(**kwargs)


def test_dataset_batch_sizes_and_file_choices_are_checked():
    ds = PianoRollDataset(tiny_segments(4), np.arange(4), [f"{i}.mid" for i in range(4)])
    with pytest.raises(ValueError, match="batch_size"):
        next(ds.batches(0))
    for kwargs in ({"max_files": -1}, {"max_files": 0}, {"fraction": float("nan")}, {"path_filter": 3}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            ds.select_files(**kwargs)
    assert len(ds.select_files(max_files=2)) == 2
