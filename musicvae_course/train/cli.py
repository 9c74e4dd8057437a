"""``python -m musicvae_course.train``: the command line around ``train.fit``.

Examples::

    # the card's recipe on a built data cache (see musicvae_course.core.data)
    python -m musicvae_course.train --data corpus/cache --epochs 100 --out runs/card
    # continue it after an interruption (same settings, same final weights)
    python -m musicvae_course.train --data corpus/cache --epochs 100 --out runs/card --resume
    # fine-tune the bundled model for at most 3 minutes, decoder only
    python -m musicvae_course.train --data my_cache --init bundled --freeze-encoder \\
        --time-budget 180 --out runs/mine
    # two GPUs (or CPU processes) with DistributedDataParallel: the same command
    torchrun --nproc_per_node=2 -m musicvae_course.train --data corpus/cache --out runs/ddp

Every ``TrainConfig`` setting is a flag, generated from the dataclass (``--lr``, ``--grad-clip none``,
``--no-progress``...), with its meaning, unit and default from the field's metadata: adding a setting
there adds its flag here. Only ``--data``, ``--latent-dim``, ``--split`` and ``--debug`` are the
command's own.

The data is split by file (no piece in two splits) with ``--split`` and ``--seed``; after training, rank
0 evaluates ``best.pt`` on the test split and writes ``test_metrics.json``. A wrong flag, value or file
prints one line and exits with status 2 (a divergence: 1; Ctrl+C: 130); ``--debug`` shows the traceback.
Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import sys
from pathlib import Path

from ..core.safe_files import display_name
from .config import SettingError, TrainConfig

EXIT_USER_ERROR, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 1, 130


class _Parser(argparse.ArgumentParser):
    """argparse with one line per error (no usage block): the message says what to fix."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _number(kind: type, optional: bool):
    """An argparse type: ``kind`` from text, 'none' -> None where the setting allows it; rules are TrainConfig's."""

    def parse(text: str):
        if optional and text.strip().lower() in ("none", "off"):
            return None
        try:
            return int(text) if kind is int else float(text)
        except ValueError:
            try:  # "1e3" for an integer setting: TrainConfig accepts 1000.0 and refuses 1.5, naming the setting
                return float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None

    parse.__name__ = kind.__name__  # argparse names the type in its message
    return parse


