"""``python -m musicvae_course sample|interpolate|reconstruct``: demos without a notebook.

Each command writes MIDI files and a PNG picture into ``--out``::

    python -m musicvae_course sample -n 8 --temperature 1.0 --out demo/samples
    python -m musicvae_course interpolate --from a.mid --to b.mid --steps 8 --out demo/interp
    python -m musicvae_course reconstruct song.mid --out demo/recon
    python -m musicvae_course reconstruct hymn.mid --pickup 4 --out demo/hymn  # bars after a quarter pickup
    python -m musicvae_course interpolate --from jig.mid --to jig2.mid --pickup 2 --out demo/i  # both: 1/8 pickup

``--checkpoint`` picks the model: default the bundled one, ``hub`` for the
card's original, or a path. A user error (a missing or unreadable file, a
value out of range) prints one line and exits with status 2; ``--debug``
shows the traceback too. (Training has its own command:
``python -m musicvae_course.train``.) The notebooks teach the same steps:
``02_latent_space_with_widgets.ipynb`` and ``04_generation.ipynb``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from .core.pianoroll import SEGMENT_STEPS
from .core.seeding import DEFAULT_SEED
from .fileio import atomic_write

MAX_OUTPUTS = 1024  #: most samples, steps or segments one command writes


def _bounded(kind, low, high, what):
    """An argparse type: ``kind`` within ``[low, high]`` (finite), else a one-line usage error."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text} is out of range: {what} in [{low:g}, {high:g}]")
        return value

    return parse


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder for the MIDI and PNG files")
    parser.add_argument("--checkpoint", help="'hub', a path, or nothing for the bundled model")
    parser.add_argument(
        "--threshold", type=_bounded(float, 1e-6, 1.0, "a probability"), default=0.5, help="note on at p >= this"
    )
    parser.add_argument(
        "--bpm", type=_bounded(float, 1.0, 1000.0, "a tempo in BPM"), default=120.0, help="tempo of the MIDI files"
    )
    parser.add_argument("--seed", type=_bounded(int, 0, 2**63 - 1, "a seed >= 0"), default=DEFAULT_SEED)
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best there is)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m musicvae_course", description="Sample, interpolate or reconstruct with the VAE."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    sample = commands.add_parser("sample", help="decode z ~ N(0, T^2 I)")
    sample.add_argument("-n", type=_bounded(int, 1, MAX_OUTPUTS, "a count"), default=8, help="how many 2-bar samples")
    sample.add_argument("--temperature", type=_bounded(float, 0.0, 100.0, "a temperature"), default=1.0)
    interpolate = commands.add_parser("interpolate", help="decode a path between two segments")
    interpolate.add_argument("--from", dest="start", help="MIDI file (default: a prior sample)")
    interpolate.add_argument("--to", dest="end", help="MIDI file (default: a prior sample)")
    interpolate.add_argument(
        "--segment",
        type=_bounded(int, 0, 10**9, "a segment index"),
        default=0,
        help="the 2 bars of each file from the downbeat of this bar (0 = its first, in its own meter)",
    )
    interpolate.add_argument("--steps", type=_bounded(int, 2, MAX_OUTPUTS, "a number of steps"), default=8)
    interpolate.add_argument("--method", choices=("linear", "slerp"), default="slerp")
    reconstruct = commands.add_parser("reconstruct", help="encode and decode a MIDI file")
    reconstruct.add_argument("midi", help="MIDI file")
    reconstruct.add_argument(
        "--max-segments",
        type=_bounded(int, 1, MAX_OUTPUTS, "a number of segments"),
        default=16,
        help="2-bar windows to reconstruct from the start (default 16)",
    )
    reconstruct.add_argument(
        "--pickup",
        type=_bounded(int, 0, 64, "a number of sixteenths"),
        default=0,
        help="sixteenths before the first full bar, for a file that writes its pickup with the full time signature "
        "(music21's, LilyPond's and abc2midi's exports do): the picture's bar lines start after it, and the MIDI "
        "files written mark it as a short first bar (default 0)",
    )
    interpolate.add_argument(
        "--pickup",
        type=_bounded(int, 0, 64, "a number of sixteenths"),
        default=0,
        help="sixteenths before the first full bar of the --from and --to files, where they write their pickup "
        "with the full time signature: --segment counts bars from the first full one (default 0)",
    )
    for command in (sample, interpolate, reconstruct):
        _common(command)
    return parser


