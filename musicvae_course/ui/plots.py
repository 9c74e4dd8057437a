"""Piano-roll pictures: one roll, a grid, original vs reconstruction, and a fast view.

Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb`` (visualize,
compare) and ``notebooks/02_latent_space_with_widgets.ipynb`` (the fast
``PianoRollView`` behind the widgets).

Conventions
-----------
* A roll is ``(88, T)``: row ``i`` is MIDI pitch ``21 + i``; one column per
  sixteenth note. The functions also take the model's shapes ``(1, 88, T)``,
  ``(1, 1, 88, T)`` and batches ``(B, 1, 88, T)`` / ``(B, 88, T)``, as torch
  tensors or numpy arrays, bool or probabilities in [0, 1].
* Probabilities are drawn as shades of one sequential colour map (0 = white),
  so an uncertain note looks faint; pass ``threshold=`` to draw on/off only.
* The pitch axis is in MIDI pitches and labelled with note names at each C
  (``C2``, ``C3``, ...); bar lines every 16 steps, beat lines every 4.
* Every function takes ``ax=None`` and returns the ``matplotlib.figure.Figure``.
  With ``ax=None`` the figure comes from ``plt.subplots``, so in a notebook it
  shows once at the end of the cell: write ``fig = visualize_pianoroll(x)``
  or end the line with ``;`` (a bare last expression would show it twice).
  Nothing here calls ``plt.show`` or draws on import.
"""

from __future__ import annotations

import io

import numpy as np

from ..core.metrics import precision_recall_f1
from ..core.pianoroll import (
    HIGHEST_PITCH,
    LOWEST_PITCH,
    N_PITCHES,
    STEPS_PER_BAR,
    STEPS_PER_BEAT,
    binarize,
    pitch_name,
    roll_batch,
    single_roll,
    to_numpy,
)

DEFAULT_CMAP = "Greys"  #: sequential: 0 white, 1 black, probabilities in between
#: Classes of :func:`difference_classes` (cell values of the difference view).
SILENT, HIT, MISS, FALSE_POSITIVE = 0, 1, 2, 3
#: Okabe-Ito colours (readable with colour-blindness) for the difference view.
DIFFERENCE_COLOURS = {SILENT: "#ffffff", HIT: "#009E73", MISS: "#D55E00", FALSE_POSITIVE: "#0072B2"}
DIFFERENCE_LABELS = {HIT: "hit", MISS: "miss (original only)", FALSE_POSITIVE: "false positive (reconstruction only)"}
_PITCH_MARGIN = 2  # semitones kept around the used range when cropping
_MIN_CROPPED_SPAN = 12  # a cropped view shows at least an octave


def as_roll_batch(roll, name: str = "roll") -> tuple[np.ndarray, bool]:
    """Any accepted roll shape as ``(B, 88, T)`` numpy, bool or float32 (:func:`~musicvae_course.core.pianoroll.
    roll_batch` does the checking), and whether it was a batch."""
    rolls, is_batch = roll_batch(roll, name)
    if rolls.shape[2] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(rolls.shape)}): nothing to draw")
    return to_numpy(rolls), is_batch


def used_pitch_range(rolls, threshold: float = 0.5) -> tuple[int, int]:
    """MIDI pitches ``(low, high)`` to show for the notes in ``rolls``.

    Args:
        rolls: ``(88, T)`` or ``(B, 88, T)``, bool or probabilities.
        threshold: probabilities at or above it count as notes.

    Returns:
        The used range widened by 2 semitones each side and to at least an
        octave, within 21-108; the full keyboard if no note is on.
    """
    rolls = np.asarray(rolls)
    on = binarize(rolls, threshold)
    rows = np.flatnonzero(on.reshape(-1, N_PITCHES, on.shape[-1]).any(axis=(0, 2)))
    if rows.size == 0:
        return LOWEST_PITCH, HIGHEST_PITCH
    low = LOWEST_PITCH + int(rows[0]) - _PITCH_MARGIN
    high = LOWEST_PITCH + int(rows[-1]) + _PITCH_MARGIN
    missing = _MIN_CROPPED_SPAN - (high - low)
    if missing > 0:
        low, high = low - missing // 2, high + (missing - missing // 2)
    return max(low, LOWEST_PITCH), min(high, HIGHEST_PITCH)


