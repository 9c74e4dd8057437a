"""``python -m musicvae_course.corpus`` given a FIFO, a link or a folder where it writes the held-out list.

Before: ``--write-heldout FIFO`` blocked forever opening the FIFO; a link there was written through (into the file
it named, outside the path given); a folder there, or a file given as ``--samples``, failed after listing every
work with ``[Errno 21] Is a directory: 'x'`` or ``[Errno 17] File exists: 'x'``, naming no option, and every
message was printed as a repr, in quotes. ``python -m musicvae_course sample --out FILE`` loaded the model, then
failed with ``[Errno 17] File exists``.
"""

from __future__ import annotations

import os

import pytest

from musicvae_course.corpus import cli, works


def test_a_fifo_given_as_the_held_out_list_is_replaced_not_opened(tmp_path):
    os.mkfifo(tmp_path / "heldout.txt")
    works.write_heldout(["bach/bwv1.mxl"], tmp_path / "heldout.txt")
    assert (tmp_path / "heldout.txt").read_text().endswith("\nbach/bwv1.mxl\n")


def test_a_link_given_as_the_held_out_list_is_replaced_not_written_through(tmp_path):
    (tmp_path / "victim.txt").write_text("precious")
    (tmp_path / "heldout.txt").symlink_to(tmp_path / "victim.txt")
    works.write_heldout(["bach/bwv1.mxl"], tmp_path / "heldout.txt")
    assert (tmp_path / "victim.txt").read_text() == "precious"
    assert not (tmp_path / "heldout.txt").is_symlink() and works.read_heldout(tmp_path / "heldout.txt") == {
        "bach/bwv1.mxl"
    }


@pytest.mark.parametrize(
    "option, make, words",
    [
        ("--write-heldout", os.mkdir, "is a folder, not a file"),
        ("--samples", lambda path: open(path, "w").close(), "is a file, not a folder"),
    ],
)
def test_a_folder_or_file_in_the_wrong_place_is_one_line_naming_the_option(
    tmp_path, capsys, monkeypatch, option, make, words
):
    monkeypatch.setattr(cli, "list_works", lambda *args: pytest.fail("listed the works before checking the paths"))
    make(tmp_path / "x")
    assert cli.main([option, str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"python -m musicvae_course.corpus: error: {option} {tmp_path / 'x'}: {words}"]


def test_the_demo_command_names_an_out_that_is_a_file_before_loading_a_model(tmp_path, capsys, monkeypatch):
    from musicvae_course import __main__ as demo
    from musicvae_course.core import checkpoint

    monkeypatch.setattr(checkpoint, "load_pretrained", lambda *a, **k: pytest.fail("loaded a model first"))
    (tmp_path / "x").write_text("")
    assert demo.main(["sample", "--out", str(tmp_path / "x"), "-n", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"python -m musicvae_course sample: error: --out {tmp_path / 'x'}: is a file, not a folder"]
