"""Audio: every installed backend renders the right length, pitch and timing; silence stays silent."""

import io
import wave

import numpy as np
import pretty_midi
import pytest
import torch
from IPython.display import Audio

from musicvae_course.core.pianoroll import pianoroll_to_midi
from musicvae_course.ui import audio

RATE = 8000  # low rate: fast tests, still far above the pitches checked here


def _roll(pitch=69, start=0, end=8, n_steps=32):
    roll = np.zeros((88, n_steps), dtype=bool)
    roll[pitch - 21, start:end] = True
    return roll


def _expected_samples(seconds, rate=RATE):
    return int(round((seconds + audio.RELEASE_SECONDS) * rate))


def test_sine_is_always_available_and_auto_picks_the_first():
    available = audio.available_backends()
    assert available[-1] == "sine"
    assert audio.backend_in_use("auto") == available[0]
    with pytest.raises(ValueError, match="instrument"):
        audio.backend_in_use("theremin")


@pytest.mark.parametrize("backend", audio.BACKENDS)
def test_each_backend_renders_or_says_it_is_not_installed(backend):
    roll = _roll(69, 0, 8)
    if backend not in audio.available_backends():
        with pytest.raises(ValueError, match="not installed"):
            audio.synthesize(roll, instrument=backend, sample_rate=RATE)
        return
    for bpm in (120, 90):
        waveform, rate = audio.synthesize(roll, bpm=bpm, instrument=backend, sample_rate=RATE)
        assert rate == RATE and waveform.dtype == np.float32
        assert waveform.shape == (_expected_samples(32 * 60 / bpm / 4),)
        assert np.abs(waveform).max() == pytest.approx(audio.PEAK_LEVEL, rel=1e-4)


