"""Fixtures for the end-to-end browser tests: a JupyterLab server and headless Chromium pages.

``start_lab`` and the page helpers live in ``jupyterlab_driver.py`` (importable from the tests and
from scripts); this file only turns them into pytest fixtures.

Chromium (Debian's ``chromium``) and the Python package ``playwright`` are required: when one is
missing the tests FAIL with what is missing and the command that installs it. They never skip.
Screenshots and server logs go to ``$MVC_BROWSER_ARTIFACTS`` (default ``test-artifacts/browser/``),
one folder per test.
"""

from __future__ import annotations

import re
import shutil

import pytest
from jupyterlab_driver import (
    REPO,
    artifacts_dir,
    find_chromium,
    launch_browser,
    missing_browser_tools,
    shutdown_kernels,
    start_lab,
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: end-to-end test in JupyterLab and headless Chromium (needs chromium + playwright)"
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell at teardown whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def test_artifacts(request):
    """This test's artifact folder, emptied first so a CI log never shows screenshots of an earlier run."""
    folder = artifacts_dir() / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def browser_page(request, tmp_path, test_artifacts):
    """Factory: ``browser_page()`` returns a new page in headless Chromium with a fresh profile.

    It fails the test (never skips) when Chromium or playwright is missing, naming the install
    command. If the test fails, every page it opened is screenshotted into its artifact folder.
    """
    opened = {}

    def open_page():
        missing = missing_browser_tools()
        if missing:
            pytest.fail("The browser tests need what is missing here:\n  - " + "\n  - ".join(missing), pytrace=False)
        if "context" not in opened:
            from playwright.sync_api import sync_playwright

            opened["playwright"] = sync_playwright().start()
            opened["context"] = launch_browser(opened["playwright"], tmp_path / "chromium-profile", find_chromium())
        context = opened["context"]
        blank = [page for page in context.pages if page.url == "about:blank" and not page.is_closed()]
        return blank[0] if blank and len(context.pages) == 1 else context.new_page()

    yield open_page

    failed = getattr(request.node, "report_call", None) is not None and request.node.report_call.failed
    if "context" in opened:
        if failed:
            for index, page in enumerate(opened["context"].pages):
                try:
                    page.screenshot(path=str(test_artifacts / f"failure-page{index}.png"))
                except Exception as error:  # a crashed page must not hide the test's own error
                    print(f"no failure screenshot of page {index}: {error}")
        opened["context"].close()
        opened["playwright"].stop()


@pytest.fixture(scope="session")
def _repo_lab_server():
    with start_lab(REPO, log_path=artifacts_dir() / "jupyterlab.log") as server:
        yield server


@pytest.fixture
def repo_lab(_repo_lab_server):
    """The JupyterLab server rooted at the repository, shared by the tests of a session.

    Open notebooks as 'notebooks/02_...ipynb' or 'tests/browser/fixtures/...'; kernels start in
    the notebook's folder. The kernels a test started are shut down after it.
    """
    yield _repo_lab_server
    shutdown_kernels(_repo_lab_server)
