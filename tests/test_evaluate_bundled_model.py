"""scripts/evaluate_bundled_model.py: which MIDI counts as "outside the training sources"."""

from __future__ import annotations

from pathlib import Path

from scripts_loader import load_script

evaluate = load_script("evaluate_bundled_model")


def test_outside_sets_leave_out_a_source_whose_package_is_missing_and_say_so(monkeypatch, capsys):
    present = {"/usr/share/planetblupi/music/*.mid": ["/usr/share/planetblupi/music/music000.mid"]}
    monkeypatch.setattr(evaluate.glob, "glob", lambda pattern, recursive=False: present.get(pattern, []))
    sets = evaluate.outside_sets()
    assert list(sets) == ["Planet Blupi game music (planetblupi-music-midi)"]
    assert sets["Planet Blupi game music (planetblupi-music-midi)"] == ["/usr/share/planetblupi/music/music000.mid"]
    err = capsys.readouterr().err
    assert "music21 test MIDI" in err and "OpenMSX" in err and "left out" in err


def test_no_outside_source_shares_a_folder_with_the_training_sources():
    # the training mix reads music21's corpus/ and our own MMA renders; outside sets must not overlap them
    import music21

    corpus = Path(music21.__file__).parent / "corpus"
    for name, files in evaluate.outside_sets().items():
        for f in files:
            assert corpus not in Path(f).parents, (name, f)
