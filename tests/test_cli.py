"""python -m musicvae_course sample|interpolate|reconstruct: MIDI and PNG files from a checkpoint."""

from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import torch
from tiny_rolls import tiny_segments

from musicvae_course.__main__ import main
from musicvae_course.core.checkpoint import save_checkpoint
from musicvae_course.core.meter import TimeSignature, bar_lines, time_signatures
from musicvae_course.core.model import MusicVAE
from musicvae_course.core.pianoroll import LOWEST_PITCH, midi_to_pianoroll, pianoroll_to_midi


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return save_checkpoint(MusicVAE(latent_dim=8), tmp_path_factory.mktemp("ckpt") / "model.pt")


def test_more_samples_than_a_grid_draws_are_all_written_and_the_first_drawn(checkpoint, tmp_path, monkeypatch):
    """-n 1024 asked for a grid of 1,024 panels (an hour of layout): the picture shows the first MAX_GRID_PANELS."""
    from matplotlib.figure import Figure

    from musicvae_course.ui import plots

    monkeypatch.setattr(plots, "MAX_GRID_PANELS", 2)
    titles = []
    monkeypatch.setattr(Figure, "suptitle", lambda self, text, **kw: titles.append(text))
    args = ["sample", "-n", "3", "--checkpoint", str(checkpoint), "--out", str(tmp_path), "--device", "cpu"]
    assert main(args) == 0
    assert len(pretty_midi.PrettyMIDI(str(tmp_path / "sample_02.mid")).instruments) == 1
    assert midi_to_pianoroll(tmp_path / "samples.mid").shape[1] <= 3 * 32 and (tmp_path / "samples.png").is_file()
    assert titles == ["the first 2 of 3 (all 3 in samples.mid)"]


