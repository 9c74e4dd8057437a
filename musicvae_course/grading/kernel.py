"""One student kernel in an OS sandbox (bubblewrap), driven over ZMQ's IPC transport.

Used by the autograder and :class:`~musicvae_course.grading.session.GradingSession` for the course notebooks.
The kernel runs under ``bwrap``: the whole file system read-only (``--ro-bind / /``), the kit's repository
hidden except the package and the virtual environment, the source notebooks, submissions and grades hidden,
a private size-limited ``/tmp``, its own user (``nobody``), PID, IPC, UTS and network namespaces (nothing
survives the kernel; no network; ``kill(getppid())`` hits the namespace's init, which ignores it), dying with
its parent, in a new session (no terminal injection), with rlimits on address space, CPU time, file size, open
files and processes. Its only writable folder is the run folder: the working tree (copies of the data the notebook
reads) and the connection files, bound at the same path, so absolute paths agree on both sides. A watchdog
kills the kernel when that folder, with the files it holds open that no folder lists, grows past its limit;
``/dev`` and the folders that hide the machine are read-only (tmpfs is RAM that no rlimit counts). Without
bwrap the kernel runs unsandboxed and :attr:`Sandbox.isolation` says ``none``.
"""

from __future__ import annotations

import os
import queue
import resource
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

GRACE_SECONDS = 2.0
#: Top-level folders a kernel sees (read-only); every other one is hidden behind an empty tmpfs.
SYSTEM_DIRS = {
    "usr",
    "bin",
    "sbin",
    "lib",
    "lib32",
    "lib64",
    "libx32",
    "etc",
    "dev",
    "proc",
    "sys",
    "run",
    "var",
    "tmp",
}  # how long an interrupted kernel gets to answer before it is killed


@dataclass
class Limits:
    """Resource limits of a student kernel: bytes of address space, CPU seconds, bytes per file and on disk."""

    memory_bytes: int = 6 * 1024**3
    cpu_seconds: int = 3600
    file_bytes: int = 256 * 1024**2
    disk_bytes: int = 1024**3
    tmp_bytes: int = 256 * 1024**2
    processes: int = 512  # counted per real user, on top of what that user already runs
    open_files: int = 1024  # each socket or pipe can queue megabytes of the OS's memory that no other limit counts


@dataclass
class Sandbox:
    """How kernels are isolated: ``mode`` "bwrap" or "none", the paths hidden from them, limits."""

    mode: str
    hidden: list = field(default_factory=list)
    readable: list = field(default_factory=list)  # re-exposed inside hidden paths (package, venv)
    limits: Limits = field(default_factory=Limits)

    @property
    def isolation(self) -> str:
        return "bwrap" if self.mode == "bwrap" else "none"


