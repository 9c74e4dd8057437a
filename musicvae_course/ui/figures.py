"""Figures handed back to a notebook: shown once, whether or not the cell ends with ``;``.

Every plot function of the kit returns its ``matplotlib.figure.Figure`` (taught in
``notebooks/01_loading_the_pretrained_vae.ipynb``). Under Jupyter's inline (or ipympl) backend, pyplot draws
each new figure at the end of the cell; a figure that is also the cell's last expression was drawn a second
time by IPython's display hook, so ``visualize_pianoroll(x)`` without a ``;`` showed two identical pictures.
:func:`shown_once` makes whichever display comes first take the figure from pyplot, so the other finds
nothing left to draw; a figure displays again whenever asked (a later cell's ``fig``).
"""

from __future__ import annotations


def _release_from_inline_pyplot(figure) -> None:
    """If Jupyter's inline backend holds ``figure``, let go of it (``plt.close``): it would draw it again after the
    cell. The figure itself lives on and draws as before; ipympl's live canvases are left alone (closing one ends
    it)."""
    import matplotlib

    if "inline" not in matplotlib.get_backend().lower():
        return
    import matplotlib.pyplot as plt
    from matplotlib._pylab_helpers import Gcf  # pyplot's figure registry (what ``plt.get_fignums`` reads)

    if any(manager.canvas.figure is figure for manager in Gcf.get_all_fig_managers()):
        plt.close(figure)


class _DisplayOnce:
    """A figure's ``_ipython_display_``: an ordinary display, after which pyplot's inline backend no longer holds
    the figure (so it does not draw it again after the cell). A class, not a closure, so that a figure carrying it
    still pickles, as matplotlib figures do."""

    def __init__(self, figure):
        self.figure = figure

    def __call__(self) -> None:
        from IPython.display import display

        figure = self.figure
        _release_from_inline_pyplot(figure)
        del figure._ipython_display_  # display it the ordinary way, then hook again
        try:
            display(figure)
        finally:
            figure._ipython_display_ = self


def shown_once(figure):
    """``figure``, displayed once in Jupyter: as the cell's value, by ``display``, or by the inline backend after
    the cell, whichever comes first (the others then find it displayed).

    Args:
        figure: a ``matplotlib.figure.Figure``.

    Returns:
        The same figure (for ``return shown_once(fig)``).
    """
    figure._ipython_display_ = _DisplayOnce(figure)
    return figure


def say_if_silent(ax, roll, threshold) -> None:
    """Write "no notes" across ``ax`` when ``roll`` (``(88, T)``) has no cell to draw: above 0, or at or above
    ``threshold`` when one is given. A blank panel read as a picture that failed to draw (a low-temperature sample
    is often empty: notebook 02)."""
    import numpy as np

    values = np.asarray(roll)
    silent = not (values >= threshold).any() if threshold is not None else not values.any()
    if silent:
        where = "" if threshold is None else f" at threshold {threshold:g}"
        ax.text(0.5, 0.5, f"no notes{where}", transform=ax.transAxes, ha="center", va="center", color="#888888")
