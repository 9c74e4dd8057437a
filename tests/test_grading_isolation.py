"""Kernels graded side by side cannot reach each other (sixth round of attacks)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from test_grading_attacks import _one_question

from musicvae_course.grading.sandbox import bwrap_path
from musicvae_course.grading.session import GradingSession

# Run in a student's kernel: find the other kernels' connection files beside its own run folder, and make the grader's
# helper in each answer "sabotaged" to every call of the tests
HIJACK = """import glob, json, os
from jupyter_client import BlockingKernelClient

mine = os.path.dirname(os.path.dirname(os.getcwd()))
FOUND = [c for c in glob.glob(os.path.join(os.path.dirname(mine), '*', 'ipc', 'kernel.json')) if not c.startswith(mine)]
for conn in FOUND:
    client = BlockingKernelClient(connection_file=conn)
    client.load_connection_file()
    client.start_channels()
    try:
        client.execute_interactive(
            "import json\\n_mvc_grader.call = lambda request: json.dumps({'ok': 'sabotaged'})", timeout=10
        )
    finally:
        client.stop_channels()


def probe():
    return str(len(FOUND))
"""


def test_a_kernel_cannot_reach_the_kernel_of_a_student_graded_beside_it(tmp_path, monkeypatch):
    # the run folders lie in the temporary folder; under /run or /var/tmp (TMPDIR) a kernel saw the run folders of the
    # kernels started after it, with their keys and sockets, and ran code in them: its neighbour's answer scored 0
    assert bwrap_path(), "the attack suite needs bubblewrap: apt-get install bubblewrap (CI installs it)"
    answer = "def probe():\n    ### BEGIN SOLUTION\n    return '0'\n    ### END SOLUTION"
    _one_question(tmp_path / "probe.ipynb", answer, "assert probe() == '0', f'probe() gave {probe()}'")
    system = "/run/lock" if Path("/run/lock").is_dir() else "/var/tmp"  # 1777 system folders the kernels see
    runs = Path(tempfile.mkdtemp(prefix="mvc-runs-", dir=system))
    runs.chmod(0o1777)  # as a TMPDIR is
    monkeypatch.setattr(tempfile, "tempdir", str(runs))
    try:
        with GradingSession(tmp_path / "probe.ipynb", sandbox="bwrap", cell_timeout=30) as attacker:
            with GradingSession(tmp_path / "probe.ipynb", sandbox="bwrap", cell_timeout=30) as neighbour:
                spied = attacker.grade_question("q1", {"q1_solution": HIJACK})
                graded = neighbour.grade_question("q1")
    finally:
        shutil.rmtree(runs, ignore_errors=True)
    assert (spied.points, graded.points, graded.detail) == (1, 1, "")
