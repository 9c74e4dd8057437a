"""The reference's parser, mido, mended to read what ``midi_events.parse_notes`` reads: the mends in one place.

pretty_midi (the reference, :mod:`musicvae_course.core.pianoroll`) reads a file through mido. Where mido refuses a
file that players read, or reads bytes into a silently wrong roll, the fast reader and the reference would part;
each mend here makes mido read such events as ``parse_notes`` does, and only such events (nothing mido read
rightly changes). Used by ``pianoroll.pretty_midi_from_bytes``.
"""

from __future__ import annotations

import contextlib

from .midi_events import NoteTable

# Status bytes that set no running status: meta events (mido's rule) and sysex (the fast reader's, players' rule).
_KEEPS_RUNNING_STATUS = (0xFF, 0xF0, 0xF7)


@contextlib.contextmanager
def mido_reads_as_parse_notes():
    """Within this block mido (the reference's parser) reads events that hold no note as ``parse_notes`` does.

    * A meta event mido does not know (e.g. 0x08, program name) keeps its delta time: mido 1.3.3 builds it with
      time 0, so every later event of its track moved earlier by that delta (a silently wrong roll).
    * A meta event mido cannot decode (a key signature of 64 sharps, a time signature of 2 bytes, an empty SMPTE
      offset) and a time signature of numerator 0 (pretty_midi cannot build it) are kept as unknown meta events:
      each refused the whole file, notes and all, where players and ``parse_notes`` read it. A tempo event is
      still decoded or refused, as ``parse_notes`` refuses it: it moves every note in seconds.
    * Sysex data bytes of 128 or more (an F7 "escape" packet carries real-time bytes such as 0xF8 by design) are
      clipped to 127: mido refused the file ("data byte must be in range 0..127").
    * A sysex event (F0 or F7) sets no running status: a data byte after it continues the channel message before
      it, as after a meta event. mido read it as a "running sysex" (a length from the next byte): a note-off lost
      (the note dropped) or the rest of the track swallowed. The SMF spec says sysex cancels running status, so
      such a file breaks the spec; most players read it this way (Java's since 2023), and so does ``parse_notes``.

    Used by the reference (``pianoroll.pretty_midi_from_bytes``); a mido parse in another thread meanwhile gets the
    same mends, which only ever read what mido refused or restore a delta a message had lost.
    """
    from mido.midifiles import midifiles
    from mido.midifiles.meta import UnknownMetaMessage

    build, read_sysex, read_track = midifiles.build_meta_message, midifiles.read_sysex, midifiles.read_track

    def build_leniently(meta_type, data, delta=0):
        if meta_type == 0x58 and data[:1] == [0]:
            return UnknownMetaMessage(meta_type, data, time=delta)
        if meta_type == 0x51:
            message = build(meta_type, data, delta)  # decoded or refused, as parse_notes refuses it
        else:
            try:
                message = build(meta_type, data, delta)
            except Exception:  # IndexError, KeySignatureError, ValueError: no note in it, kept undecoded
                return UnknownMetaMessage(meta_type, data, time=delta)
        message.time = delta
        return message

    def read_sysex_of_any_bytes(infile, delta, clip=False):
        return read_sysex(infile, delta, clip=True)

    midifiles.build_meta_message, midifiles.read_sysex = build_leniently, read_sysex_of_any_bytes
    midifiles.read_track = _read_track_with_sysex_keeping_running_status
    try:
        yield
    finally:
        midifiles.build_meta_message, midifiles.read_sysex, midifiles.read_track = build, read_sysex, read_track


def _read_track_with_sysex_keeping_running_status(infile, debug=False, clip=False):
    """mido 1.3.3's ``read_track`` (its ``debug`` output left out) where a sysex sets no running status."""
    from mido.midifiles import midifiles

    track = midifiles.MidiTrack()
    name, size = midifiles.read_chunk_header(infile)
    if name != b"MTrk":
        raise OSError("no MTrk header at start of track")
    start, last_status = infile.tell(), None
    while infile.tell() - start != size:
        delta = midifiles.read_variable_int(infile)
        status_byte = midifiles.read_byte(infile)
        if status_byte < 0x80:
            if last_status is None:
                raise OSError("running status without last_status")
            peek_data, status_byte = [status_byte], last_status
        else:
            if status_byte not in _KEEPS_RUNNING_STATUS:
                last_status = status_byte
            peek_data = []
        if status_byte == 0xFF:
            track.append(midifiles.read_meta_message(infile, delta))
        elif status_byte in (0xF0, 0xF7):
            track.append(midifiles.read_sysex(infile, delta, clip))
        else:
            track.append(midifiles.read_message(infile, status_byte, peek_data, delta, clip))
    return track


def with_every_tracks_time_signatures(pm, table: NoteTable):
    """``pm`` (the ``pretty_midi.PrettyMIDI`` of the file ``table`` was parsed from) with the time signatures of
    every track, in place; returned for chaining.

    pretty_midi reads time signatures from the first track only, as the SMF spec places them; but DAW exports,
    type-1 files whose first track is empty and music21's exports (one event per part) put them in other tracks,
    and players, notation programs and mido read them there. Events are taken in file order (track by track) and
    sorted by tick, stably, so where several share a tick the last one read wins (:mod:`~.meter` keeps one per
    step). An event of numerator 0 has no bar and no ``pretty_midi.TimeSignature``: it is left out (pretty_midi
    refuses a file with one in its first track).
    """
    import pretty_midi

    events = sorted((e for e in table.time_signatures if e[1] > 0), key=lambda e: e[0])
    pm.time_signature_changes = [
        pretty_midi.TimeSignature(numerator, denominator, pm.tick_to_time(tick))
        for tick, numerator, denominator in events
    ]
    return pm
