"""The notebook layer as a student calls it: rolls of MIDI files drawn in their own bars with bar numbers, long
rolls that stay readable, clear errors for the shapes and arguments students get wrong, figures shown once in
Jupyter, and audio and widget arguments checked by name."""

import matplotlib

matplotlib.use("Agg")

import pickle  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pretty_midi  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from musicvae_course.core.meter import meter  # noqa: E402
from musicvae_course.core.model import MusicVAE  # noqa: E402
from musicvae_course.core.pianoroll import midi_to_pianoroll, roll_batch  # noqa: E402
from musicvae_course.ui import audio, compare, plots, rolldraw, widgets  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _midi(path, signatures, n_steps):
    """A MIDI file of eighth notes over ``n_steps`` sixteenths at 120 bpm, with ``(num, den, step)`` signatures."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    piano = pretty_midi.Instrument(0)
    step = 60 / 120 / 4
    piano.notes = [pretty_midi.Note(80, 60 + (s // 2) % 12, s * step, (s + 2) * step) for s in range(0, n_steps, 2)]
    pm.instruments.append(piano)
    pm.time_signature_changes = [pretty_midi.TimeSignature(n, d, s * step) for n, d, s in signatures]
    pm.write(str(path))
    return path


def _bar_line_xs(ax):
    lines = [c for c in ax.collections if c.get_gid() == "bar-lines"]
    return sorted(float(segment[0, 0]) for segment in lines[0].get_segments()) if lines else []


def _bar_number_labels(ax):
    """(x, text) of the bar numbers printed above ``ax``."""
    tops = [child for child in ax.child_axes if child.get_gid() == "bar-numbers"]
    if not tops:
        return []
    ticks = tops[0].xaxis.get_majorticklocs()
    return [(float(x), label.get_text()) for x, label in zip(ticks, tops[0].xaxis.get_majorticklabels())]


@pytest.mark.parametrize(
    "signatures, n_steps, bars, labels",
    [
        ([(3, 4, 0)], 48, [12, 24, 36], ["bar 1 (3/4)", "2", "3", "4"]),
        ([(6, 8, 0)], 48, [12, 24, 36], ["bar 1 (6/8)", "2", "3", "4"]),
        ([(5, 4, 0)], 60, [20, 40], ["bar 1 (5/4)", "2", "3"]),
        ([(7, 8, 0)], 56, [14, 28, 42], ["bar 1 (7/8)", "2", "3", "4"]),
        ([(12, 8, 0)], 48, [24], ["bar 1 (12/8)", "2"]),
        ([(2, 2, 0)], 48, [16, 32], ["bar 1 (2/2)", "2", "3"]),
        # a pickup marked as MuseScore marks it (1/4, then 3/4): not numbered, bar 1 is the first full bar
        ([(1, 4, 0), (3, 4, 4)], 52, [4, 16, 28, 40], ["bar 1 (3/4)", "2", "3", "4"]),
        # a change of meter: numbered on, the new signature printed where it starts
        ([(4, 4, 0), (3, 4, 16), (6, 8, 28)], 64, [16, 28, 40, 52], ["bar 1 (4/4)", "2 (3/4)", "3 (6/8)", "4", "5"]),
    ],
)
def test_a_midi_file_is_drawn_with_bar_lines_and_bar_numbers_where_its_bars_are(
    tmp_path, signatures, n_steps, bars, labels
):
    path = _midi(tmp_path / "piece.mid", signatures, n_steps)
    figure = plots.visualize_pianoroll(midi_to_pianoroll(path), bar_lines=meter(path))
    ax = figure.axes[0]
    assert _bar_line_xs(ax) == [b - 0.5 for b in bars]
    printed = _bar_number_labels(ax)
    assert [text for _, text in printed] == labels
    first_numbered = bars[0] if signatures[0][:2] == (1, 4) else 0
    assert [x for x, _ in printed] == [s - 0.5 for s in [first_numbered, *[b for b in bars if b > first_numbered]]]


def test_a_pickup_given_in_steps_and_a_window_cut_from_the_piece_number_the_pieces_bars(tmp_path):
    path = _midi(tmp_path / "hymn.mid", [(6, 8, 0)], 120)
    hymn = meter(path, pickup_steps=6)  # bars start at 6, 18, 30, ...: bar 1 at step 6
    roll = midi_to_pianoroll(path)
    ax = plots.visualize_pianoroll(roll[:, :64], bar_lines=hymn).axes[0]
    assert [text for _, text in _bar_number_labels(ax)] == ["bar 1 (6/8)", "2", "3", "4", "5"]
    window = plots.visualize_pianoroll(roll[:, 40:88], bar_lines=hymn, start=40).axes[0]
    assert _bar_number_labels(window) == [(1.5, "bar 4 (6/8)"), (13.5, "5"), (25.5, "6"), (37.5, "7")]


def test_grids_and_comparisons_number_their_bars_too():
    grid = plots.plot_pianoroll_grid(np.zeros((8, 88, 48), bool), time_signature="3/4")
    numbered = [ax for ax in grid.axes if _bar_number_labels(ax)]
    assert len(numbered) == 4  # the first row; the rows below share its steps
    assert [t for _, t in _bar_number_labels(numbered[0])] == ["bar 1 (3/4)", "2", "3", "4"]
    figure = compare.compare_pianorolls(np.zeros((88, 32), bool), np.zeros((88, 32)), time_signature="6/8")
    assert [[t for _, t in _bar_number_labels(ax)] for ax in figure.axes[:3]] == [["bar 1 (6/8)", "2", "3"]] * 3
    # matplotlib figures pickle; the bar-number axis and the display hook must not stop that
    again = pickle.loads(pickle.dumps(figure))
    assert [t for _, t in _bar_number_labels(again.axes[0])] == ["bar 1 (6/8)", "2", "3"]


def test_a_roll_of_ten_thousand_steps_shows_its_notes_and_a_readable_grid():
    roll = np.zeros((88, 10_000), bool)
    rng = np.random.default_rng(0)
    steps = np.sort(rng.choice(10_000, 60, replace=False))
    roll[60 - 21, steps] = True  # 60 notes of one step each on middle C
    figure = plots.visualize_pianoroll(roll, pitch_range=(48, 72), figsize=(8, 4))
    ax = figure.axes[0]
    width_in = figure.get_figwidth() * ax.get_position().width
    # 624 bar lines on 7 inches were a grey wash; at most one every tenth of an inch now, no beat lines
    assert 0 < len(_bar_line_xs(ax)) <= width_in / 0.1
    assert not any(c.get_gid() == "beat-lines" and len(c.get_segments()) for c in ax.collections)
    labels = [t for _, t in _bar_number_labels(ax)]
    assert labels[0] == "bar 1 (4/4)" and 3 <= len(labels) <= 30
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(int)
    (x0, y0), (x1, y1) = ax.transData.transform([(-0.5, 59.5), (9_999.5, 60.5)])  # middle C's row, in pixels
    height = pixels.shape[0]  # the buffer's rows run top down, display y bottom up
    band = pixels[height - int(y1) + 1 : height - int(y0) - 1, int(x0) + 1 : int(x1) - 1]
    dark_columns = np.flatnonzero((band.sum(axis=2) < 200).any(axis=0))
    # nearest-neighbour drawing showed one column in 14: most of the 60 notes vanished
    runs = 1 + int((np.diff(dark_columns) > 1).sum()) if dark_columns.size else 0
    assert runs >= 50


def test_a_whole_subplot_grid_given_as_ax_is_named_in_the_error():
    _, axes = plt.subplots(2, 2)
    with pytest.raises(ValueError, match=r"ax must be one matplotlib Axes \(e\.g\. axes\[0, 1\].*4 axes"):
        plots.visualize_pianoroll(np.zeros((88, 32), bool), ax=axes)
    _, one = plt.subplots(1, 1, squeeze=False)
    assert plots.visualize_pianoroll(np.zeros((88, 32), bool), ax=one) is one[0, 0].figure


@pytest.mark.parametrize(
    "call",
    [
        lambda roll: plots.visualize_pianoroll(roll),
        lambda roll: compare.compare_pianorolls(roll, roll),
        lambda roll: audio.render(roll),
    ],
)
def test_a_transposed_roll_and_a_128_pitch_roll_are_told_what_they_look_like(call):
    with pytest.raises(ValueError, match=r"transposed, time first: pass roll\.T"):
        call(np.zeros((32, 88)))
    with pytest.raises(ValueError, match=r"128 rows are all MIDI pitches.*roll\[\.\.\., 21:109, :\]"):
        call(np.zeros((128, 32)))


def test_bad_grid_lists_ranges_and_starts_are_named():
    with pytest.raises(ValueError, match=r"rolls\[1\] has 16 steps and rolls\[0\] 32"):
        plots.plot_pianoroll_grid([np.zeros((88, 32)), np.zeros((88, 16))])
    with pytest.raises(ValueError, match="rolls is an empty list"):
        plots.plot_pianoroll_grid([])
    with pytest.raises(ValueError, match=r"pitch_range must be None, 'used' or MIDI \(low, high\); got \(60, 70, 80\)"):
        plots.visualize_pianoroll(np.zeros((88, 32)), pitch_range=(60, 70, 80))
    with pytest.raises(ValueError, match=r"start must be a whole step >= 0"):
        plots.visualize_pianoroll(np.zeros((88, 32)), start=-5)


def test_a_tensor_that_requires_grad_draws_and_sounds_without_a_warning():
    probabilities = torch.rand(1, 1, 88, 32, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Converting a tensor with requires_grad=True to a scalar" was printed
        plots.visualize_pianoroll(probabilities)
        plots.plot_pianoroll_grid(torch.rand(2, 1, 88, 32, requires_grad=True))
        compare.compare_pianorolls(probabilities, probabilities)
        audio.render(probabilities, instrument="sine")
        roll_batch(probabilities)  # the core's shape check, under every plot and the model's input check


_JUPYTER = """
from IPython.core.interactiveshell import InteractiveShell
InteractiveShell.enable_gui = lambda self, gui=None: None  # a kernel has one; the inline backend needs no GUI
shell = InteractiveShell.instance()
shown = []
shell.display_pub.publish = lambda data, metadata=None, **kw: shown.append("image/png" in data)
shell.displayhook.write_format_data = lambda data, md=None: shown.append("image/png" in data)
shell.run_cell("%matplotlib inline")
shell.run_cell("import numpy as np\\nfrom musicvae_course import visualize_pianoroll, plot_pianoroll_grid")
for cell in ["visualize_pianoroll(np.zeros((88, 32), bool))", "plot_pianoroll_grid(np.zeros((2, 88, 32), bool))",
             "fig = visualize_pianoroll(np.zeros((88, 32), bool))", "fig",
             "import matplotlib.pyplot as plt\\nplt.ioff()\\nvisualize_pianoroll(np.zeros((88, 32), bool))"]:
    shown.clear()
    shell.run_cell(cell)
    print("PNGS", sum(shown))
