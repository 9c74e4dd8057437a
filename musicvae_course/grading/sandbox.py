"""The sandbox a student kernel runs in: bubblewrap's command line, the hidden folders, rlimits, the user.

Used by :mod:`.kernel` (which starts kernels with it) and the autograder (which makes one :class:`Sandbox` per
run). See :mod:`.kernel` for what the sandbox holds and docs/grading.md for the threat model.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

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
}


@dataclass
class Limits:
    """Resource limits of a student kernel: bytes of address space, CPU seconds, bytes per file and on disk."""

    memory_bytes: int = 6 * 1024**3  # per process (RLIMIT_AS) and for all its processes together (the watchdog)
    cpu_seconds: int = 3600
    file_bytes: int = 256 * 1024**2
    disk_bytes: int = 1024**3
    tmp_bytes: int = 256 * 1024**2
    processes: int = 512  # processes and threads of one kernel (the watchdog); RLIMIT_NPROC: per real user, on top
    open_files: int = 1024  # each socket or pipe can queue megabytes of the OS's memory that no other limit counts


@dataclass
class Sandbox:
    """How kernels are isolated: ``mode`` "bwrap" or "none", the paths hidden from them, limits."""

    mode: str
    hidden: list = field(default_factory=list)
    readable: list = field(default_factory=list)  # re-exposed inside hidden paths (package, venv)
    limits: Limits = field(default_factory=Limits)
    #: The user a kernel runs as outside its namespace when the grader is root (:func:`unprivileged_user`).
    user: int | None = None

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
    box = Sandbox(mode, list(dict.fromkeys(hide)), readable, limits or Limits())
    box.user = unprivileged_user(box)
    return box


def _binds(sandbox: Sandbox) -> list[Path]:
    """The readable folders that lie in hidden ones: bound again (read-only) on top of the tmpfs that hides them."""
    return [p for p in dict.fromkeys(sandbox.readable) if any(p.is_relative_to(h) for h in sandbox.hidden)]


NOBODY = 65534
TMP = Path("/tmp")  # private in each sandbox
# Run first in the kernel's namespace when the grader is root (see :func:`root_userns`): become nobody for good
# (setresuid clears the capabilities bwrap kept for it; no_new_privs forbids getting any back), then the kernel.
_DROP = (
    "import os, sys; os.setgroups([]); os.setresgid({0}, {0}, {0}); os.setresuid({0}, {0}, {0}); "
    "os.execv(sys.executable, sys.argv[1:])"
)


def _bwrap_command(sandbox: Sandbox, run_dir: Path, workdir: Path, python: list, userns: int | None = None) -> list:
    """The bwrap command line that runs ``python`` in the sandbox, writing only in ``run_dir``; ``userns``: the fd
    of :func:`root_userns` when the grader is root."""
    cmd = [shutil.which("bwrap"), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    # /dev and the tmpfs that hide folders are RAM the kernel's rlimits and the watchdog do not see (half
    # the machine's by default): read-only below, and the shared memory that honest code uses is sized.
    shared = [] if userns is None else ["--perms", "1777"]  # as /tmp is outside: the kernel is not their owner
    cmd += [*shared, "--size", str(sandbox.limits.tmp_bytes), "--tmpfs", "/dev/shm"]
    # A private /tmp first: the kit, its venv or the run folder may lie under /tmp (a CI clone does),
    # and the binds below must land on top of it, not under it.
    cmd += [*shared, "--size", str(sandbox.limits.tmp_bytes), "--tmpfs", "/tmp"]
    # The folder of every kernel's run folder (the temporary folder): the others, made later too, hold their kernel's
    # key and sockets, and a kernel that sees them can run code in another student's (TMPDIR under /run or /var/tmp)
    runs = run_dir.parent
    hiding = [] if runs == Path("/") or runs.is_relative_to(TMP) else ["--tmpfs", str(runs)]
    for path in sandbox.hidden:
        if hiding and path.is_relative_to(runs):
            continue  # hidden with it
        if path.exists() and not run_dir.is_relative_to(path):
            hiding += ["--tmpfs", str(path)]
        elif path.exists():  # the run folder lies inside: hide the siblings on its way instead
            hiding += _hide_around(path, run_dir)
    cmd += hiding
    made = set()

    def way_to(path):  # bwrap makes the folders on the way 0700: nobody must pass them (to the interpreter)
        if userns is None:
            return []
        options = []
        for parent in reversed(path.parents):
            if parent not in made and any(parent.is_relative_to(r) and parent != r for r in [*sandbox.hidden, TMP]):
                made.add(parent)
                options += ["--perms", "0755", "--dir", str(parent)]
        return options

    for path in _binds(sandbox):
        cmd += [*way_to(path), "--ro-bind", str(path), str(path)]
    cmd += [*way_to(run_dir), "--bind", str(run_dir), str(run_dir), "--chdir", str(workdir)]
    tmpfs = [Path(p) for p in hiding[1::2]]
    for i, folder in enumerate(tmpfs):  # after the binds, whose mount points lie in them
        if not any(folder.is_relative_to(later) for later in tmpfs[i + 1 :]):  # else a later one covers it
            cmd += ["--remount-ro", str(folder)]
    cmd += ["--remount-ro", "/dev"]
    if userns is None:
        cmd += ["--unshare-all", "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)]
    else:
        cmd += ["--userns", str(userns), "--unshare-pid", "--unshare-ipc", "--unshare-net", "--unshare-uts"]
        cmd += ["--unshare-cgroup-try", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        python = [python[0], "-c", _DROP.format(NOBODY), *python]
    cmd += ["--die-with-parent", "--new-session", "--", *python]
    return cmd


def _give(folder: Path, user: int) -> None:
    """Make ``folder`` and everything in it belong to ``user`` (links themselves, not what they point to)."""
    os.chown(folder, user, user)
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            os.chown(os.path.join(root, name), user, user, follow_symlinks=False)


def root_userns() -> int:
    """An fd of a new user namespace that maps root to root and nobody to nobody, for a root grader's kernels.

    bwrap maps a kernel's user to the grader's user outside its namespace: for a root grader, root. The kernel
    could then read every file of the system folders that only root may read (``/etc/shadow``, host keys, a
    container's ``/run/secrets``) and hand it to its student in an exception message, in the feedback; and
    ``RLIMIT_NPROC`` would not bind it. In this namespace bwrap sets up the mounts as root (the interpreter may
    lie under ``/root``, which nobody cannot pass), then the kernel's first act is to become nobody, outside too.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def enter():
        if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER)")

    holder = subprocess.Popen(["sleep", "60"], preexec_fn=enter, stdin=subprocess.DEVNULL)
    try:
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{holder.pid}/{name}", "w") as handle:
                handle.write(f"0 0 1\n{NOBODY} {NOBODY} 1\n")
        return os.open(f"/proc/{holder.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)  # the fd keeps it alive
    finally:
        holder.kill()
        holder.wait()


def unprivileged_user(sandbox: Sandbox) -> int | None:
    """``NOBODY`` when the grader runs as root and its kernels can run as nobody (:func:`root_userns`), else None
    (the kernel's user is the grader's own; ``autograde`` warns when that is root)."""
    if sandbox.mode != "bwrap" or os.geteuid() != 0:
        return None
    run_dir = Path(tempfile.mkdtemp(prefix="mvc-probe-"))
    userns = None
    try:
        (run_dir / "course").mkdir()
        _give(run_dir, NOBODY)
        userns = root_userns()
        python = [sys.executable, "-c", f"import os, ipykernel; assert os.getuid() == os.geteuid() == {NOBODY}"]
        cmd = _bwrap_command(sandbox, run_dir, run_dir / "course", python, userns)
        probe = subprocess.run(
            cmd, capture_output=True, timeout=120, preexec_fn=_preexec(sandbox.limits), cwd=run_dir, pass_fds=(userns,)
        )
        return NOBODY if probe.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        if userns is not None:
            os.close(userns)
        shutil.rmtree(run_dir, ignore_errors=True)


def remove_tree(path) -> None:
    """Remove a folder a submission wrote in, ignoring errors. shutil.rmtree recurses once per level: a tree 1,500
    folders deep raised RecursionError (``ignore_errors`` covers OSError only): the grader failed on the notebook
    (status error, its honest points lost) and left its run folder on disk. ``rm -rf`` has no depth limit."""
    try:
        shutil.rmtree(path, ignore_errors=True)
    except RecursionError:
        try:
            subprocess.run(["rm", "-rf", "--", str(path)], stdin=subprocess.DEVNULL, capture_output=True, check=False)
        except OSError:
            pass


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
        try:  # when the machine runs out of memory, a student's kernel goes first, not a grader or a system process
            with open("/proc/self/oom_score_adj", "w") as handle:  # kernels cannot lower it: no capability outside
                handle.write("1000")
        except OSError:
            pass
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        files = limits.open_files if hard == resource.RLIM_INFINITY else min(limits.open_files, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
        running = sum(1 for p in os.listdir("/proc") if p.isdigit())  # NPROC counts the whole real user
        cap = running + limits.processes
        resource.setrlimit(resource.RLIMIT_NPROC, (cap, cap))

    return apply
