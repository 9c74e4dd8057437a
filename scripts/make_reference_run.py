#!/usr/bin/env python
"""Make notebook 03's reference fine-tuning log: run the notebook with ``TRAIN_LIVE = True``.

``notebooks/03_fine_tuning_on_a_subset.ipynb`` shows, by default, a short fine-tune plus the reference run stored
in ``reference/fine_tune_reference.json`` (settings, per-epoch history, scores before and after). This
script produces that file the same way a student would with ``TRAIN_LIVE = True``: it executes the notebook in a
fresh kernel in ``notebooks/`` with that one cell changed (the notebook file itself is not modified), then copies
the ``runs/fine_tune/fine_tune_reference.json`` the run wrote. Re-run it when the bundled checkpoint or the sample
data change::

    python scripts/make_reference_run.py          # about 3 minutes of training on one CPU thread
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "03_fine_tuning_on_a_subset.ipynb"
SWITCH = "TRAIN_LIVE = False"
WRITTEN = REPO / "notebooks" / "runs" / "fine_tune" / "fine_tune_reference.json"
TARGET = REPO / "reference" / "fine_tune_reference.json"  # ../reference from notebooks/ and student/ alike


def main() -> int:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    switches = [cell for cell in nb.cells if cell.cell_type == "code" and cell.source.strip() == SWITCH]
    if len(switches) != 1:
        print(f"{NOTEBOOK}: expected one cell reading exactly {SWITCH!r}, found {len(switches)}", file=sys.stderr)
        return 1
    switches[0].source = "TRAIN_LIVE = True"
    WRITTEN.unlink(missing_ok=True)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    started = time.perf_counter()
    NotebookClient(
        nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    if not WRITTEN.is_file():
        print(f"the notebook ran but wrote no {WRITTEN}", file=sys.stderr)
        return 1
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(WRITTEN, TARGET)
    print(f"{TARGET} written ({time.perf_counter() - started:.0f} s including the notebook's other cells)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
