"""Draw two bars, hear them, and hear what the model makes of them; bring your own MIDI, take yours home.

Taught in ``notebooks/02_latent_space_with_widgets.ipynb``.

The drawing surface is an `anywidget <https://anywidget.dev>`_ (a canvas in the page, written in
:mod:`musicvae_course.ui.rolldraw_front`; no JupyterLab build step): press to toggle a cell, drag to paint
or erase. ipywidgets alone has no mouse events, and a grid of hundreds of toggle buttons would be slow to
show and could not be dragged over. Everything else is plain ipywidgets and the functions below, which are
testable without a browser.

Stable DOM classes (browser tests, styling):

==============================  ===========================================================
``mvc-draw-roll``               the canvas widget (its ``canvas`` has ``mvc-draw-canvas``)
``mvc-play-drawing-button``     render the drawing into ``mvc-drawing-audio``
``mvc-reconstruct-button``      encode the drawing, decode it and nearby codes
``mvc-clear-button``            empty the grid
``mvc-spread-slider``           how far the variations go, in posterior standard deviations
``mvc-roll-image``/``mvc-audio``   the reconstruction (a :class:`~musicvae_course.ui.widgets.RollPanel`)
``mvc-variations-image``        the variations; ``mvc-phrase-button`` renders them as one phrase
                                into ``mvc-variations-audio``
``mvc-make-midi-button``        makes the ``mvc-download`` link
``mvc-upload``                  a MIDI file of your own: its first 2 bars with notes are drawn
``mvc-download``                a link to the reconstruction and variations as one MIDI file
``mvc-draw-info``               what happened last (or what was wrong with an upload)
``mvc-drawable-roll-widget``    the outer box
==============================  ===========================================================
"""

from __future__ import annotations

import base64
import bisect
import functools
import html
import io
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..core.latent import _evaluating
from ..core.meter import bar_steps, beat_steps, meter_grid, numbered_downbeats, roll_and_meter
from ..core.model import model_input
from ..core.pianoroll import (
    LOWEST_PITCH,
    N_PITCHES,
    SEGMENT_STEPS,
    pianoroll_to_midi,
)
from ..core.safe_files import display_name
from ..core.seeding import DEFAULT_SEED
from . import audio, plots, rollview
from .rolldraw_front import CSS, ESM
from .widgets import RollPanel

DEFAULT_RANGE = (55, 84)  #: G3-C6: two and a half octaves, room for a melody and its harmony
DEFAULT_SPREAD = 1.5  #: posterior standard deviations: every variation differs, the tune stays (notebook 04)
MAX_UPLOAD_BYTES = 2_000_000  #: a MIDI file of a song is tens of kB; refuse what cannot be one