"""


def test_a_figure_left_as_the_cells_value_is_shown_once_in_jupyter():
    # a cell ending in visualize_pianoroll(x) without ";" showed the picture twice (display hook + inline backend)
    done = subprocess.run([sys.executable, "-c", _JUPYTER], capture_output=True, text=True, timeout=300)
    counts = re.findall(r"PNGS (\d+)", done.stdout)
    assert counts == ["1"] * 5, done.stdout + done.stderr


def test_audio_arguments_of_the_wrong_kind_are_named():
    roll = np.zeros((88, 32), bool)
    with pytest.raises(ValueError, match=r"bpm must be a positive number .* got '120'"):
        audio.render(roll, bpm="120")
    with pytest.raises(ValueError, match=r"sample_rate must be an integer .* got nan"):
        audio.render(roll, sample_rate=float("nan"))
    with pytest.raises(ValueError, match=r"sample_rate must be an integer .* got 0"):
        audio.to_wav_bytes(np.zeros(100, np.float32), 0)
    with pytest.raises(ValueError, match="waveform contains NaN"):
        audio.to_wav_bytes(np.array([0.0, np.nan], np.float32))


def test_widgets_name_a_code_or_directions_of_another_latent_size():
    model = MusicVAE(latent_dim=8).eval()
    with pytest.raises(ValueError, match=r"z1 has 256 numbers; this model's codes have latent_dim = 8"):
        widgets.interpolation_frame(model, torch.zeros(256), torch.zeros(256), 0.5)
    with pytest.raises(ValueError, match=r"directions must have shape \(k, latent_dim\) = \(k, 8\).*\(2, 256\)"):
        widgets.latent_sliders_widget(model, torch.zeros(8), torch.randn(2, 256), with_audio=False)
    with pytest.raises(ValueError, match=r"z_base has 256 numbers"):
        widgets.latent_sliders_widget(model, torch.zeros(256), torch.randn(2, 8), with_audio=False)
    with pytest.raises(ValueError, match=r"n_variations must be a whole number from 1 to 16, got 0"):
        rolldraw.drawable_roll_widget(model, n_variations=0)
    box = widgets.temperature_widget(model, temperature=5.0, with_audio=False)
    assert widgets.find_widgets(box, "mvc-temperature-slider")[0].value == 5.0  # was clamped to 2 silently


def test_an_empty_roll_says_it_has_no_notes_instead_of_looking_like_a_failed_picture():
    def said(ax):
        return [text.get_text() for text in ax.texts]

    assert said(plots.visualize_pianoroll(np.zeros((88, 32), bool)).axes[0]) == ["no notes"]
    faint = np.full((3, 88, 32), 0.2, np.float32)
    faint[1, 40, :8] = 0.9
    grid = plots.plot_pianoroll_grid(faint, threshold=0.5)
    assert [said(ax) for ax in grid.axes[:3]] == [["no notes at threshold 0.5"], [], ["no notes at threshold 0.5"]]
    assert said(plots.visualize_pianoroll(faint[0]).axes[0]) == []  # faint probabilities are drawn, not "no notes"
