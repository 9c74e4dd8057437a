"""Latent-space widget logic (plain functions) and the ipywidgets wiring, without a browser."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from musicvae_course.core import latent  # noqa: E402
from musicvae_course.core.model import MusicVAE, interpolate_latents  # noqa: E402
from musicvae_course.core.seeding import seed_everything  # noqa: E402
from musicvae_course.ui import widgets  # noqa: E402

LATENT = 32  # small latent: fast, and every function is size-agnostic


@pytest.fixture(scope="module")
def model():
    seed_everything(0)
    return MusicVAE(latent_dim=LATENT).eval()


@pytest.fixture(scope="module")
def rolls():
    """40 sparse random segments, (40, 88, 32) bool."""
    return np.random.default_rng(0).random((40, 88, 32)) < 0.03


def _decode(model, z):
    with torch.no_grad():
        return model.decode(z.reshape(1, -1))[0, 0].numpy()


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_ends_are_the_decoded_endpoints(model, method):
    z1, z2 = torch.randn(2, LATENT, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(widgets.interpolation_frame(model, z1, z2, 0.0, method), _decode(model, z1))
    np.testing.assert_allclose(widgets.interpolation_frame(model, z1, z2, 1.0, method), _decode(model, z2))
    middle = widgets.interpolation_frame(model, z1, z2, 0.5, method)
    assert middle.shape == (88, 32) and middle.dtype == np.float32
    assert not np.allclose(middle, _decode(model, z1))


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_latent_point_agrees_with_the_models_interpolation(method):
    z1, z2 = torch.randn(2, LATENT, generator=torch.Generator().manual_seed(2))
    grid = interpolate_latents(z1, z2, steps=5, method=method)
    for i, t in enumerate(np.linspace(0, 1, 5)):
        torch.testing.assert_close(latent.latent_point(z1, z2, float(t), method), grid[i])
    with pytest.raises(ValueError, match="t must be"):
        latent.latent_point(z1, z2, 1.5)
    with pytest.raises(ValueError, match="method"):
        latent.latent_point(z1, z2, 0.5, "cubic")


def test_frames_run_in_eval_mode_and_restore_training_mode(model):
    z = torch.zeros(LATENT)
    expected = widgets.interpolation_frame(model, z, z, 0.0)
    model.train()
    try:
        np.testing.assert_allclose(widgets.interpolation_frame(model, z, z, 0.0), expected)
        assert model.training
    finally:
        model.eval()


def test_direction_frame_moves_along_the_directions(model):
    z_base = torch.randn(LATENT, generator=torch.Generator().manual_seed(3))
    directions = torch.eye(LATENT)[:2]
    np.testing.assert_allclose(
        widgets.latent_direction_frame(model, z_base, directions, [0, 0]), _decode(model, z_base)
    )
    moved = z_base.clone()
    moved[0] += 2.0
    moved[1] -= 0.5
    np.testing.assert_allclose(
        widgets.latent_direction_frame(model, z_base, directions, [2.0, -0.5]), _decode(model, moved), atol=1e-6
    )
    with pytest.raises(ValueError, match="coefficients"):
        widgets.latent_direction_frame(model, z_base, directions, [1.0])


def test_sample_frame_is_seeded_and_temperature_scales_z(model):
    a = widgets.sample_frame(model, 1.0, seed=7)
    np.testing.assert_array_equal(a, widgets.sample_frame(model, 1.0, seed=7))
    assert not np.allclose(a, widgets.sample_frame(model, 1.0, seed=8))
    z = torch.randn(1, LATENT, generator=torch.Generator().manual_seed(7))
    np.testing.assert_allclose(widgets.sample_frame(model, 0.5, seed=7), _decode(model, 0.5 * z), atol=1e-6)
    np.testing.assert_allclose(
        widgets.sample_frame(model, 0.0, seed=1), widgets.sample_frame(model, 0.0, seed=2)
    )  # T=0: the prior's mean


def test_principal_directions_are_orthonormal_and_ordered(model, rolls):
    result = latent.principal_directions(model, rolls, k=5)
    assert result.directions.shape == (5, LATENT) and result.stds.shape == (5,)
    torch.testing.assert_close(result.directions @ result.directions.T, torch.eye(5), atol=1e-5, rtol=0)
    assert torch.all(result.stds[:-1] >= result.stds[1:])
    means = latent.encode_means(model, rolls)
    torch.testing.assert_close(result.mean, means.mean(dim=0), atol=1e-6, rtol=0)
    projected = (means - result.mean) @ result.directions.T  # spread along each direction
    torch.testing.assert_close(projected.std(dim=0), result.stds, rtol=1e-3, atol=1e-7)
    with pytest.raises(ValueError, match="k must be"):
        latent.principal_directions(model, rolls, k=LATENT + 1)
    with pytest.raises(ValueError, match="at least 2"):
        latent.principal_directions(model, rolls[:1], k=1)


def test_encode_means_reads_datasets_in_order(model, rolls):
    class Batches:  # the PianoRollDataset protocol: .batches(batch_size, shuffle)
        def batches(self, batch_size=256, shuffle=True):
            assert shuffle is False  # directions must not depend on an order
            tensor = torch.as_tensor(rolls, dtype=torch.float32)[:, None]
            return iter(tensor.split(batch_size))

    torch.testing.assert_close(
        latent.encode_means(model, Batches(), batch_size=7), latent.encode_means(model, torch.as_tensor(rolls)[:, None])
    )
    with pytest.raises(ValueError, match="data must be"):
        latent.encode_means(model, np.zeros((4, 88, 16)))


def test_note_density_and_mean_pitch():
    roll = np.zeros((88, 32), bool)
    roll[60 - 21, :2] = True
    roll[72 - 21, 2:4] = True
    np.testing.assert_allclose(latent.note_density(roll), [4 / (88 * 32)])
    np.testing.assert_allclose(latent.mean_pitch(roll), [66.0])
    batch = np.stack([roll, np.zeros_like(roll)])[:, None].astype(np.float32) * 0.9
    assert latent.note_density(batch).tolist() == [4 / (88 * 32), 0.0]
    pitches = latent.mean_pitch(batch)
    assert pitches[0] == 66.0 and np.isnan(pitches[1])


def test_attribute_vector_is_high_group_minus_low_group(model):
    rolls = np.zeros((12, 88, 32), bool)
    for i in range(12):  # roll i has i + 1 cells on: density rises with i
        rolls[i, 40, : i + 1] = True
    rolls = rolls[::-1].copy()  # order in the data must not matter
    means = latent.encode_means(model, rolls)
    density = latent.note_density(rolls)
    low, high = np.argsort(density)[:3], np.argsort(density)[-3:]
    expected = means[torch.as_tensor(high)].mean(0) - means[torch.as_tensor(low)].mean(0)
    torch.testing.assert_close(latent.attribute_vector(model, rolls, latent.note_density, 0.25), expected)
    with_empty = np.concatenate([rolls, np.zeros((4, 88, 32), bool)])  # mean pitch NaN there
    assert torch.isfinite(latent.attribute_vector(model, with_empty, latent.mean_pitch)).all()
    with pytest.raises(ValueError, match="fraction"):
        latent.attribute_vector(model, rolls, latent.note_density, 0.75)


def _only(box, dom_class):
    found = widgets.find_widgets(box, dom_class)
    assert len(found) == 1, f"{dom_class}: {len(found)} widgets"
    return found[0]


def test_interpolation_widget_redraws_image_and_audio_on_slider_change(model, rolls):
    box = widgets.interpolation_widget(model, rolls[0], rolls[1])
    assert "mvc-interpolation-widget" in box._dom_classes
    image, player = _only(box, "mvc-roll-image"), _only(box, "mvc-audio")
    slider, toggle = _only(box, "mvc-interp-slider"), _only(box, "mvc-method-toggle")
    assert (slider.min, slider.max, slider.value) == (0.0, 1.0, 0.0)
    assert bytes(image.value[:4]) == b"\x89PNG" and bytes(player.value[:4]) == b"RIFF"
    before = image.value
    slider.value = 1.0
    assert image.value != before
    slider.value = 0.0
    assert image.value == before  # the view is redrawn, not layered
    assert set(toggle.options) == {"linear", "slerp"}
    toggle.value = "slerp"
    assert image.value == before  # t = 0 is z1 for both methods


def test_latent_sliders_widget_moves_and_resets(model):
    directions = torch.eye(LATENT)[:3] * 5.0
    box = widgets.latent_sliders_widget(model, torch.zeros(LATENT), directions, scales=[1, 2, 3])
    sliders = widgets.find_widgets(box, "mvc-latent-slider")
    assert [s.description for s in sliders] == ["PC1", "PC2", "PC3"]
    image = _only(box, "mvc-roll-image")
    start = image.value
    sliders[1].value = 2.0
    moved = image.value
    assert moved != start
    _only(box, "mvc-reset-button").click()
    assert all(s.value == 0.0 for s in sliders) and image.value == start
    with pytest.raises(ValueError, match="scales"):
        widgets.latent_sliders_widget(model, torch.zeros(LATENT), directions, scales=[1.0])


def test_temperature_widget_new_sample_changes_seed_and_image(model):
    box = widgets.temperature_widget(model, seed=3, with_audio=False)
    assert widgets.find_widgets(box, "mvc-audio") == []
    seed, image = _only(box, "mvc-seed"), _only(box, "mvc-roll-image")
    start = image.value
    _only(box, "mvc-new-sample-button").click()
    assert seed.value == 4 and image.value != start
    _only(box, "mvc-temperature-slider").value = 0.0
    at_zero = image.value
    seed.value = 11
    assert image.value == at_zero  # temperature 0 decodes z = 0 whatever the seed
    assert "cells on" in _only(box, "mvc-roll-info").value


def test_roll_panel_renders_a_clip_only_when_the_notes_change(monkeypatch):
    from musicvae_course.ui import audio

    renders = []
    real = audio.synthesize
    monkeypatch.setattr(audio, "synthesize", lambda notes, **kw: renders.append(notes) or real(notes, **kw))
    panel = widgets.RollPanel()
    frame = np.zeros((88, 32), np.float32)
    frame[40, :8] = 0.8
    panel.show(frame)
    first_clip, first_image = bytes(panel.audio.value), bytes(panel.image.value)
    frame[40, :8] = 0.6  # other shades, same notes at 0.5
    panel.show(frame)
    assert len(renders) == 1 and bytes(panel.audio.value) == first_clip
    assert bytes(panel.image.value) != first_image  # the picture shows the shades
    frame[52, 8:16] = 0.9
    panel.show(frame)
    assert len(renders) == 2 and bytes(panel.audio.value) != first_clip
    assert panel.info.value.startswith("16 of 2816")


# --------------------------------------------------------------------------
# The drawable roll (ui/rolldraw.py): logic without a browser; the browser test draws on it
# --------------------------------------------------------------------------
def _melody():
    roll = np.zeros((88, 32), dtype=bool)
    for i, pitch in enumerate([60, 62, 64, 65, 67, 69, 71, 72]):
        roll[pitch - 21, 4 * i : 4 * i + 3] = True
    return roll


def test_canvas_cells_and_rolls_convert_both_ways():
    from musicvae_course.ui import rolldraw

    roll = _melody()
    cells = rolldraw.roll_to_cells(roll, 55, 84)
    assert cells[0] == (84 - 72) * 32 + 28  # row 0 is the top key (84): C5 at step 28 comes first
    assert (rolldraw.cells_to_roll(cells, 55, 84) == roll).all()
    outside = roll.copy()
    outside[40 - 21, 0] = True  # below the canvas: not shown
    assert rolldraw.roll_to_cells(outside, 55, 84) == cells
    with pytest.raises(ValueError, match="cells must lie"):
        rolldraw.cells_to_roll([30 * 32], 55, 84)


def test_variations_spread_in_the_encoders_own_standard_deviations(model):
    from musicvae_course.ui import rolldraw

    reconstruction, near = rolldraw.reconstruct_and_vary(model, _melody(), n=3, spread=0.0)
    assert reconstruction.shape == (88, 32) and near.shape == (3, 88, 32)
    np.testing.assert_allclose(near, np.broadcast_to(reconstruction, near.shape), atol=1e-6)
    _, far = rolldraw.reconstruct_and_vary(model, _melody(), n=3, spread=3.0)
    assert not np.allclose(far[0], reconstruction) and not np.allclose(far[0], far[1])
    _, again = rolldraw.reconstruct_and_vary(model, _melody(), n=3, spread=3.0)
    np.testing.assert_array_equal(far, again)  # seeded


def test_an_uploaded_midi_file_gives_its_first_two_bars_and_a_bad_one_is_named(tmp_path):
    from musicvae_course.core.pianoroll import pianoroll_to_midi
    from musicvae_course.ui import rolldraw

    piece = np.concatenate([np.zeros((88, 32), bool), _melody()], axis=1)  # 2 silent bars first
    path = tmp_path / "mine.mid"
    pianoroll_to_midi(piece, path=path)
    upload = ({"name": "mine.mid", "content": memoryview(path.read_bytes())},)  # ipywidgets 8's value
    name, window = rolldraw.window_from_upload(upload)
    assert name == "mine.mid" and (window == _melody()).all()
    with pytest.raises(ValueError, match="notes.txt.*not a readable MIDI"):
        rolldraw.window_from_upload(({"name": "notes.txt", "content": b"hello"},))
    with pytest.raises(ValueError, match="huge.mid.*bytes"):
        rolldraw.window_from_upload(({"name": "huge.mid", "content": b"0" * (rolldraw.MAX_UPLOAD_BYTES + 1)},))


@pytest.mark.parametrize("name", ["", ".", "..", "a" * 300 + ".mid", "x\x00.mid", "two\nlines.mid"])
def test_an_upload_reads_whatever_its_name_and_shows_the_name_on_one_line(tmp_path, name):
    """The upload was written under its own name: "", "." and ".." were folders, 300 bytes too long, a NUL
    refused by the OS (IsADirectoryError, OSError: not the ValueError the widget shows)."""
    from musicvae_course.core.pianoroll import pianoroll_to_midi
    from musicvae_course.ui import rolldraw

    path = tmp_path / "mine.mid"
    pianoroll_to_midi(_melody(), path=path)
    shown, window = rolldraw.window_from_upload(({"name": name, "content": path.read_bytes()},))
    assert (window == _melody()).all()
    assert shown.isprintable() and shown
    with pytest.raises(ValueError, match="not a readable MIDI") as error:
        rolldraw.window_from_upload(({"name": name, "content": b"hello"},))
    assert str(error.value).isprintable() and str(error.value).startswith(shown)


def test_the_download_link_carries_a_midi_file_that_reads_back(tmp_path):
    import base64
    import re

    from musicvae_course.core.pianoroll import midi_to_pianoroll
    from musicvae_course.ui import rolldraw

    rolls = np.stack([_melody(), np.zeros((88, 32), bool), _melody()])
    link = rolldraw.download_link(rolldraw.midi_bytes(rolls), "mine <1>.mid")
    assert "mvc-download" in link._dom_classes and 'download="mine &lt;1&gt;.mid"' in link.value
    data = base64.b64decode(re.search(r'base64,([^"]+)"', link.value).group(1))
    (tmp_path / "back.mid").write_bytes(data)
    back = midi_to_pianoroll(tmp_path / "back.mid")
    expected = np.concatenate(list(rolls), axis=1)
    assert (back == expected[:, : back.shape[1]]).all() and back.shape[1] == 96 - 1  # trailing gap not stored


def test_the_drawable_widget_reconstructs_what_is_drawn(model):
    from musicvae_course.ui import rolldraw

    box = rolldraw.drawable_roll_widget(model, start=_melody())
    assert "mvc-drawable-roll-widget" in box._dom_classes
    assert box.canvas.cells == rolldraw.roll_to_cells(_melody(), 55, 84)
    [image] = [w for w in widgets.find_widgets(box, "mvc-roll-image")]
    [variations] = widgets.find_widgets(box, "mvc-variations-image")
    box.reconstruct()
    assert image.value[:4] == b"\x89PNG" and variations.value[:4] == b"\x89PNG"
    first = variations.value
    [spread] = widgets.find_widgets(box, "mvc-spread-slider")
    spread.value = 4.0  # moving the slider redraws the variations
    assert variations.value != first
    box.hear_phrase()
    assert widgets.find_widgets(box, "mvc-variations-audio")[0].value[:4] == b"RIFF"
    box.make_midi()
    assert widgets.find_widgets(box, "mvc-download")
    [clear] = widgets.find_widgets(box, "mvc-clear-button")
    clear.click()
    assert box.canvas.cells == [] and box.canvas.overlay == []


def test_an_uploaded_piece_is_drawn_in_its_own_meter_and_a_cleared_canvas_in_the_models(model, tmp_path):
    # a waltz on the canvas with 4/4 bar lines would put its downbeats mid-bar
    import datetime

    from musicvae_course.core.meter import write_time_signatures
    from musicvae_course.core.pianoroll import pianoroll_to_midi
    from musicvae_course.ui import rolldraw

    path = tmp_path / "waltz.mid"
    write_time_signatures(pianoroll_to_midi(np.tile(_melody(), 2)), ["3/4"]).write(str(path))
    box = rolldraw.drawable_roll_widget(model)
    assert (box.canvas.bar_lines, box.canvas.beat_lines) == ([0, 16, 32], list(range(0, 33, 4)))
    [upload] = widgets.find_widgets(box, "mvc-upload")
    data = path.read_bytes()
    sent = {"name": "waltz.mid", "type": "audio/midi", "size": len(data), "content": memoryview(data)}
    upload.value = ({**sent, "last_modified": datetime.datetime(2026, 1, 1)},)  # as the browser sends it
    assert box.canvas.cells and box.canvas.bar_lines == [0, 12, 24]
    assert box.canvas.beat_lines == list(range(0, 33, 4))
    # the reconstruction below and each variation are drawn in the piece's meter too, from its downbeat
    assert _lines(box.views["reconstruction"]) == ([12, 24], [4, 8, 16, 20, 28])
    bars, beats = _lines(box.views["variations"])
    assert bars == [12, 24, 32, 44, 56, 64, 76, 88, 96, 108, 120] and 36 in beats and 32 not in beats
    [clear] = widgets.find_widgets(box, "mvc-clear-button")
    clear.click()
    assert box.canvas.bar_lines == [0, 16, 32]
    assert _lines(box.views["reconstruction"]) == ([16], [4, 8, 12, 20, 24, 28])
    assert _lines(box.views["variations"])[0] == list(range(16, 128, 16))


def _lines(view) -> tuple[list[int], list[int]]:
    """The steps where a PianoRollView draws its bar and beat lines (a line between steps t-1 and t is at t)."""
    found = {c.get_gid(): sorted(round(s[0][0] + 0.5) for s in c.get_segments()) for c in view.ax.collections}
    return found["bar-lines"], found["beat-lines"]
