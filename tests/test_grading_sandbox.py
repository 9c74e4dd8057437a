"""The grading sandbox, tried from inside a kernel: what a hostile kernel cannot reach (the machine's RAM through
tmpfs folders, root's files, the grader's environment) and the limits that stop it (disk, memory summed over its
processes, process count, sockets, channel floods). Needs bubblewrap (CI installs it)."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import pytest

from musicvae_course.grading import autograde
from musicvae_course.grading import kernel as kernel_module
from musicvae_course.grading.kernel import Kernel
from musicvae_course.grading.sandbox import Limits, bwrap_path, make_sandbox


def test_a_kernel_cannot_fill_ram_through_dev_or_the_folders_that_hide_the_machine(tmp_path):
    # tmpfs pages count against no rlimit of the kernel and the watchdog sees only its run folder: unbounded,
    # /dev/shm, /dev or a hidden folder such as the home folder could take half the machine's memory
    assert bwrap_path(), "the sandbox tests need bubblewrap: apt-get install bubblewrap (CI installs it)"
    limits = Limits(tmp_bytes=8 * 1024**2)
    sandbox = make_sandbox("bwrap", Path(autograde.__file__).resolve().parents[2], limits=limits)
    folders = ["/dev/shm", "/dev", str(Path.home()), "/tmp"]
    code = (
        "import os\nwrote = {}\n"
        f"for folder in {folders!r}:\n"
        "    wrote[folder] = 0\n"
        "    try:\n"
        "        with open(os.path.join(folder, 'blob'), 'wb') as f:\n"
        "            for _ in range(16):\n"
        "                f.write(b'x' * 1024**2); f.flush(); os.fsync(f.fileno()); wrote[folder] += 1\n"
        "    except OSError:\n"
        "        pass\n"
    )
    (tmp_path / "course").mkdir()
    kernel = Kernel(tmp_path, tmp_path / "course", sandbox)
    wrote = eval(_run_and_read(kernel, code, "wrote"))
    assert wrote[str(Path.home())] == 0 and wrote["/dev"] == 0
    assert 0 < wrote["/dev/shm"] <= 8 and 0 < wrote["/tmp"] <= 8  # honest shared memory and temp files still work


def _sandboxed_kernel(tmp_path, **limits) -> Kernel:
    """A kernel in the bwrap sandbox with these ``Limits``, its course folder in ``tmp_path``."""
    assert bwrap_path(), "the sandbox tests need bubblewrap: apt-get install bubblewrap (CI installs it)"
    sandbox = make_sandbox("bwrap", Path(autograde.__file__).resolve().parents[2], limits=Limits(**limits))
    (tmp_path / "course").mkdir()
    return Kernel(tmp_path, tmp_path / "course", sandbox)


def _run_and_read(kernel: Kernel, code: str, expression: str) -> str:
    """Run ``code`` in ``kernel`` (it must end well), then read ``expression``'s repr there; the kernel is closed."""
    try:
        assert kernel.execute(code, 60)["status"] == "ok"
        reply = kernel.execute("", 10, user_expressions={"r": expression})
    finally:
        kernel.close()
    return reply["user_expressions"]["r"]["data"]["text/plain"]


def test_a_kernel_that_holds_memory_files_or_deleted_files_is_stopped_like_one_that_fills_its_folder(tmp_path):
    # a memfd or a deleted file that is still open is RAM or disk that no rlimit counts and no folder lists
    kernel = _sandboxed_kernel(tmp_path, disk_bytes=64 * 1024**2)
    code = (
        "import os, time\nheld = []\n"
        "for n in range(32):\n"
        "    held.append(os.memfd_create('x') if n % 2 else os.open(f'deleted{n}', os.O_CREAT | os.O_WRONLY))\n"
        "    if n % 2 == 0:\n"
        "        os.unlink(f'deleted{n}')\n"
        "    os.write(held[-1], b'x' * 16 * 1024**2)\n"
        "    time.sleep(0.1)\n"
        "time.sleep(2)"
    )
    try:
        assert kernel.execute(code, 30)["status"] == "dead"
        assert kernel.over_disk
    finally:
        kernel.close()


def test_a_kernel_opens_a_bounded_number_of_sockets(tmp_path):
    # a socket pair queues up to ~8 MB of the OS's memory, counted by no other limit: 20,000 would be 80 GB
    kernel = _sandboxed_kernel(tmp_path, open_files=256)
    code = "import socket\npairs = []\ntry:\n    while len(pairs) < 2000:\n        pairs.append(socket.socketpair())\n"
    code += "except OSError:\n    pass"
    assert 50 < int(_run_and_read(kernel, code, "len(pairs)")) < 128


