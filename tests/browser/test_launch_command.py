"""The README's launch command, end to end: the server it starts serves notebook 01, which runs to the end.

The command is run as the README gives it, with only what a test needs added (no browser, a
free port, a random token; ``start_lab`` appends these, so the script must pass its extra
arguments on to ``jupyter lab``). The notebook then runs in the kernel that server provides,
from headless Chromium, as a student's first session would.
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


def test_readme_launch_command_serves_notebook_01_which_runs_to_the_end(browser_page, test_artifacts):
    readme = (REPO / "README.md").read_text()
    assert LAUNCH_COMMAND in readme, f"README.md does not give the launch command {LAUNCH_COMMAND}"
    notebook_file = REPO / "notebooks" / NOTEBOOK_01
    assert notebook_file.exists(), f"notebooks/{NOTEBOOK_01} does not exist"
    digest = hashlib.sha256(notebook_file.read_bytes()).hexdigest()
    page = browser_page()

    # pythonpath=None: the kernel must find musicvae_course through the environment the script sets up
    with start_lab(
        command=MAKE_LAB, pythonpath=None, startup_timeout=300, log_path=test_artifacts / "launch.log"
    ) as server:
        listed = server.api(f"contents/{NOTEBOOK_01}?content=0")
        assert listed["type"] == "notebook", listed

        notebook = run_notebook_to_end(page, server, NOTEBOOK_01, timeout=300)
        page.screenshot(path=str(test_artifacts / "notebook-01-after-run-all.png"))
        assert error_outputs(notebook) == [], f"{NOTEBOOK_01} raised under the launch command's server"
        unrun = [i for i, c in enumerate(notebook["cells"]) if c["cell_type"] == "code" and not c["execution_count"]]
        assert unrun == [], f"code cells {unrun} of {NOTEBOOK_01} did not run"

        # the kernel is the kit's: it imports this checkout's version of the package
        report = kernel_execute(page, "import sys, musicvae_course as m; print(sys.prefix); print(m.__version__)")
        print(f"kernel of the launch command: sys.prefix and musicvae_course version: {report!r}")
        kit_version = re.search(r'__version__ = "([^"]+)"', (REPO / "musicvae_course" / "__init__.py").read_text())
        assert report.split()[-1:] == [kit_version.group(1)], report

    assert hashlib.sha256(notebook_file.read_bytes()).hexdigest() == digest, "the test rewrote notebook 01 on disk"
