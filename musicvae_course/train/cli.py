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

The data is split by file (no piece in two splits) with ``--split`` and
``--seed``; after training, rank 0 evaluates ``best.pt`` on the test split and
writes ``test_metrics.json``. Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.seeding import DEFAULT_SEED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m musicvae_course.train",
        description="Train or fine-tune the MusicVAE with the model card's recipe.",
    )
    parser.add_argument(
        "--data", required=True, help="a data cache built by musicvae_course.core.data (folder or .npz)"
    )
    parser.add_argument("--out", required=True, help="run folder: last.pt, best.pt, history")
    parser.add_argument("--epochs", type=int, default=100, help="total epochs (default 100)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--overwrite", action="store_true", help="start again in a used OUT")
    parser.add_argument("--init", help="fine-tune from: a checkpoint path, 'bundled' or 'hub'")
    parser.add_argument("--freeze-encoder", action="store_true", help="train the decoder only")
    parser.add_argument("--latent-dim", type=int, default=256, help="for a new model (default 256)")
    parser.add_argument("--batch-size", type=int, default=256, help="global batch (default 256)")
    parser.add_argument("--lr", type=float, help="default 1e-3, or 1e-4 with --init")
    parser.add_argument(
        "--beta-warmup-epochs", type=int, help="epochs of beta 0 -> beta-max (default 50, or 0 with --init)"
    )
    parser.add_argument("--beta-max", type=float, default=1.0)
    parser.add_argument("--free-bits", type=float, default=0.5, help="nats per latent dimension")
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--lr-patience", type=int, default=10)
    parser.add_argument("--lr-factor", type=float, default=0.5)
    parser.add_argument("--min-lr", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--split",
        type=float,
        nargs=3,
        default=(0.8, 0.1, 0.1),
        metavar=("TRAIN", "VAL", "TEST"),
        help="fractions of files",
    )
    parser.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: the best there is)")
    parser.add_argument("--threads", type=int, help="CPU threads per process")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    parser.add_argument("--max-samples", type=int, help="stop after this many training segments")
    parser.add_argument("--time-budget", type=float, help="stop after this many seconds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _model_and_init(args, last: Path):
    """The model to train and what to start it from, as ``fit`` takes them."""
    from ..core.checkpoint import load_checkpoint, load_pretrained
    from ..core.model import MusicVAE

    if args.resume and last.is_file():  # the run's own size, whatever --latent-dim says
        return MusicVAE(latent_dim=load_checkpoint(last)["config"]["latent_dim"]), None
    if args.init:
        pretrained = load_pretrained(None if args.init == "bundled" else args.init)
        return MusicVAE(latent_dim=pretrained.latent_dim), pretrained
    return MusicVAE(latent_dim=args.latent_dim), None


def main(argv=None) -> int:
    """Run the command; returns the exit status (0 when training finished)."""
    args = build_parser().parse_args(argv)
    from ..core.data import load_dataset, split_by_file
    from ..core.devices import choose_device
    from ..core.metrics import evaluate
    from ..core.seeding import seed_everything
    from .distributed import context_from_env
    from .loop import fit

    out = Path(args.out)
    seed_everything(args.seed)  # the same initial weights on every rank
    train, val, test = split_by_file(load_dataset(args.data), fractions=tuple(args.split), seed=args.seed)
    model, init = _model_and_init(args, out / "last.pt")
    history = fit(
        model,
        train,
        val if len(val) else None,
        args.epochs,
        out_dir=out,
        batch_size=args.batch_size,
        lr=args.lr,
        beta_warmup_epochs=args.beta_warmup_epochs,
        beta_max=args.beta_max,
        free_bits=args.free_bits,
        grad_clip=args.grad_clip,
        lr_patience=args.lr_patience,
        lr_factor=args.lr_factor,
        min_lr=args.min_lr,
        seed=args.seed,
        resume=args.resume,
        overwrite=args.overwrite,
        init=init,
        freeze_encoder=args.freeze_encoder,
        device=args.device,
        threads=args.threads,
        precision=args.precision,
        max_samples=args.max_samples,
        time_budget_s=args.time_budget,
        progress=not args.no_progress,
    )
    if not context_from_env().is_main:
        return 0
    if history:
        print(
            "last epoch: "
            + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in history[-1].items())
        )
    if len(test) and (out / "best.pt").is_file():
        from ..core.checkpoint import load_pretrained

        best = load_pretrained(out / "best.pt", device=choose_device(args.device))
        table = evaluate(best, test)
        (out / "test_metrics.json").write_text(json.dumps(dict(table), indent=1))
        print(f"best.pt on the test split ({out / 'test_metrics.json'}):\n{table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
