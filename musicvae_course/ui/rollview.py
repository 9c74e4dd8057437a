"""A piano-roll figure drawn once and updated in place: the fast view behind the widgets.

Taught in ``notebooks/02_latent_space_with_widgets.ipynb``; re-exported by :mod:`musicvae_course.ui.plots`.
"""

from __future__ import annotations

import io

import numpy as np

from ..core.pianoroll import N_PITCHES, binarize, single_roll
from .plots import DEFAULT_CMAP, _draw_roll, _pooled, _set_step_ticks, add_colorbar, checked_ax, detached, grid_lines


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
        time_signature: meter of the bar and beat lines (default 4/4).
        colorbar: add a probability colour bar (drawn once, in the background).

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
        time_signature=None,
        colorbar: bool = False,
    ):
        if isinstance(pitch_range, str):
            raise ValueError("PianoRollView needs a fixed pitch_range: None or (low, high)")
        ax = checked_ax(ax)
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
        grid = grid_lines(self.n_steps, time_signature)
        # the pitch axis is fixed: name its Cs and outer keys, not the notes of a first roll
        self.image = _draw_roll(ax, blank, None, pitch_range, cmap, bars, title, grid, sounding=())
        if colorbar:
            add_colorbar(self.image, ax, "probability")
        # Artists redrawn on every change; the rest is the cached background.
        self._foreground = [self.image, *ax.collections]
        self._background = None
        if self._standalone:
            for artist in self._foreground:
                artist.set_animated(True)  # left out of full draws: blitted instead

    def update(self, roll) -> None:
        """Show ``roll`` (any single-roll shape with ``T = n_steps``)."""
        data = single_roll(detached(roll), "roll")
        if data.shape[1] != self.n_steps:
            raise ValueError(f"roll has {data.shape[1]} steps; this view shows {self.n_steps}")
        if self.threshold is not None:
            data = binarize(data, self.threshold)
        # columns merged as the first picture merged them (a view wider than the axes' pixels)
        self.image.set_data(_pooled(data.astype(np.float32), self.ax)[0])
        if not self._standalone:
            self.figure.canvas.draw_idle()

    def set_grid(self, bars, beats) -> None:
        """Move the bar and beat lines, e.g. to an uploaded piece's meter (steps of the view, ``0 .. n_steps``;
        lines on the view's edges are left out, as in :func:`~musicvae_course.ui.plots.grid_lines`)."""
        inside = {
            "bar-lines": sorted({int(s) for s in bars if 0 < s < self.n_steps}),
            "beat-lines": sorted({int(s) for s in beats if 0 < s < self.n_steps} - {int(s) for s in bars}),
        }
        for lines in self.ax.collections:
            if lines.get_gid() in inside:  # x in steps, y in axes (0..1), as _style_axes draws them
                lines.set_segments([[(s - 0.5, 0.0), (s - 0.5, 1.0)] for s in inside[lines.get_gid()]])
        _set_step_ticks(self.ax, self.n_steps, inside["bar-lines"])
        self._background = None  # the tick labels are in the cached background
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