def _resolve_pitch_range(pitch_range, rolls: np.ndarray, threshold) -> tuple[int, int]:
    if pitch_range is None:
        return LOWEST_PITCH, HIGHEST_PITCH
    if isinstance(pitch_range, str):
        if pitch_range != "used":
            raise ValueError(f"pitch_range must be None, 'used' or (low, high); got {pitch_range!r}")
        return used_pitch_range(rolls, 0.5 if threshold is None else threshold)
    low, high = (int(p) for p in pitch_range)
    if not LOWEST_PITCH <= low <= high <= HIGHEST_PITCH:
        raise ValueError(f"pitch_range must lie within 21-108 with low <= high; got {pitch_range}")
    return low, high


def _style_axes(ax, n_steps: int, low: int, high: int, bars: bool) -> None:
    """Note-name pitch axis, step axis, beat and bar lines (gid 'beat-lines'/'bar-lines')."""
    ax.set_ylim(low - 0.5, high + 0.5)
    ax.set_xlim(-0.5, n_steps - 0.5)
    labelled = [p for p in range(low, high + 1) if p % 12 == 0]  # every C
    if len(labelled) < 3:  # a narrow view: C, E and G
        labelled = [p for p in range(low, high + 1) if p % 12 in (0, 4, 7)]
    ax.set_yticks(labelled)
    ax.set_yticklabels([pitch_name(p) for p in labelled])
    ax.set_ylabel("pitch")
    ax.set_xticks(np.arange(0, n_steps, STEPS_PER_BAR))
    ax.set_xlabel("step (sixteenth notes)")
    if not bars:
        return
    edges = np.arange(0, n_steps + 1) - 0.5  # line between step t-1 and t sits at t - 0.5
    beat = edges[(np.arange(n_steps + 1) % STEPS_PER_BEAT == 0) & (np.arange(n_steps + 1) % STEPS_PER_BAR != 0)]
    bar = edges[np.arange(n_steps + 1) % STEPS_PER_BAR == 0][1:-1]  # not the frame edges
    to_axes = ax.get_xaxis_transform()  # x in data, y in axes: lines span the view
    ax.vlines(beat, 0, 1, transform=to_axes, colors="#bbbbbb", linewidths=0.5, gid="beat-lines")
    ax.vlines(bar, 0, 1, transform=to_axes, colors="#555555", linewidths=1.0, gid="bar-lines")


def _draw_roll(ax, roll: np.ndarray, threshold, pitch_range, cmap, bars: bool, title):
    """Draw one ``(88, T)`` roll on ``ax``; return the ``AxesImage``."""
    low, high = _resolve_pitch_range(pitch_range, roll, threshold)
    data = binarize(roll, threshold) if threshold is not None else roll
    image = ax.imshow(
        data.astype(np.float32),
        origin="lower",
        aspect="auto",
        cmap=cmap,
        vmin=0.0,
        vmax=1.0,
        interpolation="nearest",
        # "data": resample the 88 x T values, then colour: same
        # pixels with nearest, and ~2.5x faster than colouring first.
        interpolation_stage="data",
        extent=(-0.5, roll.shape[1] - 0.5, LOWEST_PITCH - 0.5, HIGHEST_PITCH + 0.5),
    )
    _style_axes(ax, roll.shape[1], low, high, bars)
    if title is not None:
        ax.set_title(title)
    return image


def _new_figure(nrows: int = 1, ncols: int = 1, figsize=None, **kwargs):
    import matplotlib.pyplot as plt  # imported late: importing this module draws nothing

    return plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, **kwargs)


