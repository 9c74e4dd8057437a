"""Training curves: what ``fit`` recorded, per epoch, as one figure, with a reference run overlaid, live or after.

Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
"""

from __future__ import annotations

import time

from ..train.history import load_history
from .figures import shown_once

_LOSSES = (  # (history key, label, colour, line style)
    ("neg_elbo", "train -ELBO", "tab:blue", "-"),
    ("val_loss", "validation -ELBO", "tab:orange", "-"),
    ("loss", "train objective (beta, free bits)", "tab:green", "--"),
)
_PARTS = (  # (history key, label, colour, line style); validation reconstruction is the overfitting signal
    ("reconstruction", "train reconstruction", "tab:red", "-"),
    ("val_reconstruction", "validation reconstruction", "tab:orange", "-."),
    ("kl", "train KL", "tab:purple", "-"),
)


def _column(history, name):
    return [row.get(name, float("nan")) for row in history]


def _epochs(history):
    return [row["epoch"] for row in history]


def _new_axes(figure=None):
    """Three panels: -ELBO and objective; reconstruction (train and validation) and KL; beta and learning rate."""
    if figure is None:
        import matplotlib.pyplot as plt

        figure = plt.figure(figsize=(13, 3.8), layout="constrained")
    axes = figure.subplots(1, 3, sharex=True)
    return figure, axes


def _draw(axes, history, reference, epochs_planned=None) -> None:
    loss_ax, parts_ax, schedule_ax = axes
    for ax in axes:
        ax.clear()
    runs = [(reference, "reference: ", dict(alpha=0.45, linewidth=1.0))] if reference else []
    runs.append((history, "", dict(linewidth=1.8)))
    for run, prefix, style in runs:
        if not run:
            continue
        x = _epochs(run)
        for key, label, colour, line in _LOSSES:
            if any(key in row for row in run):
                loss_ax.plot(x, _column(run, key), line, color=colour, label=prefix + label, **style)
        for key, label, colour, line in _PARTS:
            if key.startswith("val_") and not any(key in row for row in run):
                continue  # a run without a validation set: no empty line in the legend
            parts_ax.plot(x, _column(run, key), line, color=colour, label=prefix + label, **style)
    loss_ax.set(title="-ELBO and objective", ylabel="nats per segment", xlabel="epoch")
    parts_ax.set(title="its two terms (log scale)", ylabel="nats per segment", xlabel="epoch")
    if any(ax_lines.get_ydata().size for ax_lines in parts_ax.get_lines()):
        parts_ax.set_yscale("log")
    # A constant beta or lr must read as constant: fixed limits, never autoscaled to 0.96-1.04.
    shown = [row for run, _, _ in runs for row in (run or [])]
    betas = [row.get("beta", 0.0) for row in shown] or [1.0]
    schedule_ax.set(title="beta (left) and learning rate (right)", ylabel="beta", xlabel="epoch")
    schedule_ax.set_ylim(0.0, max(1.05, 1.05 * max(betas)))
    lr_ax = schedule_ax.twinx()
    lrs = [row["lr"] for row in shown if row.get("lr")]
    for run, prefix, style in runs:
        if run:
            schedule_ax.plot(_epochs(run), _column(run, "beta"), color="tab:purple", label=prefix + "beta", **style)
            lr_ax.plot(_epochs(run), _column(run, "lr"), ":", color="tab:gray", label=prefix + "learning rate", **style)
    lr_ax.set_yscale("log")
    if lrs:  # a decade around the rates used, so a constant rate is a flat line mid-panel
        lr_ax.set_ylim(min(lrs) / 3.2, max(lrs) * 3.2)
    lr_ax.set_ylabel("learning rate")
    last = max([len(run) for run, _, _ in runs if run] + [epochs_planned or 1])
    for ax in axes:
        ax.set_xlim(0.5, max(last, 2) + 0.5)
    # legends below the panels: they never cover a curve or a title
    for ax, handles in ((loss_ax, None), (parts_ax, None), (schedule_ax, schedule_ax.get_lines() + lr_ax.get_lines())):
        if handles is None:
            handles = ax.get_lines()
        if handles:
            ax.legend(
                handles=handles,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.2),
                fontsize="small",
                frameon=False,
                ncols=2,
            )


