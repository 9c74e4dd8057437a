"""Bars in a piano-roll picture: where the bar and beat lines go, the bar numbers above them, and how many of
either a figure can show.

Used by :mod:`musicvae_course.ui.plots` (and through it :mod:`~musicvae_course.ui.compare` and
:mod:`~musicvae_course.ui.rollview`); the meter itself comes from :mod:`musicvae_course.core.meter`. Taught in
``notebooks/01_loading_the_pretrained_vae.ipynb`` (a hymn in 6/8 with a pickup, drawn in its own bars).

A long roll keeps one bar line every 2, 4, 8 ... bars and no beat lines once they would stand closer than a few
pixels: 625 bars of 4/4 (10,000 steps) drawn each were a grey wash that hid every note.
"""

from __future__ import annotations

import bisect

import numpy as np

from ..core.meter import Meter, bar_steps, meter_grid, numbered_downbeats, parse_time_signature

_MIN_LINE_GAP_IN = 0.1  # bar lines closer than this (inches, 8 px at 80 dpi) blur into grey: keep fewer
_MIN_BEAT_GAP_IN = 0.05  # beat lines closer than this are left out
_MAX_STEP_LABELS = 24  # more bar lines than this: the step axis gets round numbers instead


def grid_lines(n_steps: int, time_signature=None, bar_lines=None, start: int = 0) -> tuple[list[int], list[int]]:
    """Bar and beat positions (steps from the roll's first column, inside ``1 .. n_steps - 1``) of a roll.

    Args:
        n_steps: columns of the roll.
        time_signature: ``"3/4"``, ``(6, 8)`` ...: a regular grid from the roll's ``start``; default 4/4.
        bar_lines: a :class:`~musicvae_course.core.meter.Meter` (bars and beats) or a list of downbeat steps
            (bars only, beats from ``time_signature`` if given), in steps of the piece.
        start: step of the piece at the roll's first column (for a window cut from a piece), >= 0.

    Returns:
        ``(bars, beats)``: sorted step lists; a beat on a bar line is left out of ``beats``.
    """
    start = _checked_start(start)
    if bar_lines is None:
        grid = meter_grid(parse_time_signature(time_signature or "4/4"), start + n_steps)
        downbeats, beats = grid.downbeats, grid.beats
    elif isinstance(bar_lines, Meter):
        downbeats, beats = bar_lines.downbeats, bar_lines.beats
    else:
        downbeats = sorted(int(b) for b in bar_lines)
        beats = []
        if time_signature is not None:  # beats inside each given bar
            signature = parse_time_signature(time_signature)
            step = meter_grid(signature, int(2 * bar_steps(signature)) + 64).beats[1]  # two bars hold a second beat
            ends = [*downbeats[1:], start + n_steps]
            beats = [b for d, e in zip(downbeats, ends) for b in range(d, e, step)]
    bars = sorted({d - start for d in downbeats if 0 < d - start < n_steps})
    beats = sorted({b - start for b in beats if 0 < b - start < n_steps} - set(bars))
    return bars, beats


def bar_numbers(n_steps: int, time_signature=None, bar_lines=None, start: int = 0) -> list[tuple[int, int, str]]:
    """``(step of the roll, bar number, time signature)`` of each bar that starts in columns ``0 .. n_steps - 1``.

    Arguments as in :func:`grid_lines`. Bar 1 is the first full bar of the piece: a pickup, whether the file marks
    it with a short time signature or ``pickup_steps`` gave it, is not numbered
    (:func:`~musicvae_course.core.meter.numbered_downbeats`, as :func:`~musicvae_course.core.meter.bar_number_span`
    counts for titles). A bare roll (``time_signature`` only) counts bar 1 from step 0 of the piece.
    The time signature (``"3/4"``) is given where one starts and at the first bar shown, as a score prints it;
    ``""`` elsewhere, and for a list of downbeats without ``time_signature`` (a list carries no meter).
    """
    start = _checked_start(start)
    if bar_lines is None:
        signature = parse_time_signature(time_signature or "4/4")
        numbered, signatures = meter_grid(signature, start + n_steps).downbeats, [signature]
    else:
        downbeats = bar_lines.downbeats if isinstance(bar_lines, Meter) else sorted(int(b) for b in bar_lines)
        signatures = list(bar_lines.signatures) if isinstance(bar_lines, Meter) else []
        # the signatures tell a pickup from a meter that changes every bar (5/8, 6/8, 5/8 ...)
        numbered = numbered_downbeats(Meter(list(downbeats), [], signatures, 0))
        if not signatures and time_signature is not None:
            signatures = [parse_time_signature(time_signature)]
    shown = [(d - start, i + 1) for i, d in enumerate(numbered) if 0 <= d - start < n_steps]
    # a signature per bar (5/8, 6/8 ... for thousands of bars): found by bisection, not by a scan per bar
    starts = [s.step for s in signatures]
    named = []
    for index, (step, number) in enumerate(shown):
        in_force = bisect.bisect_right(starts, step + start)
        starts_here = in_force > 0 and starts[in_force - 1] == step + start
        text = str(signatures[in_force - 1]) if in_force and (index == 0 or starts_here) else ""
        named.append((step, number, text))
    return named


def _checked_start(start) -> int:
    if isinstance(start, bool) or int(start) != start or start < 0:
        raise ValueError(f"start must be a whole step >= 0 (where the roll begins in the piece), got {start!r}")
    return int(start)


