"""Latency of one widget change: decode one z and redraw the piano roll to PNG.

Run: ``PYTHONPATH=. python benchmarks/bench_widgets.py [--changes 40] [--threads 1]``

Kit: what a slider move in ``musicvae_course.ui.widgets`` costs, through the same
functions: ``interpolation_frame`` (decode) + ``PianoRollView.update`` +
``to_png`` (blitted Agg figure). Reference: the same decode, then a figure
built from scratch with ``visualize_pianoroll`` and ``savefig`` (what a naive
``interactive_output`` cell does on every change). Both run in the same loop,
alternating, so machine load hits both alike. Also timed: the kit's full
change including the audio clip (``RollPanel.show``, which re-renders the clip
only when the thresholded notes change), the same with the clip rendered on
every change (worst case), each audio backend alone, and the drawable roll's
'reconstruct' (ui/rolldraw.py) against the same done with new figures. Target: kit median <= 100 ms on one CPU thread.

The model is the bundled checkpoint when it exists; otherwise a seeded,
randomly initialised MusicVAE whose output bias is shifted so that about 2.5%
of cells are on, the density of real 2-bar segments (field notes, section 2).
Decoding and drawing cost the same whatever the weights, but the audio clip's
cost grows with the number of notes, and a raw random decoder turns on
nearly every cell (88-note chords).
"""

from __future__ import annotations

import argparse
import io
import os
import time

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from musicvae_course.core.model import MusicVAE  # noqa: E402
from musicvae_course.core.seeding import seed_everything  # noqa: E402
from musicvae_course.ui import audio, plots, rollview, widgets  # noqa: E402

TARGET_MS = 100.0
DATA_DENSITY = 0.025  #: share of cells on in real 2-bar segments


def _stats(seconds) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1e3
    return float(np.median(ms)), float(np.percentile(ms, 90))


