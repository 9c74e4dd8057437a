"""``python -m musicvae_course.corpus``: build the training corpus, the shipped samples or the held-out list."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..core.safe_files import display_name
from .build import DEFAULT_TIMEOUT_S, build_corpus, retry_failures
from .samples import build_samples
from .works import build_order, heldout_keys, limit_works, list_works, write_heldout


def _at_least_one(text: str) -> int:
    """A whole number >= 1 (``--limit -1`` dropped the last work silently; ``--timeout 0`` meant no limit at all)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def main(argv=None) -> int:
    """Run the build; 0 when done, 2 for a user error (a bad path or file: one line on stderr, no traceback)."""
    parser = argparse.ArgumentParser(
        description="Build a MIDI training corpus (and the shipped samples) from music21's bundled corpus.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, help="build the MIDI corpus into this directory")
    parser.add_argument("--samples", type=Path, help="write the redistributable samples here")
    parser.add_argument(
        "--write-heldout", type=Path, metavar="PATH", help="write the held-out list (all works) to PATH"
    )
    parser.add_argument("--workers", type=_at_least_one, default=2)
    parser.add_argument("--limit", type=_at_least_one, help="only this many works (deterministic spread)")
    parser.add_argument("--collections", nargs="+", help="corpus directories to include")
    parser.add_argument(
        "--folk-fraction", type=_share, default=1.0, help="share of the folk-tune collections to build (deterministic)"
    )
    parser.add_argument("--timeout", type=_at_least_one, default=DEFAULT_TIMEOUT_S, help="per-work time limit, seconds")
    parser.add_argument(
        "--retry-failures",
        action="store_true",
        help="with --out: retry the works in OUT/failures.csv (use a longer --timeout) and update the manifest",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if not (args.out or args.samples or args.write_heldout):
        parser.error("give --out, --samples and/or --write-heldout")
    try:
        return _run(args)
    except (ValueError, OSError) as err:  # a missing failures.csv, --out naming a file, a damaged manifest
        # the message as it is ("!r" inside the f-string's conditional quoted every message, as a repr)
        message = str(err).splitlines()[0] if str(err) else repr(err)
        print(f"python -m musicvae_course.corpus: error: {message}", file=sys.stderr)
        return 2


def _check_paths(args) -> None:
    """Refuse, before any work and naming the option, a file given for a folder and a folder given for a file
    (``[Errno 17] File exists: 'x'`` or ``[Errno 21] Is a directory``, after listing every work, named neither)."""
    for option, path in (("--out", args.out), ("--samples", args.samples)):
        if path is not None and path.exists() and not path.is_dir():
            raise ValueError(f"{option} {display_name(path)}: is a file, not a folder")
    if args.write_heldout is not None and args.write_heldout.is_dir():
        raise ValueError(f"--write-heldout {args.write_heldout}: is a folder, not a file")


def _run(args) -> int:
    _check_paths(args)
    if args.write_heldout:
        keys = heldout_keys(list_works())
        write_heldout(keys, args.write_heldout)
        print(f"held-out list: {len(keys)} works -> {args.write_heldout}")
    if args.samples:
        summary = build_samples(args.samples, workers=args.workers, timeout_s=args.timeout)
        print(f"samples: {summary.line()}")
    if args.out and args.retry_failures:
        summary = retry_failures(args.out, workers=args.workers, timeout_s=args.timeout, progress=not args.no_progress)
        print(f"retry: {summary.line()} -> {args.out}")
    elif args.out:
        works = build_order(limit_works(list_works(args.collections), args.limit, args.folk_fraction))
        summary = build_corpus(
            works, args.out, workers=args.workers, timeout_s=args.timeout, progress=not args.no_progress
        )
        print(f"corpus: {summary.line()} -> {args.out}")
        for path, number, reason in summary.failures[:20]:
            print(f"  failed: {path}{'#' + str(number) if number != '' else ''}: {reason}")
    return 0
