"""End to end in a real browser: draw on notebook 02's piano roll, play it, reconstruct it.

What a student does with the drawable roll (``musicvae_course/ui/rolldraw.py``) in
``notebooks/02_latent_space_with_widgets.ipynb``, done by playwright in JupyterLab and headless
Chromium: run the notebook, clear the grid, click and drag on the canvas, play the drawing,
reconstruct it, erase by dragging, ask for the variations as one phrase and for a MIDI file, and
upload a MIDI file of one's own.
The kernel's own report ("N cells drawn", computed in Python from the synced cells) proves that
what was drawn in the page reached the model. Screenshots go to the test's artifact folder.
"""

from __future__ import annotations

import base64
import re

import pytest
from jupyterlab_driver import (
    REPO,
    ROLL_IMAGE,
    clear_all_outputs,
    error_outputs,
    image_bytes,
    notebook_panel,
    open_notebook,
    run_all_cells,
    wait_until_run_finished,
)

pytestmark = pytest.mark.browser

NOTEBOOK_02 = REPO / "notebooks" / "02_latent_space_with_widgets.ipynb"
LABEL_PX, CELL_PX, HIGH = 34, 14, 84  # the canvas layout of ui/rolldraw_front.py and the default pitch range


def cell_point(canvas, row: int, step: int) -> dict:
    """Where to press for a cell, in the canvas element's CSS pixels (it may be scaled to fit the page)."""
    width = canvas.evaluate("c => c.width")
    scale = canvas.bounding_box()["width"] / width
    return {"x": (LABEL_PX + step * CELL_PX + CELL_PX / 2) * scale, "y": (row * CELL_PX + CELL_PX / 2) * scale}


def drag(page, canvas, start: tuple[int, int], end: tuple[int, int]) -> None:
    box = canvas.bounding_box()
    a, b = cell_point(canvas, *start), cell_point(canvas, *end)
    page.mouse.move(box["x"] + a["x"], box["y"] + a["y"])
    page.mouse.down()
    for fraction in (0.25, 0.5, 0.75, 1.0):  # several moves: every cell on the way is crossed
        page.mouse.move(
            box["x"] + a["x"] + fraction * (b["x"] - a["x"]), box["y"] + a["y"] + fraction * (b["y"] - a["y"])
        )
    page.mouse.up()


def wait_for_info(widget, pattern: str, timeout_ms: int = 30_000) -> str:
    info = widget.locator(".mvc-draw-info")
    info.filter(has_text=re.compile(pattern)).wait_for(timeout=timeout_ms)
    return info.inner_text()


def audio_src(widget, css_class: str) -> str:
    player = widget.locator(f"audio.{css_class}, .{css_class} audio").first
    return player.get_attribute("src") or ""


def test_drawable_roll_draws_plays_and_reconstructs_in_browser(repo_lab, browser_page, test_artifacts):
    """Notebook 02's drawable roll in JupyterLab: click and drag cells, play, reconstruct, erase, download."""
    page = browser_page()
    open_notebook(page, repo_lab, NOTEBOOK_02.relative_to(REPO).as_posix())
    clear_all_outputs(page)
    run_all_cells(page)
    notebook = wait_until_run_finished(page, timeout=300)
    assert error_outputs(notebook) == [], "notebook 02 raised while running all cells"

    widget = notebook_panel(page).locator(".mvc-drawable-roll-widget")
    assert widget.count() == 1, "no drawable roll (.mvc-drawable-roll-widget) rendered in notebook 02"
    canvas = widget.locator("canvas.mvc-draw-canvas")
    canvas.scroll_into_view_if_needed()
    widget.screenshot(path=str(test_artifacts / "1-as-run.png"))
    image = widget.locator(f"img.{ROLL_IMAGE}, .{ROLL_IMAGE} img").first
    first_picture = image_bytes(image)
    assert first_picture[:4] == b"\x89PNG", "the reconstruction of the starting roll is not shown"

    widget.locator(".mvc-clear-button").click()
    wait_for_info(widget, r"^cleared")  # the kernel's empty grid has reached the page: drawing now is not undone
    drag(page, canvas, (HIGH - 72, 0), (HIGH - 72, 7))  # C5 held for 8 steps, drawn by dragging
    for row, step in ((HIGH - 76, 8), (HIGH - 79, 12), (HIGH - 76, 16), (HIGH - 72, 20)):  # E5 G5 E5 C5: clicks
        canvas.click(position=cell_point(canvas, row, step))
    widget.screenshot(path=str(test_artifacts / "2-drawn.png"))

    widget.locator(".mvc-play-drawing-button").click()
    page.wait_for_function(
        "el => { const a = el.querySelector('audio.mvc-drawing-audio, .mvc-drawing-audio audio'); return a && a.src; }",
        arg=widget.element_handle(),
        timeout=30_000,
    )
    assert audio_src(widget, "mvc-drawing-audio"), "play drawing gave no audio"

    widget.locator(".mvc-reconstruct-button").click()
    wait_for_info(widget, r"^12 cells drawn")  # 8 dragged + 4 clicked, counted by the kernel
    page.wait_for_timeout(500)
    drawn_picture = image_bytes(image)
    assert drawn_picture[:4] == b"\x89PNG" and drawn_picture != first_picture, "the reconstruction did not redraw"
    widget.screenshot(path=str(test_artifacts / "3-reconstructed.png"))

    drag(page, canvas, (HIGH - 72, 7), (HIGH - 72, 4))  # press on a drawn cell and drag: erases 4 cells
    widget.locator(".mvc-reconstruct-button").click()
    wait_for_info(widget, r"^8 cells drawn")

    widget.locator(".mvc-phrase-button").click()
    page.wait_for_function(
        "el => { const a = el.querySelector('audio.mvc-variations-audio, .mvc-variations-audio audio');"
        " return a && a.src; }",
        arg=widget.element_handle(),
        timeout=30_000,
    )
    widget.locator(".mvc-make-midi-button").click()
    link = widget.locator(".mvc-download a")
    link.wait_for(timeout=30_000)
    href = link.get_attribute("href")
    assert href.startswith("data:audio/midi;base64,") and link.get_attribute("download").endswith(".mid")
    assert base64.b64decode(href.split(",", 1)[1])[:4] == b"MThd", "the download is not a MIDI file"
    widget.screenshot(path=str(test_artifacts / "4-erased-phrase-and-download.png"))

    own = REPO / "data_samples" / "foster_jeanie_with_the_light_brown_hair.mid"  # "your own MIDI file"
    with page.expect_file_chooser() as chooser:  # as a person does: click the button, pick the file
        widget.locator(".mvc-upload").first.click()
    chooser.value.set_files(str(own))
    text = wait_for_info(widget, rf"^{re.escape(own.name)}: its first 2 bars with notes are drawn", timeout_ms=60_000)
    assert int(re.search(r"\((\d+) cells", text).group(1)) >= 8, text  # the tune's 2 bars reached the grid
    widget.screenshot(path=str(test_artifacts / "5-uploaded-midi.png"))
