#!/usr/bin/env python
"""Re-run the instructor notebooks and store only the outputs that nbval checks.

The course notebooks (``notebooks/*.ipynb``) are stored with outputs only in the cells marked
``# NBVAL_CHECK_OUTPUT``: those outputs are what ``pytest --nbval-lax notebooks/`` compares, and everything else
(figures, audio, widgets) would only bloat the repository. Run this after anything that changes a checked output
(the bundled checkpoint, the sample data, a notebook's code)::

    python scripts/refresh_notebooks.py                  # every notebook in notebooks/
    python scripts/refresh_notebooks.py notebooks/02_latent_space_with_widgets.ipynb

Each notebook runs top to bottom in a fresh kernel started in ``notebooks/`` (as Jupyter and nbval do), with the
repository root on ``PYTHONPATH`` so an uninstalled checkout works. A cell that raises stops the refresh of that
notebook and leaves the file as it was. Execution counts (except those of checked cells, which nbval needs),
cell execution metadata and saved widget state are removed, so a refresh that changes no checked output changes
no byte.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = Path(__file__).resolve().parent.parent
CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"


def is_checked(cell) -> bool:
    """True for a code cell whose output nbval compares in lax mode (marker comment or tag)."""
    if cell.cell_type != "code":
        return False
    tags = cell.get("metadata", {}).get("tags", [])
    return "nbval-check-output" in tags or any(line.strip() == CHECK_MARKER for line in cell.source.split("\n"))


def merge_streams(outputs: list) -> list:
    """Join consecutive stream outputs of the same stream (a print loop gives many), as nbval compares them."""
    merged = []
    for output in outputs:
        if (
            merged
            and output.get("output_type") == "stream"
            and merged[-1].get("output_type") == "stream"
            and merged[-1].get("name") == output.get("name")
        ):
            merged[-1]["text"] += output["text"]
        else:
            merged.append(output)
    return merged


def clean(nb, keep_outputs: bool = True) -> None:
    """Keep outputs and execution counts of checked cells only (none if not ``keep_outputs``); drop run metadata.

    nbval refuses a stored output without an execution count ("Unrun reference cell has outputs"), so checked
    cells keep theirs: with every cell run in order, that is the cell's position among the code cells.
    """
    nb.metadata.pop("widgets", None)
    nb.metadata["language_info"] = {"name": "python"}
    for cell in nb.cells:
        for key in ("execution", "ExecuteTime", "collapsed", "scrolled"):
            cell.metadata.pop(key, None)
        if cell.cell_type != "code":
            continue
        if not (keep_outputs and is_checked(cell)):
            cell.outputs = []
            cell.execution_count = None
        cell.outputs = merge_streams(cell.outputs)


def refresh(path: Path, timeout: int = 600, kernel_name: str = "python3") -> float:
    """Execute ``path`` in its folder and write it back with only the checked outputs; returns seconds taken."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name=kernel_name, resources={"metadata": {"path": str(path.parent)}}
    )
    started = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - started
    clean(nb)
    text = nbformat.writes(nb)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="notebooks to refresh (default: every notebooks/*.ipynb)"
    )
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((REPO / "notebooks").glob("*.ipynb"))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    failed = 0
    for path in paths:
        try:
            seconds = refresh(path.resolve(), args.timeout, args.kernel)
        except CellExecutionError as exc:
            failed += 1
            print(f"{path}: a cell raised; file left unchanged\n{str(exc)[-2000:]}", file=sys.stderr)
            continue
        print(f"{path}: refreshed in {seconds:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
