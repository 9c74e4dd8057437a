"""The corpus export finding a link where a work's MIDI file goes: it is replaced, never written through.

Before, music21 opened the path as it was: a link left in ``OUT/midi/`` had the MIDI written into the file it
named, outside the build.
"""

from __future__ import annotations

import pytest

from musicvae_course.corpus.export import export_work
from musicvae_course.corpus.works import Work

pytest.importorskip("music21")


def test_a_link_at_the_output_path_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("not the build's to write")
    out = tmp_path / "build" / "midi" / "essenFolksong" / "zuccal0.abc__n181.mid"
    out.parent.mkdir(parents=True)
    out.symlink_to(victim)
    export_work(Work("essenFolksong/zuccal0.abc", 181), out)
    assert victim.read_text() == "not the build's to write"
    assert not out.is_symlink() and out.read_bytes()[:4] == b"MThd"
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no partial file left
