"""Exploring the latent space: plain functions, and the widgets built on them.

Taught in ``notebooks/02_latent_space_with_widgets.ipynb``.

The logic is plain functions (testable without a browser): each returns one
``(88, 32)`` probability roll for a slider position. The builders at the
bottom wire them to ipywidgets. The picture is an ``ipywidgets.Image`` fed with
PNG bytes from one reused, blitted Agg figure (``rollview.PianoRollView``): this
works in plain JupyterLab with no interactive matplotlib backend, and one
slider change (decode + redraw) takes well under 100 ms on one CPU thread
(``benchmarks/bench_widgets.py``).

Stable DOM classes (for browser tests and styling), set with ``add_class``:

============================  ==================================================
``mvc-roll-image``            the piano-roll ``Image``
``mvc-audio``                 the ``Audio`` player (its clip follows the roll)
``mvc-roll-info``             a ``Label`` with the number of notes shown
``mvc-interp-slider``         interpolation position ``t`` in [0, 1]
``mvc-method-toggle``         ``linear`` / ``slerp``
``mvc-latent-slider``         one per latent direction
``mvc-reset-button``          sets every latent slider back to 0
``mvc-temperature-slider``    prior temperature
``mvc-seed``                  seed of the prior sample
``mvc-new-sample-button``     next seed
``mvc-interpolation-widget``, ``mvc-latent-sliders-widget``,
``mvc-temperature-widget``    the outer boxes
============================  ==================================================
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.latent import _evaluating, encode_roll, latent_point
from ..core.model import INTERPOLATION_METHODS, model_input
from ..core.pianoroll import LOWEST_PITCH, N_PITCHES, SEGMENT_STEPS
from ..core.seeding import DEFAULT_SEED
from . import audio, plots, rollview


# --------------------------------------------------------------------------
# Plain functions
# --------------------------------------------------------------------------
def _frame(probabilities: torch.Tensor) -> np.ndarray:
    return probabilities.reshape(N_PITCHES, SEGMENT_STEPS).float().cpu().numpy()


def _code(model, z, name: str) -> torch.Tensor:
    """``z`` as a ``(latent_dim,)`` float32 CPU tensor, detached; a code of another size (a 256-d code on a model
    of latent_dim 8) is refused naming ``name``, not deep inside a matrix product."""
    z = torch.as_tensor(z).detach().float().cpu().reshape(-1)
    if z.numel() != model.latent_dim:
        raise ValueError(f"{name} has {z.numel()} numbers; this model's codes have latent_dim = {model.latent_dim}")
    return z


def interpolation_frame(model, z1: torch.Tensor, z2: torch.Tensor, t: float, method: str = "linear") -> np.ndarray:
    """Decode the point at ``t`` in [0, 1] between latents ``z1`` and ``z2``.

    Args:
        z1, z2: ``(latent_dim,)`` or ``(1, latent_dim)``.
        t: 0 gives ``decode(z1)``, 1 gives ``decode(z2)``.
        method: ``"linear"`` or ``"slerp"``.

    Returns:
        ``(88, 32)`` float32 note probabilities in [0, 1].
    """
    z = latent_point(_code(model, z1, "z1"), _code(model, z2, "z2"), t, method)
    with _evaluating(model):
        return _frame(model.decode(z[None].to(model.device)))


def latent_direction_frame(model, z_base: torch.Tensor, directions: torch.Tensor, coefficients) -> np.ndarray:
    """Decode ``z_base + sum_i coefficients[i] * directions[i]``.

    Args:
        z_base: ``(latent_dim,)`` or ``(1, latent_dim)``.
        directions: ``(k, latent_dim)`` (e.g. from :func:`principal_directions`).
        coefficients: ``k`` numbers, in latent units (multiply slider values by
            the directions' standard deviations first to move in "typical" steps).

    Returns:
        ``(88, 32)`` float32 note probabilities in [0, 1].
    """
    base = _code(model, z_base, "z_base")  # latents are small: combine them on the CPU
    directions = _directions(model, directions)
    weights = torch.as_tensor(np.asarray(coefficients, dtype=np.float32)).reshape(-1)
    if weights.numel() != directions.shape[0]:
        raise ValueError(f"{weights.numel()} coefficients for {directions.shape[0]} directions")
    z = base + weights @ directions
    with _evaluating(model):
        return _frame(model.decode(z[None].to(model.device)))


def _directions(model, directions) -> torch.Tensor:
    """``directions`` as ``(k, latent_dim)`` float32 on the CPU, detached; a ``(latent_dim,)`` vector is one."""
    directions = torch.as_tensor(directions).detach().float().cpu()
    if directions.dim() == 1:
        directions = directions[None]
    if directions.dim() != 2 or directions.shape[1] != model.latent_dim or directions.shape[0] == 0:
        raise ValueError(
            f"directions must have shape (k, latent_dim) = (k, {model.latent_dim}) with k >= 1; "
            f"got {tuple(directions.shape)}"
        )
    return directions


def sample_frame(model, temperature: float = 1.0, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Decode one prior draw ``z ~ N(0, temperature^2 I)`` from a seeded generator.

    Returns ``(88, 32)`` float32 probabilities; the same ``seed`` gives the same
    ``z`` direction at every temperature, so the slider shows the effect of
    temperature alone.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    generator = torch.Generator().manual_seed(int(seed))
    with _evaluating(model):
        return _frame(model.sample(1, temperature=float(temperature), generator=generator))


# --------------------------------------------------------------------------
# Widgets
# --------------------------------------------------------------------------
class RollPanel:
    """The output side of every widget: piano-roll image, audio player, note count.

    ``show(probabilities)`` redraws the blitted view into the ``Image`` and
    re-renders the clip (notes at >= 0.5) when those notes changed. This is
    the work one slider change costs, and what ``benchmarks/bench_widgets.py``
    times.

    Args:
        pitch_range: fixed MIDI ``(low, high)`` of the view, or ``None`` (88 keys).
        with_audio: add an ``Audio`` player.
        bpm: tempo of the clip.
    """

    def __init__(self, pitch_range=None, with_audio: bool = True, bpm: float = 120.0):
        import ipywidgets as widgets

        self.view = rollview.PianoRollView(n_steps=SEGMENT_STEPS, pitch_range=pitch_range)
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="480px"))
        self.image.add_class("mvc-roll-image")
        self.info = widgets.Label()
        self.info.add_class("mvc-roll-info")
        self.bpm = bpm
        self.audio = None
        self._audio_key = None  # the notes the current clip plays
        children = [self.image, self.info]
        if with_audio:
            self.audio = widgets.Audio(format="wav", autoplay=False, loop=False, controls=True)
            self.audio.add_class("mvc-audio")
            children.append(self.audio)
        self.box = widgets.VBox(children)

    def show(self, probabilities: np.ndarray) -> None:
        """Display one ``(88, 32)`` probability roll (image, note count and clip)."""
        self.view.update(probabilities)
        self.image.value = self.view.to_png()
        notes = probabilities >= 0.5
        self.info.value = f"{int(notes.sum())} of {notes.size} cells on at threshold 0.5"
        key = np.packbits(notes).tobytes()
        # Neighbouring slider positions often threshold to the same notes:
        # then the clip is the same too, and rendering it again is wasted.
        if self.audio is not None and key != self._audio_key:
            waveform, rate = audio.synthesize(notes, bpm=self.bpm)
            self.audio.value = audio.to_wav_bytes(waveform, rate)
            self._audio_key = key


def _frame_pitch_range(frames, margin: int = 6):
    """A fixed view around the notes of ``frames`` (widened: in-between frames may stray)."""
    low, high = plots.used_pitch_range(np.stack(frames))
    return max(low - margin, LOWEST_PITCH), min(high + margin, LOWEST_PITCH + N_PITCHES - 1)


def interpolation_widget(model, roll_a, roll_b, pitch_range="auto", with_audio: bool = True):
    """Slide from one segment's latent code to another's and see/hear the decoded roll.

    Args:
        roll_a, roll_b: two ``(88, 32)`` rolls (any single-roll shape), encoded
            to their means ``z1``, ``z2``.
        pitch_range: ``"auto"`` (around the notes of both ends), ``None`` (88
            keys) or MIDI ``(low, high)``.
        with_audio: add an audio player that follows the slider.

    Returns:
        ``ipywidgets.VBox`` (class ``mvc-interpolation-widget``) holding a
        slider ``t`` (``mvc-interp-slider``), a ``linear``/``slerp`` toggle
        (``mvc-method-toggle``) and the :class:`RollPanel` widgets.

    Taught in ``notebooks/02_latent_space_with_widgets.ipynb``.
    """
    import ipywidgets as widgets

    z1, z2 = encode_roll(model, roll_a), encode_roll(model, roll_b)
    if pitch_range == "auto":
        ends = [interpolation_frame(model, z1, z2, t) for t in (0.0, 1.0)]
        ends += [model_input(r, "roll")[0, 0].cpu().numpy() for r in (roll_a, roll_b)]
        pitch_range = _frame_pitch_range(ends)
    panel = RollPanel(pitch_range, with_audio)
    slider = widgets.FloatSlider(
        value=0.0, min=0.0, max=1.0, step=0.05, description="t", continuous_update=True, readout_format=".2f"
    )
    slider.add_class("mvc-interp-slider")
    method = widgets.ToggleButtons(options=list(INTERPOLATION_METHODS), value="linear", description="method")
    method.add_class("mvc-method-toggle")

    def redraw(_change=None):
        panel.show(interpolation_frame(model, z1, z2, slider.value, method.value))

    slider.observe(redraw, names="value")
    method.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([slider, method, panel.box])
    box.add_class("mvc-interpolation-widget")
    return box


def latent_sliders_widget(
    model,
    z_base,
    directions,
    scales=None,
    labels=None,
    max_coefficient: float = 3.0,
    pitch_range=None,
    with_audio: bool = True,
):
    """One slider per latent direction, added to ``z_base`` and decoded live.

    Args:
        z_base: ``(latent_dim,)`` starting point (e.g. an encoded segment, or
            ``principal_directions(...).mean``).
        directions: ``(k, latent_dim)``, e.g. ``principal_directions(...).directions``
            or stacked :func:`attribute_vector` results.
        scales: ``k`` latent units per slider unit (e.g. the ``stds``, so the
            slider reads in standard deviations); default 1.
        labels: ``k`` slider names; default ``PC1 ... PCk``.
        max_coefficient: sliders run from ``-max_coefficient`` to ``+max_coefficient``.
        pitch_range: ``None`` (88 keys) or MIDI ``(low, high)``.

    Returns:
        ``ipywidgets.VBox`` (``mvc-latent-sliders-widget``) with the sliders
        (``mvc-latent-slider``), a reset button (``mvc-reset-button``) and the
        :class:`RollPanel` widgets.

    Taught in ``notebooks/02_latent_space_with_widgets.ipynb``.
    """
    import ipywidgets as widgets

    directions = _directions(model, directions)
    z_base = _code(model, z_base, "z_base")
    k = directions.shape[0]
    scales = np.ones(k, np.float32) if scales is None else np.asarray(torch.as_tensor(scales).float().reshape(-1))
    labels = [f"PC{i + 1}" for i in range(k)] if labels is None else list(labels)
    if len(scales) != k or len(labels) != k:
        raise ValueError(f"{k} directions need {k} scales and labels; got {len(scales)}, {len(labels)}")
    panel = RollPanel(pitch_range, with_audio)
    sliders = []
    for label in labels:
        slider = widgets.FloatSlider(
            value=0.0, min=-max_coefficient, max=max_coefficient, step=0.1, description=label, continuous_update=True
        )
        slider.add_class("mvc-latent-slider")
        sliders.append(slider)
    reset = widgets.Button(description="reset")
    reset.add_class("mvc-reset-button")
    resetting = [False]  # while resetting, the k slider events draw nothing

    def redraw(_change=None):
        if resetting[0]:
            return
        coefficients = np.array([s.value for s in sliders], np.float32) * scales
        panel.show(latent_direction_frame(model, z_base, directions, coefficients))

    def on_reset(_button):
        resetting[0] = True
        try:
            for slider in sliders:
                slider.value = 0.0
        finally:
            resetting[0] = False
        redraw()

    for slider in sliders:
        slider.observe(redraw, names="value")
    reset.on_click(on_reset)
    redraw()
    box = widgets.VBox([*sliders, reset, panel.box])
    box.add_class("mvc-latent-sliders-widget")
    return box


def temperature_widget(
    model, seed: int = DEFAULT_SEED, temperature: float = 1.0, pitch_range=None, with_audio: bool = True
):
    """Prior samples: one seed, a temperature slider, and a button for the next seed.

    Low temperatures shrink ``z`` towards 0; with this model that often
    empties the roll (the note count shows it), so lower is not "safer".

    Returns:
        ``ipywidgets.VBox`` (``mvc-temperature-widget``) with a temperature
        slider (``mvc-temperature-slider``, 0-2), a seed box (``mvc-seed``), a
        next-seed button (``mvc-new-sample-button``) and the :class:`RollPanel`
        widgets.

    Taught in ``notebooks/02_latent_space_with_widgets.ipynb``.
    """
    import ipywidgets as widgets

    panel = RollPanel(pitch_range, with_audio)
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    slider = widgets.FloatSlider(  # up to the temperature asked for: a slider to 2 showed 5 as 2 and drew 2
        value=temperature,
        min=0.0,
        max=max(2.0, float(temperature)),
        step=0.05,
        description="temperature",
        continuous_update=True,
    )
    slider.add_class("mvc-temperature-slider")
    seed_box = widgets.BoundedIntText(value=int(seed), min=0, max=2**31 - 1, description="seed")
    seed_box.add_class("mvc-seed")
    next_seed = widgets.Button(description="new sample")
    next_seed.add_class("mvc-new-sample-button")

    def redraw(_change=None):
        panel.show(sample_frame(model, slider.value, seed_box.value))

    def on_next(_button):
        seed_box.value = (seed_box.value + 1) % 2**31  # its observer redraws

    slider.observe(redraw, names="value")
    seed_box.observe(redraw, names="value")
    next_seed.on_click(on_next)
    redraw()
    box = widgets.VBox([slider, widgets.HBox([seed_box, next_seed]), panel.box])
    box.add_class("mvc-temperature-widget")
    return box


def find_widgets(root, dom_class: str) -> list:
    """Every widget under ``root`` (itself included) carrying ``dom_class``, in display order."""
    found = [root] if dom_class in getattr(root, "_dom_classes", ()) else []
    for child in getattr(root, "children", ()):
        found.extend(find_widgets(child, dom_class))
    return found
