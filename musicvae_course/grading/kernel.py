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
import secrets
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import codec
from .sandbox import Sandbox, _bwrap_command, _give, _preexec, root_userns

GRACE_SECONDS = 2.0  # how long an interrupted kernel gets to answer before it is killed
#: The largest frame the grader accepts on the shell channel; libzmq drops a bigger one unread (and disconnects the
#: kernel, which reconnects). The largest honest reply carries a user expression's repr of codec.MAX_TEXT characters:
#: the repr at most doubles them (escaped backslashes) and the message's JSON doubles them again.
SHELL_MAX_BYTES = 4 * codec.MAX_TEXT + 1024**2
CONTROL_MAX_BYTES = 64 * 1024  # control carries only the small interrupt_reply
RECEIVE_HWM = 4  # frames of whole messages queued unread: the grader reads one reply at a time
#: What a kernel inherits of the grader's environment: what Python and the libraries need to start. The rest (an
#: LMS token, cloud keys, paths) could be shown to the student in an exception message in the feedback.
KERNEL_ENV = {
    "PATH",
    "LANG",
    "LANGUAGE",
    "TZ",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONUTF8",
    "PYTHONIOENCODING",
    "PYTHONDONTWRITEBYTECODE",
    "LD_LIBRARY_PATH",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
}


#: What each file, folder or link costs at least: an empty file takes no block but an inode, and millions of them
#: (thousands a second) would use up the inodes of the file system that holds every run folder and the grades.
ENTRY_BYTES = 4096


