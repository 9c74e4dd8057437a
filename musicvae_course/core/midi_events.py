"""Standard MIDI File bytes -> a note table, with the reference's note pairing. Used by ``midi_fast``.

Why our own parse and not symusic's notes: symusic pairs note-ons with note-offs first-in-first-out and drops
note-ons that are never closed; pretty_midi (the reference, :mod:`musicvae_course.core.pianoroll`) lets one
note-off close *every* open note of its key. Once symusic has paired the events, the reference's notes can no
longer be recovered (a re-struck key whose second note-on has no note-off of its own leaves no trace). So this
module walks the events itself, in one tight loop over the bytes, and applies the reference's rules exactly:

* a note-on with velocity > 0 opens a note of its key (track, channel, pitch); a note-off, or a note-on with
  velocity 0, closes every open note of that key that started on an *earlier* tick;
* notes of that key that started on the note-off's own tick stay open if some earlier note was closed, and are
  dropped if none was (pretty_midi 0.2.10, ``_load_instruments``);
* notes never closed are dropped; a note-off with no open note is ignored; channel 10 (index 9) is drums;
* the byte grammar is mido's: running status, sysex and meta lengths as variable-length integers, data bytes
  must be < 128, exactly the number of tracks the header declares. Every event's delta time counts, that of a
  meta event mido does not know too (mido drops it; the reference is mended to keep it, see ``midi_mido``);
* running status: a meta or sysex event sets none, so a data byte after one continues the channel message before
  it. The SMF spec says both cancel running status, but writers rely on it and players read it so; mido does
  after a meta event, and is mended to after a sysex (it read a "running sysex" and lost the note-off);
* a format-2 file (independent sequences, one per track) is read in sequence, each track starting where the one
  before ends (``smf_bytes``), as its format means; formats 0 and 1 play their tracks together;
* a track ends where its chunk ends, with or without an end-of-track event (events after one are read, as mido
  reads them); the key, tempo and other meta events change no note (the roll is on ticks).

It is over 10x faster than mido + pretty_midi on real multi-voice files (``benchmarks/bench_loader.py``)
because it builds no message objects and no tempo map; it needs none, since the roll is built on ticks (see
``pianoroll``). Its equality with the reference is tested on every corpus of ``tests/test_data.py``.
Taught, as a black box, in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .midi_limits import MAX_EVENT_BYTES, MAX_EVENTS, MAX_NOTES, MAX_STEPS, LimitError

MAX_TICK = 10_000_000  #: pretty_midi's limit above which a file is "likely corrupt"
DRUM_CHANNEL = 9
# Data bytes after the status byte of system common and real-time messages (mido's table).
_SYSTEM_DATA_BYTES = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0, 0xF8: 0, 0xFA: 0, 0xFB: 0, 0xFC: 0, 0xFE: 0}


class MidiFormatError(ValueError):
    """Bytes that are not a readable Standard MIDI File; the message says where and why."""


class MidiLimitError(MidiFormatError, LimitError):
    """A file over a limit: a tick past ``MAX_TICK``, a length past the file's end, too many notes or events.

    The reference refuses these files too, or would need unbounded time or memory to: mido reads a
    variable-length number of a million bytes in quadratic time and keeps every event as an object (about 300
    bytes each, gigabytes for a 32 MB file). So ``pianoroll`` refuses them before pretty_midi sees them.
    """


@dataclass
class NoteTable:
    """All notes of a file in ticks, paired as the reference pairs them.

    ``pitch``, ``start``, ``end``, ``channel``: int64 arrays of equal length (``end > start``).
    ``ticks_per_quarter``: the header's resolution. ``max_tick``: the last event's tick in any track.
    ``tempos``: ``[(tick, microseconds per quarter)]`` from the first track, in file order: the reference's tempo
    map (pretty_midi reads tempo events there only), so that both readers measure a file in the same seconds.
    ``time_signatures``: ``[(tick, numerator, denominator)]`` from every track, in file order (the denominator as
    mido decodes it: 2 to the power of the event's byte).
    """

    ticks_per_quarter: int
    pitch: np.ndarray
    start: np.ndarray
    end: np.ndarray
    channel: np.ndarray
    max_tick: int
    tempos: list
    time_signatures: list = field(default_factory=list)


def smf_bytes(data: bytes) -> bytes:
    """The Standard MIDI File in ``data``: ``data`` itself, or the ``data`` chunk of a RIFF MIDI file (RMID,
    ``.rmi``, as Windows and some players and archives save MIDI), with chunks of other kinds among the tracks
    left out and empty track chunks ended (``_normalized_tracks``), a format-2 file's sequences put one after another
    (``_in_sequence``); both readers take it through here.

    Raises ``MidiFormatError`` for a RIFF MIDI file without a whole ``data`` chunk.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"RMID":
        return _in_sequence(_normalized_tracks(data))
    pos = 12
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if data[pos : pos + 4] == b"data":
            if pos + 8 + size > len(data):
                raise MidiFormatError(f"truncated RIFF MIDI (RMID): its data chunk declares {size:,} bytes")
            return _in_sequence(_normalized_tracks(data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)  # RIFF chunks are padded to an even length
    raise MidiFormatError("RIFF MIDI (RMID) file without a data chunk: no MIDI in it")


def _normalized_tracks(data: bytes) -> bytes:
    """``data`` with chunks of other kinds among its tracks left out, and each track chunk of 0 bytes holding an
    end-of-track event instead.

    The standard says to skip chunks of unknown kinds; Yamaha's XF files put ``XFIH`` before the first track, and
    mido (so pretty_midi) refused them. pretty_midi measures every track by its last event and refused an empty one
    ("max() arg is an empty sequence") that mido and this parser read; the event changes no note, tempo or tick.
    """
    if data[:4] != b"MThd" or len(data) < 14:
        return data
    pos = 8 + int.from_bytes(data[4:8], "big")
    if data[10:12] == b"\x00\x00" and pos <= len(data):  # no track: pretty_midi failed on max() of no last events
        return data[:10] + b"\x00\x01" + data[12:pos] + b"MTrk\x00\x00\x00\x04\x00\xff\x2f\x00"
    pieces, changed, tracks = [data[:pos]], False, 0
    while tracks < int.from_bytes(data[10:12], "big") and pos + 8 <= len(data):
        kind, end = data[pos : pos + 4], pos + 8 + int.from_bytes(data[pos + 4 : pos + 8], "big")
        if kind == b"MTrk":
            tracks += 1
            empty = end == pos + 8
            pieces.append(b"MTrk\x00\x00\x00\x04\x00\xff\x2f\x00" if empty else data[pos:end])
            changed |= empty
        elif kind.isalpha() and end <= len(data):
            changed = True  # a whole chunk of another kind: skipped
        else:
            break  # damaged: left to the parsers to name
        pos = end
    return b"".join([*pieces, data[pos:]]) if changed else data


def _in_sequence(data: bytes) -> bytes:
    """A format-2 file (independent sequences, one per track: pattern banks, some old sequencers' songs) as the
    format-1 file that plays its sequences one after another, each from where the one before ended (its last event,
    the end-of-track event); any other ``data`` as it is.

    Both readers played a format-2 file's tracks together, all from tick 0: sequences meant one after the other
    sounded at once. Each track's first delta time grows by the length of those before it. A damaged file is left
    as it is, for the parsers to name what is wrong.
    """
    if data[:4] != b"MThd" or len(data) < 14 or data[8:10] != b"\x00\x02":
        return data
    pos = 8 + int.from_bytes(data[4:8], "big")
    pieces, offset, events = [data[:8], b"\x00\x01", data[10:pos]], 0, 0
    for track in range(int.from_bytes(data[10:12], "big")):
        size = int.from_bytes(data[pos + 4 : pos + 8], "big")
        begin, end = pos + 8, pos + 8 + size
        if data[pos : pos + 4] != b"MTrk" or end > len(data):
            return data
        try:
            last, count = _parse_track(data, begin, end, track, [], ([], []), MAX_NOTES, 1)
            first_delta, first_event = _delta_time(data, begin)
        except (MidiFormatError, IndexError):
            return data
        events += count
        if events > MAX_EVENTS:  # parse_notes refuses it by name, without walking the rest
            return data
        body = _vlq(first_delta + offset) + data[first_event:end] if offset and size else data[begin:end]
        pieces += [b"MTrk", len(body).to_bytes(4, "big"), body]
        offset, pos = offset + last, end
    return b"".join([*pieces, data[pos:]])


def _delta_time(data: bytes, pos: int) -> tuple[int, int]:
    """The variable-length number at ``pos`` and the position after it."""
    value = 0
    while data[pos] & 0x80:
        value, pos = (value << 7) | (data[pos] & 0x7F), pos + 1
    return (value << 7) | data[pos], pos + 1


def _vlq(value: int) -> bytes:
    """``value`` (>= 0) as a MIDI variable-length number."""
    out = [value & 0x7F]
    while value > 0x7F:
        value >>= 7
        out.append(0x80 | (value & 0x7F))
    return bytes(reversed(out))


def parse_notes(data: bytes, max_notes: int = MAX_NOTES, max_events: int | None = None) -> NoteTable:
    """Parse ``data`` (a whole ``.mid`` file) into a ``NoteTable``; ``max_events`` defaults to ``MAX_EVENTS``.

    Raises:
        MidiFormatError: not MIDI, truncated, corrupt, SMPTE or zero time division.
        MidiLimitError: a tick over ``MAX_TICK`` (as the reference), an event longer than the file, more than
            ``max_notes`` notes or ``max_events`` events, a tempo of 0 in the first track (the reference's map).
    """
    if len(data) < 14 or data[:4] != b"MThd":
        raise MidiFormatError("not a MIDI file (no MThd header)")
    header_size = int.from_bytes(data[4:8], "big")
    if header_size < 6 or 8 + header_size > len(data):
        raise MidiFormatError("corrupt or truncated MIDI header")
    n_tracks = int.from_bytes(data[10:12], "big")
    if n_tracks > 0x7FFF:  # mido reads the count as signed: no tracks at all, and pretty_midi fails on none
        raise MidiLimitError(f"corrupt MIDI header: {n_tracks:,} tracks declared, more than 32,767")
    division = int.from_bytes(data[12:14], "big")
    if (refused := division_error(division)) is not None:
        raise refused
    max_events = MAX_EVENTS if max_events is None else max_events  # read here, so that it can be lowered
    pos = 8 + header_size
    notes: list = []
    tempos: list = []
    signatures: list = []
    max_tick = n_events = 0
    for track in range(n_tracks):
        if pos + 8 > len(data):
            raise MidiFormatError(f"truncated MIDI: header declares {n_tracks} tracks, found {track}")
        if data[pos : pos + 4] != b"MTrk":
            raise MidiFormatError(f"corrupt MIDI: chunk {data[pos : pos + 4]!r} where track {track} should start")
        size = int.from_bytes(data[pos + 4 : pos + 8], "big")
        begin = pos + 8
        if begin + size > len(data):
            raise MidiFormatError(f"truncated MIDI: track {track} declares {size} bytes, {len(data) - begin} left")
        try:
            metas = (tempos if track == 0 else [], signatures)  # tempo: the reference's map, the first track's
            last, events = _parse_track(data, begin, begin + size, track, notes, metas, max_notes, division)
        except IndexError:
            raise MidiFormatError(f"corrupt or truncated MIDI: track {track} runs past its end") from None
        if last >= MAX_TICK:  # ticks only grow: the last one bounds every note of the track
            raise _past_max_tick(last, division)
        max_tick = max(max_tick, last)
        n_events += events
        if n_events > max_events:  # mido would keep each as an object: refused before the reference reads it
            raise MidiLimitError(f"more than {max_events:,} events (limit MAX_EVENTS)")
        pos = begin + size
    for tick, value in tempos:  # the reference divides by it (a ZeroDivisionError): refused here by name
        if not value:
            raise MidiLimitError(f"corrupt MIDI: track 0: a tempo of 0 microseconds per quarter note at tick {tick}")
    packed = np.asarray(notes, dtype=np.int64)
    return NoteTable(
        ticks_per_quarter=division,
        pitch=packed & 0x7F,
        start=packed >> 35,
        end=(packed >> 11) & 0xFFFFFF,
        channel=(packed >> 7) & 0x0F,
        max_tick=max_tick,
        tempos=tempos,
        time_signatures=signatures,
    )


def _parse_track(data, pos, stop, track, notes, metas, max_notes, division) -> tuple[int, int]:
    """Walk one track's events, appending closed notes to ``notes`` and tempo and time-signature events to the
    two lists of ``metas``; returns the track's last tick and events (``division``: for the words of an error).

    One loop, no objects per event: this is the module's hot path, ordered for the usual event (a one-byte
    delta, then a note-on or note-off, often in running status). A note is one int,
    ``start << 35 | end << 11 | key`` with ``key = channel * 128 + pitch`` (ticks < 2**24, see ``MAX_TICK``
    and the check in ``parse_notes``). The open notes are per track, as in the reference: one open note of a
    key is kept as its tick, several as a list.
    """
    tick = 0
    status = 0  # running status; 0 = none yet
    open_notes: dict = {}
    get, pop = open_notes.get, open_notes.pop
    add = notes.append
    tempos, signatures = metas
    limit = max_notes - len(notes)
    events = 0
    while pos < stop:
        events += 1
        byte = data[pos]
        if byte < 0x80:
            tick += byte
            pos += 1
        else:
            delta = byte & 0x7F
            pos += 1
            while byte & 0x80:
                byte = data[pos]
                pos += 1
                delta = (delta << 7) | (byte & 0x7F)
                if delta >= MAX_TICK:  # stop now: a run of 0xFF bytes would grow it in quadratic time
                    raise _past_max_tick(tick + delta, division, f"track {track}: a tick of at least ")
            tick += delta
        byte = data[pos]
        if byte < 0x80:  # running status: this byte is the first data byte
            kind = status
            if kind < 0xA0:
                if not kind:
                    raise MidiFormatError(
                        f"corrupt MIDI: track {track}: the event at tick {tick} has no status byte and no channel "
                        "message before it to repeat (running status)"
                    )
                first = byte
                second = data[pos + 1]
                pos += 2
            elif kind >= 0xF0:  # mido consumes the data byte before reading a running sysex/system message
                pos += 1
        else:
            pos += 1
            kind = byte
            if byte < 0xF0 or (byte != 0xFF and byte != 0xF0 and byte != 0xF7):  # meta, sysex: no running status
                status = byte
            if kind < 0xA0:
                first = data[pos]
                second = data[pos + 1]
                pos += 2
        if kind < 0xA0:  # note-off (0x8n) or note-on (0x9n)
            if (first | second) & 0x80:
                raise MidiFormatError(f"corrupt MIDI: track {track}: data byte >= 128 at tick {tick}")
            key = ((kind & 0x0F) << 7) | first
            if kind >= 0x90 and second:
                opened = get(key)
                if opened is None:
                    open_notes[key] = tick  # one open note: its tick (no list, the usual case)
                elif opened.__class__ is int:
                    open_notes[key] = [opened, tick]
                else:
                    opened.append(tick)
                continue
            opened = pop(key, None)
            if opened is None:
                continue
            if opened.__class__ is int:  # the usual case: one note of this key is open
                if opened != tick:
                    add((opened << 35) | (tick << 11) | key)
                # else: struck and released on one tick, nothing closed: dropped, as in the reference
            else:
                closed = [begin for begin in opened if begin != tick]
                for begin in closed:
                    add((begin << 35) | (tick << 11) | key)
                if closed and len(closed) < len(opened):
                    open_notes[key] = [begin for begin in opened if begin == tick]  # struck on this tick: kept
                limit -= len(closed) - 1
            limit -= 1
            if limit < 0:
                raise MidiLimitError(f"more than {max_notes:,} notes (limit MAX_NOTES)")
        elif kind < 0xF0:
            first = data[pos]
            pos += 1
            if kind >= 0xC0 and kind < 0xE0:  # program change, channel pressure: one data byte
                if first & 0x80:
                    raise MidiFormatError(f"corrupt MIDI: track {track}: data byte >= 128 at tick {tick}")
                continue
            second = data[pos]
            pos += 1
            if (first | second) & 0x80:
                raise MidiFormatError(f"corrupt MIDI: track {track}: data byte >= 128 at tick {tick}")
        elif kind == 0xFF:
            meta = data[pos]
            pos += 1
            length, pos = _variable_int(data, pos)
            if meta == 0x51:
                if length < 3:
                    raise MidiFormatError(f"corrupt MIDI: track {track}: tempo event of {length} bytes")
                tempos.append((tick, int.from_bytes(data[pos : pos + 3], "big")))
            elif meta == 0x58 and length >= 2:  # time signature: the meter is its first 2 bytes (mido wants 4)
                signatures.append((tick, data[pos], 1 << data[pos + 1]))
            pos += length
        elif kind == 0xF0 or kind == 0xF7:
            length, pos = _variable_int(data, pos)
            pos += length
        elif kind in _SYSTEM_DATA_BYTES:
            size = _SYSTEM_DATA_BYTES[kind] - (0 if byte & 0x80 else 1)
            if size < 0:  # a data byte in the running status of a message of none (0xFE, active sensing): as mido
                raise MidiFormatError(f"corrupt MIDI: track {track}: data byte after 0x{kind:02x} at tick {tick}")
            if any(value & 0x80 for value in data[pos : pos + size]):  # mido refuses these too: a damaged stream
                raise MidiFormatError(f"corrupt MIDI: track {track}: data byte >= 128 at tick {tick}")
            pos += size
        else:
            raise MidiFormatError(f"corrupt MIDI: track {track}: undefined status byte 0x{kind:02x}")
    if pos != stop:
        raise MidiFormatError(f"corrupt or truncated MIDI: track {track}: last event runs past the track's end")
    return tick, events


def division_error(division: int) -> MidiFormatError | None:
    """Why the header's time division (its bytes 12-13 as an unsigned int) gives no beat grid, or ``None``: both
    readers refuse in these words. SMPTE timing (film scoring, some DAWs) is valid MIDI: said so, not "corrupt"."""
    if division & 0x8000:
        return MidiFormatError(
            f"MIDI header: time division 0x{division:04x} is in SMPTE frames ({256 - (division >> 8)} per second), "
            "not supported: no beat grid; the kit needs ticks per quarter note"
        )
    if division == 0:
        return MidiFormatError("corrupt MIDI header: time division 0x0000, 0 ticks per quarter note")
    return None


def _past_max_tick(tick: int, division: int, what: str = "largest tick ") -> MidiLimitError:
    """The error for a tick past ``MAX_TICK`` (pretty_midi's): it says the length in quarter notes, since a piece of
    normal length saved at a fine resolution passes it too (music21 writes 10,080 ticks per quarter note, some DAWs
    15,360: 651 quarter notes, 5 minutes at 130 BPM), and then saving it at 480 or 960 reads."""
    quarters = tick // division
    resaved_reads = division > 960 and quarters * 4 <= MAX_STEPS  # a roll of the kit's length: 960 would read
    fine = ", or a resolution too fine for its length (save it at 960 or 480)" if resaved_reads else ""
    return MidiLimitError(
        f"{what}{tick:,} > {MAX_TICK:,} (MAX_TICK, pretty_midi's limit): {quarters:,} quarter notes at "
        f"{division:,} ticks per quarter note; likely corrupt{fine}"
    )


def _variable_int(data, pos) -> tuple[int, int]:
    value = 0
    while True:
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            if value > MAX_EVENT_BYTES:  # the reference's mido refuses them, after a list of one int per byte
                raise MidiLimitError(
                    f"corrupt MIDI: an event of {value:,} bytes, more than MAX_EVENT_BYTES ({MAX_EVENT_BYTES:,})"
                )
            return value, pos
        if value > len(data):  # stop now: a run of 0xFF bytes would grow it in quadratic time
            raise MidiLimitError(
                f"corrupt MIDI: an event declares a length of more than the whole file ({len(data):,} bytes)"
            )


def seconds_at(tick: int, tempos: list, ticks_per_quarter: int) -> float:
    """Seconds from the start to ``tick`` under the file's tempo map (120 BPM until the first tempo event).

    As pretty_midi: ``tempos`` from the first track (``NoteTable.tempos``), sorted by tick (a stable sort, so
    file order breaks ties and the last event on a tick wins). Summed in ints, divided once (correctly rounded): sums
    of floats, pretty_midi's or ours, put a file of exactly 1 hour at 150 BPM a hair over a 60-minute limit or not.
    """
    tick_us, last_tick, mspq = 0, 0, 500_000  # ticks x microseconds per quarter note, exact
    for at, value in sorted(tempos, key=lambda item: item[0]):
        if at >= tick:
            break
        tick_us += (int(at) - last_tick) * int(mspq)
        last_tick, mspq = int(at), value
    return (tick_us + (int(tick) - last_tick) * int(mspq)) / (1_000_000 * int(ticks_per_quarter))