def _segment_of(path: str, bar: int, pickup_steps: int = 0):
    """The 2-bar window (32 sixteenths) of a MIDI file from the downbeat of its bar ``bar`` (0 = its first bar, in
    the file's own bars, the first full one after a pickup: one the file marks with a short bar, or one of
    ``pickup_steps`` it does not mark):
    ``((88, 32) bool, the time signature in force there)``. A file whose meter the kit cannot bar is counted in
    4/4."""
    from .core.meter import numbered_downbeats, roll_and_meter

    roll, grid, _ = roll_and_meter(path, pickup_steps)
    downbeats = [step for step in numbered_downbeats(grid) if step < roll.shape[1]]
    if not 0 <= bar < len(downbeats):
        raise ValueError(f"{path}: has {len(downbeats)} bars with music; --segment {bar} is not one")
    start = downbeats[bar]
    window = np.zeros((roll.shape[0], SEGMENT_STEPS), dtype=bool)
    window[:, : roll.shape[1] - start] = roll[:, start : start + SEGMENT_STEPS]
    signature = [s for s in grid.signatures if s.step <= start][-1]
    return window, signature._replace(step=0)  # as from the start of the window


def _frames_meter(signature, frames: int) -> list:
    """Time signatures for ``frames`` 2-bar windows played one after another, each from a downbeat: a window that
    does not fill its last bar (3/4: 2 bars and 8 sixteenths) ends with a short bar, so the next starts on one."""
    from .core.meter import bar_steps, short_bar

    bar = bar_steps(signature)
    full = int(SEGMENT_STEPS // bar) * bar
    rest = SEGMENT_STEPS - full
    found = []
    for frame in range(frames):
        found.append(signature._replace(step=frame * SEGMENT_STEPS))
        if rest:  # in 64ths (a bar is a whole number of them), then reduced
            found.append(short_bar(rest, frame * SEGMENT_STEPS + int(full)))
    return found


def _write(rolls: np.ndarray, names: list[str], out: Path, args, picture: str, signature=None) -> list[Path]:
    """Each roll ``(88, 32)`` as MIDI, all of them in a row as ``<picture>.mid``, a PNG grid; each window is barred
    from its start in ``signature`` (a :class:`~musicvae_course.core.meter.TimeSignature`; default the model's
    4/4)."""
    from .ui.plots import MAX_GRID_PANELS, plot_pianoroll_grid

    one = [] if signature is None else [signature]
    written = [_midi(roll, out / f"{name}.mid", args, one) for roll, name in zip(rolls, names)]
    row = [] if signature is None else _frames_meter(signature, len(rolls))
    written.append(_midi(np.concatenate(list(rolls), axis=-1), out / f"{picture}.mid", args, row))
    shown = min(len(rolls), MAX_GRID_PANELS)  # the MIDI files hold every roll; a grid of 1,024 took an hour
    figure = plot_pianoroll_grid(
        rolls[:shown],
        titles=names[:shown],
        time_signature=None if signature is None else str(signature),
        suptitle=None
        if shown == len(rolls)
        else f"the first {shown} of {len(rolls)} (all {len(rolls)} in {picture}.mid)",
    )
    return written + [_png(figure, out / f"{picture}.png")]


def _midi(roll: np.ndarray, path: Path, args, time_signatures=()) -> Path:
    from .core.meter import write_time_signatures
    from .core.pianoroll import pianoroll_to_midi

    path.parent.mkdir(parents=True, exist_ok=True)
    pm = write_time_signatures(pianoroll_to_midi(roll, threshold=args.threshold, bpm=args.bpm), time_signatures)
    # written whole, as a new file renamed into place: a link left in --out was followed (the MIDI landed in the
    # file it named, outside --out), a FIFO left there blocked the command forever, a kill left half a file
    return atomic_write(path, pm.write)


def _png(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: figure.savefig(handle, dpi=100, format="png"))
    import matplotlib.pyplot as plt

    plt.close(figure)  # pyplot keeps every figure it made until closed: main() called in a loop grew without bound
    return path


def main(argv=None) -> int:
    """Run one command; returns the exit status: 0 done, 2 a user error (one line on stderr; ``--debug``: the
    traceback too). Bugs still raise with their traceback."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except _user_errors() as err:
        if args.debug:
            raise
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"python -m musicvae_course {args.command}: error: {message}", file=sys.stderr)
        return 2


def _user_errors() -> tuple:
    """What a user can cause with a wrong path, file or value: reported in one line, not as a crash."""
    from .core.checkpoint import CheckpointError

    return (ValueError, OSError, TimeoutError, CheckpointError)


def _checked_device(name):
    """``--device`` as given, refused in one line if it names no device type or one this machine lacks."""
    import torch

    if name is None:
        return None
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {name!r} is not a device (cpu, cuda, cuda:1, mps): {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"--device {name}: MPS is not available on this machine")
    return device


def _run(args) -> int:
    import matplotlib
    import torch

    matplotlib.use("Agg")  # files only: no window, works without a display
    from .core.checkpoint import load_pretrained
    from .core.devices import choose_device

    out = Path(args.out)
    if out.exists() and not out.is_dir():  # else "[Errno 17] File exists: 'x'", after the model was loaded
        raise ValueError(f"--out {out}: is a file, not a folder")
    device = choose_device(_checked_device(args.device))
    model = load_pretrained(args.checkpoint, device=device)
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        if args.command == "sample":
            z = torch.randn(args.n, model.latent_dim, generator=generator) * args.temperature
            rolls = model.decode(z.to(device)).squeeze(1).cpu().numpy()
            written = _write(rolls, [f"sample_{i:02d}" for i in range(args.n)], out, args, "samples")
        elif args.command == "interpolate":
            ends, signatures = [], set()
            for path in (args.start, args.end):
                if path is None:
                    ends.append(torch.randn(1, model.latent_dim, generator=generator).to(device))
                else:
                    window, signature = _segment_of(path, args.segment, args.pickup)
                    signatures.add(signature)
                    x = torch.as_tensor(window, dtype=torch.float32)
                    ends.append(model.encode(x[None, None].to(device))[0])  # z = mu
            rolls = model.interpolate(*ends, steps=args.steps, method=args.method)
            rolls = rolls.squeeze(1).cpu().numpy()
            # the ends' own meter when they share one; a path between two meters (or prior codes) in the model's 4/4
            signature = signatures.pop() if len(signatures) == 1 else None
            names = [f"step_{i:02d}" for i in range(args.steps)]
            written = _write(rolls, names, out, args, "interpolation", signature)
        else:
            written = _reconstruct(model, args, out)
    for path in written:
        print(path)
    return 0


def _reconstruct(model, args, out: Path) -> list[Path]:
    """Non-overlapping 2-bar windows through the VAE (z = mu); frame and onset F1 printed."""
    import torch

    from .core.meter import bar_number_span, numbered_downbeats, roll_and_meter, with_pickup_bar
    from .core.metrics import frame_scores, onset_scores
    from .core.pianoroll import load_pretty_midi, segments
    from .ui.compare import compare_pianorolls

    source = load_pretty_midi(args.midi)  # parsed once: the roll, the meter and the title's signatures
    roll, file_meter, unbarred = roll_and_meter(source, args.pickup)
    roll = roll[:, : args.max_segments * SEGMENT_STEPS]  # only what is shown is cut
    if unbarred:
        print(f"{args.midi}: {unbarred}; its bars are drawn in 4/4", file=sys.stderr)
    windows = segments(roll, stride=SEGMENT_STEPS, min_notes=0)
    if len(windows) == 0:
        raise ValueError(f"{args.midi}: no pitched notes in the 88-key range (MIDI 21-108) to reconstruct")
    x = torch.as_tensor(windows, dtype=torch.float32).unsqueeze(1).to(model.device)
    probabilities = model(x)[0].squeeze(1).cpu().numpy()
    frame = frame_scores(probabilities, windows, args.threshold)
    onset = onset_scores(probabilities, windows, args.threshold)
    print(f"{args.midi}: {len(windows)} segments; frame F1 {frame['f1']:.3f}, onset F1 {onset['f1']:.3f}")
    original, reconstruction = (np.concatenate(list(r), axis=-1) for r in (windows, probabilities))
    # The picture shows the first 4 windows (128 steps) with the file's own bar lines: 8 bars of 4/4, but
    # 10 2/3 of 3/4; its title counts real bars so that its F1 (those steps only) is not read as the file's.
    shown = min(SEGMENT_STEPS * 4, original.shape[1])
    figure = compare_pianorolls(
        original[:, :shown], reconstruction[:, :shown], threshold=args.threshold, bar_lines=file_meter
    )
    names = list(dict.fromkeys(str(s) for s in file_meter.signatures))  # "3/4", "4/4" ... in order, once each
    signatures = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    if not source.time_signature_changes:  # the bars drawn are MIDI's default, not the file's word: say so
        signatures = "no time signature: 4/4"
    elif unbarred:
        signatures = "a time signature the kit cannot bar: 4/4"
    figure.suptitle(
        f"{Path(args.midi).name} ({signatures}): {bar_number_span(numbered_downbeats(file_meter), 0, shown)} shown; "
        f"whole file ({len(windows)} segments): frame F1 {frame['f1']:.3f}"
    )
    # signatures past what is written (a file may place them anywhere) would only push the files' ends out
    # (the files bar as the picture does: a pickup given with --pickup is written as a short first bar)
    marked = with_pickup_bar(file_meter.signatures, args.pickup if args.pickup < original.shape[1] else 0)
    written = [signature for signature in marked if signature.step < original.shape[1]]
    return [
        _midi(original, out / "original.mid", args, written),
        _midi(reconstruction, out / "reconstruction.mid", args, written),
        _png(figure, out / "reconstruction.png"),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