def visualize_pianoroll(
    roll,
    ax=None,
    title: str | None = None,
    threshold: float | None = None,
    bars: bool = True,
    pitch_range=None,
    cmap: str = DEFAULT_CMAP,
    figsize=(8, 4),
):
    """Draw a piano roll (or a grid of them, for a batch).

    Args:
        roll: ``(88, T)``, ``(1, 88, T)``, ``(1, 1, 88, T)``, or a batch
            ``(B, 1, 88, T)`` / ``(B, 88, T)`` drawn as a grid (see
            :func:`plot_pianoroll_grid`); tensor or array, bool or
            probabilities in [0, 1].
        ax: axes to draw a single roll on; ``None`` makes a new figure.
        title: axes title.
        threshold: if given, draw cells ``>= threshold`` as on and the rest
            off; if ``None``, probabilities are shades (0 white, 1 black).
        bars: draw bar lines (every 16 steps) and beat lines (every 4).
        pitch_range: ``None`` (all 88 keys), ``"used"`` (crop to the notes
            present, +-2 semitones, at least an octave) or MIDI ``(low, high)``.
        cmap: a sequential matplotlib colour map.
        figsize: inches, for a new figure.

    Returns:
        The ``matplotlib.figure.Figure``.

    Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb``.
    """
    rolls, is_batch = as_roll_batch(roll)
    if is_batch:
        if ax is not None:
            raise ValueError("a batch is drawn as a new grid; pass one roll when giving ax")
        return plot_pianoroll_grid(
            rolls, titles=None, threshold=threshold, bars=bars, pitch_range=pitch_range, cmap=cmap, suptitle=title
        )
    if ax is None:
        fig, axes = _new_figure(figsize=figsize, layout="constrained")
        ax = axes[0, 0]
    _draw_roll(ax, rolls[0], threshold, pitch_range, cmap, bars, title)
    return ax.figure


def plot_pianoroll_grid(
    rolls,
    ncols: int = 4,
    titles=None,
    threshold: float | None = None,
    bars: bool = True,
    pitch_range="used",
    cmap: str = DEFAULT_CMAP,
    suptitle: str | None = None,
    figsize=None,
):
    """Draw several rolls in a grid sharing one pitch axis.

    Args:
        rolls: ``(B, 1, 88, T)``, ``(B, 88, T)``, a single roll, or a list of
            ``(88, T)`` rolls of equal ``T``.
        ncols: columns of the grid (fewer if ``B`` is smaller).
        titles: ``B`` strings, or ``None`` for ``#0, #1, ...``.
        threshold, bars, cmap: as in :func:`visualize_pianoroll`.
        pitch_range: as in :func:`visualize_pianoroll`; ``"used"`` (default)
            takes the union of all rolls' notes so panels compare directly.
        suptitle: title of the whole figure.
        figsize: inches; default 3.2 x 2.6 per panel.

    Returns:
        The ``matplotlib.figure.Figure``.

    Taught in ``notebooks/04_generation.ipynb``.
    """
    if isinstance(rolls, (list, tuple)):
        rolls = np.stack([single_roll(r, f"rolls[{i}]") for i, r in enumerate(rolls)])
    batch, _ = as_roll_batch(rolls, "rolls")
    n = batch.shape[0]
    if titles is None:
        titles = [f"#{i}" for i in range(n)]
    if len(titles) != n:
        raise ValueError(f"titles has {len(titles)} entries for {n} rolls")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    low, high = _resolve_pitch_range(pitch_range, batch, threshold)
    fig, axes = _new_figure(
        nrows, ncols, figsize=figsize or (3.2 * ncols, 2.6 * nrows), sharex=True, sharey=True, layout="constrained"
    )
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_visible(False)
            continue
        _draw_roll(ax, batch[i], threshold, (low, high), cmap, bars, titles[i])
        if i % ncols:
            ax.set_ylabel("")
        if i < n - ncols:
            ax.set_xlabel("")
        else:  # the lowest panel of its column: sharex hid its tick labels if a row is short
            ax.xaxis.set_tick_params(labelbottom=True)
    if suptitle is not None:
        fig.suptitle(suptitle)
    return fig


def difference_classes(original, reconstruction, threshold: float = 0.5) -> np.ndarray:
    """Classify each cell of a reconstruction against its original.

    Args:
        original: one roll (any shape that squeezes to ``(88, T)``), bool or
            probabilities (cells ``>= threshold`` count as on).
        reconstruction: same shape, usually probabilities.
        threshold: on/off boundary for non-bool inputs.

    Returns:
        ``(88, T)`` int8 array: ``SILENT`` (0, off in both), ``HIT`` (1, on in
        both), ``MISS`` (2, on only in the original), ``FALSE_POSITIVE`` (3, on
        only in the reconstruction).

    Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb``.
    """
    target = binarize(single_roll(original, "original"), threshold)
    guess = binarize(single_roll(reconstruction, "reconstruction"), threshold)
    if target.shape != guess.shape:
        raise ValueError(f"original {target.shape} and reconstruction {guess.shape} differ in shape")
    classes = np.full(target.shape, SILENT, dtype=np.int8)
    classes[target & guess] = HIT
    classes[target & ~guess] = MISS
    classes[~target & guess] = FALSE_POSITIVE
    return classes


