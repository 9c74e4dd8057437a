"""musicvae_course/fileio.py: an interrupt that arrives while a file is written is delivered once the file is whole."""

from __future__ import annotations

import os
import signal

import pytest

from musicvae_course.fileio import atomic_write


def _raise_interrupt(signum, frame):  # as ``python -m musicvae_course.train`` turns SIGTERM into Ctrl+C
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupt_during_a_write_is_raised_after_the_file_is_in_place(tmp_path, signum):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")
    reached_the_end = []

    def content(handle):
        handle.write(b"first half ")
        os.kill(os.getpid(), signum)  # the interrupt arrives mid-write (torch.save's zip writer would break here)
        handle.write(b"second half")
        reached_the_end.append(True)

    previous = signal.signal(signum, _raise_interrupt)
    try:
        with pytest.raises(KeyboardInterrupt, match=f"signal {int(signum)}"):
            atomic_write(target, content)
    finally:
        signal.signal(signum, previous)
    assert reached_the_end and target.read_bytes() == b"first half second half"
    assert not list(tmp_path.glob(".*.tmp"))
    # the mask is restored: the next interrupt is immediate again
    signal.signal(signum, _raise_interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signum)
            for _ in range(1000):  # Python runs the handler at the next bytecode
                pass
    finally:
        signal.signal(signum, previous)


def test_walk_lists_without_recursion_prunes_and_stops_at_its_bounds(tmp_path):
    from musicvae_course.fileio import WalkLimit, walk

    deep = tmp_path / "top"
    path = deep
    for _ in range(5):
        path = path / "a"
    path.mkdir(parents=True)
    (deep / "skip").mkdir()
    (deep / "skip" / "hidden.txt").write_text("")
    (path / "bottom.txt").write_text("")
    seen = []
    for root, folders, names in walk(deep):
        if "skip" in folders:
            folders.remove("skip")  # pruned as in os.walk
        seen += names
    assert seen == ["bottom.txt"]
    limits = []
    roots = [root for root, _, _ in walk(deep, limits.append, max_depth=2)]
    assert len(roots) == 4 and [str(e) for e in limits] == ["folders over 2 deep"]  # top, a, a/a, skip
    assert all(isinstance(e, WalkLimit) for e in limits)
    limits.clear()
    listed = sum(len(folders) + len(names) for _, folders, names in walk(deep, limits.append, max_entries=3))
    assert listed == 3 and [str(e) for e in limits] == ["over 3 files and folders"]