def _flags(spec) -> tuple[str, ...]:
    """A setting's command-line spellings: the field's ``flags``, else ``--name-with-dashes``."""
    return spec.metadata.get("flags") or ("--" + spec.name.replace("_", "-"),)


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrainConfig`` field: ``--name-with-dashes`` (or the field's ``flags``), help from its metadata."""
    for spec in dataclasses.fields(TrainConfig):
        meta = spec.metadata
        if meta.get("cli") is False:
            continue
        flags = _flags(spec)
        default = f"{meta['scratch']:g} ({meta['fine_tune']:g} with --init)" if "scratch" in meta else spec.default
        unit = f" [{meta['unit']}]" if meta["unit"] else ""
        options = dict(dest=spec.name, default=spec.default, help=f"{meta['meaning']}{unit} (default {default})")
        if meta["kind"] is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif meta["kind"] in (int, float):
            options["type"] = _number(meta["kind"], meta.get("optional", False))
            options["metavar"] = "N" if meta["kind"] is int else "X"
        elif "choices" in meta:
            options["choices"] = meta["choices"]
        if meta.get("cli_required"):
            options["required"] = True
        parser.add_argument(*flags, **options)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m musicvae_course.train",
        description="Train or fine-tune the MusicVAE with the model card's recipe.",
    )
    parser.add_argument(
        "--data", required=True, help="a data cache built by musicvae_course.core.data (folder or .npz)"
    )
    parser.add_argument("--latent-dim", type=int, default=256, help="for a new model (default 256)")
    parser.add_argument(
        "--split",
        type=float,
        nargs=3,
        default=(0.8, 0.1, 0.1),
        metavar=("TRAIN", "VAL", "TEST"),
        help="fractions of files (default 0.8 0.1 0.1)",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error")
    add_setting_flags(parser)
    return parser


def _model_and_init(args, last: Path):
    """The model to train and what to start it from, as ``fit`` takes them."""
    from ..core.checkpoint import load_checkpoint, load_pretrained, model_from_checkpoint
    from ..core.model import MusicVAE

    # init is passed on resume too: the fine-tuning defaults (lr, warm-up) must resolve as they did at the start
    init = load_pretrained(None if args.init == "bundled" else args.init) if args.init else None
    if args.resume and last.is_file():  # the run's own architecture, whatever --latent-dim says
        return model_from_checkpoint(load_checkpoint(last), str(last))[0], init
    if init is not None:  # the same variant (latent size, decoder BatchNorm or not) as the weights to tune
        return MusicVAE(latent_dim=init.latent_dim, decoder_batchnorm=init.decoder_batchnorm), init
    try:
        return MusicVAE(latent_dim=args.latent_dim), None
    except ValueError as err:  # the model's own bounds (1..MAX_LATENT_DIM): a traceback for 10**8 before
        raise SettingError(f"--latent-dim: {err}") from None


def _data(args):
    """(train, val, test) from ``--data`` split by file with ``--split``; user errors as ``SettingError``."""
    import zipfile

    from ..core.data import load_dataset, split_by_file

    path = Path(args.data)
    if not path.exists():
        raise FileNotFoundError(f"--data {display_name(path)}: no such file or folder")
    try:
        dataset = load_dataset(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:  # a damaged or foreign file
        raise SettingError(
            f"--data {display_name(path)}: not a readable data cache ({type(err).__name__}: {err})"
        ) from None
    try:
        return split_by_file(dataset, fractions=tuple(args.split), seed=args.seed)
    except ValueError as err:
        said = " ".join(f"{fraction:g}" for fraction in args.split)
        raise SettingError(f"--split {said}: {str(err).split(', got')[0]}; got {said}") from None


def _train(args) -> int:
    from ..core.devices import choose_device
    from ..core.metrics import evaluate
    from ..core.seeding import seed_everything
    from ..fileio import atomic_write
    from .distributed import context_from_env
    from .loop import fit

    try:
        config = TrainConfig(**{spec.name: getattr(args, spec.name) for spec in dataclasses.fields(TrainConfig)})
    except SettingError as err:  # "lr must be > 0; got 0.0" -> "--lr: lr must be > 0; got 0.0"
        flags = {spec.name: _flags(spec)[0] for spec in dataclasses.fields(TrainConfig)}
        name = str(err).split()[0]
        raise SettingError(f"{flags[name]}: {err}" if name in flags else str(err)) from None
    out = Path(config.out_dir)
    seed_everything(config.seed)  # the same initial weights on every rank
    train, val, test = _data(args)
    model, init = _model_and_init(args, out / "last.pt")
    history = fit(model, train, val if len(val) else None, dataclasses.replace(config, init=init))
    if not context_from_env().is_main:
        return 0
    if history:
        print(
            "last epoch: "
            + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in history[-1].items())
        )
    if len(test) and (out / "best.pt").is_file():
        from ..core.checkpoint import load_pretrained

        best = load_pretrained(out / "best.pt", device=choose_device(config.device))
        table = evaluate(best, test)
        atomic_write(out / "test_metrics.json", json.dumps(dict(table), indent=1))
        print(f"best.pt on the test split ({out / 'test_metrics.json'}):\n{table}")
    return 0


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a user can cause and fix: reported in one line. Anything else is a bug and keeps its traceback."""
    from ..core.checkpoint import CheckpointError
    from .inputs import TrainingDataError
    from .run_folder import RunFolderBusy

    return (
        SettingError,
        TrainingDataError,
        CheckpointError,
        RunFolderBusy,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        IsADirectoryError,
        PermissionError,
    )


def _terminate_as_interrupt() -> None:
    """SIGTERM (``kill``, a job scheduler, torchrun stopping its workers) ends training as Ctrl+C does: ``fit``
    then writes the last complete epoch before the process ends, instead of dying mid-way."""
    import signal
    import threading

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def main(argv=None) -> int:
    """Run the command; returns the exit status (0 when training finished, 2 for a user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from .loop import TrainingDiverged

    _terminate_as_interrupt()
    try:
        return _train(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{parser.prog}: interrupted; continue with the same command and --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except TrainingDiverged as err:
        if args.debug:
            raise
        print(f"{parser.prog}: {err}", file=sys.stderr)
        return EXIT_DIVERGED
    except Exception as err:
        full_disk = isinstance(err, OSError) and err.errno == errno.ENOSPC
        if args.debug or not (full_disk or isinstance(err, _user_errors())):
            raise
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