def _stride(gap_in: float, needed_in: float) -> int:
    """Smallest power of two ``k`` with ``k * gap_in >= needed_in``: keep every k-th bar."""
    k = 1
    while k * gap_in < needed_in and k < 1 << 20:
        k *= 2
    return k


def _typical_gap(steps) -> float:
    """Median distance between neighbours of ``steps`` (a pickup or a bar cut short is not typical)."""
    return float(np.median(np.diff(steps))) if len(steps) >= 2 else float("inf")


def _axes_width_in(ax) -> float:
    return (ax.figure.get_figwidth() if ax.figure is not None else 8.0) * ax.get_position().width


def thin_grid(ax, n_steps: int, grid, numbers=()) -> tuple[list[int], list[int], list[tuple[int, str]]]:
    """The bar lines, beat lines and labelled bar numbers (``(step, text)``) that ``ax`` can show apart.

    Bar lines stand at least ``_MIN_LINE_GAP_IN`` apart: else every k-th bar (k = 2, 4, 8 ...) keeps its line, the
    bars numbered ``1, 1 + k, 1 + 2k``: phrases start there. Numbers thin the same way until the usual one fits
    between its neighbours; then any label that would still touch the one before it (the first, "bar 1 (6/8)", is
    wider) is left out. Beat lines go when they would stand closer than ``_MIN_BEAT_GAP_IN``.
    """
    bars, beats = grid
    per_step = _axes_width_in(ax) / max(n_steps, 1)
    bar_gap = _typical_gap(sorted({*bars, *(step for step, _, _ in numbers)})) * per_step
    lines_every = _stride(bar_gap, _MIN_LINE_GAP_IN)
    widest = max((_label_width(str(number)) for _, number, _ in numbers), default=0.0)
    numbers_every = max(lines_every, _stride(bar_gap, widest))
    if lines_every > 1:
        number_at = {step: number for step, number, _ in numbers}
        bars = [
            step
            for index, step in enumerate(bars)
            if (number_at[step] - 1 if step in number_at else index) % lines_every == 0
        ]
    labelled: list[tuple[int, str]] = []
    for step, number, signature in numbers:
        if (number - 1) % numbers_every:
            continue
        text = ("bar " if not labelled else "") + (f"{number} ({signature})" if signature else str(number))
        if labelled:  # centred on their bar lines: half of each width must fit between them
            before_step, before = labelled[-1]
            if (step - before_step) * per_step < (_label_width(before) + _label_width(text)) / 2:
                continue
        labelled.append((step, text))
    if _typical_gap(beats) * per_step < _MIN_BEAT_GAP_IN or lines_every > 1:
        beats = []
    return bars, beats, labelled


def _label_width(text: str) -> float:
    """Inches a bar-number label takes at 8 pt (``fontsize="small"``), with a gap."""
    return 0.065 * len(text) + 0.06


def step_ticks(bars, n_steps: int, width_in: float) -> list[int]:
    """Steps to label on the step axis: 0 and the bar lines ``bars``, less any label that would touch the one
    before it on axes ``width_in`` inches wide. A pickup of an eighth puts a bar 2 steps from 0: its label wins,
    since it names a downbeat and 0 names only the edge."""
    inches_per_step = width_in / max(n_steps, 1)

    def half_width(step: int) -> float:  # a tick label in inches, half of it: digits at 10 pt, and a gap
        return (0.08 * len(str(step)) + 0.06) / 2

    kept: list[int] = []
    for step in bars:
        if not kept or (step - kept[-1]) * inches_per_step >= half_width(step) + half_width(kept[-1]):
            kept.append(step)
    if not kept or kept[0] * inches_per_step >= half_width(kept[0]) + half_width(0):
        kept.insert(0, 0)
    return kept


def set_step_ticks(ax, n_steps: int, bar_steps) -> None:
    """Label the step axis at the bar lines (every other one past 12 bars), no two labels touching; past
    ``_MAX_STEP_LABELS`` bar lines, at round numbers of steps (the bar numbers above name the bars)."""
    if len(bar_steps) > _MAX_STEP_LABELS:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True, min_n_ticks=3))
        return
    chosen = bar_steps if len(bar_steps) <= 12 else bar_steps[1::2]
    ax.set_xticks(step_ticks(chosen, n_steps, _axes_width_in(ax)))


def _same_steps(steps):
    """The top axis counts the same steps as the roll's own."""
    return steps


def draw_bar_numbers(ax, numbers) -> None:
    """``numbers`` (``(step, text)`` from :func:`thin_grid`) above ``ax`` at the bar lines, as a score prints them
    ("bar 1 (3/4)", 2, 3 ...), on a top axis
    (gid ``bar-numbers``) so that a title moves above them rather than over them."""
    if not numbers:
        return
    top = ax.secondary_xaxis("top", functions=(_same_steps, _same_steps))  # named, not matplotlib's lambdas:
    # a figure holding a lambda no longer pickles
    top.set_gid("bar-numbers")
    # a bar line sits between steps t-1 and t, at t - 0.5: its number goes there
    top.set_xticks([step - 0.5 for step, _ in numbers], [text for _, text in numbers], fontsize="small")
    top.tick_params(axis="x", length=2, pad=1)