def compare_pianorolls(
    original,
    reconstruction,
    ax=None,
    threshold: float = 0.5,
    pitch_range="used",
    cmap: str = DEFAULT_CMAP,
    figsize=(14, 4),
):
    """Original, reconstruction and their difference, side by side.

    Args:
        original: one roll, bool or probabilities (see :func:`as_roll_batch`).
        reconstruction: one roll of the same shape, usually probabilities
            (drawn as shades).
        ax: ``None`` for a new 1x3 figure, or a sequence of three axes.
        threshold: cells ``>= threshold`` count as notes in the difference view.
        pitch_range: as in :func:`visualize_pianoroll`; ``"used"`` takes the
            notes of both rolls.
        cmap: colour map of the first two panels.
        figsize: inches, for a new figure.

    Returns:
        The ``matplotlib.figure.Figure``. The third panel colours hits, misses
        and false positives (see :data:`DIFFERENCE_COLOURS`) with a legend of
        counts, and its title gives precision, recall and F1 over cells.

    Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb``.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    target = single_roll(original, "original")
    guess = single_roll(reconstruction, "reconstruction")
    classes = difference_classes(target, guess, threshold)
    if ax is None:
        fig, axes = _new_figure(1, 3, figsize=figsize, sharey=True, layout="constrained")
        axes = list(axes.flat)
    else:
        axes = list(np.ravel(ax))
        if len(axes) != 3:
            raise ValueError(f"ax must be three axes (original, reconstruction, difference), got {len(axes)}")
    both = np.stack([binarize(target, threshold), binarize(guess, threshold)])
    low, high = _resolve_pitch_range(pitch_range, both, None)
    _draw_roll(axes[0], target, None, (low, high), cmap, True, "original")
    _draw_roll(axes[1], guess, None, (low, high), cmap, True, "reconstruction")
    colours = ListedColormap([DIFFERENCE_COLOURS[c] for c in (SILENT, HIT, MISS, FALSE_POSITIVE)])
    diff_ax = axes[2]
    diff_ax.imshow(
        classes,
        origin="lower",
        aspect="auto",
        cmap=colours,
        vmin=-0.5,
        vmax=3.5,
        interpolation="nearest",
        extent=(-0.5, classes.shape[1] - 0.5, LOWEST_PITCH - 0.5, HIGHEST_PITCH + 0.5),
    )
    _style_axes(diff_ax, classes.shape[1], low, high, True)
    counts = {c: int((classes == c).sum()) for c in (HIT, MISS, FALSE_POSITIVE)}
    scores = precision_recall_f1(counts[HIT], counts[FALSE_POSITIVE], counts[MISS])
    precision, recall, f1 = scores["precision"], scores["recall"], scores["f1"]
    diff_ax.set_title(f"difference at {threshold:g}: P {precision:.2f}  R {recall:.2f}  F1 {f1:.2f}")
    diff_ax.legend(
        handles=[
            Patch(color=DIFFERENCE_COLOURS[c], label=f"{DIFFERENCE_LABELS[c]}: {counts[c]}")
            for c in (HIT, MISS, FALSE_POSITIVE)
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.15),
        fontsize="small",
        frameon=False,
    )  # below the panel, so it never hides a note
    for other in axes[1:]:
        other.set_ylabel("")
    return axes[0].figure


class PianoRollView:
    """A piano-roll figure drawn once and then updated in place (for widgets).

    ``update(roll)`` swaps the image data (``AxesImage.set_data``) instead of
    building a new figure, which is what makes a slider feel immediate.

    Two modes:

    * ``ax=None`` (default): a stand-alone Agg figure that pyplot does not know
      about (never shown twice, no global state). ``to_png()`` gives the
      picture for an ``ipywidgets.Image``; this works in plain JupyterLab with
      no interactive matplotlib backend (ipympl not needed). The axes, ticks
      and labels are rasterised once and kept as a background; each
      ``to_png()`` pastes it back and draws only the image and the bar lines
      (blitting), because drawing tick labels is most of a full redraw
      (measured: ~20 ms instead of ~180 ms on this kit's CI machine).
    * ``ax`` given (e.g. from ``plt.subplots`` under ipympl): ``update`` calls
      ``figure.canvas.draw_idle()``, the backend redraws when it can, and
      ``to_png()`` falls back to a full ``savefig``.

    Args:
        n_steps: time steps ``T`` of every roll shown (32 for the model).
        ax: see above.
        title, threshold, pitch_range, cmap, bars: as in
            :func:`visualize_pianoroll`. The pitch range is fixed for the life
            of the view (``"used"`` is refused: the axis would jump on every
            change). The title is fixed too: show changing text elsewhere.
        figsize, dpi: size of the stand-alone figure; small keeps PNGs fast.

    Attributes:
        figure, ax, image: the matplotlib objects.

    Taught in ``notebooks/02_latent_space_with_widgets.ipynb``.
    """

    def __init__(
        self,
        n_steps: int = 32,
        ax=None,
        title: str | None = None,
        threshold: float | None = None,
        pitch_range=None,
        cmap: str = DEFAULT_CMAP,
        bars: bool = True,
        figsize=(6.0, 3.2),
        dpi: int = 80,
    ):
        if isinstance(pitch_range, str):
            raise ValueError("PianoRollView needs a fixed pitch_range: None or (low, high)")
        self._standalone = ax is None
        if self._standalone:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure

            self.figure = Figure(figsize=figsize, dpi=dpi, layout="constrained")
            FigureCanvasAgg(self.figure)
            ax = self.figure.add_subplot()
        else:
            self.figure = ax.figure
        self.ax = ax
        self.threshold = threshold
        self.n_steps = int(n_steps)
        blank = np.zeros((N_PITCHES, self.n_steps), dtype=np.float32)
        self.image = _draw_roll(ax, blank, None, pitch_range, cmap, bars, title)
        # Artists redrawn on every change; the rest is the cached background.
        self._foreground = [self.image, *ax.collections]
        self._background = None
        if self._standalone:
            for artist in self._foreground:
                artist.set_animated(True)  # left out of full draws: blitted instead

    def update(self, roll) -> None:
        """Show ``roll`` (any single-roll shape with ``T = n_steps``)."""
        data = single_roll(roll, "roll")
        if data.shape[1] != self.n_steps:
            raise ValueError(f"roll has {data.shape[1]} steps; this view shows {self.n_steps}")
        if self.threshold is not None:
            data = binarize(data, self.threshold)
        self.image.set_data(data.astype(np.float32))
        if not self._standalone:
            self.figure.canvas.draw_idle()

    def rgba(self) -> np.ndarray:
        """The current picture, ``(height, width, 4)`` uint8 (stand-alone mode)."""
        if not self._standalone:
            raise RuntimeError("rgba() needs the stand-alone figure (ax=None)")
        canvas = self.figure.canvas
        if self._background is None:
            canvas.draw()  # lays out and rasterises everything but the foreground
            self._background = canvas.copy_from_bbox(self.figure.bbox)
        canvas.restore_region(self._background)
        for artist in self._foreground:
            self.ax.draw_artist(artist)
        return np.asarray(canvas.buffer_rgba())

    def to_png(self) -> bytes:
        """The current picture as PNG bytes (for ``ipywidgets.Image.value``)."""
        buffer = io.BytesIO()
        if not self._standalone:
            self.figure.savefig(buffer, format="png", dpi=self.figure.dpi)
            return buffer.getvalue()
        from PIL import Image  # Pillow ships with matplotlib

        # compress_level=1: a few ms instead of tens; PNGs of rolls stay small.
        # RGBA as rendered: no copy to drop the alpha channel.
        Image.fromarray(self.rgba()).save(buffer, format="png", compress_level=1)
        return buffer.getvalue()
