"""A training run's per-epoch history: saving, loading and plotting it.

``fit`` returns the history as a list of dicts (one per epoch) and writes it
to its run folder as ``history.json`` and ``history.csv``. Shipping such a
file with a reference run lets students compare their curves with it.
Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path


def _write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``.

    (``open`` rather than ``tempfile.mkstemp``: the file keeps the user's
    umask permissions, not mkstemp's owner-only 0600.)
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_history(history: list[dict], out_dir) -> tuple[Path, Path]:
    """Write ``history.json`` and ``history.csv`` into ``out_dir`` (created if needed).

    Returns:
        The two paths. The CSV has one row per epoch and the union of all
        keys as columns, in first-seen order (empty where an epoch lacks one).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out_dir / "history.json", out_dir / "history.csv"
    _write_atomically(json_path, json.dumps(history, indent=1))
    columns = list(dict.fromkeys(key for row in history for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    _write_atomically(csv_path, buffer.getvalue())
    return json_path, csv_path


def load_history(source) -> list[dict]:
    """A history from ``history.json``, a run folder holding it, or a list (returned as is)."""
    if isinstance(source, list):
        return source
    path = Path(source)
    if path.is_dir():
        path = path / "history.json"
    if not path.is_file():
        raise FileNotFoundError(f"no training history at {path}")
    history = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
        raise ValueError(f"{path}: expected a JSON list of per-epoch objects")
    return history


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
    beta_ax.legend(handles=beta_ax.get_lines() + lr_ax.get_lines(), loc="center right",
                   fontsize="small")
    fig.tight_layout()
    return fig
