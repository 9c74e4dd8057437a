"""Start JupyterLab and drive it from headless Chromium, for the end-to-end browser tests.

The browser tests prove what a student sees: the course's notebooks open in a real
JupyterLab, run to the end, and their ipywidgets react in the page. This module holds
the pieces that are not pytest fixtures, so the fixtures (``conftest.py``), the tests
and ``scripts/flaky_check.sh`` share one way of doing each step:

- :func:`start_lab` starts a JupyterLab server (or the README's launch command) on
  127.0.0.1 with a free port and a random token, in a throw-away Jupyter config, and
  always stops its whole process group;
- :func:`open_notebook`, :func:`clear_all_outputs`, :func:`run_all_cells`,
  :func:`wait_until_run_finished` act through JupyterLab's own menus, as a person would;
- :func:`notebook_json` and :func:`kernel_execute` read state back through
  ``window.jupyterapp`` (exposed with ``--LabApp.expose_app_in_browser``);
- :func:`move_slider` and :func:`image_bytes` handle the course widgets
  (notebook 02_latent_space_with_widgets.ipynb) by their DOM classes.

Traps measured on this project's machines (field notes §5): wait for the status bar's
"Idle" text, not the busy indicator's attribute; clear stored outputs first, or the
test looks at an old plot; use a fresh browser profile for every test.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "browser" / "fixtures"

# The widgets of notebook 02 carry these classes (musicvae_course/ui/widgets.py adds them).
ROLL_IMAGE = "mvc-roll-image"
INTERP_SLIDER = "mvc-interp-slider"
LATENT_SLIDER = "mvc-latent-slider"
AUDIO = "mvc-audio"

# Flags for Debian's Chromium in a container: no sandbox (we run as root), no GPU, and no
# background traffic (the machines have no internet; updates and sync only add waiting).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_CHROMIUM = "apt-get update && apt-get install -y chromium"
INSTALL_PLAYWRIGHT = f"{sys.executable} -m pip install playwright"

# JupyterLab user settings for the test server (JUPYTERLAB_SETTINGS_DIR): no autosave, so
# running a notebook of the repository never writes it back; no news pop-up over the
# page; every cell kept in the DOM (no windowing), so all prompts and widgets can be queried.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def artifacts_dir() -> Path:
    """Folder for screenshots and server logs: $MVC_BROWSER_ARTIFACTS or <repo>/test-artifacts/browser."""
    return Path(os.environ.get("MVC_BROWSER_ARTIFACTS", REPO / "test-artifacts" / "browser"))


def find_chromium() -> str | None:
    """Path of a Chromium binary: $MVC_CHROMIUM if set, else the first of chromium, chromium-browser, ... on PATH."""
    configured = os.environ.get("MVC_CHROMIUM")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def missing_browser_tools() -> list[str]:
    """What the browser tests need and cannot find, each with the command that installs it ([] if nothing)."""
    missing = []
    if find_chromium() is None:
        where = (
            f"$MVC_CHROMIUM={os.environ['MVC_CHROMIUM']} is not executable"
            if os.environ.get("MVC_CHROMIUM")
            else f"none of {', '.join(CHROMIUM_CANDIDATES)} is on PATH"
        )
        missing.append(f"Chromium ({where}); install it with: {INSTALL_CHROMIUM}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append(
            f"the Python package 'playwright' (not importable by {sys.executable}); install it with: "
            f"{INSTALL_PLAYWRIGHT}  (do not run 'playwright install': the tests use the system Chromium)"
        )
    return missing


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LabServer:
    """A running JupyterLab server: ``url`` ends with '/', ``token`` authenticates, ``log_path`` holds its output."""

    url: str
    token: str
    port: int
    process: subprocess.Popen
    log_path: Path
    workdir: Path
    kernel_pids: set[int] = field(default_factory=set)

    def lab_url(self, path: str = "") -> str:
        """Browser address that opens ``path`` (relative to the server root) in JupyterLab, logged in by token.

        Each address names a new workspace, so tabs that an earlier page opened on this server
        are not restored next to the notebook under test.
        """
        return f"{self.url}lab/workspaces/mvc-{secrets.token_hex(6)}/tree/{path}?token={self.token}"

    def api(self, path: str, method: str = "GET", timeout: float = 10.0):
        """JSON answer of the REST API at /api/<path>; raises urllib.error.HTTPError on an error status."""
        request = urllib.request.Request(
            f"{self.url}api/{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, n_chars: int = 4000) -> str:
        """Last characters of the server's log, for error messages."""
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except OSError as error:
            return f"(no server log: {error})"


