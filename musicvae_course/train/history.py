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

from ..core.dataset_checks import check_json_parse_cost
from ..core.midi_limits import LimitError
from ..core.safe_files import FileSkip, display_name, read_regular_file
from ..fileio import atomic_write, interrupts_held

MAX_HISTORY_BYTES = 64 * 1024 * 1024  #: a history.json ``load_history`` reads (a row per epoch is ~300 bytes)
PARSE_ALLOWANCE = 16 * 1024 * 1024  #: bytes any history may cost to parse, past 12 times its size


def save_history(history: list[dict], out_dir) -> tuple[Path, Path]:
    """Write ``history.json`` and ``history.csv`` into ``out_dir`` (created if needed).

    Returns:
        The two paths. The CSV has one row per epoch and the union of all
        keys as columns, in first-seen order (empty where an epoch lacks one).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out_dir / "history.json", out_dir / "history.csv"
    columns = list(dict.fromkeys(key for row in history for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    with interrupts_held():  # both or neither: a Ctrl+C between the two writes left them an epoch apart
        atomic_write(json_path, json.dumps(history, indent=1))
        atomic_write(csv_path, buffer.getvalue())
    return json_path, csv_path


def load_history(source) -> list[dict]:
    """A history from ``history.json``, a run folder holding it, or a list (returned as is).

    Raises:
        FileNotFoundError: no such file. ValueError: naming the file, when it is not a readable regular file, is
        over ``MAX_HISTORY_BYTES``, or is not a JSON list of objects (nested too deep to parse included).
    """
    if isinstance(source, list):
        return source
    path = Path(source)
    if path.is_dir():
        path = path / "history.json"
    if not os.path.lexists(path):
        raise FileNotFoundError(f"no training history at {display_name(path)}")
    try:  # bounded, and only a regular file: a 3 GB sparse file took 12 s and 3 GB before a bare MemoryError
        text = read_regular_file(path, MAX_HISTORY_BYTES)
        check_json_parse_cost(text, PARSE_ALLOWANCE)  # 64 MB of [{},{},...] took 1.5 GB as Python objects
        history = json.loads(text.decode("utf-8"))
    except (FileSkip, LimitError, UnicodeDecodeError, RecursionError, ValueError) as err:
        # RecursionError: "[[[[..." 200,000 deep; UnicodeDecodeError: a binary file; neither named the file
        raise ValueError(f"{display_name(path)}: not a training history ({type(err).__name__}: {err})") from None
    if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
        raise ValueError(f"{display_name(path)}: expected a JSON list of per-epoch objects")
    return history