def _model() -> tuple[MusicVAE, str]:
    """The bundled model if present, else a random one with a realistic note density."""
    from musicvae_course.core import checkpoint

    if checkpoint.BUNDLED_CHECKPOINT.is_file():
        return checkpoint.load_pretrained(device="cpu").eval(), str(checkpoint.BUNDLED_CHECKPOINT)
    generator = seed_everything()
    model = MusicVAE().eval()
    with torch.no_grad():
        logits = model.decode_logits(torch.randn(64, model.latent_dim, generator=generator))
        model.decoder[-1].bias -= torch.quantile(logits.flatten(), 1 - DATA_DENSITY)
        density = model.decode(torch.randn(64, model.latent_dim, generator=generator)) >= 0.5
    return model, (
        f"random weights (seeded), output bias shifted: {density.float().mean():.1%} "
        "of cells on (no bundled checkpoint yet)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=40, help="slider changes timed per path")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (pinned)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch threads: {torch.get_num_threads()} (pinned), matplotlib backend: "
        f"{matplotlib.get_backend()}, changes timed: {args.changes}"
    )

    model, source = _model()
    print(f"model: {source}")
    z1, z2 = torch.randn(2, model.latent_dim, generator=seed_everything())
    positions = np.linspace(0.0, 1.0, args.changes)

    view = rollview.PianoRollView()
    panel = widgets.RollPanel()

    def kit(t):
        view.update(widgets.interpolation_frame(model, z1, z2, t))
        return view.to_png()

    def reference(t):
        fig = plots.visualize_pianoroll(widgets.interpolation_frame(model, z1, z2, t), figsize=(6.0, 3.2))
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        plt.close(fig)
        return buffer.getvalue()

    def kit_with_audio(t):
        panel.show(widgets.interpolation_frame(model, z1, z2, t))

    forced = widgets.RollPanel()

    def kit_with_new_audio(t):
        forced._audio_key = None  # worst case: the notes changed, the clip is rendered
        forced.show(widgets.interpolation_frame(model, z1, z2, t))

    paths = {"kit": kit, "reference": reference, "kit + audio": kit_with_audio, "kit + new audio": kit_with_new_audio}
    timings = {name: [] for name in paths}
    for path in paths.values():  # warm-up: first draws lay out and cache
        for t in positions[:3]:
            path(t)
    for t in positions:
        for name, path in paths.items():
            start = time.perf_counter()
            path(t)
            timings[name].append(time.perf_counter() - start)

    kit_median, kit_p90 = _stats(timings["kit"])
    ref_median, ref_p90 = _stats(timings["reference"])
    full_median, full_p90 = _stats(timings["kit + audio"])
    worst_median, worst_p90 = _stats(timings["kit + new audio"])
    print(f"\none change = decode one z + redraw to PNG ({args.changes} changes)")
    print(f"{'path':<44}{'median ms':>11}{'p90 ms':>9}")
    print(f"{'kit: blitted PianoRollView':<44}{kit_median:>11.1f}{kit_p90:>9.1f}")
    print(f"{'reference: new figure + savefig each change':<44}{ref_median:>11.1f}{ref_p90:>9.1f}")
    print(f"{'kit + audio clip (RollPanel.show)':<44}{full_median:>11.1f}{full_p90:>9.1f}")
    print(f"{'  same, clip re-rendered on every change':<44}{worst_median:>11.1f}{worst_p90:>9.1f}")
    print(f"ratio reference / kit (median): {ref_median / kit_median:.1f}x")
    verdict = "meets" if kit_median <= TARGET_MS else "MISSES"
    print(f"target: kit median <= {TARGET_MS:.0f} ms -> {verdict} ({kit_median:.1f} ms)")
    for name, median in (("kit + audio", full_median), ("kit + new audio", worst_median)):
        verdict = "meets" if median <= TARGET_MS else "MISSES"
        print(f"        {name} median <= {TARGET_MS:.0f} ms -> {verdict} ({median:.1f} ms)")
    print(f"machine load average (1 min) during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    frame = widgets.interpolation_frame(model, z1, z2, 0.5)
    roll = np.zeros_like(frame, dtype=bool)  # a fixed 2-bar test clip, 4-note chords
    roll[[39, 43, 46, 51], :16] = True
    roll[[41, 44, 48, 53], 16:] = True
    print("\naudio, one 2-bar clip (32 steps at 120 bpm, 22,050 Hz):")
    for backend in audio.available_backends():
        audio.synthesize(roll, instrument=backend)  # warm-up (loads the SoundFont once)
        seconds = []
        for _ in range(10):
            start = time.perf_counter()
            audio.synthesize(roll, instrument=backend)
            seconds.append(time.perf_counter() - start)
        median, p90 = _stats(seconds)
        print(f"  {backend:<14} median {median:6.1f} ms, p90 {p90:6.1f} ms")
    missing = sorted(set(audio.BACKENDS) - set(audio.available_backends()))
    print(f"  not installed here: {', '.join(missing) or 'none'}")
    _bench_drawable(model, args.changes)


def _bench_drawable(model, changes: int) -> None:
    """The drawable roll: one 'reconstruct' (a drawn cell or a spread change) against a naive redraw."""
    from musicvae_course.ui import rolldraw

    box = rolldraw.drawable_roll_widget(model)
    melody = np.zeros((88, 32), dtype=bool)
    for i, pitch in enumerate([60, 62, 64, 65, 67, 69, 71, 72]):
        melody[pitch - 21, 4 * i : 4 * i + 3] = True
    cells = rolldraw.roll_to_cells(melody, *rolldraw.DEFAULT_RANGE)

    def kit(i):  # what one drawn cell costs: toggle it, then reconstruct (decode 1 + 4 codes, two PNGs, one clip)
        box.canvas.cells = sorted(set(cells) ^ {i % 200})
        box.reconstruct()

    def reference(i):  # the same through new matplotlib figures, as a naive interactive_output cell would
        box.canvas.cells = sorted(set(cells) ^ {i % 200})
        reconstruction, variations = rolldraw.reconstruct_and_vary(
            model, rolldraw.cells_to_roll(box.canvas.cells, 55, 84)
        )
        for picture in (reconstruction, np.concatenate(list(variations), axis=1)):
            fig = plots.visualize_pianoroll(picture, figsize=(6.0, 3.2))
            fig.savefig(io.BytesIO(), format="png", dpi=80)
            plt.close(fig)
        audio.synthesize(reconstruction, bpm=120.0)

    timings = {"kit": [], "reference": [], "phrase clip": [], "MIDI link": []}
    for i in range(3):
        kit(i), reference(i)
    for i in range(changes):
        for name, call in (
            ("kit", kit),
            ("reference", reference),
            ("phrase clip", lambda _i: box.hear_phrase()),
            ("MIDI link", lambda _i: box.make_midi()),
        ):
            start = time.perf_counter()
            call(i)
            timings[name].append(time.perf_counter() - start)
    print(f"\ndrawable roll: one drawn cell -> reconstruction + 4 variations ({changes} changes)")
    for name, label in (
        ("kit", "kit: reconstruct (blitted views, 2-bar clip)"),
        ("reference", "reference: new figures + savefig"),
        ("phrase clip", "  on request: the 8-bar variations clip"),
        ("MIDI link", "  on request: the MIDI download link"),
    ):
        median, p90 = _stats(timings[name])
        print(f"{label:<44}{median:>11.1f}{p90:>9.1f}")
    kit_median, ref_median = _stats(timings["kit"])[0], _stats(timings["reference"])[0]
    print(f"ratio reference / kit (median): {ref_median / kit_median:.1f}x")
    verdict = "meets" if kit_median <= TARGET_MS else "MISSES"
    print(f"target: drawable kit median <= {TARGET_MS:.0f} ms -> {verdict} ({kit_median:.1f} ms)")


if __name__ == "__main__":
    main()
