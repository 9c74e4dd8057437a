"""Piano-roll figures: accepted shapes, note-name axis, bar lines, difference classes, fast view."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from musicvae_course.core.pianoroll import pitch_name  # noqa: E402
from musicvae_course.ui import compare, plots, rollview  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _roll(cells, n_steps=32):
    """A bool roll with notes at ``{midi_pitch: (start, end)}``."""
    roll = np.zeros((88, n_steps), dtype=bool)
    for pitch, (start, end) in cells.items():
        roll[pitch - 21, start:end] = True
    return roll


def _line_xs(ax, gid):
    collections = [c for c in ax.collections if c.get_gid() == gid]
    if not collections:
        return []
    return sorted(float(segment[0, 0]) for segment in collections[0].get_segments())


@pytest.mark.parametrize(
    "make, is_batch, batch",
    [
        (lambda: np.zeros((88, 32), bool), False, 1),
        (lambda: np.zeros((1, 88, 32), np.float32), False, 1),
        (lambda: torch.zeros(1, 1, 88, 32), False, 1),
        (lambda: torch.rand(5, 1, 88, 32), True, 5),
        (lambda: np.random.default_rng(0).random((3, 88, 64)), True, 3),
    ],
)
def test_as_roll_batch_accepts_model_and_roll_shapes(make, is_batch, batch):
    rolls, got_batch = plots.as_roll_batch(make())
    assert got_batch is is_batch
    assert rolls.shape[:2] == (batch, 88)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((87, 32)), r"\(88, T\)"),
        (np.zeros((2, 2, 88, 32)), r"\(88, T\)"),
        (np.zeros(88), r"\(88, T\)"),
        (np.zeros((88, 0)), "empty"),
        (np.full((88, 32), 3.0), "logits"),
        (np.full((88, 32), np.nan), "NaN"),
    ],
)
def test_as_roll_batch_rejects_bad_input_clearly(bad, message):
    with pytest.raises(ValueError, match=message):
        plots.as_roll_batch(bad)


def test_visualize_returns_figure_with_note_name_axis_and_bar_lines():
    fig = plots.visualize_pianoroll(torch.zeros(1, 1, 88, 64), title="silence")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    ticks = [int(t) for t in ax.get_yticks()]
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert ticks == list(range(24, 109, 12))  # every C on a full keyboard
    assert labels == [pitch_name(p) for p in ticks] and "C4" in labels
    assert _line_xs(ax, "bar-lines") == [15.5, 31.5, 47.5]
    beats = _line_xs(ax, "beat-lines")
    assert beats[:3] == [3.5, 7.5, 11.5] and 15.5 not in beats and len(beats) == 12
    assert ax.get_title() == "silence"


def test_bars_false_draws_no_grid_lines():
    fig = plots.visualize_pianoroll(np.zeros((88, 32)), bars=False)
    assert _line_xs(fig.axes[0], "bar-lines") == [] and _line_xs(fig.axes[0], "beat-lines") == []


def test_probabilities_are_shades_and_threshold_makes_them_binary():
    probabilities = np.random.default_rng(1).random((88, 32)).astype(np.float32)
    shaded = plots.visualize_pianoroll(probabilities).axes[0].images[0].get_array()
    np.testing.assert_allclose(shaded, probabilities)
    binary = plots.visualize_pianoroll(probabilities, threshold=0.7).axes[0].images[0].get_array()
    np.testing.assert_array_equal(binary, (probabilities >= 0.7).astype(np.float32))
    image = plots.visualize_pianoroll(probabilities).axes[0].images[0]
    assert image.origin == "lower" and image.get_extent()[2:] == [20.5, 108.5]


def test_used_pitch_range_crops_around_the_notes():
    roll = _roll({60: (0, 4), 64: (4, 8)})
    low, high = plots.used_pitch_range(roll)
    assert low <= 58 and high >= 66 and high - low >= 12 and high - low <= 16
    assert plots.used_pitch_range(np.zeros((88, 32), bool)) == (21, 108)
    ax = plots.visualize_pianoroll(roll, pitch_range="used").axes[0]
    assert ax.get_ylim() == (low - 0.5, high + 0.5)
    assert all(label.get_text()[0] in "CEG" for label in ax.get_yticklabels())  # narrow view
    with pytest.raises(ValueError, match="pitch_range"):
        plots.visualize_pianoroll(roll, pitch_range=(50, 200))


def test_bar_and_beat_lines_follow_a_time_signature():
    ax = plots.visualize_pianoroll(np.zeros((88, 48), bool), time_signature="6/8").axes[0]
    assert _line_xs(ax, "bar-lines") == [11.5, 23.5, 35.5]
    assert _line_xs(ax, "beat-lines") == [5.5, 17.5, 29.5, 41.5]  # two dotted-quarter beats per bar
    ax = plots.visualize_pianoroll(np.zeros((88, 32), bool), time_signature=(3, 4)).axes[0]
    assert _line_xs(ax, "bar-lines") == [11.5, 23.5]
    assert [int(t) for t in ax.get_xticks()] == [0, 12, 24]


def test_bar_lines_of_a_piece_are_shifted_to_a_window_cut_from_it():
    from musicvae_course.core.meter import meter_grid

    piece = meter_grid("6/8", 200, pickup_steps=6)  # downbeats 6, 18, 30, ...
    ax = plots.visualize_pianoroll(np.zeros((88, 32), bool), bar_lines=piece, start=64).axes[0]
    assert _line_xs(ax, "bar-lines") == [1.5, 13.5, 25.5]  # downbeats 66, 78, 90 of the piece
    assert _line_xs(ax, "beat-lines") == [7.5, 19.5]  # beats 72 and 84; 66, 78, 90 are bars
    ax = plots.visualize_pianoroll(np.zeros((88, 32), bool), bar_lines=[0, 12, 24], time_signature="3/4").axes[0]
    assert _line_xs(ax, "bar-lines") == [11.5, 23.5] and _line_xs(ax, "beat-lines")[:2] == [3.5, 7.5]
    ax = plots.visualize_pianoroll(np.zeros((88, 32), bool), bar_lines=[0, 12, 24]).axes[0]
    assert _line_xs(ax, "beat-lines") == []  # a bare list of downbeats says nothing of beats


def test_the_pitch_axis_names_the_notes_that_sound():
    roll = _roll({62: (0, 4), 65: (4, 8), 69: (8, 12)})
    ax = plots.visualize_pianoroll(roll, pitch_range="used").axes[0]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["D4", "F4", "A4"]
    many = _roll({p: (0, 2) for p in range(40, 100, 2)})  # 30 pitches: Cs and the outer notes
    labels = [t.get_text() for t in plots.visualize_pianoroll(many, pitch_range="used").axes[0].get_yticklabels()]
    assert labels == ["E2", "C3", "C4", "C5", "C6", "D7"]
    some = _roll({p: (0, 2) for p in range(48, 72)})  # 24 neighbouring keys: thinned to what the height holds

    def names(figsize):
        ax = plots.visualize_pianoroll(some, pitch_range="used", figsize=figsize).axes[0]
        return [t.get_text() for t in ax.get_yticklabels()]

    short, tall = names((8, 4)), names((8, 12))
    assert short[0] == tall[0] == "C3" and short[-1] == tall[-1] == "B4"
    assert 5 <= len(short) < len(tall) <= 24


def test_probabilities_get_a_colour_bar_and_on_off_rolls_do_not():
    assert len(plots.visualize_pianoroll(np.full((88, 32), 0.3, np.float32)).axes) == 2
    assert len(plots.visualize_pianoroll(_roll({60: (0, 4)})).axes) == 1
    assert len(plots.visualize_pianoroll(np.full((88, 32), 0.3, np.float32), threshold=0.5).axes) == 1


def test_a_batch_draws_a_grid_with_one_panel_per_roll():
    fig = plots.visualize_pianoroll(torch.rand(6, 1, 88, 32))
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.images]
    assert len(panels) == 6 and all(len(ax.images) == 1 for ax in panels)
    colour_bars = [ax for ax in fig.axes if ax.get_ylabel() == "note probability"]
    assert len(colour_bars) == 1, "one colour bar for the whole grid of probabilities"
    grid = plots.plot_pianoroll_grid([_roll({60: (0, 2)}), _roll({72: (0, 2)})], titles=["a", "b"])
    assert [ax.get_title() for ax in grid.axes] == ["a", "b"]
    assert grid.axes[0].get_ylim() == grid.axes[1].get_ylim()  # one shared pitch range
    with pytest.raises(ValueError, match="titles"):
        plots.plot_pianoroll_grid(torch.rand(3, 1, 88, 32), titles=["only one"])
    with pytest.raises(ValueError, match="batch"):
        plots.visualize_pianoroll(torch.rand(2, 1, 88, 32), ax=grid.axes[0])


def test_a_grid_too_large_to_draw_in_reasonable_time_is_refused_before_drawing(monkeypatch):
    """256 prior samples drawn as a grid took over 5 minutes (constrained layout); the limit names the fix."""
    monkeypatch.setattr(plots, "MAX_GRID_PANELS", 3)
    assert len([ax for ax in plots.visualize_pianoroll(np.zeros((3, 88, 32), bool)).axes if ax.images]) == 3
    before = plt.get_fignums()
    with pytest.raises(ValueError, match=r"rolls holds 4 rolls; a grid draws at most 3 .*rolls\[:3\]"):
        plots.visualize_pianoroll(np.zeros((4, 1, 88, 32), bool))
    assert plt.get_fignums() == before  # refused before a figure was made


def test_difference_classes_hits_misses_false_positives():
    original = _roll({60: (0, 4), 62: (0, 2)})
    reconstruction = np.zeros((1, 1, 88, 32), np.float32)
    reconstruction[0, 0, 60 - 21, 0:4] = 0.9  # hits
    reconstruction[0, 0, 62 - 21, 0] = 0.7  # one hit, one miss (step 1 stays at 0)
    reconstruction[0, 0, 70 - 21, 5] = 0.5  # at the threshold: a false positive
    reconstruction[0, 0, 71 - 21, 5] = 0.49  # below: silent
    classes = compare.difference_classes(original, reconstruction)
    assert classes.shape == (88, 32) and classes.dtype == np.int8
    assert (classes == compare.HIT).sum() == 5
    assert classes[62 - 21, 1] == compare.MISS and (classes == compare.MISS).sum() == 1
    assert classes[70 - 21, 5] == compare.FALSE_POSITIVE and (classes == compare.FALSE_POSITIVE).sum() == 1
    assert classes[71 - 21, 5] == compare.SILENT
    with pytest.raises(ValueError, match="differ in shape"):
        compare.difference_classes(original, np.zeros((88, 16)))


def test_compare_draws_three_panels_with_counts_in_the_legend():
    original = _roll({60: (0, 4)})
    reconstruction = original * 0.8
    reconstruction[60 - 21, 3] = 0.1
    fig = compare.compare_pianorolls(original, reconstruction)
    assert isinstance(fig, Figure) and len([ax for ax in fig.axes if ax.images]) == 3
    assert [ax.get_ylabel() for ax in fig.axes if not ax.images] == ["probability"]  # the reconstruction's bar
    legend = [text.get_text() for text in fig.axes[2].get_legend().get_texts()]
    assert legend[0].startswith("hit") and legend[0].endswith(": 3")
    assert legend[1].startswith("miss") and legend[1].endswith(": 1")
    assert legend[2].endswith(": 0")
    assert "F1 0.86" in fig.axes[2].get_title()
    _, axes = plt.subplots(1, 2)
    with pytest.raises(ValueError, match="three axes"):
        compare.compare_pianorolls(original, reconstruction, ax=axes)


def test_view_updates_in_place_without_pyplot_and_without_leftovers():
    figures_before = plt.get_fignums()
    view = rollview.PianoRollView()
    assert plt.get_fignums() == figures_before  # stand-alone Agg figure
    empty, chord = np.zeros((88, 32), np.float32), _roll({60: (0, 8), 64: (0, 8)})
    view.update(empty)
    first = view.to_png()
    assert first.startswith(b"\x89PNG")
    view.update(chord)
    second = view.to_png()
    assert second != first
    view.update(empty)  # blitting restores the background: nothing of the chord is left
    assert view.to_png() == first
    assert view.image is view.ax.images[0] and len(view.ax.images) == 1
    with pytest.raises(ValueError, match="steps"):
        view.update(np.zeros((88, 16)))
    with pytest.raises(ValueError, match="fixed pitch_range"):
        rollview.PianoRollView(pitch_range="used")


def test_view_on_given_axes_matches_a_full_redraw():
    fig, ax = plt.subplots()
    view = rollview.PianoRollView(ax=ax)
    roll = _roll({60: (0, 8)})
    view.update(roll)
    np.testing.assert_array_equal(ax.images[0].get_array(), roll.astype(np.float32))
    assert view.to_png().startswith(b"\x89PNG")


def test_a_target_is_overlaid_on_a_continuation():
    roll = np.full((88, 32), 0.2, np.float32)
    target = _roll({60: (0, 4)}, n_steps=16)
    ax = plots.visualize_pianoroll(roll, overlay=target, overlay_label="bar 1 to match").axes[0]
    rgba = ax.images[-1].get_array()
    assert rgba.shape == (88, 32, 4) and rgba[60 - 21, :4, 3].min() > 0 and rgba[..., 3].sum() == 4 * 0.55
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["bar 1 to match"]
    with pytest.raises(ValueError, match="overlay has 40 steps"):
        plots.visualize_pianoroll(roll, overlay=np.zeros((88, 40), bool))


# --------------------------------------------------------------------------
# Training curves (ui/curves.py)
# --------------------------------------------------------------------------
def _history(epochs, beta=1.0, lr=1e-4, start=100.0):
    return [
        dict(epoch=e, beta=beta, lr=lr, loss=start + 5 - e, neg_elbo=start - e, val_loss=start + 1 - e,
             reconstruction=10.0 - e / 2, val_reconstruction=12.0 - e / 4, kl=start - 10 - e / 2)
        for e in range(1, epochs + 1)
    ]  # fmt: skip


def test_a_constant_beta_is_drawn_flat_on_a_fixed_axis_with_the_reference_behind():
    from musicvae_course.ui.curves import plot_history

    fig = plot_history(_history(3), reference=_history(10, start=120.0))
    loss_ax, parts_ax, beta_ax = fig.axes[:3]
    assert beta_ax.get_ylim() == (0.0, 1.05)  # never autoscaled to 0.96-1.04
    labels = [line.get_label() for line in loss_ax.get_lines()]
    assert "reference: train -ELBO" in labels and "train -ELBO" in labels
    assert loss_ax.get_xlim() == (0.5, 10.5)  # the axis spans the reference run
    assert parts_ax.get_yscale() == "log"
    parts = {line.get_label(): list(line.get_ydata()) for line in parts_ax.get_lines()}
    assert parts["validation reconstruction"] == [11.75, 11.5, 11.25]  # beside the training one
    no_val = [{k: v for k, v in row.items() if not k.startswith("val_")} for row in _history(3)]
    parts_ax = plot_history(no_val).axes[1]
    assert [line.get_label() for line in parts_ax.get_lines()] == ["train reconstruction", "train KL"]
    with pytest.raises(ValueError, match="empty"):
        plot_history([])


def test_live_curves_redraw_one_figure_and_fit_live_trains_epoch_by_epoch(tmp_path):
    from tiny_rolls import tiny_segments

    from musicvae_course.core.data import PianoRollDataset
    from musicvae_course.core.model import MusicVAE
    from musicvae_course.ui.curves import LiveCurves, fit_live

    curves = LiveCurves(reference=_history(5), epochs=5)
    curves.update(_history(2))
    lines = [line for line in curves.axes[0].get_lines() if not line.get_label().startswith("reference")]
    assert [len(line.get_xdata()) for line in lines] == [2, 2, 2]
    torch.manual_seed(0)
    model = MusicVAE(latent_dim=8)
    train, val = PianoRollDataset(tiny_segments(32, seed=0)), PianoRollDataset(tiny_segments(16, seed=1))
    history, figure = fit_live(model, train, val, epochs=2, out_dir=tmp_path, batch_size=16, threads=1)
    assert [row["epoch"] for row in history] == [1, 2] and (tmp_path / "last.pt").is_file()
    own = [line for line in figure.axes[0].get_lines() if line.get_label() == "train -ELBO"]
    assert len(own) == 1 and list(own[0].get_xdata()) == [1, 2]


@pytest.mark.parametrize("panels", [1, 4])
def test_step_labels_never_overlap_where_a_pickup_puts_a_bar_next_to_the_edge(panels):
    # an eighth-note pickup (1/8, then 6/8) puts a bar at step 2: its label "2" was drawn over the "0"
    from musicvae_course.core.meter import TimeSignature, meter_grid

    piece = meter_grid([TimeSignature(1, 8, 0), TimeSignature(6, 8, 2)], 128)
    figure = plots.visualize_pianoroll(np.zeros((panels, 88, 128), bool), bar_lines=piece)
    figure.canvas.draw()
    ax = figure.axes[0]
    assert [int(t) for t in ax.get_xticks()][:2] == [2, 14]  # the downbeat keeps its label; the edge gives way
    boxes = [label.get_window_extent() for label in ax.get_xticklabels() if label.get_text()]
    assert len(boxes) >= 5 and all(left.x1 < right.x0 for left, right in zip(boxes, boxes[1:]))
