"""MIDI files for the data tests and the loader benchmark, made on the spot.

CI starts from a clean clone with no MIDI corpus, so we make one:
* real music: folk tunes (Essen collection, ABC) and Bach chorales from
  music21's bundled corpus, exported at 480 ticks per quarter (music21's
  default 10,080 trips pretty_midi's "likely corrupt" limit on long pieces);
* messy files: seeded random MIDI written with mido that has what real files
  have and music21 never writes: overlapping notes of one pitch, note-offs as
  velocity-0 note-ons, stray note-offs, unclosed notes, tempo events outside
  track 0, program changes mid-track, drum channel, odd resolutions, ties
  between note-on and note-off on one tick;
* bad files, one per kind the loader must skip.
"""

from __future__ import annotations

import random
import time
import warnings
from pathlib import Path

import mido
import numpy as np

ESSEN_BOOKS = ["altdeu10", "ballad10", "boehme10", "erk10", "han1", "kinder0", "lux", "zuccal0"]


def make_music21_corpus(
    folder, n_folk: int = 200, n_chorales: int = 12, workers: int = 2
) -> tuple[list[Path], float, float]:
    """Export ``n_folk`` Essen tunes and ``n_chorales`` Bach chorales as MIDI.

    Returns ``(paths, wall_seconds, cpu_seconds)``. Tunes music21 cannot export
    (a few ABC meter changes) are passed over and the next tune is taken.
    music21 needs about 0.07 CPU-s per tune and 0.5 per chorale, so books run
    in ``workers`` processes.
    """
    import resource
    from concurrent.futures import ProcessPoolExecutor

    from music21 import corpus

    began, cpu_before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    books = [p for p in corpus.getComposer("essenFolksong") if p.stem in ESSEN_BOOKS]
    per_book = -(-n_folk // len(books))
    chorales = list(corpus.chorales.Iterator(numberingSystem="riemenschneider", returnType="filename"))
    tasks = [(str(book), per_book) for book in books] + [(name, 1) for name in chorales[:n_chorales]]
    with ProcessPoolExecutor(workers) as pool:
        made = pool.map(_export_work, tasks, [Path(folder)] * len(tasks))
        paths = [path for batch in made for path in batch]
    folk = [p for p in paths if p.parent.name == "folk"][:n_folk]
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return folk + [p for p in paths if p.parent.name == "bach"], time.perf_counter() - began, cpu


def _export_work(task, folder: Path) -> list[Path]:
    """Export up to ``count`` tunes of one corpus file (one process's share)."""
    import music21
    from music21 import corpus

    source, count = task
    music21.defaults.ticksPerQuarter = 480
    paths: list[Path] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if source.startswith("bach/"):
            _export(lambda: corpus.parse(source), folder / "bach" / f"{source.replace('/', '_')}.mid", paths)
            return paths
        for number in range(1, 3 * count + 1):
            if len(paths) == count:
                break
            _export(
                lambda: corpus.parse(source, number=number, forceSource=True),
                folder / "folk" / f"{Path(source).stem}_{number:03d}.mid",
                paths,
            )
    return paths


def _export(parse, path: Path, paths: list) -> None:
    try:
        score = parse()
        if score is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        score.write("midi", fp=str(path))
    except Exception:  # music21 cannot export a few tunes (meter changes, repeats)
        return
    paths.append(path)


def make_messy_midi(path, seed: int) -> Path:
    """Write one seeded random MIDI file full of the traps listed above."""
    rng = random.Random(seed)
    ticks_per_quarter = rng.choice([96, 100, 120, 220, 384, 480, 960, 1000])
    grid = [ticks_per_quarter // d for d in (1, 2, 3, 4, 6, 8) if ticks_per_quarter // d] + [1, 7]
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_quarter)
    # Half the files crowd a few pitches (overlaps), half spread over the keyboard.
    pitches = [19, 60, 61, 62, 64, 108, 110] if rng.random() < 0.5 else list(range(21, 109))
    for track_index in range(rng.randint(1, 4)):
        events = []  # (tick, order, message): order shuffles ties between ons and offs
        if rng.random() < 0.7:
            events.append((0, 0, mido.MetaMessage("track_name", name=rng.choice(["", "Piano", "Strings"]))))
        for _ in range(rng.randint(0, 3)):  # tempo anywhere, also outside track 0
            events.append(
                (
                    rng.randrange(0, 40 * ticks_per_quarter),
                    0,
                    mido.MetaMessage("set_tempo", tempo=rng.randrange(200_000, 1_500_000)),
                )
            )
        for _ in range(rng.randint(5, 60)):
            channel = rng.choice([0, 0, 1, 2, 9])
            tick = rng.randrange(0, 32 * ticks_per_quarter, rng.choice(grid))
            duration = rng.choice([0] + [rng.choice(grid) * rng.randint(1, 6) for _ in range(6)])
            pitch = rng.choice(pitches) if rng.random() < 0.9 else rng.randrange(128)
            if rng.random() < 0.1:
                events.append(
                    (tick, rng.random(), mido.Message("program_change", channel=channel, program=rng.randrange(128)))
                )
            events.append(
                (tick, rng.random(), mido.Message("note_on", channel=channel, note=pitch, velocity=rng.randint(1, 127)))
            )
            if rng.random() < 0.93:  # else the note is never closed
                off = (
                    mido.Message("note_off", channel=channel, note=pitch)
                    if rng.random() < 0.5
                    else mido.Message("note_on", channel=channel, note=pitch, velocity=0)
                )
                events.append((tick + duration, rng.random(), off))
            if rng.random() < 0.05:  # a stray note-off
                events.append(
                    (
                        rng.randrange(0, 32 * ticks_per_quarter),
                        rng.random(),
                        mido.Message("note_off", channel=channel, note=pitch),
                    )
                )
        track = mido.MidiTrack()
        now = 0
        for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
            track.append(message.copy(time=tick - now))
            now = tick
        midi.tracks.append(track)
    midi.save(str(path))
    return Path(path)


def make_bad_files(folder, good_file) -> dict[str, Path]:
    """One file per kind of bad input, keyed by kind; ``good_file`` seeds the damaged ones."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    good = Path(good_file).read_bytes()
    rng = np.random.default_rng(0)
    files = {
        "empty": b"",
        "text": b"This is a text file with a .mid name.\n" * 5,
        "truncated": good[: len(good) // 2],
        "corrupt": good[:14] + rng.integers(0, 256, 300, dtype=np.uint8).tobytes(),
    }
    paths = {kind: folder / f"{kind}.mid" for kind in [*files, "no_notes", "drums_only", "too_long"]}
    for kind, data in files.items():
        paths[kind].write_bytes(data)
    _write_notes(paths["no_notes"], [])
    _write_notes(paths["drums_only"], [(36, 0, 480), (38, 480, 960)], channel=9)
    _write_notes(paths["too_long"], [(60, 0, 480), (62, 480 * 2 * 3700, 480 * 2 * 3701)])  # ~1 h 2 min at 120 BPM
    return paths


def _write_notes(path, notes, channel: int = 0, ticks_per_quarter: int = 480):
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_quarter)
    events = sorted([(s, 1, p, "note_on") for p, s, e in notes] + [(e, 0, p, "note_off") for p, s, e in notes])
    track, now = mido.MidiTrack(), 0
    for tick, _, pitch, kind in events:
        track.append(mido.Message(kind, channel=channel, note=pitch, velocity=64, time=tick - now))
        now = tick
    midi.tracks.append(track)
    midi.save(str(path))


def crashing_reader(path):
    """A ``build_dataset`` reader whose process dies on files named ``crash*``, like a segfault."""
    import os

    from musicvae_course.core.midi_fast import read_pianoroll

    if Path(path).name.startswith("crash"):
        os._exit(3)
    return read_pianoroll(path)


def hidden_restrikes(path) -> int:
    """Note-ons that symusic drops but pretty_midi keeps, counted with mido.

    A note-on on a key that is already sounding, with no note-off of its own,
    followed by a note-off of that key: pretty_midi ends both notes there,
    symusic (first-in-first-out pairing) ends the first and drops the second.
    """
    count = 0
    for track in mido.MidiFile(str(path)).tracks:
        unmatched: dict = {}  # (channel, pitch) -> positions of note-ons no note-off has matched yet
        last_off: dict = {}  # (channel, pitch) -> position of the last note-off
        for position, message in enumerate(track):
            if message.type not in ("note_on", "note_off"):
                continue
            key = (message.channel, message.note)
            if message.type == "note_on" and message.velocity > 0:
                unmatched.setdefault(key, []).append(position)
            else:
                last_off[key] = position
                if unmatched.get(key):
                    unmatched[key].pop(0)  # first in, first out
        count += sum(1 for key, ons in unmatched.items() for on in ons if last_off.get(key, -1) > on)
    return count


def smf(*tracks: bytes, division: int = 480, n_tracks: int | None = None) -> bytes:
    """A Standard MIDI File from raw track bodies (events as bytes), for files no library would write."""
    count = len(tracks) if n_tracks is None else n_tracks
    header = b"MThd" + (6).to_bytes(4, "big") + (1).to_bytes(2, "big") + count.to_bytes(2, "big")
    header += division.to_bytes(2, "big")
    return header + b"".join(b"MTrk" + len(body).to_bytes(4, "big") + body for body in tracks)


def vlq(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def held_note(ticks: int, pitch: int = 60, tempo_us: int | None = None) -> bytes:
    """A track body: (a tempo event,) one note held for ``ticks``, end of track."""
    body = b"" if tempo_us is None else b"\x00\xff\x51\x03" + tempo_us.to_bytes(3, "big")
    return body + b"\x00\x90" + bytes([pitch, 100]) + vlq(ticks) + b"\x80" + bytes([pitch, 0]) + b"\x00\xff\x2f\x00"


END_OF_TRACK = b"\x00\xff\x2f\x00"


def with_format(data: bytes, file_format: int) -> bytes:
    """``data`` (a Standard MIDI File) with its header's format word set to ``file_format`` (0, 1 or 2)."""
    return data[:8] + file_format.to_bytes(2, "big") + data[10:]


def other_source_files() -> dict[str, bytes]:
    """One small file per kind of MIDI that notation programs, DAWs, recorders and converters write, by kind.

    Each is readable: both readers must give it one roll. The kinds the kit once read differently (format 2,
    running status after a sysex) are here with the rest, so that a reader change that parts them is caught.
    """
    note = held_note(480)
    text = b"\x00\xff\x01\x01a"
    sysex = b"\x00\xf0\x05\x7e\x7f\x09\x01\xf7"  # GM on, as DAWs and hardware recorders write it first
    tempo_map = b"".join(
        vlq(7 if k else 0) + b"\xff\x51\x03" + (400_000 + 997 * k).to_bytes(3, "big") for k in range(400)
    )
    signature = b"\x00\xff\x58\x04\x03\x02\x18\x08"
    return {
        "format_0": with_format(smf(signature + note), 0),
        "format_2_sequences": with_format(smf(signature + note, held_note(960, 64), held_note(120, 67)), 2),
        "running_status_after_meta": smf(b"\x00\x90\x3c\x40" + text + b"\x60\x3c\x00" + END_OF_TRACK),
        "running_status_after_sysex": smf(b"\x00\x90\x3c\x40" + sysex + b"\x60\x3c\x00" + END_OF_TRACK),
        "running_status_after_escape": smf(b"\x00\x90\x3c\x40\x00\xf7\x02\xf8\xfa\x60\x3c\x00" + END_OF_TRACK),
        "no_end_of_track": smf(note[:-4], held_note(960, 64)[:-4]),
        "events_after_end_of_track": smf(note + b"\x00\x90\x3e\x40\x60\x80\x3e\x00"),
        "velocity_0_note_offs": smf(b"\x00\x90\x3c\x40\x00\x40\x40\x83\x60\x3c\x00\x00\x40\x00" + END_OF_TRACK),
        "drums_and_piano": smf(
            b"\x00\x99\x24\x40\x60\x89\x24\x00" + b"\x00\x90\x3c\x40\x60\x80\x3c\x00" + END_OF_TRACK
        ),
        "pitches_off_the_keyboard": smf(
            b"\x00\x90\x10\x40\x00\x90\x7f\x40\x00\x90\x3c\x40\x60\x80\x3c\x00"
            b"\x81\x00\x80\x10\x00\x00\x80\x7f\x00" + END_OF_TRACK
        ),
        "zero_length_notes": smf(b"\x00\x90\x3c\x40\x00\x80\x3c\x00\x00\x90\x3e\x40\x60\x80\x3e\x00" + END_OF_TRACK),
        "overlapping_same_pitch": smf(
            b"\x00\x90\x3c\x40\x60\x90\x3c\x50\x60\x80\x3c\x00\x60\x80\x3c\x00" + END_OF_TRACK
        ),
        "key_signatures_odd": smf(b"\x00\xff\x59\x02\xf7\x00\x00\xff\x59\x02\x09\x02\x00\xff\x59\x01\x07" + note),
        "time_signature_0_4": smf(b"\x00\xff\x58\x04\x00\x02\x18\x08" + note),
        "hundreds_of_tempo_changes": smf(tempo_map + END_OF_TRACK, held_note(2880)),
        "trailing_bytes": smf(note) + b"\x00" * 64,
    }