@pytest.mark.parametrize("backend", audio.available_backends())
@pytest.mark.parametrize("pitch", [57, 69])
def test_backends_sound_the_right_pitch(backend, pitch):
    waveform, rate = audio.synthesize(_roll(pitch, 0, 8), instrument=backend, sample_rate=RATE)
    note = waveform[: rate // 2]  # 8 steps at 120 bpm = 1 s; look inside it
    spectrum = np.abs(np.fft.rfft(note * np.hanning(note.size)))
    peak_hz = np.fft.rfftfreq(note.size, 1 / rate)[spectrum.argmax()]
    fundamental = 440.0 * 2 ** ((pitch - 69) / 12)
    harmonic = peak_hz / fundamental  # a piano's 2nd harmonic may be its loudest
    assert round(harmonic) in (1, 2, 3) and abs(harmonic - round(harmonic)) < 0.05


@pytest.mark.parametrize("backend", audio.available_backends())
def test_notes_sound_when_the_roll_says(backend):
    waveform, rate = audio.synthesize(_roll(60, 16, 24), instrument=backend, sample_rate=RATE)
    before = waveform[: int(1.9 * rate)]  # step 16 at 120 bpm starts at 2.0 s
    during = waveform[int(2.1 * rate) : int(2.9 * rate)]
    assert np.abs(before).max() < 1e-3
    assert np.sqrt(np.mean(during**2)) > 0.05


@pytest.mark.parametrize("backend", audio.available_backends())
def test_an_empty_roll_is_silence_even_after_a_loud_clip(backend):
    chord = np.zeros((88, 32), bool)
    chord[30:60:3, :] = True  # held to the very end: its decay would leak
    audio.synthesize(chord, instrument=backend, sample_rate=RATE)
    waveform, _ = audio.synthesize(torch.zeros(1, 1, 88, 32), instrument=backend, sample_rate=RATE)
    assert waveform.shape == (_expected_samples(4.0),) and not waveform.any()
    short, _ = audio.synthesize(np.zeros((88, 0), bool), instrument=backend, sample_rate=RATE)
    assert short.shape == (_expected_samples(0.0),) and not short.any()


def test_probabilities_are_thresholded():
    probabilities = np.full((88, 32), 0.4, np.float32)
    quiet, _ = audio.synthesize(probabilities, sample_rate=RATE)
    assert not quiet.any()
    probabilities[69 - 21, :4] = 0.6
    loud, _ = audio.synthesize(probabilities, sample_rate=RATE)
    assert np.abs(loud).max() > 0.5
    assert not audio.synthesize(probabilities, sample_rate=RATE, threshold=0.7)[0].any()


def test_midi_objects_and_files_render_to_their_own_length(tmp_path):
    midi = pianoroll_to_midi(_roll(64, 4, 12), bpm=100)
    end = midi.get_end_time()
    from_object, _ = audio.synthesize(midi, sample_rate=RATE, bpm=60)  # bpm: rolls only
    path = tmp_path / "clip.mid"
    midi.write(str(path))
    from_file, _ = audio.synthesize(path, sample_rate=RATE)
    assert from_object.shape == from_file.shape == (_expected_samples(end),)
    assert audio.synthesize(pretty_midi.PrettyMIDI(), sample_rate=RATE)[0].shape == (_expected_samples(0),)


def test_bad_input_is_named():
    with pytest.raises(FileNotFoundError):
        audio.synthesize("no/such/file.mid")
    with pytest.raises(ValueError, match="roll_or_midi"):
        audio.synthesize(np.zeros((87, 32)))
    with pytest.raises(ValueError, match="bpm"):
        audio.synthesize(_roll(), bpm=0)
    with pytest.raises(ValueError, match="sample_rate"):
        audio.synthesize(_roll(), sample_rate=10)


def test_auto_falls_back_to_sine_when_a_renderer_breaks(monkeypatch):
    monkeypatch.setattr(audio, "_backend_ready", lambda name: name in ("tinysoundfont", "sine"))

    def broken(*args, **kwargs):
        raise RuntimeError("soundfont exploded")

    monkeypatch.setattr(audio, "_render_tinysoundfont", broken)
    with pytest.warns(RuntimeWarning, match="soundfont exploded"):
        rendering = audio.render(_roll(), sample_rate=RATE)
    assert rendering.backend == "sine" and np.abs(rendering.waveform).max() > 0.5
    with pytest.raises(RuntimeError, match="exploded"):  # asked for by name: no silent swap
        audio.render(_roll(), sample_rate=RATE, instrument="tinysoundfont")


def test_play_returns_an_ipython_audio_that_names_its_backend():
    player = audio.play(_roll(), sample_rate=RATE)
    assert isinstance(player, Audio)
    assert player.backend == audio.backend_in_use() and player.data[:4] == b"RIFF"
    silent = audio.play(np.zeros((88, 32)), sample_rate=RATE)  # IPython must not divide by zero
    assert silent.data[:4] == b"RIFF"


def test_wav_bytes_round_trip():
    waveform = np.sin(np.linspace(0, 100, 1234)).astype(np.float32) * 0.5
    with wave.open(io.BytesIO(audio.to_wav_bytes(waveform, RATE))) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    np.testing.assert_allclose(pcm / 32767, waveform, atol=1e-4)


def _file(tmp_path, notes, name="written.mid"):
    """A MIDI file at 120 BPM from ``[(pitch, start_step, end_step, velocity), ...]`` (0.125 s per step)."""
    pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=120.0)
    piano = pretty_midi.Instrument(0)
    for pitch, start, end, velocity in notes:
        piano.notes.append(pretty_midi.Note(velocity, pitch, start * 0.125, end * 0.125))
    pm.instruments.append(piano)
    path = tmp_path / name
    pm.write(str(path))
    return path