def cells_to_roll(cells, low: int, high: int, steps: int = SEGMENT_STEPS) -> np.ndarray:
    """The canvas's cell indices (``row * steps + step``, row 0 = ``high``) as an ``(88, steps)`` bool roll."""
    roll = np.zeros((N_PITCHES, steps), dtype=bool)
    cells = np.asarray(list(cells), dtype=np.int64)
    if cells.size and (cells.min() < 0 or cells.max() >= (high - low + 1) * steps):
        raise ValueError(f"cells must lie in 0..{(high - low + 1) * steps - 1}; got {cells.min()}..{cells.max()}")
    roll[high - LOWEST_PITCH - cells // steps, cells % steps] = True
    return roll


def roll_to_cells(roll, low: int, high: int, threshold: float = 0.5) -> list[int]:
    """The inverse of :func:`cells_to_roll` for the rows ``low..high`` (notes outside them are not shown)."""
    on = plots.binarize(plots.single_roll(roll), threshold)
    window = on[low - LOWEST_PITCH : high - LOWEST_PITCH + 1][::-1]  # row 0 = high
    rows, steps = np.nonzero(window)
    return sorted(int(r) * on.shape[1] + int(s) for r, s in zip(rows, steps))


def reconstruct_and_vary(model, roll, n: int = 4, spread: float = DEFAULT_SPREAD, seed: int = DEFAULT_SEED):
    """Encode ``roll``, decode its mean, and decode ``n`` codes ``mu + spread * sigma * eps`` around it.

    ``spread`` is in units of the encoder's own standard deviation ``sigma`` for this roll: 1 is a code the
    encoder finds as likely as ``mu`` itself for a typical draw, 2 goes twice as far.

    Returns:
        ``(reconstruction, variations)``: ``(88, 32)`` and ``(n, 88, 32)`` float32 probabilities.
    """
    x = model_input(roll, "roll")
    generator = torch.Generator().manual_seed(int(seed))
    with _evaluating(model):
        mu, log_var = model.encode(x.to(model.device))
        eps = torch.randn(n, mu.shape[1], generator=generator).to(model.device)
        codes = torch.cat([mu, mu + float(spread) * torch.exp(0.5 * log_var) * eps])
        decoded = model.decode(codes)[:, 0].float().cpu().numpy()
    return decoded[0], decoded[1:]


def first_window(path, min_notes: int = 4) -> np.ndarray:
    """The first 2-bar window (``(88, 32)`` bool) of a MIDI file that starts with music: at least
    ``min_notes`` notes start in it, half of them in its first 16 steps (else its first window with notes).

    Windows start on the file's downbeats (:func:`~musicvae_course.core.meter.meter`; 4/4 from step 0 for a file
    without a time signature), on full bars only: a pickup is left out. Errors name the file.
    """
    return _first_window(path, min_notes)[0]


def _first_window(path, min_notes: int = 4):
    """(window ``(88, 32)`` bool, its bar lines, its beat lines): :func:`first_window` and where the file's own
    bars and beats fall in it, as steps 0..32 (:func:`window_lines`)."""
    roll, grid, _ = roll_and_meter(path)  # a meter the kit cannot bar (4/128): MIDI's default 4/4
    if not roll.any():
        raise ValueError(f"{Path(path).name}: no pitched notes to draw")
    n_steps = roll.shape[1]
    # notes starting at each step; a note held into a window's first step counts there too (as in segments)
    onsets = (roll & ~np.concatenate([np.zeros_like(roll[:, :1]), roll[:, :-1]], axis=1)).sum(axis=0)
    before = np.concatenate([[0], np.cumsum(onsets)])  # onsets before each step, 0 .. n_steps

    def notes_in(start: int, length: int) -> int:
        stop = min(start + length, n_steps)
        return int(roll[:, start].sum() + before[stop] - before[start + 1])

    full_bars = _full_bar_starts(grid, n_steps)
    counts = [(start, notes_in(start, SEGMENT_STEPS), notes_in(start, SEGMENT_STEPS // 2)) for start in full_bars]
    rich = [start for start, notes, first in counts if notes >= min_notes and 2 * first >= min_notes]
    with_notes = [start for start, notes, _ in counts if notes]
    # no full bar with notes (a file that is all pickup): from its first note
    start = rich[0] if rich else with_notes[0] if with_notes else int(np.flatnonzero(roll.any(axis=0))[0])
    window = np.pad(roll[:, start : start + SEGMENT_STEPS], ((0, 0), (0, max(0, start + SEGMENT_STEPS - n_steps))))
    return (window, *window_lines(grid, start))


def window_lines(grid, start: int, steps: int = SEGMENT_STEPS) -> tuple[list[int], list[int]]:
    """Where the bars and beats of ``grid`` (a :class:`~musicvae_course.core.meter.Meter`) fall in the window of
    ``steps`` sixteenth steps that starts at step ``start``: (bar lines, beat lines), steps ``0 .. steps``. Past the
    music's end the bars of its last signature go on, so the canvas stays barred where the window is padded."""
    last = grid.signatures[-1]
    bar, beat = int(bar_steps(last)), int(beat_steps(last))
    downbeats = list(grid.downbeats) or [0]
    beats = list(grid.beats) or [0]
    # bars and beats of the last signature on from the last downbeat, to the window's end
    downbeats += range(downbeats[-1] + bar, start + steps + 1, bar) if bar else []
    beats += range(beats[-1] + beat, start + steps + 1, beat) if beat else []
    inside = range(start, start + steps + 1)
    return sorted({d - start for d in downbeats if d in inside}), sorted({b - start for b in beats if b in inside})


FOUR_FOUR = window_lines(meter_grid("4/4", SEGMENT_STEPS), 0)  #: the model's window: 2 bars of 4/4


def _full_bar_starts(grid, n_steps: int) -> list[int]:
    """Steps below ``n_steps`` where a full bar of ``grid`` (a file's meter) starts: not a bar a change of time
    signature cuts short, nor a pickup (a first bar shorter than the next, as a file marks one with a short
    signature)."""
    starts = [signature.step for signature in grid.signatures]
    downbeats, numbered = grid.downbeats, set(numbered_downbeats(grid))
    lengths = [end - step for step, end in zip(downbeats, downbeats[1:])]  # the last bar runs on to the end
    full = []
    for index, step in enumerate(downbeats):
        if step >= n_steps:
            break
        if index < len(lengths):
            signature = grid.signatures[max(bisect.bisect_right(starts, step) - 1, 0)]
            if step not in numbered or lengths[index] < bar_steps(signature):  # a pickup, or a bar cut short
                continue
        full.append(step)
    return full


def midi_bytes(rolls, bpm: float = 120.0) -> bytes:
    """Rolls ``(n, 88, 32)`` or ``(88, T)`` (bool or probabilities at 0.5) one after another, as MIDI file bytes."""
    rolls = np.asarray(rolls)
    joined = np.concatenate(list(rolls), axis=1) if rolls.ndim == 3 else rolls
    buffer = io.BytesIO()
    pianoroll_to_midi(joined >= 0.5 if joined.dtype != bool else joined, bpm=bpm).write(buffer)
    return buffer.getvalue()


def download_link(data: bytes, filename: str = "generated.mid", text: str | None = None):
    """An ``ipywidgets.HTML`` link (class ``mvc-download``) that saves ``data`` as ``filename`` from the page.

    The file travels inside the link (a ``data:`` URL), so it works wherever the notebook is served, with no
    file on the server. Taught in ``notebooks/02_latent_space_with_widgets.ipynb``.
    """
    import ipywidgets as widgets

    href = "data:audio/midi;base64," + base64.b64encode(data).decode("ascii")
    label = html.escape(text or f"download {filename}")
    link = widgets.HTML(f'<a download="{html.escape(filename)}" href="{href}">{label}</a>')
    link.add_class("mvc-download")
    return link


def _read_upload(value) -> tuple[str, bytes]:
    """(name, bytes) of the first file of an ``ipywidgets.FileUpload`` value (ipywidgets 8: tuple of dicts)."""
    item = value[0] if isinstance(value, (tuple, list)) else next(iter(value.values()))
    return str(item.get("name", "upload.mid")), bytes(item["content"])


def window_from_upload(value) -> tuple[str, np.ndarray]:
    """Name and first 2-bar window of an uploaded MIDI file. Raises ``ValueError`` naming the file if it is
    too big or not MIDI."""
    return _upload_window(value)[:2]


def _upload_window(value) -> tuple:
    """(name, window, bar lines, beat lines) of an upload: :func:`window_from_upload` and its meter's lines."""
    name, content = _read_upload(value)
    name = display_name(name) or "the upload"  # the browser's name is text to show: one line, no control characters
    if len(content) > MAX_UPLOAD_BYTES:
        raise ValueError(f"{name}: {len(content):,} bytes; a MIDI file of this kind is far smaller")
    with tempfile.TemporaryDirectory() as folder:
        # a fixed name: the upload's own ("", "..", 300 bytes, a NUL) was a folder or no name at all to the OS
        path = Path(folder) / "upload.mid"
        path.write_bytes(content)
        try:
            return (name, *_first_window(path))
        except (ValueError, FileNotFoundError) as error:  # the message names the temporary path
            raise ValueError(str(error).replace(str(path), name)) from None


@functools.lru_cache(maxsize=1)  # one widget class per kernel: its ES module is registered once
def _drawable_class():
    try:
        import anywidget
        import traitlets
    except ImportError as error:
        raise ImportError(
            "the drawable piano roll needs anywidget (pip install anywidget); the other widgets do not"
        ) from error

    class DrawableRoll(anywidget.AnyWidget):
        """A canvas of ``high - low + 1`` rows by ``steps`` columns; ``cells`` are the on cells."""

        _esm = ESM
        _css = CSS
        cells = traitlets.List(traitlets.Int()).tag(sync=True)
        overlay = traitlets.List(traitlets.Int()).tag(sync=True)
        low = traitlets.Int(DEFAULT_RANGE[0]).tag(sync=True)
        high = traitlets.Int(DEFAULT_RANGE[1]).tag(sync=True)
        steps = traitlets.Int(SEGMENT_STEPS).tag(sync=True)
        cell_px = traitlets.Int(14).tag(sync=True)
        bar_lines = traitlets.List(traitlets.Int(), list(FOUR_FOUR[0])).tag(sync=True)  # steps, 0 .. steps
        beat_lines = traitlets.List(traitlets.Int(), list(FOUR_FOUR[1])).tag(sync=True)

    return DrawableRoll


def drawable_roll_widget(model, pitch_range=DEFAULT_RANGE, n_variations: int = 4, start=None, bpm: float = 120.0):
    """Draw 2 bars, play them, and see and hear the model's reconstruction and nearby variations.

    Args:
        model: a ``MusicVAE`` (eval mode is kept).
        pitch_range: MIDI ``(low, high)`` rows of the canvas.
        n_variations: variations decoded around the drawing's code (spread on a slider).
        start: an ``(88, 32)`` roll to begin with (e.g. a data segment); ``None``: an empty grid.
        bpm: tempo of every clip and of the downloaded MIDI.

    Returns:
        ``ipywidgets.VBox`` (class ``mvc-drawable-roll-widget``); see the module docstring for its parts. Its
        attribute ``canvas`` is the drawing widget (``canvas.cells`` can be set from Python too).

    Taught in ``notebooks/02_latent_space_with_widgets.ipynb``.
    """
    import ipywidgets as widgets

    if isinstance(n_variations, bool) or int(n_variations) != n_variations or not 1 <= n_variations <= 16:
        # 0 failed on its first reconstruction; 16 variations are a 64-bar picture already
        raise ValueError(f"n_variations must be a whole number from 1 to 16, got {n_variations!r}")
    n_variations = int(n_variations)
    low, high = (int(p) for p in pitch_range)
    if not LOWEST_PITCH <= low < high < LOWEST_PITCH + N_PITCHES:
        raise ValueError(f"pitch_range must lie within 21-108 with low < high; got {pitch_range}")
    canvas = _drawable_class()(low=low, high=high)
    if start is not None:
        canvas.cells = roll_to_cells(start, low, high)
    view_range = (max(low - 2, LOWEST_PITCH), min(high + 2, LOWEST_PITCH + N_PITCHES - 1))
    panel = RollPanel(view_range, with_audio=True, bpm=bpm)
    grid_view = rollview.PianoRollView(n_steps=SEGMENT_STEPS * n_variations, pitch_range=view_range, figsize=(9, 2.6))
    variations_image = widgets.Image(format="png", layout=widgets.Layout(width="640px"))
    variations_image.add_class("mvc-variations-image")
    drawing_audio, variations_audio = (widgets.Audio(format="wav", autoplay=False, loop=False) for _ in range(2))
    drawing_audio.add_class("mvc-drawing-audio")
    variations_audio.add_class("mvc-variations-audio")
    labels = {
        "play": ("play drawing", "mvc-play-drawing-button"),
        "reconstruct": ("reconstruct", "mvc-reconstruct-button"),
        "clear": ("clear", "mvc-clear-button"),
        "phrase": ("hear the variations", "mvc-phrase-button"),
        "midi": ("make a MIDI file", "mvc-make-midi-button"),
    }
    buttons = {name: widgets.Button(description=text) for name, (text, _) in labels.items()}
    for name, (_, css) in labels.items():
        buttons[name].add_class(css)
    spread = widgets.FloatSlider(
        value=DEFAULT_SPREAD,
        min=0.0,
        max=4.0,
        step=0.25,
        description="spread (sigma)",
        continuous_update=False,
        style={"description_width": "initial"},
    )
    spread.add_class("mvc-spread-slider")
    upload = widgets.FileUpload(accept=".mid,.midi,.rmi,.kar", multiple=False, description="your MIDI")
    upload.add_class("mvc-upload")
    info = widgets.Label("draw notes (press, drag), then reconstruct")
    info.add_class("mvc-draw-info")
    download = widgets.Box()
    latest = {}  # the last reconstruction and variations, (1 + n, 88, 32)

    def drawing() -> np.ndarray:
        return cells_to_roll(canvas.cells, low, high)

    def play_drawing(_button=None):
        waveform, rate = audio.synthesize(drawing(), bpm=bpm)
        drawing_audio.value = audio.to_wav_bytes(waveform, rate)

    def reconstruct(_change=None):
        roll = drawing()
        reconstruction, variations = reconstruct_and_vary(model, roll, n_variations, spread.value)
        panel.show(reconstruction)
        canvas.overlay = roll_to_cells(reconstruction, low, high)
        grid_view.update(np.concatenate(list(variations), axis=1))
        variations_image.value = grid_view.to_png()
        latest["generated"] = np.stack([reconstruction, *variations])
        # The 8-bar phrase clip and the MIDI file cost more than the rest of an update together (~60 and
        # ~80 ms): they are made when asked for, so drawing and the spread slider stay under 100 ms.
        variations_audio.value, download.children = b"", []
        notes = int(roll.sum())
        info.value = f"{notes} cells drawn; reconstruction and {n_variations} variations at spread {spread.value:g}"

    def hear_phrase(_button=None):
        if "generated" not in latest:
            reconstruct()
        phrase = np.concatenate(list(latest["generated"][1:] >= 0.5), axis=1)
        waveform, rate = audio.synthesize(phrase, bpm=bpm)
        variations_audio.value = audio.to_wav_bytes(waveform, rate)

    def make_midi(_button=None):
        if "generated" not in latest:
            reconstruct()
        data = midi_bytes(latest["generated"], bpm)
        download.children = [download_link(data, "my_drawing_variations.mid", "download: reconstruction, variations")]

    def show_meter(bars: list[int], beats: list[int]) -> None:
        """Bar and beat lines (steps 0..32 of the window) on the canvas, the reconstruction and each variation."""
        canvas.bar_lines, canvas.beat_lines = bars, beats
        panel.view.set_grid(bars, beats)
        # each variation is a window of its own, drawn from the window's first downbeat: its lines repeat
        tiled = [[k * SEGMENT_STEPS + s for k in range(n_variations) for s in lines] for lines in (bars, beats)]
        grid_view.set_grid(*tiled)

    def clear(_button=None):
        canvas.cells, canvas.overlay = [], []
        show_meter(*FOUR_FOUR)  # a drawing is in the model's window: 2 bars of 4/4
        info.value = "cleared: draw notes (press, drag), then reconstruct"  # sent after the cells: a sign they are

    def on_upload(change):
        if not change["new"]:
            return
        try:
            name, window, bars, beats = _upload_window(change["new"])
        except ValueError as error:
            info.value = f"could not use the upload: {error}"
            return
        show_meter(bars, beats)  # the piece's own bars: 3/4 is not drawn as 4/4
        canvas.cells = roll_to_cells(window, low, high)
        reconstruct()
        info.value = (
            f"{name}: its first 2 bars with notes are drawn ({len(canvas.cells)} cells; notes outside "
            f"{low}-{high} not shown) and reconstructed"
        )

    buttons["play"].on_click(play_drawing)
    buttons["reconstruct"].on_click(reconstruct)
    buttons["clear"].on_click(clear)
    buttons["phrase"].on_click(hear_phrase)
    buttons["midi"].on_click(make_midi)
    spread.observe(reconstruct, names="value")
    upload.observe(on_upload, names="value")
    box = widgets.VBox(
        [
            canvas,
            widgets.HBox([buttons["play"], buttons["reconstruct"], buttons["clear"], upload]),
            drawing_audio,
            info,
            widgets.HTML("<b>the model's reconstruction</b> (orange outlines on the grid)"),
            panel.box,
            spread,
            widgets.HTML("<b>variations around its code</b>, played as one phrase"),
            variations_image,
            widgets.HBox([buttons["phrase"], variations_audio]),
            widgets.HBox([buttons["midi"], download]),
        ]
    )
    reconstruct()  # the images show from the start (the starting roll's reconstruction, or silence)
    box.add_class("mvc-drawable-roll-widget")
    box.canvas, box.reconstruct, box.hear_phrase, box.make_midi = canvas, reconstruct, hear_phrase, make_midi
    box.views = {"reconstruction": panel.view, "variations": grid_view}  # their bar lines follow the upload
    return box
