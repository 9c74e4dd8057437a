"""End to end in a real browser: JupyterLab in headless Chromium runs the widget notebook.

What a student does with notebook 02_latent_space_with_widgets.ipynb, done by playwright:
open it, clear stored outputs, run all cells, move the interpolation slider and a latent
slider, and check the piano-roll image changes each time and an audio player is there.

``widget_harness.ipynb`` (tests/browser/fixtures) uses the same DOM classes on plain
ipywidgets: when it passes and notebook 02 fails, the fault is in the course, not in the
browser, JupyterLab or this harness. ``raises_error.ipynb`` proves a failing cell is caught.
"""

from __future__ import annotations

import hashlib

import pytest
from jupyterlab_driver import (
    AUDIO,
    FIXTURES,
    INTERP_SLIDER,
    LATENT_SLIDER,
    REPO,
    ROLL_IMAGE,
    clear_all_outputs,
    error_outputs,
    find_chromium,
    image_bytes,
    missing_browser_tools,
    move_slider,
    notebook_panel,
    open_notebook,
    run_all_cells,
    run_notebook_to_end,
    wait_for_new_image,
    wait_until_run_finished,
)

pytestmark = pytest.mark.browser

NOTEBOOK_02 = REPO / "notebooks" / "02_latent_space_with_widgets.ipynb"
ROLL_IMAGES = f"img.{ROLL_IMAGE}, .{ROLL_IMAGE} img"
AUDIO_PLAYERS = f"audio.{AUDIO}, .{AUDIO} audio"


def file_digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def images_near(page, slider):
    """The roll images of the slider's own widget (its nearest ancestor holding one), else all in the notebook."""
    has_class = f"contains(concat(' ', normalize-space(@class), ' '), ' {ROLL_IMAGE} ')"
    near = slider.locator(f"xpath=ancestor::*[.//*[{has_class}]][1]").locator(ROLL_IMAGES)
    return near if near.count() else notebook_panel(page).locator(ROLL_IMAGES)


def run_widget_notebook(page, server, name, artifacts, run_timeout):
    """Open ``name``, clear its outputs, run all, move both sliders; screenshot before and after each move."""
    open_notebook(page, server, name)
    clear_all_outputs(page)
    assert notebook_panel(page).locator(ROLL_IMAGES).count() == 0, (
        "outputs still shown after Clear Outputs of All Cells"
    )
    run_all_cells(page)
    notebook = wait_until_run_finished(page, timeout=run_timeout)
    assert error_outputs(notebook) == [], f"{name} raised while running all cells"
    page.screenshot(path=str(artifacts / "1-after-run-all.png"))

    for step, (css_class, what) in enumerate([(INTERP_SLIDER, "interpolation"), (LATENT_SLIDER, "latent")], 2):
        sliders = notebook_panel(page).locator(f".{css_class}")
        assert sliders.count() >= 1, f"no {what} slider (.{css_class}) rendered in {name}"
        slider = sliders.first
        images = images_near(page, slider)
        assert images.count() >= 1, f"no piano-roll image (.{ROLL_IMAGE}) rendered in {name}"
        before = [image_bytes(images.nth(i)) for i in range(images.count())]
        assert all(before), f"a .{ROLL_IMAGE} shows no image before the {what} slider moves"
        slider.screenshot(path=str(artifacts / f"{step}a-before-{what}-slider.png"))
        move_slider(slider)
        after = wait_for_new_image(images, before)
        assert all(after), f"a .{ROLL_IMAGE} became empty after the {what} slider moved"
        page.screenshot(path=str(artifacts / f"{step}b-after-{what}-slider.png"))

    players = notebook_panel(page).locator(AUDIO_PLAYERS)
    assert players.count() >= 1, f"no <audio> player in a .{AUDIO} widget in {name}"
    return notebook


def test_widget_harness_fixture_reacts(repo_lab, browser_page, test_artifacts):
    """The harness on a stand-in for notebook 02 (plain ipywidgets with the course's DOM classes)."""
    page = browser_page()
    notebook = FIXTURES / "widget_harness.ipynb"
    digest = file_digest(notebook)
    run_widget_notebook(page, repo_lab, notebook.relative_to(REPO).as_posix(), test_artifacts, run_timeout=60)
    assert file_digest(notebook) == digest, "running the notebook rewrote it on disk"


def test_harness_reports_a_failing_cell(repo_lab, browser_page):
    """A cell that raises must be reported and stop Run All, or the widget test could pass on a broken notebook."""
    page = browser_page()
    path = (FIXTURES / "raises_error.ipynb").relative_to(REPO).as_posix()
    notebook = run_notebook_to_end(page, repo_lab, path, timeout=60)
    assert error_outputs(notebook) == ["cell 1: ValueError: fixture error: the harness must report this"]
    assert notebook["cells"][2]["execution_count"] is None, "Run All went on after the failing cell"


def test_notebook_02_widgets_react_in_browser(repo_lab, browser_page, test_artifacts):
    """Notebook 02 in JupyterLab: sliders move, the piano roll redraws each time, an audio player is shown."""
    assert NOTEBOOK_02.exists(), f"{NOTEBOOK_02.relative_to(REPO)} does not exist"
    page = browser_page()  # fails first, naming the install command, if Chromium or playwright is missing
    digest = file_digest(NOTEBOOK_02)
    run_widget_notebook(page, repo_lab, NOTEBOOK_02.relative_to(REPO).as_posix(), test_artifacts, run_timeout=240)
    assert file_digest(NOTEBOOK_02) == digest, "running notebook 02 in the browser rewrote it on disk"


def test_missing_chromium_is_named_with_its_install_command(monkeypatch, tmp_path):
    """Run by hand without Chromium, the tests must say what is missing and how to install it."""
    monkeypatch.setenv("MVC_CHROMIUM", str(tmp_path / "no-such-chromium"))
    assert find_chromium() is None
    messages = missing_browser_tools()
    assert any("Chromium" in m and "apt-get install -y chromium" in m for m in messages), messages
