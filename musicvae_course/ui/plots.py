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
* The pitch axis is in MIDI pitches, labelled with note names where notes
  are (every sounding pitch when there are few; else each C plus the lowest
  and highest note).
* Bar and beat lines follow a meter: ``time_signature="6/8"`` for a bare
  roll, or ``bar_lines=`` a file's :func:`~musicvae_course.core.meter.meter`
  (or its :func:`~musicvae_course.core.meter.bar_lines`), with ``start=`` the
  step of the piece where the roll begins. Default: 4/4 (the model's window,
  2 bars of 4/4 as the model card defines it).
* Probability pictures carry a colour bar; on/off pictures do not need one.
* Every function takes ``ax=None`` and returns the ``matplotlib.figure.Figure``.
  With ``ax=None`` the figure comes from ``plt.subplots``, so in a notebook it
  shows once at the end of the cell: write ``fig = visualize_pianoroll(x)``
  or end the line with ``;`` (a bare last expression would show it twice).
  Nothing here calls ``plt.show`` or draws on import.
"""

from __future__ import annotations

import numpy as np

from ..core.pianoroll import (
    HIGHEST_PITCH,
    LOWEST_PITCH,
    N_PITCHES,
    binarize,
    pitch_name,
    roll_batch,
    single_roll,
    to_numpy,
)
from .barlines import bar_numbers, draw_bar_numbers, grid_lines, set_step_ticks, thin_grid
from .figures import say_if_silent, shown_once

_set_step_ticks = set_step_ticks  # the name rollview imported before the bar helpers moved to barlines

DEFAULT_CMAP = "Greys"  #: sequential: 0 white, 1 black, probabilities in between
_PITCH_MARGIN = 2  # semitones kept around the used range when cropping
_MIN_CROPPED_SPAN = 12  # a cropped view shows at least an octave


def as_roll_batch(roll, name: str = "roll") -> tuple[np.ndarray, bool]:
    """Any accepted roll shape as ``(B, 88, T)`` numpy, bool or float32 (:func:`~musicvae_course.core.pianoroll.
    roll_batch` does the checking), and whether it was a batch. A tensor that requires grad is detached first
    (a picture needs no gradient; checking it attached warned on every call)."""
    try:
        rolls, is_batch = roll_batch(detached(roll), name)
    except ValueError as error:
        raise ValueError(f"{error}{shape_hint(roll)}") from None
    if rolls.shape[2] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(rolls.shape)}): nothing to draw")
    return to_numpy(rolls), is_batch


def detached(roll):
    """``roll`` without its autograd graph, if it is a tensor (``model.decode(z)`` in a training loop)."""
    return roll.detach() if hasattr(roll, "detach") else roll


def shape_hint(roll) -> str:
    """What a refused shape probably is, said after the error: a roll with time first, or 128 MIDI pitches."""
    shape = tuple(getattr(roll, "shape", np.shape(roll) if isinstance(roll, (list, tuple)) else ()))
    if len(shape) >= 2 and shape[-1] == N_PITCHES and shape[-2] != N_PITCHES:
        return "; it looks transposed, time first: pass roll.T (or .transpose(-1, -2) for a batch)"
    if len(shape) >= 2 and shape[-2] == 128:
        return "; 128 rows are all MIDI pitches: keep the piano's 88 (pitches 21-108) with roll[..., 21:109, :]"
    return ""


def checked_ax(ax, name: str = "ax"):
    """``ax`` if it is one matplotlib Axes (a 1-element array of them is unwrapped), else a clear error: a whole
    ``plt.subplots`` grid passed where one of its axes was meant failed deep inside with an AttributeError."""
    if ax is None or hasattr(ax, "imshow"):
        return ax
    flat = np.ravel(np.asarray(ax, dtype=object)) if isinstance(ax, (list, tuple, np.ndarray)) else None
    if flat is not None and flat.size == 1 and hasattr(flat[0], "imshow"):
        return flat[0]
    what = f"an array of {flat.size} axes" if flat is not None else f"a {type(ax).__name__}"
    raise ValueError(f"{name} must be one matplotlib Axes (e.g. axes[0, 1] of plt.subplots), got {what}")


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
    try:
        low, high = (int(p) for p in pitch_range)
    except (TypeError, ValueError):
        raise ValueError(f"pitch_range must be None, 'used' or MIDI (low, high); got {pitch_range!r}") from None
    if not LOWEST_PITCH <= low <= high <= HIGHEST_PITCH:
        raise ValueError(f"pitch_range must lie within 21-108 with low <= high; got {pitch_range}")
    return low, high


#: most panels one grid draws: matplotlib's constrained layout grows faster than the panels (16 panels
#: 3 s, 64 panels 12 s, 256 over 5 minutes here), and a notebook cell would hang on model.sample(256)
MAX_GRID_PANELS = 64
_MAX_NAMED_PITCHES = 24  # more sounding pitches than this: name the Cs and the outer notes only


def _pitch_labels(low: int, high: int, sounding, max_labels: int = 30) -> list[int]:
    """Pitches to name on the axis: the sounding ones when few, else each C plus the lowest and highest note;
    in a tall range, neighbours closer than a few semitones are thinned so that labels never overlap."""
    sounding = sorted(int(p) for p in sounding if low <= p <= high)
    # semitones between labels: 1 up to two octaves shown, 2 up to four, ..., and as many as the axes' height needs
    min_gap = max(1 + (high - low) // 24, -(-(high - low + 1) // max(max_labels, 2)))
    if 0 < len(sounding) <= _MAX_NAMED_PITCHES:
        candidates = sounding
    else:
        candidates = sorted({p for p in range(low, high + 1) if p % 12 == 0} | set(sounding[:1] + sounding[-1:]))
        if len(candidates) < 3 and not sounding:  # a narrow, empty view: C, E and G
            candidates = [p for p in range(low, high + 1) if p % 12 in (0, 4, 7)]
        min_gap = max(min_gap, 3)  # a C next to an outer note would overlap it
    if not candidates:
        return []
    # keep the outer notes; drop an inner label that would touch its kept neighbours
    kept = [candidates[0]]
    for pitch in candidates[1:-1]:
        if pitch - kept[-1] >= min_gap and candidates[-1] - pitch >= min_gap:
            kept.append(pitch)
    if candidates[-1] != kept[0]:
        kept.append(candidates[-1])
    return kept


def _style_axes(ax, n_steps: int, low: int, high: int, bars: bool, sounding=(), grid=((), ()), numbers=()) -> None:
    """Note-name pitch axis, step axis, beat and bar lines (gid 'beat-lines'/'bar-lines'), and ``numbers``
    (``(step, bar number)`` pairs from :func:`bar_numbers`) above the axes; lines and numbers thinned to what
    the axes' width shows apart (:func:`~musicvae_course.ui.barlines.thin_grid`)."""
    ax.set_ylim(low - 0.5, high + 0.5)
    ax.set_xlim(-0.5, n_steps - 0.5)
    figure_height = ax.figure.get_figheight() if ax.figure is not None else 4.0
    height_in = figure_height * ax.get_position().height
    # the axes shrink under constrained layout once titles and labels are placed: count 16 pt per label
    labelled = _pitch_labels(low, high, sounding, max_labels=int(height_in * 72 / 16))
    ax.set_yticks(labelled)
    ax.set_yticklabels([pitch_name(p) for p in labelled], fontsize="small" if len(labelled) > 8 else None)
    ax.set_ylabel("pitch")
    bar_steps, beat_steps, numbers = thin_grid(ax, n_steps, grid, numbers if bars else ())
    set_step_ticks(ax, n_steps, bar_steps)
    ax.set_xlabel("step (sixteenth notes)")
    if not bars:
        return
    to_axes = ax.get_xaxis_transform()  # x in data, y in axes: lines span the view
    # a line between step t-1 and t sits at t - 0.5
    ax.vlines(np.asarray(beat_steps) - 0.5, 0, 1, transform=to_axes, colors="#bbbbbb", linewidths=0.5, gid="beat-lines")
    ax.vlines(np.asarray(bar_steps) - 0.5, 0, 1, transform=to_axes, colors="#555555", linewidths=1.0, gid="bar-lines")
    draw_bar_numbers(ax, numbers)


