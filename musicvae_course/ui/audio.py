"""Listen to piano rolls and MIDI in a notebook.

``IPython.display.Audio`` cannot play MIDI (ipython#9169), so rolls are
rendered to a waveform first. Three renderers ("backends"), tried in this
order by ``instrument="auto"``:

1. ``"tinysoundfont"``: a sampled General MIDI piano from the SoundFont that
   the pretty_midi wheel ships (``pretty_midi/TimGM6mb.sf2``, GPL-2), played
   by the ``tinysoundfont`` package, no system package needed. Install it with
   ``pip install --no-deps tinysoundfont``: its metadata asks for ``pyaudio``
   (live playback only, unused here), which does not build everywhere. If the
   import fails (``ImportError``) or the SoundFont is missing, "auto" moves on.
2. ``"fluidsynth"``: ``pretty_midi.PrettyMIDI.fluidsynth()``, if pyfluidsynth
   and libfluidsynth happen to be installed. Optional, never required.
3. ``"sine"``: ``pretty_midi.PrettyMIDI.synthesize()`` (sine waves, numpy
   only): always works.

Clips are mono at 22,050 Hz by default (half of CD rate) so notebooks that
store them stay small; every clip is normalised to the same peak level.

Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb`` and used by the
widgets of ``notebooks/02_latent_space_with_widgets.ipynb``.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
import wave
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..core.pianoroll import STEPS_PER_BEAT, load_pretty_midi, pianoroll_to_midi, single_roll
from .plots import detached, shape_hint  # plots imports matplotlib only when drawing

SAMPLE_RATE = 22050  #: Hz; default for every clip
RELEASE_SECONDS = 0.5  #: silence/decay kept after the last note ends
PEAK_LEVEL = 0.9  #: peak amplitude of a normalised clip (about -1 dBFS)
FADE_SECONDS = 0.02  #: fade at the very end, so a cut-off decay does not click
BACKENDS = ("tinysoundfont", "fluidsynth", "sine")  #: in the order "auto" tries them
#: longest clip rendered, seconds (10 minutes: about 100 MB while rendering). A 43-byte MIDI file
#: can last days (one note under a slow tempo) and asked for 52 GB; longer input plays its start.
MAX_SECONDS = 600.0
MAX_SAMPLE_RATE = 192_000  #: Hz; the highest rate audio interfaces use


class Rendering(NamedTuple):
    """A rendered clip: mono ``waveform`` float32 in [-1, 1], its ``sample_rate`` in Hz,
    and the ``backend`` that made it (one of :data:`BACKENDS`)."""

    waveform: np.ndarray
    sample_rate: int
    backend: str


def soundfont_path() -> Path:
    """Path of the General MIDI SoundFont inside the installed pretty_midi (TimGM6mb, GPL-2)."""
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def _backend_ready(name: str) -> bool:
    if name == "tinysoundfont":
        try:
            import tinysoundfont  # noqa: F401  (optional; see the module docstring)
        except ImportError:
            return False
        return soundfont_path().is_file()
    if name == "fluidsynth":
        try:
            import fluidsynth  # noqa: F401  (pyfluidsynth; loads libfluidsynth)
        except (ImportError, OSError):  # OSError: the module is there, the C library is not
            return False
        return True
    return name == "sine"


def available_backends() -> list[str]:
    """Backends that can render on this machine, in the order "auto" tries them."""
    return [name for name in BACKENDS if _backend_ready(name)]


def backend_in_use(instrument: str = "auto") -> str:
    """Which backend ``synthesize(..., instrument=instrument)`` will use here.

    Raises:
        ValueError: unknown name, or a named backend that is not installed.
    """
    if instrument == "auto":
        return available_backends()[0]  # "sine" is always there
    if instrument not in BACKENDS:
        raise ValueError(f"instrument must be 'auto' or one of {BACKENDS}, got {instrument!r}")
    if not _backend_ready(instrument):
        hint = {
            "tinysoundfont": "pip install --no-deps tinysoundfont",
            "fluidsynth": "install libfluidsynth and pip install pyfluidsynth",
        }[instrument]
        raise ValueError(f"audio backend {instrument!r} is not installed ({hint}); available: {available_backends()}")
    return instrument


def _as_midi(roll_or_midi, bpm: float, threshold: float, program: int):
    """``(PrettyMIDI, duration in seconds)`` for a roll, a PrettyMIDI or a path."""
    import pretty_midi

    if isinstance(roll_or_midi, pretty_midi.PrettyMIDI):
        return roll_or_midi, roll_or_midi.get_end_time()
    if isinstance(roll_or_midi, (str, os.PathLike)):
        midi = load_pretty_midi(roll_or_midi)
        return midi, midi.get_end_time()
    try:
        roll = single_roll(detached(roll_or_midi))
    except ValueError as err:
        hint = shape_hint(roll_or_midi)
        raise ValueError(f"roll_or_midi: expected a roll, a PrettyMIDI or a path; {err}{hint}") from None
    midi = pianoroll_to_midi(roll, threshold=threshold, bpm=bpm, program=program)
    # The roll's own length counts, trailing silence included.
    return midi, roll.shape[1] * 60.0 / bpm / STEPS_PER_BEAT


def _describe(roll_or_midi) -> str:
    if isinstance(roll_or_midi, (str, os.PathLike)):
        return repr(os.fspath(roll_or_midi))  # repr: a name with control characters cannot forge the message
    return f"the {type(roll_or_midi).__name__}"


def _cut(midi, seconds: float):
    """A copy of ``midi`` with nothing after ``seconds``: notes starting later dropped, the others
    ended there; later pitch bends and control changes dropped (the renderers size their buffer by
    the latest event of any kind)."""
    import pretty_midi

    cut = pretty_midi.PrettyMIDI(resolution=midi.resolution, initial_tempo=120.0)
    for instrument in midi.instruments:
        kept = pretty_midi.Instrument(instrument.program, instrument.is_drum, instrument.name)
        kept.notes = [
            pretty_midi.Note(n.velocity, n.pitch, n.start, min(n.end, seconds))
            for n in instrument.notes
            if n.start < seconds
        ]
        kept.pitch_bends = [b for b in instrument.pitch_bends if b.time < seconds]
        kept.control_changes = [c for c in instrument.control_changes if c.time < seconds]
        cut.instruments.append(kept)
    return cut


@functools.lru_cache(maxsize=2)
def _loaded_synth(sample_rate: int):
    # Cached because loading the SoundFont (~60-110 ms) costs more than
    # rendering two bars (~10 ms), and widgets render on every slider move.
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    sfid = synth.sfload(str(soundfont_path()))
    return synth, sfid


def _render_tinysoundfont(midi, n_samples: int, sample_rate: int) -> np.ndarray:
    synth, sfid = _loaded_synth(sample_rate)
    # The synth is reused: stop the last clip's voices and reset the channels.
    # reset() still lets each voice fade for up to ~256 samples, so render
    # 50 ms and throw it away; otherwise an empty roll, normalised, would
    # play that fade at full volume.
    synth.soundfonts[sfid].reset()
    synth.generate(int(0.05 * sample_rate))
    events = []  # (sample, is_note_on, channel, pitch, velocity)
    melodic_channels = [c for c in range(16) if c != 9]  # channel 9 (10 in GM) is drums
    for index, instrument in enumerate(midi.instruments):
        channel = 9 if instrument.is_drum else melodic_channels[index % len(melodic_channels)]
        synth.program_select(channel, sfid, 0, instrument.program, is_drums=instrument.is_drum)
        for note in instrument.notes:
            events.append((round(note.start * sample_rate), 1, channel, note.pitch, note.velocity))
            events.append((round(note.end * sample_rate), 0, channel, note.pitch, 0))
    events.sort()  # by time; at equal times note-offs (0) before note-ons (1)
    chunks, position = [], 0
    for sample, is_on, channel, pitch, velocity in events:
        if sample > position:
            chunks.append(np.frombuffer(synth.generate(sample - position), np.float32))
            position = sample
        if is_on:
            synth.noteon(channel, pitch, velocity)
        else:
            synth.noteoff(channel, pitch)
    if n_samples > position:
        chunks.append(np.frombuffer(synth.generate(n_samples - position), np.float32))
    stereo = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return 0.5 * (stereo[0::2] + stereo[1::2])  # interleaved stereo -> mono (faster than .mean(axis=1))


def _render(midi, backend: str, n_samples: int, sample_rate: int) -> np.ndarray:
    if backend == "tinysoundfont":
        return _render_tinysoundfont(midi, n_samples, sample_rate)
    if backend == "fluidsynth":
        return midi.fluidsynth(fs=sample_rate, sf2_path=str(soundfont_path()), normalize=False)
    # normalize=False: pretty_midi's own normalising divides by zero on silence.
    return midi.synthesize(fs=sample_rate, normalize=False)


def render(
    roll_or_midi,
    bpm: float = 120.0,
    sample_rate: int = SAMPLE_RATE,
    instrument: str = "auto",
    threshold: float = 0.5,
    program: int = 0,
) -> Rendering:
    """Render a roll or MIDI to a mono waveform, saying which backend did it.

    Args:
        roll_or_midi: a roll (anything that squeezes to ``(88, T)``, e.g. the
            model's ``(1, 1, 88, 32)``; bool or probabilities), a
            ``pretty_midi.PrettyMIDI``, or a path to a MIDI file.
        bpm: tempo for rolls, quarter notes per minute (4 steps per beat).
            MIDI input keeps its own tempo.
        sample_rate: Hz.
        instrument: ``"auto"`` or one of :data:`BACKENDS` (see module docstring).
        threshold: for probability rolls, cells ``>= threshold`` sound.
        program: General MIDI program for rolls (0 = acoustic grand piano).

    Returns:
        :class:`Rendering`. The waveform lasts the roll's length
        (``T * 60 / bpm / 4`` s, trailing silence included) or the MIDI's end
        time, plus ``RELEASE_SECONDS``; float32, peak ``PEAK_LEVEL`` (all zeros
        for a roll with no notes: an empty roll is silence, not an error). Input lasting longer than
        ``MAX_SECONDS`` (10 minutes) plays its first ``MAX_SECONDS``, with a ``RuntimeWarning``.

    Raises:
        ValueError: not a roll/MIDI/path, bad ``bpm`` or ``sample_rate``, or
            a named backend that is not installed.
        FileNotFoundError: a path that does not exist.
    """
    if not _is_number(bpm) or not bpm > 0:  # "120" failed on a comparison with a TypeError
        raise ValueError(f"bpm must be a positive number of quarter notes per minute, got {bpm!r}")
    sample_rate = _checked_rate(sample_rate)
    backend = backend_in_use(instrument)
    midi, duration = _as_midi(roll_or_midi, bpm, threshold, program)
    if duration > MAX_SECONDS:
        warnings.warn(
            f"{_describe(roll_or_midi)} lasts {duration:,.0f} s; only its first {MAX_SECONDS:.0f} s are rendered "
            "(audio.MAX_SECONDS)",
            RuntimeWarning,
            stacklevel=2,
        )
        midi, duration = _cut(midi, MAX_SECONDS), MAX_SECONDS
    n_samples = int(round((duration + RELEASE_SECONDS) * sample_rate))
    try:
        waveform = _render(midi, backend, n_samples, sample_rate)
    except Exception as err:  # noqa: BLE001
        if instrument != "auto" or backend == "sine":
            raise
        # "auto" promises a clip: a broken optional renderer must not stop a lesson.
        warnings.warn(
            f"audio backend {backend!r} failed ({type(err).__name__}: {err}); using sine waves",
            RuntimeWarning,
            stacklevel=2,
        )
        backend, waveform = "sine", _render(midi, "sine", n_samples, sample_rate)
    return Rendering(_finish(waveform, n_samples, sample_rate), sample_rate, backend)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _checked_rate(sample_rate) -> int:
    """``sample_rate`` as an int in 1000..``MAX_SAMPLE_RATE`` Hz, or a ValueError naming it (NaN and "22050"
    failed inside ``int()`` and the ``wave`` module with messages that did not)."""
    if not _is_number(sample_rate) or not 1000 <= sample_rate <= MAX_SAMPLE_RATE or int(sample_rate) != sample_rate:
        raise ValueError(f"sample_rate must be an integer from 1000 to {MAX_SAMPLE_RATE} Hz, got {sample_rate!r}")
    return int(sample_rate)


def _finish(waveform, n_samples: int, sample_rate: int) -> np.ndarray:
    """Exact length, peak-normalised, faded at the very end; float32."""
    out = np.zeros(n_samples, dtype=np.float32)
    waveform = np.asarray(waveform, dtype=np.float32)[:n_samples]
    out[: waveform.size] = waveform
    peak = float(np.abs(out).max()) if out.size else 0.0
    if peak > 0:
        out *= PEAK_LEVEL / peak
    fade = min(int(FADE_SECONDS * sample_rate), n_samples)
    if fade:
        out[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return out


def synthesize(
    roll_or_midi,
    bpm: float = 120.0,
    sample_rate: int = SAMPLE_RATE,
    instrument: str = "auto",
    threshold: float = 0.5,
    program: int = 0,
):
    """``(waveform, sample_rate)``: mono float32 in [-1, 1] and Hz. See :func:`render`.

    Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb``.
    """
    waveform, rate, _ = render(roll_or_midi, bpm, sample_rate, instrument, threshold, program)
    return waveform, rate


def to_wav_bytes(waveform, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A mono float waveform in [-1, 1] as 16-bit PCM WAV file bytes (for ``ipywidgets.Audio``).

    Raises:
        ValueError: ``sample_rate`` outside 1000..``MAX_SAMPLE_RATE`` Hz, or a waveform that is not 1-D or holds
            NaN (it became arbitrary 16-bit values: a click, not silence).
    """
    sample_rate = _checked_rate(sample_rate)
    samples = np.asarray(waveform, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"waveform must be mono, shape (n_samples,); got shape {samples.shape}")
    if np.isnan(samples).any():
        raise ValueError("waveform contains NaN")
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
    return buffer.getvalue()


def play(
    roll_or_midi,
    bpm: float = 120.0,
    sample_rate: int = SAMPLE_RATE,
    instrument: str = "auto",
    threshold: float = 0.5,
    program: int = 0,
    autoplay: bool = False,
):
    """A notebook audio player for a roll, a PrettyMIDI or a MIDI path.

    Arguments as in :func:`render`. Returns an ``IPython.display.Audio`` with
    two extra attributes: ``backend`` (which renderer made the sound) and
    ``waveform`` (float32, mono). Display it by making it the cell's last
    expression or with ``IPython.display.display``.

    Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb``.
    """
    from IPython.display import Audio

    waveform, rate, backend = render(roll_or_midi, bpm, sample_rate, instrument, threshold, program)
    # normalize=False: the clip is normalised already, and IPython's own
    # normalising divides by zero on a silent clip.
    player = Audio(data=waveform, rate=rate, autoplay=autoplay, normalize=False)
    player.backend, player.waveform = backend, waveform
    return player


class NoteLoss(NamedTuple):
    """What a MIDI file loses on its way to a binary roll and back (counts of note events).

    ``in_file``: pitched notes in the file (drums excluded); ``in_roll``: notes the roll gives back (runs of
    on-cells, as :func:`~musicvae_course.core.pianoroll.pianoroll_to_midi` writes them); ``lost`` their
    difference, made of ``repeated`` (a note that starts while or just as the same key still sounds, e.g. a
    repeated note: it merges into one held note), ``unisons`` (two voices starting the same key on the same
    step: one cell), ``grace`` (zero length) and ``out_of_range`` (outside the 88 keys). ``drums``: drum notes,
    never part of a roll. Velocities are lost too: a roll has one loudness.
    """

    in_file: int
    in_roll: int
    lost: int
    repeated: int
    unisons: int
    grace: int
    out_of_range: int
    drums: int


def note_events_lost(midi) -> NoteLoss:
    """Count the note events a file loses in MIDI -> roll -> MIDI, and why (see :class:`NoteLoss`).

    Args:
        midi: a MIDI path or ``pretty_midi.PrettyMIDI``; read with the roll's own rounding rule.

    Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb``.
    """
    from ..core.pianoroll import HIGHEST_PITCH, LOWEST_PITCH, ticks_to_steps

    pm = load_pretty_midi(midi)
    drums = sum(len(i.notes) for i in pm.instruments if i.is_drum)
    notes = [n for i in pm.instruments if not i.is_drum for n in i.notes]
    starts = np.array([pm.time_to_tick(n.start) for n in notes], np.int64)
    ends = np.array([pm.time_to_tick(n.end) for n in notes], np.int64)
    pitches = np.array([n.pitch for n in notes], np.int64)
    grace = int((ends <= starts).sum())
    out_of_range = int(((ends > starts) & ((pitches < LOWEST_PITCH) | (pitches > HIGHEST_PITCH))).sum())
    keep = (ends > starts) & (pitches >= LOWEST_PITCH) & (pitches <= HIGHEST_PITCH)
    onset, offset = ticks_to_steps(starts[keep], ends[keep], pm.resolution)
    pitches = pitches[keep]
    unisons = repeated = runs = 0
    order = np.lexsort((-offset, onset, pitches))  # by pitch, then onset; the longest first at one onset
    previous_pitch, previous_onset, sounding_until = None, None, -1
    for index in order:
        pitch, start, stop = int(pitches[index]), int(onset[index]), int(offset[index])
        if pitch != previous_pitch:
            runs, sounding_until = runs + 1, stop
        elif start == previous_onset:
            unisons += 1
            sounding_until = max(sounding_until, stop)
        elif start <= sounding_until:  # starts while (or as) the key sounds: one held note in the roll
            repeated += 1
            sounding_until = max(sounding_until, stop)
        else:
            runs, sounding_until = runs + 1, stop
        previous_pitch, previous_onset = pitch, start
    return NoteLoss(len(notes), runs, len(notes) - runs, repeated, unisons, grace, out_of_range, drums)


def file_tempo(midi) -> float:
    """The file's first tempo in quarter notes per minute (120 if it sets none), to play its roll at its pace."""
    tempi = load_pretty_midi(midi).get_tempo_changes()[1]
    return float(tempi[0]) if len(tempi) else 120.0
