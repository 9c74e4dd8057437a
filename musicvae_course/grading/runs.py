"""Running a notebook top to bottom in a plain kernel: the CI check that student versions fail only in graded cells.

Used for the course's student versions (``python -m musicvae_course.grading run-student-versions student``). This
runs the instructor's own notebooks, not submissions: no sandbox.
"""

from __future__ import annotations

import math
from pathlib import Path

from nbclient import NotebookClient

from .markers import cell_role, nbgrader_metadata, read_notebook


def failing_cells(path, cell_timeout: float = 120, kernel_name: str = "python3") -> list[dict]:
    """Run a notebook top to bottom in a fresh kernel (errors allowed); describe each cell that raised.

    Returns dicts ``{"cell": number (1-based), "role": cell_role, "grade_id", "ename", "evalue"}``. A cell that
    runs past ``cell_timeout`` or a dying kernel is reported as one entry with role "notebook".
    """
    path = Path(path)
    nb = read_notebook(path)
    client = NotebookClient(
        nb,
        kernel_name=kernel_name,
        allow_errors=True,
        timeout=max(1, math.ceil(cell_timeout)),
        resources={"metadata": {"path": str(path.parent)}},
        shutdown_kernel="immediate",
    )
    try:
        client.execute()
    except Exception as exc:  # DeadKernelError or a cell timeout: report it, never crash CI's loop
        return [
            {"cell": None, "role": "notebook", "grade_id": None, "ename": type(exc).__name__, "evalue": str(exc)[:300]}
        ]
    failures = []
    for number, cell in enumerate(nb.cells, start=1):
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            failures.append(
                {
                    "cell": number,
                    "role": cell_role(cell),
                    "grade_id": nbgrader_metadata(cell).get("grade_id"),
                    "ename": errors[0].get("ename"),
                    "evalue": str(errors[0].get("evalue", ""))[:300],
                }
            )
    return failures


def ungraded_failures(path, cell_timeout: float = 120, kernel_name: str = "python3") -> list[str]:
    """Run a student version; describe each failing cell that is neither a solution nor a test cell.

    The CI check that student versions "fail only in graded cells": stubs raise NotImplementedError and test
    cells fail, but every other cell must run, so a student can work through the notebook in order.
    """
    return [
        f"cell {f['cell']} raised {f['ename']}: {f['evalue']}"
        if f["cell"]
        else f"the notebook could not run to the end: {f['ename']}: {f['evalue']}"
        for f in failing_cells(path, cell_timeout, kernel_name)
        if f["role"] not in ("solution", "test")
    ]