def plot_history(history, ax=None, reference=None):
    """Loss curves, their two terms, beta and the learning rate, per epoch, with an optional reference run.

    Args:
        history: ``fit``'s result, a ``history.json`` path or a run folder.
        ax: a figure to draw into, or axes whose figure is used (three panels are made in it);
            default: a new figure.
        reference: another history (e.g. the shipped reference run's ``"history"``), drawn faint behind.

    Returns:
        The ``matplotlib.figure.Figure``. Train and validation -ELBO (reconstruction + KL, nats per segment)
        are comparable; the training objective (dashed) includes beta and free bits. The middle panel draws
        validation reconstruction (dash-dot) beside the training one where the history has it: the gap
        between the two is where a fine-tune stops adapting and starts memorising. The beta axis runs from
        0 to at least 1.05, so a constant beta is a flat line, not noise.

    Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
    """
    history = load_history(history)
    if not history:
        raise ValueError("history is empty: nothing to plot")
    reference = load_history(reference) if reference is not None else None
    figure = getattr(ax, "figure", ax)
    if figure is not None and hasattr(ax, "figure") and ax is not figure:
        figure.delaxes(ax)  # the three panels replace the given axes
    figure, axes = _new_axes(figure)
    _draw(axes, history, reference)
    return shown_once(figure)


class LiveCurves:
    """One training figure, redrawn in place after every epoch (the reference run faint behind).

    ``show()`` displays it once (an ``IPython.display`` handle); each ``update(history)`` redraws the curves and
    refreshes that same output, so a notebook shows one figure growing, not one figure per epoch.
    """

    def __init__(self, reference=None, epochs: int | None = None):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.reference = load_history(reference) if reference is not None else None
        self.epochs = epochs
        self.figure = Figure(figsize=(13, 3.8), layout="constrained")  # not pyplot's: never shown twice
        FigureCanvasAgg(self.figure)
        self.figure, self.axes = _new_axes(self.figure)
        self.handle = None
        _draw(self.axes, [], self.reference, epochs)

    def show(self):
        """Display the figure in the notebook; later updates replace it in place."""
        from IPython.display import display

        self.handle = display(self.figure, display_id=True)
        return self

    def update(self, history) -> None:
        """Redraw with ``history`` (all epochs so far)."""
        _draw(self.axes, load_history(history), self.reference, self.epochs)
        if self.handle is not None:
            self.handle.update(self.figure)


def fit_live(
    model, train, val, *, epochs: int, out_dir, reference=None, time_budget_s: float | None = None, **settings
):
    """``fit`` one epoch at a time, redrawing one figure of the curves after each (reference run overlaid).

    Each epoch resumes the run from ``out_dir/last.pt`` (weights, optimiser, scheduler, batch order), which
    gives the same weights as one uninterrupted ``fit`` (tested in ``tests/test_train.py``).

    Args:
        model, train, val: as for :func:`musicvae_course.fit`; ``settings`` are its other keyword arguments
            (``init``, ``lr``, ``free_bits``, ...). ``progress`` is turned off: the figure is the progress.
        epochs: total epochs; out_dir: the run folder (started afresh).
        reference: a history to draw behind (e.g. the shipped reference run).
        time_budget_s: start no new epoch once this many seconds have passed (each epoch is whole, so
            it can resume exactly).

    Returns:
        ``(history, figure)``.

    Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
    """
    from ..train import fit

    curves = LiveCurves(reference, epochs).show()
    init = settings.pop("init", None)
    settings.pop("progress", None)
    started, history = time.perf_counter(), []
    for epoch in range(1, int(epochs) + 1):
        left = None if time_budget_s is None else time_budget_s - (time.perf_counter() - started)
        if left is not None and left <= 0:
            break
        history = fit(
            model,
            train,
            val,
            epochs=epoch,
            out_dir=out_dir,
            resume=epoch > 1,
            overwrite=epoch == 1,
            init=init,  # also when resuming: same settings; the weights then come from last.pt
            progress=False,
            **settings,
        )
        curves.update(history)
    return history, curves.figure
