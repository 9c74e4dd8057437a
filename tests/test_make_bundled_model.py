"""scripts/make_bundled_model.py corpus-terms: the per-work terms table shipped beside the checkpoint."""

from __future__ import annotations

import csv

import pytest
from scripts_loader import load_script

make = load_script("make_bundled_model")

MANIFEST = (
    "key,cache_file,collection,title,composer,licence,redistributable,encoding_holder,split,notes,steps,seconds\n"
    'bach/bwv66.6.mxl,notes/bach/bwv66.6.npz,bach,"Chorale, with a comma",J. S. Bach,'
    "unstated-permission,False,unnamed,train,120,256,0.1\n"
    "beethoven/opus18no4.mxl,notes/beethoven/opus18no4.npz,beethoven,Quartet,Beethoven,"
    "unstated-permission,False,unnamed,heldout,9000,4000,20.5\n"
)


def test_corpus_terms_keeps_each_work_with_its_terms_and_split(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(MANIFEST)
    target = tmp_path / "pretrained" / "training_corpus.csv"
    target.parent.mkdir()
    assert make.corpus_terms(manifest, target) == 2
    rows = list(csv.reader(target.open()))
    assert rows == [
        list(make.TERMS_COLUMNS),
        ["bach/bwv66.6.mxl", "bach", "unstated-permission", "False", "train"],
        ["beethoven/opus18no4.mxl", "beethoven", "unstated-permission", "False", "heldout"],
    ]


def test_corpus_terms_refuses_a_file_that_is_not_a_rolls_manifest(tmp_path):
    manifest = tmp_path / "mix.csv"
    manifest.write_text("key,collection,segments\nbach/bwv66.6.mxl,bach,12\n")
    target = tmp_path / "training_corpus.csv"
    with pytest.raises(SystemExit, match=r"mix\.csv: not a rolls manifest, no column licence, redistributable, split"):
        make.corpus_terms(manifest, target)
    assert not target.exists()
