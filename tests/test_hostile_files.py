"""Hostile file-system entries: FIFOs, devices, folders, dangling links, link loops, odd names, slow readers.

Every entry with a MIDI name that is not a readable regular file is skipped with a reason naming what it is,
under the link's own name, in every read path; nothing blocks (a FIFO is never opened) and nothing else is lost.
"""

from __future__ import annotations

import csv
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from midi_corpus import _write_notes

from musicvae_course.core.data import build_dataset
from musicvae_course.core.midi_fast import MidiSkip, midi_to_pianoroll_fast, read_pianoroll, read_pianoroll_reference
from musicvae_course.core.pianoroll import midi_to_pianoroll
from musicvae_course.core.safe_files import ReadTimeout, time_limit

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX file system entries")

MODES = [(0, "fast"), (0, "reference"), (2, "fast"), (2, "reference")]
EXPECTED = {
    "fifo.mid": "FIFO",
    "zero.mid": "character device",
    "folder.mid": "a folder",
    "dangling.mid": "dangling symlink",
    "loop_a.mid": "symlink loop",
    "loop_b.mid": "symlink loop",
}


def _good(path: Path) -> Path:
    _write_notes(path, [(60, 0, 480), (64, 480, 960), (67, 960, 1920)])
    return path


@pytest.fixture
def hostile_folder(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    _good(folder / "good.mid")
    os.mkfifo(folder / "fifo.mid")
    os.symlink("/dev/zero", folder / "zero.mid")
    (folder / "folder.mid").mkdir()
    os.symlink("nowhere.mid", folder / "dangling.mid")
    os.symlink("loop_b.mid", folder / "loop_a.mid")
    os.symlink("loop_a.mid", folder / "loop_b.mid")
    return folder


@pytest.mark.parametrize("workers, reader", MODES)
def test_odd_entries_are_skipped_with_their_reason_in_every_build_mode(hostile_folder, tmp_path, workers, reader):
    began = time.perf_counter()
    ds = build_dataset(hostile_folder, cache_dir=tmp_path / "cache", workers=workers, reader=reader, progress=False)
    assert time.perf_counter() - began < 30  # a FIFO is never opened, so nothing blocks
    reasons = {Path(p).name: r for p, r in ds.report.skipped}
    assert set(reasons) == set(EXPECTED)
    for name, words in EXPECTED.items():
        assert words in reasons[name], (name, reasons[name])
    assert "dangling.mid -> nowhere.mid" in reasons["dangling.mid"]  # the link is named, not only its target
    assert [Path(f).name for f in ds.files] == ["good.mid"] and len(ds) > 0  # nothing else lost


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("read", [midi_to_pianoroll, midi_to_pianoroll_fast], ids=["reference_reader", "fast_reader"])
def test_direct_readers_refuse_odd_entries_naming_them(hostile_folder, name, read):
    with pytest.raises(ValueError, match=EXPECTED[name]):
        read(hostile_folder / name)


@pytest.mark.parametrize("read", [read_pianoroll, read_pianoroll_reference])
def test_skip_readers_say_what_the_entry_is(hostile_folder, read):
    with pytest.raises(MidiSkip, match="FIFO"):
        read(str(hostile_folder / "fifo.mid"))


def test_a_name_that_is_not_utf8_is_reported_and_written_to_the_csv(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    _good(folder / "good.mid")
    odd = os.fsdecode(str(folder).encode() + b"/bad\xff\xfename.mid")
    Path(odd).write_bytes(b"not midi at all")
    for _ in range(2):  # and on the rerun, from the cache
        ds = build_dataset(folder, cache_dir=tmp_path / "cache", workers=0, progress=False)
        assert [(Path(p).name, "not a MIDI file" in r) for p, r in ds.report.skipped] == [(Path(odd).name, True)]
        with open(ds.report.skipped_csv, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        assert rows[1][0].endswith("bad\\xff\\xfename.mid") and len(ds.files) == 1


def _slow_reader(path):
    if "slow" in Path(path).name:
        time.sleep(60)
    return midi_to_pianoroll(path)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_file_slower_than_the_time_limit_is_skipped_and_the_rest_kept(tmp_path, workers):
    folder = tmp_path / "corpus"
    folder.mkdir()
    _good(folder / "good.mid")
    shutil.copy(folder / "good.mid", folder / "slow.mid")
    began = time.perf_counter()
    ds = build_dataset(folder, workers=workers, reader=_slow_reader, timeout=0.5, progress=False)
    assert time.perf_counter() - began < 20
    assert [(Path(p).name, "longer than the limit of 0.5 s" in r) for p, r in ds.report.skipped] == [("slow.mid", True)]
    assert [Path(f).name for f in ds.files] == ["good.mid"]


def test_the_direct_reader_has_a_time_limit(tmp_path, monkeypatch):
    import musicvae_course.core.pianoroll as pianoroll

    path = _good(tmp_path / "a.mid")
    monkeypatch.setattr(pianoroll, "load_pretty_midi", lambda *args: time.sleep(60))
    began = time.perf_counter()
    with pytest.raises(ReadTimeout, match="limit of 0.3 s"):
        midi_to_pianoroll(path, timeout=0.3)
    assert time.perf_counter() - began < 10


def test_time_limit_restores_the_previous_alarm_handler():
    import signal

    before = signal.getsignal(signal.SIGALRM)
    with time_limit(5.0):
        assert signal.getitimer(signal.ITIMER_REAL)[0] > 0
    assert signal.getsignal(signal.SIGALRM) == before and signal.getitimer(signal.ITIMER_REAL)[0] == 0


def test_a_symlink_to_a_good_file_is_read_under_its_own_name(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    target = _good(tmp_path / "elsewhere.mid")
    os.symlink(target, folder / "link.mid")
    ds = build_dataset(folder, workers=0, progress=False)
    assert [Path(f).name for f in ds.files] == ["link.mid"] and not ds.report.skipped
    assert np.array_equal(ds.segments, build_dataset(target, workers=0, progress=False).segments)


def test_a_folder_that_cannot_be_listed_is_reported_and_the_rest_read(tmp_path, monkeypatch):
    import musicvae_course.core.file_lists as file_lists

    folder = tmp_path / "corpus"
    (folder / "locked").mkdir(parents=True)
    _good(folder / "good.mid")
    walk = file_lists.walk  # the kit's own walk (os.walk recursed per level); root can read a chmod 000 folder

    def walk_with_a_locked_folder(top, onerror=None, **kwargs):
        for root, folders, names in walk(top, onerror=onerror, **kwargs):
            if "locked" in folders:
                folders.remove("locked")
                onerror(PermissionError(13, "Permission denied", str(Path(root) / "locked")))
            yield root, folders, names

    monkeypatch.setattr(file_lists, "walk", walk_with_a_locked_folder)
    ds = build_dataset(folder, cache_dir=tmp_path / "cache", workers=0, progress=False)
    assert [(Path(p).name, r) for p, r in ds.report.skipped] == [("locked", "folder not readable: Permission denied")]
    assert [Path(f).name for f in ds.files] == ["good.mid"]


@pytest.mark.parametrize("workers, reader", MODES)
def test_a_file_whose_read_fails_is_named_and_skipped_and_the_rest_kept(tmp_path, workers, reader):
    # /proc/self/mem is a regular file whose read fails with EIO, as a failing disk or share does: a raw
    # "OSError: [Errno 5] Input/output error" named no file in the direct readers and was not a MidiSkip
    folder = tmp_path / "corpus"
    folder.mkdir()
    _good(folder / "good.mid")
    os.symlink("/proc/self/mem", folder / "eio.mid")
    for read in (read_pianoroll, read_pianoroll_reference):
        with pytest.raises(MidiSkip, match="cannot read .*Input/output error"):
            read(str(folder / "eio.mid"))
    with pytest.raises(ValueError, match=r"eio\.mid: not a readable MIDI file \(cannot read"):
        midi_to_pianoroll(folder / "eio.mid")
    ds = build_dataset(folder, workers=workers, reader=reader, progress=False, cache_dir=tmp_path / "cache")
    assert [(Path(p).name, "cannot read" in why) for p, why in ds.report.skipped] == [("eio.mid", True)]
    assert ds.files and Path(ds.files[0]).name == "good.mid"


def test_reading_a_file_for_its_meter_has_the_time_limit_too(tmp_path, monkeypatch):
    # 2 M meta events (8 MB) kept meter.time_signatures (pretty_midi, no time limit) busy for 45 s
    import musicvae_course.core.pianoroll as pianoroll
    from musicvae_course.core import midi_limits
    from musicvae_course.core.meter import time_signatures

    path = _good(tmp_path / "slow.mid")
    monkeypatch.setattr(pianoroll, "pretty_midi_from_bytes", lambda *args: time.sleep(5))
    monkeypatch.setattr(midi_limits, "READ_TIMEOUT_S", 0.3)
    began = time.perf_counter()
    with pytest.raises(ReadTimeout, match=r"reading .*slow\.mid took longer than the limit of 0.3 s"):
        time_signatures(path)
    assert time.perf_counter() - began < 3


def test_a_name_with_a_newline_or_terminal_escapes_is_named_on_one_line_without_them(tmp_path):
    # a name could forge a line of an error ("...\nSummary: 0 skipped") or send a terminal escape sequences
    (tmp_path / "in").mkdir()
    odd = tmp_path / "in" / "bad\nSummary: all read\x1b[2J\u202e.mid"
    odd.write_bytes(b"not MIDI at all")
    with pytest.raises(ValueError) as refused:
        midi_to_pianoroll(odd)
    message = str(refused.value)
    assert message.isprintable() and "bad\\nSummary: all read\\x1b[2J\\u202e.mid: not a readable MIDI" in message
    ds = build_dataset(tmp_path / "in", cache_dir=tmp_path / "cache", workers=0, progress=False)
    with open(ds.report.skipped_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 2 and rows[1][0].endswith("bad\\nSummary: all read\\x1b[2J\\u202e.mid")