def test_sample_writes_one_midi_per_sample_and_a_picture(checkpoint, tmp_path):
    assert (
        main(
            [
                "sample",
                "-n",
                "3",
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(tmp_path),
                "--device",
                "cpu",
                "--threshold",
                "0.4",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "sample_00.mid",
        "sample_01.mid",
        "sample_02.mid",
        "samples.mid",
        "samples.png",
    ]
    assert pretty_midi.PrettyMIDI(str(tmp_path / "samples.mid")).get_end_time() > 0


def test_interpolate_between_two_midi_files(checkpoint, tmp_path):
    for name, seed in (("a.mid", 0), ("b.mid", 1)):
        pianoroll_to_midi(np.concatenate(list(tiny_segments(2, seed)), axis=-1), path=tmp_path / name)
    out = tmp_path / "out"
    assert (
        main(
            [
                "interpolate",
                "--from",
                str(tmp_path / "a.mid"),
                "--to",
                str(tmp_path / "b.mid"),
                "--steps",
                "4",
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert {p.name for p in out.iterdir()} == {
        "step_00.mid",
        "step_01.mid",
        "step_02.mid",
        "step_03.mid",
        "interpolation.mid",
        "interpolation.png",
    }
    code = main(
        [
            "interpolate",
            "--from",
            str(tmp_path / "a.mid"),
            "--segment",
            "9",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 2


def test_reconstruct_writes_original_and_reconstruction_of_equal_length(checkpoint, tmp_path, capsys):
    source = tmp_path / "song.mid"
    pianoroll_to_midi(np.concatenate(list(tiny_segments(3, 2)), axis=-1), path=source)
    out = tmp_path / "out"
    assert (
        main(["reconstruct", str(source), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"]) == 0
    )
    assert "3 segments; frame F1" in capsys.readouterr().out
    expected = np.concatenate(list(tiny_segments(3, 2)), axis=-1)  # 96 steps, the last one silent
    original = midi_to_pianoroll(out / "original.mid")
    np.testing.assert_array_equal(original, expected[:, : original.shape[1]])
    assert original.shape[1] >= 93 and not expected[:, original.shape[1] :].any()
    assert (out / "reconstruction.png").stat().st_size > 0


def test_interpolate_counts_and_draws_bars_in_the_files_meter(checkpoint, tmp_path, monkeypatch):
    # --segment 1 of a waltz is its second bar (step 12), not step 16; its frames are barred in 3/4, and the row of
    # frames as one file gets a short bar after each, so every frame starts on a downbeat
    import musicvae_course.__main__ as cli

    waltz = _waltz(tmp_path / "waltz.mid", 24, 7)
    window, signature = cli._segment_of(str(waltz), 1)
    assert signature == TimeSignature(3, 4, 0)
    assert set(window[:, :3].nonzero()[0]) == {60 + 3 - LOWEST_PITCH}  # the 4th quarter note (C4 + 3), not the 5th
    figures = {}
    monkeypatch.setattr(cli, "_png", lambda figure, path: figures.__setitem__(path.parent.name, figure) or path)
    common = ["--segment", "1", "--steps", "3", "--checkpoint", str(checkpoint), "--device", "cpu"]
    assert main(["interpolate", "--from", str(waltz), "--to", str(waltz), *common, "--out", str(tmp_path / "w")]) == 0
    for ax in figures["w"].axes[:3]:
        bars = next(c for c in ax.collections if c.get_gid() == "bar-lines")
        assert sorted(round(float(segment[0][0]) + 0.5) for segment in bars.get_segments()) == [12, 24]
    assert time_signatures(tmp_path / "w" / "step_01.mid") == [TimeSignature(3, 4, 0)]
    row = time_signatures(tmp_path / "w" / "interpolation.mid")
    assert row[:4] == [
        TimeSignature(3, 4, 0),
        TimeSignature(2, 4, 24),
        TimeSignature(3, 4, 32),
        TimeSignature(2, 4, 56),
    ]
    four = tmp_path / "four.mid"
    pianoroll_to_midi(np.concatenate(list(tiny_segments(2, 0)), axis=-1), path=four)
    assert main(["interpolate", "--from", str(waltz), "--to", str(four), *common, "--out", str(tmp_path / "x")]) == 0
    bars = next(c for c in figures["x"].axes[0].collections if c.get_gid() == "bar-lines")
    assert [round(float(segment[0][0]) + 0.5) for segment in bars.get_segments()] == [16]  # two meters: 4/4


def _waltz(path: Path, n_notes: int, span: int) -> Path:
    """A MIDI file in 3/4 from tick 0: ``n_notes`` quarter notes climbing through ``span`` semitones from C4."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    piano = pretty_midi.Instrument(0)
    piano.notes = [pretty_midi.Note(80, 60 + i % span, i * 0.5, i * 0.5 + 0.45) for i in range(n_notes)]
    pm.instruments.append(piano)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(3, 4, 0))
    pm.write(str(path))
    return path


def test_reconstruct_picture_draws_the_files_own_bars_and_says_which(checkpoint, tmp_path, monkeypatch):
    import musicvae_course.__main__ as cli

    source = _waltz(tmp_path / "waltz.mid", 48, 7)  # 3/4: a bar is 12 sixteenths
    figures = {}
    monkeypatch.setattr(cli, "_png", lambda figure, path: figures.setdefault(path.name, figure) and path)
    args = ["reconstruct", str(source), "--checkpoint", str(checkpoint), "--out", str(tmp_path), "--device", "cpu"]
    assert main(args) == 0
    figure = figures["reconstruction.png"]
    (title,) = [text.get_text() for text in figure.texts]  # the suptitle
    # 128 steps shown = 10 2/3 bars of 3/4 (11 begun), not "8 bars"; the whole file's F1 is named as such
    assert title.startswith("waltz.mid (3/4): bars 1-11 shown; whole file (") and "frame F1" in title
    for written in ("original.mid", "reconstruction.mid"):  # and the files keep the waltz's meter
        assert time_signatures(tmp_path / written) == [TimeSignature(3, 4, 0)]
    bars = next(c for c in figure.axes[0].collections if c.get_gid() == "bar-lines")
    assert sorted(float(segment[0][0]) for segment in bars.get_segments()) == [s - 0.5 for s in range(12, 128, 12)]


def test_reconstruct_bars_a_pickup_the_file_writes_with_the_full_signature(checkpoint, tmp_path, monkeypatch):
    # music21 writes a hymn's quarter-note pickup under a plain 3/4 from tick 0: its bars are 4 steps late
    import musicvae_course.__main__ as cli

    source = _waltz(tmp_path / "hymn.mid", 25, 5)
    figures = {}
    monkeypatch.setattr(cli, "_png", lambda figure, path: figures.__setitem__(path.parent.name, figure) or path)
    for pickup in ("0", "4"):
        args = ["reconstruct", str(source), "--checkpoint", str(checkpoint), "--device", "cpu", "--pickup", pickup]
        assert main([*args, "--out", str(tmp_path / pickup)]) == 0
    for pickup, first in (("0", [12, 24, 36]), ("4", [4, 16, 28])):
        bars = next(c for c in figures[pickup].axes[0].collections if c.get_gid() == "bar-lines")
        assert sorted(round(float(segment[0][0]) + 0.5) for segment in bars.get_segments())[:3] == first
    with pytest.raises(SystemExit):
        main(["reconstruct", str(source), "--pickup", "-4"])


def test_reconstruct_reads_the_meter_from_any_track_and_says_when_a_file_has_none(checkpoint, tmp_path, monkeypatch):
    import mido

    import musicvae_course.__main__ as cli

    def write(name, meter_events):
        mid = mido.MidiFile(type=1, ticks_per_beat=96)  # a DAW export: tempo alone in track 0, meter with the notes
        mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000)]))
        notes = []
        for i in range(48):  # eighth notes, 96 steps: 8 bars of 6/8
            pitch = 60 + i % 7
            notes += [
                mido.Message("note_on", note=pitch, time=8 if i else 0),
                mido.Message("note_off", note=pitch, time=40),
            ]
        mid.tracks.append(mido.MidiTrack(meter_events + notes))
        mid.save(str(tmp_path / name))
        return str(tmp_path / name)

    figures = {}
    monkeypatch.setattr(cli, "_png", lambda figure, path: figures.__setitem__(path.parent.name, figure) or path)
    jig = write("jig.mid", [mido.MetaMessage("time_signature", numerator=6, denominator=8)])
    plain = write("plain.mid", [])
    for source in (jig, plain):
        out = tmp_path / Path(source).stem
        assert main(["reconstruct", source, "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"]) == 0
    (title,) = [text.get_text() for text in figures["jig"].texts]
    assert title.startswith("jig.mid (6/8): bars 1-")  # pretty_midi alone read 4/4: the meter is not in track 0
    bars = next(c for c in figures["jig"].axes[0].collections if c.get_gid() == "bar-lines")
    assert sorted(float(segment[0][0]) + 0.5 for segment in bars.get_segments())[:3] == [12, 24, 36]
    assert time_signatures(tmp_path / "jig" / "original.mid") == [TimeSignature(6, 8, 0)]
    (title,) = [text.get_text() for text in figures["plain"].texts]
    assert title.startswith("plain.mid (no time signature: 4/4): bars 1-")
    odd = tmp_path / "odd.mid"  # a 4/128 signature: its notes are still reconstructed, in 4/4 bars, and it says so
    odd.write_bytes(Path(jig).read_bytes().replace(b"\xff\x58\x04\x06\x03", b"\xff\x58\x04\x04\x07"))
    assert main(["reconstruct", str(odd), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "odd")]) == 0
    (title,) = [text.get_text() for text in figures["odd"].texts]
    assert title.startswith("odd.mid (a time signature the kit cannot bar: 4/4): bars 1-")
    assert time_signatures(tmp_path / "odd" / "original.mid") == [TimeSignature(4, 4, 0)]  # as drawn


OTHER_PROGRAMS = Path(__file__).parent / "fixtures" / "midi_other_programs"


def test_reconstruct_writes_a_pickup_given_with_pickup_as_a_short_first_bar(checkpoint, tmp_path):
    # LilyPond writes \partial 8 of a 6/8 jig under 6/8 from tick 0; drawn with --pickup 2 after its pickup, the
    # written files were barred from step 0 (2 steps early): they now mark the pickup as a short bar (1/8)
    source = OTHER_PROGRAMS / "ly_jig68.mid"
    args = ["reconstruct", str(source), "--checkpoint", str(checkpoint), "--device", "cpu", "--pickup", "2"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    for written in ("original.mid", "reconstruction.mid"):
        assert time_signatures(tmp_path / written) == [TimeSignature(1, 8, 0), TimeSignature(6, 8, 2)]
        assert bar_lines(tmp_path / written)[1:4] == bar_lines(source, pickup_steps=2)[:3] == [2, 14, 26]


def test_interpolate_counts_bars_after_a_pickup_given_with_pickup(checkpoint, tmp_path):
    # abc2midi and LilyPond write a pickup under the full signature: --segment 0 is the first full bar after it
    import musicvae_course.__main__ as cli

    source = str(OTHER_PROGRAMS / "ly_pickup44.mid")  # G3 pickup (4 steps), then C4 on the downbeat
    window, signature = cli._segment_of(source, 0, 4)
    assert signature == TimeSignature(4, 4, 0)
    assert set(window[:, 0].nonzero()[0]) == {60 - LOWEST_PITCH}
    common = ["--steps", "2", "--checkpoint", str(checkpoint), "--device", "cpu", "--pickup", "4"]
    assert main(["interpolate", "--from", source, "--to", source, *common, "--out", str(tmp_path)]) == 0
    with pytest.raises(SystemExit):
        main(["interpolate", "--from", source, "--pickup", "65", "--out", str(tmp_path)])


def test_commands_close_the_figures_they_draw(checkpoint, tmp_path):
    # pyplot keeps each figure until it is closed: main() called in a loop (a notebook, a batch) kept them all
    import matplotlib.pyplot as plt

    source = OTHER_PROGRAMS / "abc_reel.mid"
    before = set(plt.get_fignums())
    for run in range(2):
        args = ["reconstruct", str(source), "--checkpoint", str(checkpoint), "--device", "cpu"]
        assert main([*args, "--out", str(tmp_path / str(run))]) == 0
        sample = ["sample", "-n", "2", "--checkpoint", str(checkpoint), "--device", "cpu"]
        assert main([*sample, "--out", str(tmp_path / f"s{run}")]) == 0
    assert set(plt.get_fignums()) == before


def test_a_pickup_the_file_marks_with_a_short_bar_is_not_bar_1(checkpoint, tmp_path, monkeypatch):
    # MuseScore writes a jig's eighth-note pickup as a 1/8 bar before 6/8: the title called it bar 1 and
    # interpolate's --segment 0 started on it, where the same tune's pickup given with --pickup 2 is no bar
    import musicvae_course.__main__ as cli

    marked, unmarked = OTHER_PROGRAMS / "ms_jig.mid", OTHER_PROGRAMS / "abc_jig.mid"
    window, signature = cli._segment_of(str(marked), 0)
    np.testing.assert_array_equal(window, midi_to_pianoroll(marked)[:, 2:34])
    assert signature == TimeSignature(6, 8, 0)
    np.testing.assert_array_equal(cli._segment_of(str(marked), 1)[0], midi_to_pianoroll(marked)[:, 14:46])
    figures = {}
    monkeypatch.setattr(cli, "_png", lambda figure, path: figures.__setitem__(path.parent.name, figure) or path)
    common = ["--checkpoint", str(checkpoint), "--device", "cpu"]
    assert main(["reconstruct", str(marked), *common, "--out", str(tmp_path / "marked")]) == 0
    assert main(["reconstruct", str(unmarked), *common, "--pickup", "2", "--out", str(tmp_path / "unmarked")]) == 0
    titles = {name: figure.texts[0].get_text() for name, figure in figures.items()}
    assert titles["marked"].startswith("ms_jig.mid (1/8, 6/8): pickup and bars 1-11 shown")
    assert titles["unmarked"].startswith("abc_jig.mid (6/8): pickup and bars 1-11 shown")