def bwrap_path() -> str | None:
    """The ``bwrap`` executable when it exists and can make namespaces here, else None."""
    exe = shutil.which("bwrap")
    if exe is None or not sys.platform.startswith("linux"):
        return None
    probe = subprocess.run(
        [exe, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
        capture_output=True,
        timeout=30,
    )
    return exe if probe.returncode == 0 else None


def make_sandbox(choice: str, kit_root: Path, hidden=(), limits: Limits | None = None) -> Sandbox:
    """``choice``: "auto" (bwrap when it works), "bwrap" (required) or "none". ``hidden``: extra folders to hide.

    The kit's repository root is hidden except the package folder and the interpreter's environment when they
    lie inside it.
    """
    if choice not in ("auto", "bwrap", "none"):
        raise ValueError(f"sandbox must be 'auto', 'bwrap' or 'none', not {choice!r}")
    mode = "none"
    if choice != "none":
        if bwrap_path():
            mode = "bwrap"
        elif choice == "bwrap":
            raise RuntimeError("sandbox='bwrap' but bubblewrap is missing or cannot create namespaces here")
    kit_root = Path(kit_root).resolve()
    package = Path(__file__).resolve().parents[1]
    # Everything outside the system folders is hidden (other copies of the sources, other users' files);
    # the package and the interpreter are then shown again, read-only.
    others = [p for p in Path("/").iterdir() if p.name not in SYSTEM_DIRS and p.is_dir() and not p.is_symlink()]
    readable = [package]
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        readable.append(Path(prefix).resolve())  # the interpreter and its libraries (a venv's base too)
    hide = [kit_root, Path.home(), *others, Path("/var/tmp"), *[Path(h).resolve() for h in hidden]]
    return Sandbox(mode, list(dict.fromkeys(hide)), readable, limits or Limits())


def _hide_around(folder: Path, keep: Path) -> list[str]:
    """bwrap options hiding everything in ``folder`` except the path down to ``keep`` (bound later)."""
    options = []
    inside = keep.relative_to(folder).parts
    current = folder
    for part in inside:
        try:
            siblings = [p for p in current.iterdir() if p.name != part and p.is_dir() and not p.is_symlink()]
        except OSError:
            siblings = []
        for sibling in siblings:
            options += ["--tmpfs", str(sibling)]
        current = current / part
    return options


def _preexec(limits: Limits):
    def apply():
        os.setsid()
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        files = limits.open_files if hard == resource.RLIM_INFINITY else min(limits.open_files, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
        running = sum(1 for p in os.listdir("/proc") if p.isdigit())  # NPROC counts the whole real user
        cap = running + limits.processes
        resource.setrlimit(resource.RLIMIT_NPROC, (cap, cap))

    return apply


def _folder_bytes(path: Path, stop_at: int) -> int:
    total, stack = 0, [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue
                    if total > stop_at:
                        return total
        except OSError:
            continue
    return total


def _held_bytes(root: int) -> int:
    """Bytes of the files that ``root`` and its descendants hold open and no folder lists (memfds, deleted files):
    memory or disk that neither the rlimits nor a walk of the run folder see.

    Read from /proc directly: psutil is not a dependency of the grader, and its ``open_files`` gives paths, not the
    link count that tells a deleted file from a listed one."""
    children: dict = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:  # "pid (name) state ppid ...", name may hold ")"
                    children.setdefault(int(handle.read().rsplit(b")", 1)[1].split()[1]), []).append(entry)
            except (OSError, ValueError, IndexError):
                continue
    total, seen, stack = 0, set(), [str(root)]
    while stack:
        pid = stack.pop()
        stack += children.get(int(pid), [])
        try:
            with os.scandir(f"/proc/{pid}/fd") as entries:
                for entry in entries:
                    try:
                        info = os.stat(entry.path)
                    except OSError:
                        continue
                    if stat.S_ISREG(info.st_mode) and info.st_nlink == 0 and (info.st_dev, info.st_ino) not in seen:
                        seen.add((info.st_dev, info.st_ino))
                        total += info.st_blocks * 512
        except OSError:
            continue
    return total


class KernelDied(RuntimeError):
    """The kernel process ended (killed itself, crashed, or was stopped by a limit)."""


class Kernel:
    """A sandboxed IPython kernel working in ``run_dir/course/<workdir>``; ``execute`` runs code with a time limit."""

    def __init__(self, run_dir: Path, workdir: Path, sandbox: Sandbox, startup_timeout: float = 60):
        from jupyter_client import BlockingKernelClient
        from jupyter_client.connect import write_connection_file

        self.run_dir, self.sandbox = Path(run_dir), sandbox
        ipc = self.run_dir / "ipc"
        ipc.mkdir(parents=True, exist_ok=True)
        conn_file, _ = write_connection_file(
            str(ipc / "kernel.json"), transport="ipc", ip=str(ipc / "k"), key=secrets.token_hex(32).encode()
        )
        python = [sys.executable, "-m", "ipykernel_launcher", "-f", conn_file, "--HistoryManager.enabled=False"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JPY_", "JUPYTER_"))}
        env.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HOME=str(self.run_dir / "home"))
        (self.run_dir / "home").mkdir(exist_ok=True)
        if sandbox.mode == "bwrap":
            cmd = [shutil.which("bwrap"), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
            # /dev and the tmpfs that hide folders are RAM the kernel's rlimits and the watchdog do not see (half
            # the machine's by default): read-only below, and the shared memory that honest code uses is sized.
            cmd += ["--size", str(sandbox.limits.tmp_bytes), "--tmpfs", "/dev/shm"]
            # A private /tmp first: the kit, its venv or the run folder may lie under /tmp (a CI clone does),
            # and the binds below must land on top of it, not under it.
            cmd += ["--size", str(sandbox.limits.tmp_bytes), "--tmpfs", "/tmp"]
            hiding = []
            for path in sandbox.hidden:
                if path.exists() and not self.run_dir.is_relative_to(path):
                    hiding += ["--tmpfs", str(path)]
                elif path.exists():  # the run folder lies inside: hide the siblings on its way instead
                    hiding += _hide_around(path, self.run_dir)
            cmd += hiding
            for path in dict.fromkeys(sandbox.readable):
                if any(path.is_relative_to(h) for h in sandbox.hidden):
                    cmd += ["--ro-bind", str(path), str(path)]
            cmd += ["--bind", str(self.run_dir), str(self.run_dir), "--chdir", str(workdir)]
            tmpfs = [Path(p) for p in hiding[1::2]]
            for i, folder in enumerate(tmpfs):  # after the binds, whose mount points lie in them
                if not any(folder.is_relative_to(later) for later in tmpfs[i + 1 :]):  # else a later one covers it
                    cmd += ["--remount-ro", str(folder)]
            cmd += ["--remount-ro", "/dev"]
            cmd += ["--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534"]
            cmd += ["--die-with-parent", "--new-session", "--", *python]
        else:
            cmd = python
        self.proc = subprocess.Popen(
            cmd,
            cwd=str(workdir),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # the kernel's own messages are no feedback; its replies are
            preexec_fn=_preexec(sandbox.limits),
        )
        self.over_disk = False
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._watchdog, daemon=True)
        self._watch.start()
        self.client = BlockingKernelClient()
        self.client.load_connection_file(conn_file)
        self.client.start_channels()
        try:
            self._wait_ready(startup_timeout)
        except Exception:
            self.close()
            raise

    def _watchdog(self):
        limit = self.sandbox.limits.disk_bytes
        while not self._stop.wait(0.5):
            if self.proc.poll() is not None:
                return
            if _folder_bytes(self.run_dir, limit) + _held_bytes(self.proc.pid) > limit:
                self.over_disk = True
                self.kill()
                return

    def _wait_ready(self, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise KernelDied(f"the kernel exited at start (status {self.proc.returncode})")
            self.client.kernel_info()
            try:  # any kernel_info reply will do: early requests may be answered late
                while True:
                    reply = self.client.get_shell_msg(timeout=1)
                    if reply["msg_type"] == "kernel_info_reply":
                        self._drain_shell()
                        return
            except queue.Empty:
                continue
        raise KernelDied(f"the kernel did not start within {timeout:g} s")

    def _drain_shell(self):
        time.sleep(0.05)
        while True:
            try:
                self.client.get_shell_msg(timeout=0.05)
            except queue.Empty:
                return

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def execute(self, code: str, timeout: float, *, user_expressions=None, silent=False) -> dict:
        """Run ``code``; returns ``{"status": "ok"|"error"|"timeout"|"hung"|"dead", ...reply content}``.

        "timeout": interrupted after ``timeout`` s and it answered; "hung": it did not answer the interrupt
        within GRACE_SECONDS (the caller restarts); "dead": the kernel process ended.
        """
        if not self.alive:
            return {"status": "dead"}
        msg_id = self.client.execute(
            code,
            silent=silent,
            store_history=False,
            user_expressions=user_expressions or {},
            allow_stdin=False,
            stop_on_error=False,
        )
        deadline = time.monotonic() + max(0.0, timeout)
        interrupted = None
        while True:
            self._drain_iopub()
            try:
                reply = self.client.get_shell_msg(timeout=0.2)
            except queue.Empty:
                if not self.alive:
                    return {"status": "dead"}
                now = time.monotonic()
                if interrupted is None and now > deadline:
                    self.interrupt()
                    interrupted = now
                elif interrupted is not None and now > interrupted + GRACE_SECONDS:
                    return {"status": "hung"}
                continue
            if reply["parent_header"].get("msg_id") != msg_id:
                continue
            content = dict(reply["content"])
            if interrupted is not None:
                content["status"] = "timeout"
            return content

    def _drain_iopub(self):
        # Outputs are not kept (feedback never shows them); reading them keeps ZMQ's queue short.
        for _ in range(10_000):
            try:
                self.client.get_iopub_msg(timeout=0)
            except queue.Empty:
                return

    def interrupt(self):
        msg = self.client.session.msg("interrupt_request", {})
        self.client.control_channel.send(msg)

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # setsid in _preexec: the group is the kernel's
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass

    def close(self):
        self._stop.set()
        try:
            self.client.stop_channels()
        except Exception:
            pass
        self.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