def _sounding_pitches(roll: np.ndarray, threshold) -> np.ndarray:
    on = binarize(roll, 0.5 if threshold is None else threshold)
    return LOWEST_PITCH + np.flatnonzero(np.asarray(on).reshape(-1, N_PITCHES, on.shape[-1]).any(axis=(0, 2)))


def _pooled(data: np.ndarray, ax) -> tuple[np.ndarray, int]:
    """``data`` ``(88, T)`` with every ``k`` columns merged by their maximum, and ``k``: 1 while ``T`` fits the
    axes' pixels at the figure's dpi (a high-density screen gives each two), more beyond. Nearest-neighbour drawing of
    10,000 steps on ~700 pixels showed one column in 14 and dropped the notes between them; the maximum keeps
    every note (and the highest probability) of its columns."""
    pixels = max(int(ax.figure.dpi * ax.figure.get_figwidth() * ax.get_position().width), 64)
    k = -(-data.shape[1] // pixels)
    if k <= 1:
        return data, 1
    padded = np.pad(data, ((0, 0), (0, (-data.shape[1]) % k)))  # zeros: no note, the lowest value
    return padded.reshape(data.shape[0], -1, k).max(axis=2), k


def _draw_roll(
    ax, roll: np.ndarray, threshold, pitch_range, cmap, bars: bool, title, grid=None, sounding=None, numbers=()
):
    """Draw one ``(88, T)`` roll on ``ax``; return the ``AxesImage``.

    ``grid``: ``(bars, beats)`` from :func:`grid_lines` (default 4/4); ``sounding``: pitches to name (default
    the roll's own); ``numbers``: bar numbers to print above (:func:`bar_numbers`; none by default)."""
    low, high = _resolve_pitch_range(pitch_range, roll, threshold)
    data, k = _pooled((binarize(roll, threshold) if threshold is not None else roll).astype(np.float32), ax)
    image = ax.imshow(
        data,
        origin="lower",
        aspect="auto",
        cmap=cmap,
        vmin=0.0,
        vmax=1.0,
        interpolation="nearest",
        # "data": resample the 88 x T values, then colour: same
        # pixels with nearest, and ~2.5x faster than colouring first.
        interpolation_stage="data",
        extent=(-0.5, data.shape[1] * k - 0.5, LOWEST_PITCH - 0.5, HIGHEST_PITCH + 0.5),
    )
    grid = grid_lines(roll.shape[1]) if grid is None else grid
    sounding = _sounding_pitches(roll, threshold) if sounding is None else sounding
    _style_axes(ax, roll.shape[1], low, high, bars, sounding, grid, numbers)
    if title is not None:
        ax.set_title(title)
    return image


def _is_probability(rolls: np.ndarray, threshold) -> bool:
    return threshold is None and rolls.dtype != bool and bool(((rolls > 0) & (rolls < 1)).any())


def add_colorbar(image, ax, label: str = "note probability"):
    """A slim colour bar for a probability image (0 = white ... 1 = black) beside ``ax`` (or a list of axes)."""
    bar = image.figure.colorbar(image, ax=ax, fraction=0.04, pad=0.01, ticks=[0, 0.5, 1])
    bar.set_label(label, fontsize="small")
    bar.ax.tick_params(labelsize="small")
    return bar


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
    time_signature=None,
    bar_lines=None,
    start: int = 0,
    overlay=None,
    overlay_label: str = "target",
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
        bars: draw bar and beat lines.
        pitch_range: ``None`` (all 88 keys), ``"used"`` (crop to the notes
            present, +-2 semitones, at least an octave) or MIDI ``(low, high)``.
        cmap: a sequential matplotlib colour map.
        figsize: inches, for a new figure.
        time_signature, bar_lines, start: the meter of the bar and beat lines
            (see :func:`grid_lines`); default 4/4 from the first column.
        overlay: a bool roll ``(88, T')`` with ``T' <= T`` (e.g. the bar a
            continuation must match) drawn over the roll in translucent
            orange from step 0, named ``overlay_label`` in a legend.

    Returns:
        The ``matplotlib.figure.Figure``; probabilities get a colour bar.

    Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb``.
    """
    rolls, is_batch = as_roll_batch(roll)
    ax = checked_ax(ax)
    if is_batch:
        if ax is not None:
            raise ValueError("a batch is drawn as a new grid; pass one roll when giving ax")
        return plot_pianoroll_grid(
            rolls,
            titles=None,
            threshold=threshold,
            bars=bars,
            pitch_range=pitch_range,
            cmap=cmap,
            suptitle=title,
            time_signature=time_signature,
            bar_lines=bar_lines,
            start=start,
        )
    if ax is None:
        fig, axes = _new_figure(figsize=figsize, layout="constrained")
        ax = axes[0, 0]
    grid = grid_lines(rolls.shape[2], time_signature, bar_lines, start)
    numbers = bar_numbers(rolls.shape[2], time_signature, bar_lines, start)
    image = _draw_roll(ax, rolls[0], threshold, pitch_range, cmap, bars, title, grid, numbers=numbers)
    say_if_silent(ax, rolls[0], threshold)
    if overlay is not None:
        _draw_overlay(ax, overlay, rolls.shape[2], overlay_label)
    if _is_probability(rolls, threshold):
        add_colorbar(image, ax)
    return shown_once(ax.figure)


def _draw_overlay(ax, overlay, n_steps: int, label: str) -> None:
    from matplotlib.patches import Patch

    cells = binarize(single_roll(overlay, "overlay"))
    if cells.shape[1] > n_steps:
        raise ValueError(f"overlay has {cells.shape[1]} steps; the roll has {n_steps}")
    rgba = np.zeros((N_PITCHES, n_steps, 4), np.float32)
    rgba[:, : cells.shape[1]][cells] = (0.835, 0.369, 0.0, 0.55)  # Okabe-Ito vermillion, translucent
    ax.imshow(
        rgba,
        origin="lower",
        aspect="auto",
        interpolation="nearest",
        extent=(-0.5, n_steps - 0.5, LOWEST_PITCH - 0.5, HIGHEST_PITCH + 0.5),
    )
    ax.legend(
        handles=[Patch(color=(0.835, 0.369, 0.0, 0.55), label=label)],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.18),
        fontsize="small",
        frameon=False,
    )  # below the axes: it never hides a note


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
    time_signature=None,
    bar_lines=None,
    start: int = 0,
):
    """Draw several rolls in a grid sharing one pitch axis.

    Args:
        rolls: ``(B, 1, 88, T)``, ``(B, 88, T)``, a single roll, or a list of
            ``(88, T)`` rolls of equal ``T``; ``B <= MAX_GRID_PANELS`` (64).
        ncols: columns of the grid (fewer if ``B`` is smaller).
        titles: ``B`` strings, or ``None`` for ``#0, #1, ...``.
        threshold, bars, cmap: as in :func:`visualize_pianoroll`.
        pitch_range: as in :func:`visualize_pianoroll`; ``"used"`` (default)
            takes the union of all rolls' notes so panels compare directly.
        suptitle: title of the whole figure.
        figsize: inches; default 3.2 x 2.6 per panel.
        time_signature, bar_lines, start: as in :func:`visualize_pianoroll`.

    Returns:
        The ``matplotlib.figure.Figure``; one colour bar for all panels when
        they hold probabilities.

    Taught in ``notebooks/04_generation.ipynb``.
    """
    if isinstance(rolls, (list, tuple)):
        if not rolls:
            raise ValueError("rolls is an empty list: nothing to draw")
        rolls = [single_roll(detached(r), f"rolls[{i}]") for i, r in enumerate(rolls)]
        for i, r in enumerate(rolls):
            if r.shape != rolls[0].shape:  # np.stack said only "all input arrays must have the same shape"
                raise ValueError(
                    f"rolls[{i}] has {r.shape[1]} steps and rolls[0] {rolls[0].shape[1]}: a grid needs one T"
                )
        rolls = np.stack(rolls)
    batch, _ = as_roll_batch(rolls, "rolls")
    n = batch.shape[0]
    if n > MAX_GRID_PANELS:
        raise ValueError(
            f"rolls holds {n} rolls; a grid draws at most {MAX_GRID_PANELS} (plots.MAX_GRID_PANELS): "
            f"pass a slice, e.g. rolls[:{min(16, MAX_GRID_PANELS)}]"
        )
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
    grid = grid_lines(batch.shape[2], time_signature, bar_lines, start)
    numbers = bar_numbers(batch.shape[2], time_signature, bar_lines, start)
    sounding = _sounding_pitches(batch, threshold)  # one shared axis: name the notes of every panel
    image = None
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_visible(False)
            continue
        # bar numbers over the first row only: the columns below share its steps
        shown = numbers if i < ncols else ()
        image = _draw_roll(ax, batch[i], threshold, (low, high), cmap, bars, titles[i], grid, sounding, shown)
        say_if_silent(ax, batch[i], threshold)
        if i % ncols:
            ax.set_ylabel("")
        if i < n - ncols:
            ax.set_xlabel("")
        else:  # the lowest panel of its column: sharex hid its tick labels if a row is short
            ax.xaxis.set_tick_params(labelbottom=True)
    if _is_probability(batch, threshold):
        add_colorbar(image, [ax for ax in axes.flat if ax.get_visible()])
    if suptitle is not None:
        fig.suptitle(suptitle)
    return shown_once(fig)