def _folder_bytes(path: Path, stop_at: int, device: int | None = None) -> int:
    """Bytes of the files under ``path`` (each at least ENTRY_BYTES), up to ``stop_at``; ``device``: not into the
    folders of other file systems (the binds in the kernel's ``/tmp``)."""
    total, stack = 0, [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if device is None or entry.stat(follow_symlinks=False).st_dev == device:
                                stack.append(entry.path)
                            total += ENTRY_BYTES
                        else:
                            total += max(entry.stat(follow_symlinks=False).st_blocks * 512, ENTRY_BYTES)
                    except OSError:
                        continue
                    if total > stop_at:
                        return total
        except OSError:
            continue
    return total


@dataclass
class Usage:
    """What a kernel's processes hold: ``held`` bytes of files open that no folder lists, ``tasks`` (processes and
    threads), ``memory`` bytes (proportional set size: a page shared by forked children counts once)."""

    held: int = 0
    tasks: int = 0
    memory: int = 0
    inside: str = ""  # a PID in the sandbox: its /proc/<pid>/root is the kernel's view (its private /tmp)


def _pss_bytes(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _held_usage(root: int) -> Usage:
    """:class:`Usage` of ``root`` and its descendants. Held files: memfds and deleted files, memory or disk that
    neither the rlimits nor a walk of the run folder see. Tasks: ``RLIMIT_NPROC`` does not bind a grader that runs
    as root (the kernel's real user outside its namespace is then root, which the limit exempts), so a fork bomb
    would take every PID of the machine and the kernels graded beside it could not start. Memory: ``RLIMIT_AS``
    bounds each process, so ten forked children could take ten times the kernel's memory, and the machine's
    out-of-memory killer would then pick among the other submissions' kernels and the grader's workers.

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
    usage, seen, stack = Usage(), set(), [str(root)]
    while stack:
        pid = stack.pop()
        stack += children.get(int(pid), [])
        usage.inside = pid if pid != str(root) else usage.inside
        try:
            usage.tasks += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            usage.tasks += 1  # it just ended; still a PID until reaped
        usage.memory += _pss_bytes(pid)
        try:
            with os.scandir(f"/proc/{pid}/fd") as entries:
                for entry in entries:
                    try:
                        info = os.stat(entry.path)
                    except OSError:
                        continue
                    if stat.S_ISREG(info.st_mode) and info.st_nlink == 0 and (info.st_dev, info.st_ino) not in seen:
                        seen.add((info.st_dev, info.st_ino))
                        usage.held += info.st_blocks * 512
        except OSError:
            continue
    return usage


def _private_bytes(pid: str, stop_at: int) -> int:
    """What the kernel keeps in its private ``/tmp`` and ``/dev/shm``: their size is bounded, the number of (empty)
    files in them is not, and each takes kernel memory that no rlimit counts (millions in a minute)."""
    total = 0
    for folder in ("tmp", "dev/shm") if pid else ():
        top = f"/proc/{pid}/root/{folder}"
        try:
            total += _folder_bytes(Path(top), stop_at, os.stat(top).st_dev)
        except OSError:
            continue
    return total


def _bounded_context():
    """A ZMQ context whose sockets take at most ``SHELL_MAX_BYTES`` a frame and queue few messages unread: the
    defaults (no size limit, 1000 messages) let a hostile kernel make the grader receive gigabytes. Options set on a
    context are the defaults of the sockets created after."""
    import zmq  # like jupyter_client, imported when a kernel starts, not with the package

    context = zmq.Context()
    context.setsockopt(zmq.MAXMSGSIZE, SHELL_MAX_BYTES)
    context.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
    return context


class KernelDied(RuntimeError):
    """The kernel process ended (killed itself, crashed, or was stopped by a limit)."""


class Kernel:
    """A sandboxed IPython kernel working in ``run_dir/course/<workdir>``; ``execute`` runs code with a time limit."""

    def __init__(self, run_dir: Path, workdir: Path, sandbox: Sandbox, startup_timeout: float = 60):
        from jupyter_client import BlockingKernelClient
        from jupyter_client.connect import write_connection_file
        from zmq import MAXMSGSIZE

        self.run_dir, self.sandbox = Path(run_dir), sandbox
        ipc = self.run_dir / "ipc"
        ipc.mkdir(parents=True, exist_ok=True)
        conn_file, _ = write_connection_file(
            str(ipc / "kernel.json"), transport="ipc", ip=str(ipc / "k"), key=secrets.token_hex(32).encode()
        )
        python = [sys.executable, "-m", "ipykernel_launcher", "-f", conn_file, "--HistoryManager.enabled=False"]
        env = {k: v for k, v in os.environ.items() if k in KERNEL_ENV or k.startswith("LC_")}
        env.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HOME=str(self.run_dir / "home"))
        (self.run_dir / "home").mkdir(exist_ok=True)
        if sandbox.user is not None:  # its run folder is the only place a kernel writes
            _give(self.run_dir, sandbox.user)
        userns = root_userns() if sandbox.user is not None else None
        try:
            cmd = (
                _bwrap_command(sandbox, self.run_dir, Path(workdir), python, userns)
                if sandbox.mode == "bwrap"
                else python
            )
            self.proc = subprocess.Popen(
                cmd,
                cwd=str(workdir),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,  # the kernel's own messages are no feedback; its replies are
                preexec_fn=_preexec(sandbox.limits),
                pass_fds=() if userns is None else (userns,),
            )
        finally:
            if userns is not None:
                os.close(userns)
        self.over_disk = False
        self.over_processes = False
        self.over_memory = False
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._watchdog, daemon=True)
        self._watch.start()
        self.context = _bounded_context()
        self.client = BlockingKernelClient(context=self.context)
        self.client.load_connection_file(conn_file)
        self.context.setsockopt(MAXMSGSIZE, CONTROL_MAX_BYTES)
        self.client.control_channel  # noqa: B018 - creates the control socket under the control bound
        self.context.setsockopt(MAXMSGSIZE, SHELL_MAX_BYTES)
        # IOPub carries only outputs, which feedback never shows: not subscribing means a kernel that floods it
        # publishes to nobody, instead of making the grader receive and parse each message. Stdin (no input is
        # allowed) and the heartbeat (liveness is the process's) are not needed either.
        self.client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=True)
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
            usage = _held_usage(self.proc.pid)
            if usage.tasks > self.sandbox.limits.processes:
                self.over_processes = True
            elif usage.memory > self.sandbox.limits.memory_bytes:
                self.over_memory = True
            if self.over_processes or self.over_memory:
                self.kill()
                return
            if _folder_bytes(self.run_dir, limit) + usage.held + _private_bytes(usage.inside, limit) > limit:
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
            # The clock is read on every message, not only when none comes: a kernel that keeps sending replies
            # to other requests must not hold the grader past the time limit.
            if not self.alive:
                return {"status": "dead"}
            now = time.monotonic()
            if interrupted is None and now > deadline:
                self.interrupt()
                interrupted = now
            elif interrupted is not None and now > interrupted + GRACE_SECONDS:
                return {"status": "hung"}
            try:
                reply = self.client.get_shell_msg(timeout=0.2)
            except queue.Empty:
                continue
            if reply["parent_header"].get("msg_id") != msg_id:
                continue
            content = dict(reply["content"])
            if interrupted is not None:
                content["status"] = "timeout"
            return content

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
        self.context.destroy(linger=0)  # the client destroys only a context it created itself
