"""Training curves: what ``fit`` recorded, per epoch, as a figure.

Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
"""

from __future__ import annotations

from ..train.history import load_history


def plot_history(history, ax=None):
    """Loss curves with beta and the learning rate, per epoch.

    Args:
        history: ``fit``'s result, a ``history.json`` path or a run folder.
        ax: matplotlib axes for the losses; beta and lr go on a twin axis.
            Default: a new figure with losses on the left, beta and lr on the right.

    Returns:
        The ``matplotlib.figure.Figure``. Train and validation -ELBO
        (reconstruction + KL, nats per segment) are comparable; the training
        objective (dashed) includes beta and free bits, so it rises as beta grows.

    Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
    """
    import matplotlib.pyplot as plt

    history = load_history(history)
    if not history:
        raise ValueError("history is empty: nothing to plot")
    if ax is None:
        fig, (ax, beta_ax) = plt.subplots(1, 2, figsize=(10, 3.5))
        beta_ax.set_xlabel("epoch")
        lr_ax = beta_ax.twinx()
    else:  # beta and lr on two twin axes of the given one, the lr's spine set off to the right
        fig, beta_ax, lr_ax = ax.figure, ax.twinx(), ax.twinx()
        lr_ax.spines["right"].set_position(("axes", 1.15))
    epochs = [row["epoch"] for row in history]

    def column(name):
        return [row.get(name, float("nan")) for row in history]

    ax.plot(epochs, column("neg_elbo"), label="train -ELBO")
    if any("val_loss" in row for row in history):
        ax.plot(epochs, column("val_loss"), label="validation -ELBO")
    ax.plot(epochs, column("loss"), "--", label="train objective (beta, free bits)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per segment")
    ax.legend(loc="upper right", fontsize="small")
    beta_ax.plot(epochs, column("beta"), color="tab:purple", label="beta")
    beta_ax.set_ylabel("beta")
    lr_ax.plot(epochs, column("lr"), color="tab:gray", linestyle=":", label="learning rate")
    lr_ax.set_yscale("log")
    lr_ax.set_ylabel("learning rate")
    beta_ax.legend(handles=beta_ax.get_lines() + lr_ax.get_lines(), loc="center right", fontsize="small")
    fig.tight_layout()
    return fig
