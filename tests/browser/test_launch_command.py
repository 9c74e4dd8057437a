"""The README's launch command, end to end: it serves the exercises at JupyterLab's root, and notebook 01 runs.

The command is run as the README gives it, with only what a test needs added (no browser, a
free port, a random token; ``start_lab`` appends these, so the script must pass its extra
arguments on to ``jupyter lab``). The file browser's root must hold the exercise copies of
``student/`` (not the instructor sources with their solutions), and notebook 01 then runs in the
kernel that server provides, from headless Chromium, as a student's first session would: every
cell up to the first exercise runs (data, model, audio), and that exercise's stub is what stops it.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from jupyterlab_driver import REPO, error_outputs, kernel_execute, run_notebook_to_end, start_lab

pytestmark = pytest.mark.browser

LAUNCH_COMMAND = "make lab"  # as written in README.md
# start_lab appends the test's options (no browser, free port, token) as arguments; hand them
# to jupyter lab through the Makefile's LAB_ARGS.
MAKE_LAB = ["bash", "-c", 'exec make --no-print-directory -s lab LAB_ARGS="$*"', "make-lab"]
NOTEBOOK_01 = "01_loading_the_pretrained_vae.ipynb"


def test_readme_launch_command_serves_the_exercises_and_notebook_01_runs_up_to_its_first_stub(
    browser_page, test_artifacts
):
    readme = (REPO / "README.md").read_text()
    assert LAUNCH_COMMAND in readme, f"README.md does not give the launch command {LAUNCH_COMMAND}"
    exercises = sorted(p.name for p in (REPO / "student").glob("*.ipynb"))
    assert NOTEBOOK_01 in exercises, f"student/{NOTEBOOK_01} does not exist"
    notebook_file = REPO / "student" / NOTEBOOK_01
    digest = hashlib.sha256(notebook_file.read_bytes()).hexdigest()
    page = browser_page()

    # pythonpath=None: the kernel must find musicvae_course through the environment the script sets up
    with start_lab(
        command=MAKE_LAB, pythonpath=None, startup_timeout=300, log_path=test_artifacts / "launch.log"
    ) as server:
        root = server.api("contents/")
        served = sorted(item["name"] for item in root["content"] if item["type"] == "notebook")
        assert served == exercises, f"make lab's root lists {served}, not the exercises of student/"
        listed = server.api(f"contents/{NOTEBOOK_01}?content=1")
        served_text = "\n".join(
            "".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in listed["content"]["cells"]
        )
        assert "### BEGIN SOLUTION" not in served_text and "raise NotImplementedError()" in served_text

        notebook = run_notebook_to_end(page, server, NOTEBOOK_01, timeout=300)
        page.screenshot(path=str(test_artifacts / "notebook-01-after-run-all.png"))
        code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
        raised = [i for i, c in enumerate(code) if error_outputs({"cells": [c]})]
        assert raised, f"{NOTEBOOK_01} ran to the end although its exercises are stubs"
        stopped = code[raised[0]]
        role = stopped.get("metadata", {}).get("nbgrader", {})
        assert role.get("solution") or role.get("grade"), f"cell {raised[0]} raised but is no exercise cell"
        assert "NotImplementedError" in error_outputs({"cells": [stopped]})[0], error_outputs({"cells": [stopped]})
        unrun = [i for i, c in enumerate(code[: raised[0]]) if not c.get("execution_count")]
        assert unrun == [], f"code cells {unrun} of {NOTEBOOK_01} did not run"
        first_exercise = min(i for i, c in enumerate(code) if c.get("metadata", {}).get("nbgrader", {}).get("solution"))
        assert raised[0] > first_exercise, "the cells before the first exercise (data, model, audio) must all run"

        # the kernel is the kit's: it imports this checkout's version of the package
        report = kernel_execute(page, "import sys, musicvae_course as m; print(sys.prefix); print(m.__version__)")
        print(f"kernel of the launch command: sys.prefix and musicvae_course version: {report!r}")
        kit_version = re.search(r'__version__ = "([^"]+)"', (REPO / "musicvae_course" / "__init__.py").read_text())
        assert report.split()[-1:] == [kit_version.group(1)], report

    assert hashlib.sha256(notebook_file.read_bytes()).hexdigest() == digest, "the test rewrote notebook 01 on disk"
