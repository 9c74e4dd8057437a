"""Original against reconstruction: the three-panel difference view.

Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb``; re-exported by :mod:`musicvae_course.ui.plots`.
"""

from __future__ import annotations

import numpy as np

from ..core.metrics import precision_recall_f1
from ..core.pianoroll import HIGHEST_PITCH, LOWEST_PITCH, binarize, single_roll
from .plots import (
    DEFAULT_CMAP,
    _draw_roll,
    _is_probability,
    _new_figure,
    _resolve_pitch_range,
    _sounding_pitches,
    _style_axes,
    add_colorbar,
    bar_numbers,
    detached,
    grid_lines,
    shape_hint,
    shown_once,
)

#: Classes of :func:`difference_classes` (cell values of the difference view).
SILENT, HIT, MISS, FALSE_POSITIVE = 0, 1, 2, 3
#: Okabe-Ito colours (readable with colour-blindness) for the difference view.
DIFFERENCE_COLOURS = {SILENT: "#ffffff", HIT: "#009E73", MISS: "#D55E00", FALSE_POSITIVE: "#0072B2"}
DIFFERENCE_LABELS = {HIT: "hit", MISS: "miss (original only)", FALSE_POSITIVE: "false positive (reconstruction only)"}


def _one_roll(roll, name: str) -> np.ndarray:
    """``(88, T)`` numpy of one roll, detached from autograd; a refused shape says what it probably is."""
    try:
        return single_roll(detached(roll), name)
    except ValueError as error:
        raise ValueError(f"{error}{shape_hint(roll)}") from None


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
    target = binarize(_one_roll(original, "original"), threshold)
    guess = binarize(_one_roll(reconstruction, "reconstruction"), threshold)
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
    time_signature=None,
    bar_lines=None,
    start: int = 0,
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
        time_signature, bar_lines, start: as in :func:`visualize_pianoroll`.

    Returns:
        The ``matplotlib.figure.Figure``. The reconstruction has a colour bar
        when it holds probabilities. The third panel colours hits, misses
        and false positives (see :data:`DIFFERENCE_COLOURS`) with a legend of
        counts, and its title gives precision, recall and F1 over cells.

    Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb``.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    target = _one_roll(original, "original")
    guess = _one_roll(reconstruction, "reconstruction")
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
    grid = grid_lines(target.shape[1], time_signature, bar_lines, start)
    numbers = bar_numbers(target.shape[1], time_signature, bar_lines, start)
    sounding = _sounding_pitches(both, None)
    _draw_roll(axes[0], target, None, (low, high), cmap, True, "original", grid, sounding, numbers)
    image = _draw_roll(axes[1], guess, None, (low, high), cmap, True, "reconstruction", grid, sounding, numbers)
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
    _style_axes(diff_ax, classes.shape[1], low, high, True, sounding, grid, numbers)
    counts = {c: int((classes == c).sum()) for c in (HIT, MISS, FALSE_POSITIVE)}
    scores = precision_recall_f1(counts[HIT], counts[FALSE_POSITIVE], counts[MISS])
    precision, recall, f1 = scores["precision"], scores["recall"], scores["f1"]
    diff_ax.set_title(f"at {threshold:g}: P {precision:.2f}  R {recall:.2f}  F1 {f1:.2f}")
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
    if _is_probability(guess[None], None):
        add_colorbar(image, axes[1], "probability")
    return shown_once(axes[0].figure)
