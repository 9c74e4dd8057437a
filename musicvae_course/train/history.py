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
from pathlib import Path

from ..fileio import atomic_write


def save_history(history: list[dict], out_dir) -> tuple[Path, Path]:
    """Write ``history.json`` and ``history.csv`` into ``out_dir`` (created if needed).

    Returns:
        The two paths. The CSV has one row per epoch and the union of all
        keys as columns, in first-seen order (empty where an epoch lacks one).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out_dir / "history.json", out_dir / "history.csv"
    atomic_write(json_path, json.dumps(history, indent=1))
    columns = list(dict.fromkeys(key for row in history for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write(csv_path, buffer.getvalue())
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