def test_a_kernel_that_starts_too_many_processes_is_stopped_even_when_the_grader_is_root(tmp_path):
    # RLIMIT_NPROC exempts a real user root (the kernel's user outside its namespace when the grader runs as root):
    # a fork bomb would take every PID of the machine, and the kernels graded beside it could not start
    kernel = _sandboxed_kernel(tmp_path, processes=64)
    code = "import subprocess, time\nheld = []\nfor _ in range(150):\n    try:\n"
    code += "        held.append(subprocess.Popen(['sleep', '60']))\n    except OSError:\n        pass\ntime.sleep(5)"
    try:
        assert kernel.execute("import threading\nthreading.active_count()", 10)["status"] == "ok"  # honest: alive
        assert kernel.execute(code, 30)["status"] == "dead"
        assert kernel.over_processes and not kernel.over_disk
    finally:
        kernel.close()


def test_a_kernel_whose_processes_together_pass_its_memory_limit_is_stopped(tmp_path):
    # RLIMIT_AS bounds each process: forked children could each take the whole limit, and the machine's OOM killer
    # would then choose among the other submissions' kernels and the grader's workers
    kernel = _sandboxed_kernel(tmp_path, memory_bytes=1536 * 1024**2)
    code = "import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        try:\n"
    code += "            blob = b'x' * (600 * 1024**2)\n            time.sleep(30)\n        finally:\n"
    code += "            os._exit(0)\ntime.sleep(20)"  # bytes, not bytearray(n): its pages are only promised
    try:
        assert kernel.execute("blob = b'x' * (200 * 1024**2)", 10)["status"] == "ok"  # one process: within
        adj = "open('/proc/self/oom_score_adj').read().strip()"  # out of memory: the kernel goes first, not a grader
        reply = kernel.execute("", 10, user_expressions={"r": adj})
        assert reply["user_expressions"]["r"]["data"]["text/plain"] == "'1000'"
        assert kernel.execute(code, 30)["status"] == "dead"
        assert kernel.over_memory and not kernel.over_processes
    finally:
        kernel.close()


def test_a_kernel_gets_neither_the_graders_environment_nor_roots_files(tmp_path, monkeypatch):
    # what a kernel can read it can hand to its student in an exception message, in the feedback: an LMS token in
    # the grader's environment, or (a root grader's kernel was root outside its namespace) /etc/shadow
    monkeypatch.setenv("CANVAS_API_TOKEN", "s3cret")
    kernel = _sandboxed_kernel(tmp_path)
    code = "import os\ntry:\n    shadow = open('/etc/shadow').read()\n"
    code += "except OSError as exc:\n    shadow = type(exc).__name__"
    code += "\nopen('written.txt', 'w').write('the run folder is writable')"
    shadow, token = eval(_run_and_read(kernel, code, "(shadow, 'CANVAS_API_TOKEN' in os.environ)"))
    assert token is False
    if os.geteuid() == 0 and Path("/etc/shadow").exists():
        assert kernel.sandbox.user == 65534 and shadow == "PermissionError"
    assert (tmp_path / "course" / "written.txt").exists()


def test_a_kernel_that_floods_its_channels_is_stopped_at_the_time_limit(tmp_path):
    # the grader does not subscribe to IOPub (outputs are no feedback) and bounds what it receives on shell: a kernel
    # that sends messages of hundreds of MB, or endless replies to other requests, cannot hold it past the limit
    iopub = "k = get_ipython().kernel\nbig = 'x' * 200_000_000\nwhile True:\n"
    iopub += "    k.session.send(k.iopub_socket, 'stream', {'name': 'stdout', 'text': big})"
    shell = "k = get_ipython().kernel\nbig = b'x' * 50_000_000\nwhile True:\n"
    shell += "    k.session.send(k.shell_stream, 'execute_reply', {}, ident=k._parent_ident['shell'], buffers=[big])"
    kernel = _sandboxed_kernel(tmp_path)
    try:
        for code in (iopub, shell):
            start = time.monotonic()
            assert kernel.execute(code, 3)["status"] in ("timeout", "hung")
            assert time.monotonic() - start < 3 + kernel_module.GRACE_SECONDS + 3
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        assert rss_mb < 2048, f"the grader used {rss_mb:.0f} MB"
    finally:
        kernel.close()


@pytest.mark.parametrize("folder", ["d", "/tmp/d"])
def test_a_kernel_that_makes_millions_of_empty_files_is_stopped(tmp_path, folder):
    # an empty file takes no block but an inode: uncounted in the run folder, a kernel could use up the inodes of the
    # file system that holds every run folder and the grades (thousands a second, for as long as its cells may run);
    # its private /tmp and /dev/shm are sized, but not in files, and each empty one is kernel memory no rlimit counts
    kernel = _sandboxed_kernel(tmp_path, disk_bytes=32 * 1024**2)
    code = f"import os\nos.mkdir({folder!r})\nn = 0\nwhile True:\n    open(f'{folder}/{{n}}', 'w').close()\n    n += 1"
    try:
        assert kernel.execute(code, 20)["status"] == "dead"
        assert kernel.over_disk
    finally:
        kernel.close()