def _descendants(pid: int) -> set[int]:
    """Process ids below ``pid`` (kernels run in their own sessions, so a process-group kill misses them)."""
    import psutil  # a jupyter_server dependency

    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def _stop(server: LabServer) -> None:
    """Stop the server, its process group and its kernels: politely first, then by force."""
    process = server.process
    server.kernel_pids |= _descendants(process.pid)
    if process.poll() is None:
        with contextlib.suppress(Exception):
            server.api("shutdown", method="POST", timeout=5)  # shuts the kernels down too
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    for pid in server.kernel_pids:  # only processes this server started
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def start_lab(
    root_dir: str | os.PathLike | None = None,
    *,
    command: list[str] | None = None,
    cwd: str | os.PathLike | None = None,
    pythonpath: str | os.PathLike | None = REPO,
    log_path: str | os.PathLike | None = None,
    startup_timeout: float = 90.0,
):
    """Run a JupyterLab server on 127.0.0.1 for the duration of a ``with`` block; yields a :class:`LabServer`.

    ``command`` is the program that starts the server, default ``python -m jupyterlab`` of this
    environment; the README's launch script can be given instead, as long as it passes its extra
    arguments on to ``jupyter lab``. The server gets a free port, a random token, ``--no-browser
    --allow-root``, and ``--ServerApp.root_dir=root_dir`` when ``root_dir`` is given (leave it None
    when the command sets its own). ``pythonpath`` is prepended to PYTHONPATH so kernels import this
    checkout's ``musicvae_course`` (None: leave the environment as the command sets it up).

    Jupyter's config, runtime, workspace and settings folders are fresh temporary ones, so nothing
    of the user's setup takes part and no stale workspace reopens old tabs. The server's output goes
    to ``log_path`` (default ``<artifacts>/jupyterlab.log``). On leaving the block, also after an error, the
    server is shut down through its API, then its process group and kernels are killed if still alive.
    """
    workdir = Path(tempfile.mkdtemp(prefix="mvc-lab-"))
    settings_dir = workdir / "lab-settings"
    for relative, values in LAB_SETTINGS.items():
        target = settings_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    env = dict(os.environ)
    env.update(
        {
            "JUPYTER_CONFIG_DIR": str(workdir / "config"),
            "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(settings_dir),
            "JUPYTERLAB_WORKSPACES_DIR": str(workdir / "workspaces"),
            "IPYTHONDIR": str(workdir / "ipython"),
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        }
    )
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    log_path = Path(log_path or artifacts_dir() / "jupyterlab.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(24)
    base = command or [sys.executable, "-m", "jupyterlab"]

    server = None
    try:
        for _attempt in range(3):  # a port taken between free_port() and bind: try another one
            port = free_port()
            args = [
                *base,
                "--no-browser",
                "--allow-root",
                "--ip=127.0.0.1",
                f"--port={port}",
                "--port-retries=0",
                f"--IdentityProvider.token={token}",
                "--LabApp.expose_app_in_browser=True",
                # an absolute checkpoint_dir keeps .ipynb_checkpoints/ out of the notebooks' folder
                f"--FileCheckpoints.checkpoint_dir={workdir / 'checkpoints'}",
            ]
            if root_dir is not None:
                args.append(f"--ServerApp.root_dir={Path(root_dir).resolve()}")
            with open(log_path, "w") as log:
                log.write(f"$ {' '.join(args)}\n")
                log.flush()
                process = subprocess.Popen(
                    args, cwd=cwd or REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            server = LabServer(f"http://127.0.0.1:{port}/", token, port, process, log_path, workdir)
            if _wait_for_status(server, startup_timeout):
                break
            if process.poll() is None:
                raise RuntimeError(
                    f"JupyterLab did not answer /api/status within {startup_timeout:.0f} s "
                    f"(log: {log_path}):\n{server.log_tail()}"
                )
            if "already in use" not in server.log_tail():
                raise RuntimeError(
                    f"JupyterLab exited with code {process.returncode} before answering "
                    f"(command: {' '.join(args)}; log: {log_path}):\n{server.log_tail()}"
                )
        else:
            raise RuntimeError(f"JupyterLab found no free port in 3 tries (log: {log_path})")
        yield server
    finally:
        if server is not None:
            _stop(server)
        shutil.rmtree(workdir, ignore_errors=True)


def shutdown_kernels(server: LabServer) -> None:
    """Shut down every kernel the server runs (between tests that share one server)."""
    for kernel in server.api("kernels"):
        with contextlib.suppress(urllib.error.HTTPError):  # already gone
            server.api(f"kernels/{kernel['id']}", method="DELETE")


def _wait_for_status(server: LabServer, timeout: float) -> bool:
    """True once GET /api/status answers; False if the process exits or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.process.poll() is None:
        try:
            server.api("status", timeout=2)
            return True
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            time.sleep(0.25)
    return False


# --- the browser side -----------------------------------------------------------------------


def launch_browser(playwright, profile_dir: str | os.PathLike, executable: str):
    """Headless Chromium with a fresh persistent profile (``launch_persistent_context``, field notes §5)."""
    context = playwright.chromium.launch_persistent_context(
        str(profile_dir),
        executable_path=executable,
        headless=True,
        args=CHROMIUM_FLAGS,
        viewport={"width": 1280, "height": 900},
    )
    context.set_default_timeout(30_000)
    return context


def kernel_status_text(page) -> str:
    """The kernel status the status bar shows, e.g. 'Python 3 (ipykernel) | Idle' ('' if none yet)."""
    return page.evaluate("""() => {
        const items = [...document.querySelectorAll('#jp-main-statusbar .jp-StatusBar-TextItem')];
        const item = items.find(el => / \\| /.test(el.textContent));
        return item ? item.textContent.trim() : '';
    }""")


def wait_kernel_idle(page, timeout: float = 60.0) -> None:
    """Wait until the status bar says the notebook's kernel is Idle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kernel_status_text(page).endswith("| Idle"):
            return
        page.wait_for_timeout(200)
    raise TimeoutError(f"kernel not Idle after {timeout:.0f} s; status bar says {kernel_status_text(page)!r}")


def open_notebook(page, server: LabServer, path: str, timeout: float = 60.0) -> None:
    """Open ``path`` (relative to the server root) in JupyterLab and wait until its kernel is Idle."""
    page.goto(server.lab_url(path))
    page.wait_for_function(
        """path => {
        const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
        return widget && widget.context && widget.context.isReady && widget.context.path === path;
    }""",
        arg=path,
        timeout=timeout * 1000,
    )
    notebook_panel(page).locator(".jp-Notebook").wait_for(state="visible", timeout=timeout * 1000)
    wait_kernel_idle(page, timeout)


def notebook_panel(page):
    """Locator of the notebook panel JupyterLab shows now (other panels' cells must not count)."""
    panel_id = page.evaluate("() => window.jupyterapp.shell.currentWidget.id")
    return page.locator(f'[id="{panel_id}"]')


def click_menu(page, menu: str, item: str) -> None:
    """Click ``item`` in the menu-bar menu ``menu`` (e.g. 'Run', 'Run All Cells')."""
    page.locator("#jp-menu-panel .lm-MenuBar-itemLabel", has_text=re.compile(rf"^{re.escape(menu)}$")).click()
    page.locator(".lm-Menu:visible .lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(item)}$")).click()


def clear_all_outputs(page) -> None:
    """Edit > Clear Outputs of All Cells, then check the page shows no output any more."""
    click_menu(page, "Edit", "Clear Outputs of All Cells")
    notebook_panel(page).locator(".jp-OutputArea-output").first.wait_for(state="detached")


def run_all_cells(page) -> None:
    """Run > Run All Cells."""
    click_menu(page, "Run", "Run All Cells")


def code_cell_prompts(page) -> list[str]:
    """Input prompts of the open notebook's code cells, e.g. ['[1]:', '[*]:', '[ ]:']."""
    return (
        notebook_panel(page)
        .locator(".jp-CodeCell .jp-InputArea-prompt")
        .evaluate_all("prompts => prompts.map(p => p.textContent.trim())")
    )


def notebook_json(page) -> dict:
    """The open notebook as nbformat JSON, outputs included, straight from JupyterLab's model (unsaved state)."""
    return page.evaluate("() => window.jupyterapp.shell.currentWidget.context.model.toJSON()")


def error_outputs(notebook: dict) -> list[str]:
    """'cell <i>: <ename>: <evalue>' for every error output in an nbformat notebook dict."""
    found = []
    for index, cell in enumerate(notebook.get("cells", [])):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if output.get("output_type") == "error":
                found.append(f"cell {index}: {output.get('ename')}: {output.get('evalue')}")
    return found


def wait_until_run_finished(page, timeout: float) -> dict:
    """After Run All: wait until no cell is queued or running and the kernel is Idle; return the notebook JSON.

    Finished means every code cell has an execution count, or a cell raised (JupyterLab then
    leaves the cells after it unrun), with no '[*]' prompt left and 'Idle' in the status bar.
    """
    deadline = time.monotonic() + timeout
    notebook: dict = {}
    while time.monotonic() < deadline:
        prompts = code_cell_prompts(page)
        if not any("*" in prompt for prompt in prompts) and kernel_status_text(page).endswith("| Idle"):
            notebook = notebook_json(page)
            code_cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
            if error_outputs(notebook) or all(c.get("execution_count") for c in code_cells):
                return notebook
        page.wait_for_timeout(250)
    raise TimeoutError(
        f"Run All not finished after {timeout:.0f} s: prompts {code_cell_prompts(page)}, "
        f"status {kernel_status_text(page)!r}"
    )


def run_notebook_to_end(page, server: LabServer, path: str, timeout: float) -> dict:
    """Open ``path``, clear its stored outputs, Run All, wait until done; return the notebook JSON (unsaved)."""
    open_notebook(page, server, path)
    clear_all_outputs(page)
    run_all_cells(page)
    return wait_until_run_finished(page, timeout=timeout)


def kernel_execute(page, code: str, timeout: float = 30.0) -> str:
    """Run ``code`` in the open notebook's kernel (not in a cell) and return what it printed to stdout."""
    return page.evaluate(
        """async ([code, timeoutMs]) => {
        const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
        let stdout = '';
        const future = kernel.requestExecute({code, store_history: false});
        future.onIOPub = msg => {
            if (msg.header.msg_type === 'stream' && msg.content.name === 'stdout') stdout += msg.content.text;
            if (msg.header.msg_type === 'error') stdout += `ERROR ${msg.content.ename}: ${msg.content.evalue}`;
        };
        const timer = new Promise((_, reject) => setTimeout(() => reject(new Error('kernel timeout')), timeoutMs));
        await Promise.race([future.done, timer]);
        return stdout;
    }""",
        [code, int(timeout * 1000)],
    )


def image_bytes(locator, attempts: int = 5) -> bytes:
    """The bytes an <img> shows (its blob:/data:/http src fetched in the page); b'' if it has no src.

    A redraw revokes the old blob: URL, so a fetch that races it fails; it is then retried.
    """
    for _attempt in range(attempts):
        encoded = locator.evaluate("""async img => {
            if (!img.src) return '';
            try {
                const data = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
                let text = '';
                for (let i = 0; i < data.length; i += 0x8000)
                    text += String.fromCharCode(...data.subarray(i, i + 0x8000));
                return btoa(text);
            } catch (error) {
                return null;
            }
        }""")
        if encoded is not None:
            return base64.b64decode(encoded)
        time.sleep(0.2)
    raise AssertionError(f"could not read the image shown by {locator} in {attempts} tries")


def slider_value(slider) -> float:
    """Current value of an ipywidgets slider (its handle's aria-valuenow)."""
    return float(slider.locator(".noUi-handle").first.get_attribute("aria-valuenow"))


def move_slider(slider) -> tuple[float, float]:
    """Move an ipywidgets slider by keyboard, as a person would: focus its handle, press End (or Home
    when it is already at its maximum). Returns (value before, value after); raises if it did not move."""
    handle = slider.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    before = slider_value(slider)
    at_max = before >= float(handle.get_attribute("aria-valuemax"))
    handle.focus()
    handle.press("Home" if at_max else "End")
    after = slider_value(slider)
    if after == before:
        raise AssertionError(f"slider did not move from {before} with the {'Home' if at_max else 'End'} key")
    return before, after


def wait_for_new_image(images, before: list[bytes], timeout: float = 30.0) -> list[bytes]:
    """Poll the images of ``images`` (a locator) until one shows other bytes than ``before``; return the new bytes."""
    deadline = time.monotonic() + timeout
    current = before
    while time.monotonic() < deadline:
        current = [image_bytes(images.nth(i)) for i in range(images.count())]
        if current != before:
            return current
        time.sleep(0.2)
    raise AssertionError(f"no .{ROLL_IMAGE} changed within {timeout:.0f} s after the slider moved")