def _envelope(waveform, rate=RATE, window_s=0.02):
    n = int(window_s * rate)
    return np.abs(waveform[: len(waveform) // n * n]).reshape(-1, n).max(axis=1)


@pytest.mark.parametrize("backend", audio.available_backends())  # "sine" is always there
def test_a_file_plays_its_repeated_notes_while_its_roll_holds_one(backend, tmp_path):
    repeated = _file(tmp_path, [(69, 0, 8, 100), (69, 8, 16, 100)])  # two quarter notes on one key
    from musicvae_course.core.pianoroll import midi_to_pianoroll

    as_written = _envelope(audio.render(repeated, sample_rate=RATE, instrument=backend).waveform)
    as_roll = _envelope(audio.render(midi_to_pianoroll(repeated), sample_rate=RATE, instrument=backend).waveform)
    second = int(1.0 / 0.02)  # the second note starts at 1 s
    # as written, the key is struck again: the level just after 1 s jumps above the level just before it
    assert as_written[second + 1] > 1.3 * as_written[second - 2]
    assert not as_roll[second + 1] > 1.3 * as_roll[second - 2], "the roll holds one note: no second attack"


def test_a_file_plays_its_velocities(tmp_path):
    path = _file(tmp_path, [(69, 0, 8, 30), (69, 16, 24, 120)])
    envelope = _envelope(audio.render(path, sample_rate=RATE, instrument="sine").waveform)
    soft, loud = envelope[5:40].max(), envelope[85:120].max()  # 0.1-0.8 s and 2.1-2.8 s
    assert loud > 3 * soft, (soft, loud)


def test_note_events_lost_counts_repeats_unisons_and_grace_notes(tmp_path):
    pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=120.0)  # in memory: a file drops zero-length notes
    pm.instruments.append(pretty_midi.Instrument(0))
    pm.instruments[0].notes = [
        pretty_midi.Note(velocity, pitch, start * 0.125, end * 0.125)
        for pitch, start, end, velocity in [
            (60, 0, 4, 80),
            (60, 4, 8, 80),  # repeated: merges with the first
            (64, 0, 8, 80),
            (64, 0, 4, 80),  # unison on the same step: one cell
            (67, 0, 0, 80),  # grace: no length
            (67, 2, 4, 80),
            (67, 8, 12, 80),  # a gap before it: a note of its own
            (110, 0, 4, 80),  # above C8
        ]
    ]
    loss = audio.note_events_lost(pm)
    assert loss == audio.NoteLoss(8, 4, 4, repeated=1, unisons=1, grace=1, out_of_range=1, drums=0)
    assert audio.file_tempo(_file(tmp_path, [(60, 0, 4, 80)])) == pytest.approx(120.0)


def _days_long_midi(path):
    """43 bytes: one note of 20,000 quarter notes at 16 s a quarter (3.7 days)."""
    import mido

    midi = mido.MidiFile(ticks_per_beat=1)
    track = mido.MidiTrack(
        [
            mido.MetaMessage("set_tempo", tempo=16_000_000, time=0),
            mido.Message("note_on", note=69, velocity=80, time=0),
            mido.Message("note_off", note=69, velocity=0, time=20_000),
        ]
    )
    midi.tracks.append(track)
    midi.save(path)
    return path


@pytest.mark.parametrize("backend", audio.available_backends())
def test_a_long_file_plays_its_first_max_seconds_with_a_warning(tmp_path, monkeypatch, backend):
    monkeypatch.setattr(audio, "MAX_SECONDS", 3.0)  # the default (10 minutes) would be slow to check here
    path = _days_long_midi(tmp_path / "long.mid")
    with pytest.warns(RuntimeWarning, match=r"long\.mid.* lasts 320,000 s; only its first 3 s"):
        waveform, rate = audio.synthesize(path, sample_rate=RATE, instrument=backend)
    assert len(waveform) == _expected_samples(3.0)
    assert np.abs(waveform[: 2 * RATE]).max() > 0.5  # the note sounds up to the cut


def test_a_43_byte_file_lasting_days_renders_in_bounded_memory(tmp_path):
    """Before MAX_SECONDS this file asked numpy for 52.6 GB; now it renders 10 minutes under a 4 GB cap."""
    import subprocess
    import sys

    path = _days_long_midi(tmp_path / "long.mid")
    assert path.stat().st_size < 100
    code = (
        "import resource, sys, warnings\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "from musicvae_course.ui import audio\n"
        "warnings.simplefilter('ignore')\n"
        "waveform, rate = audio.synthesize(sys.argv[1], instrument='sine')\n"
        "print(len(waveform) / rate)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout) == pytest.approx(audio.MAX_SECONDS + audio.RELEASE_SECONDS)


def test_sample_rate_beyond_audio_hardware_is_refused():
    with pytest.raises(ValueError, match="sample_rate must be an integer from 1000 to 192000 Hz"):
        audio.render(_roll(), sample_rate=10**11)
