"""Training and fine-tuning with the model card's recipe: ``fit``.

The card's recipe (the defaults): batch 256, Adam lr 1e-3, BCE reconstruction
+ beta * KL with free bits 0.5 nats per latent dimension, beta 0 -> 1
linearly over 50 epochs, gradient-norm clip 1.0, ReduceLROnPlateau(patience
10, factor 0.5, min_lr 1e-5) on the validation loss, 100 epochs.

Where the card is silent, this kit chooses (and says why):

* The validation loss is -ELBO = reconstruction + KL (beta 1, no free
  bits), nats per segment. The training objective changes as beta is
  annealed; -ELBO does not, so the scheduler and ``best.pt`` compare like
  with like.
* beta is constant within an epoch: ``beta_max * min(1, epoch / beta_warmup_epochs)``
  for epoch 0, 1, ... (``beta_schedule``).
* Fine-tuning (``init=...``) defaults to lr 1e-4 and no warm-up (beta = 1
  from the start): a pretrained model already sits at beta = 1, and beta = 0
  would undo its latent space.
* Resumable to the bit: the batch order and the reparameterisation noise of
  each epoch come from seeds derived from (seed, epoch), never from the
  global RNG's history. So a resumed run ends with the same weights as an
  uninterrupted one, and no RNG state needs to be saved.
* A non-finite loss or gradient stops training with ``TrainingDiverged``
  naming epoch, batch and term. On CPU every batch is checked before its
  optimiser step; on a GPU every ``check_every`` batches (checking forces a
  device sync). ``last.pt`` is only ever written after a clean epoch.

Files in ``out_dir`` (written by rank 0 only, each atomically): ``last.pt``
(every epoch, with optimiser/scheduler/history for ``resume``), ``best.pt``
(lowest validation loss; the card's format), ``history.json``, ``history.csv``.

Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``. Command line:
``python -m musicvae_course.train --help`` (see ``train_cli``).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.checkpoint import load_checkpoint, match_state_dict, save_checkpoint
from ..core.devices import choose_device, set_cpu_threads
from ..core.metrics import evaluation_sums, summarize_sums
from ..core.model import vae_loss
from ..core.seeding import DEFAULT_SEED, derived_seed
from . import distributed
from .history import save_history

__all__ = ["fit", "beta_schedule", "load_weights", "TrainingDiverged", "FINE_TUNE_LR", "ENCODER_PARTS"]

FINE_TUNE_LR = 1e-4  #: default learning rate when ``init`` is given
ENCODER_PARTS = ("encoder", "fc_mu", "fc_log_var")  #: submodules ``freeze_encoder`` freezes
_TERMS = ("loss", "reconstruction", "kl", "grad_norm")  # columns of the per-batch record
_ORDER, _NOISE = 1, 2  # streams of derived seeds
_HARDWARE_SETTINGS = ("world_size", "precision")  # may change on resume (with a warning)


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or infinite; the message says where."""


def beta_schedule(epoch: int, warmup_epochs: int, beta_max: float = 1.0) -> float:
    """KL weight for an epoch (0-based): linear from 0 at epoch 0 to ``beta_max`` at ``warmup_epochs``.

    ``warmup_epochs = 0`` means ``beta_max`` from the start.
    """
    if warmup_epochs <= 0:
        return float(beta_max)
    return float(beta_max) * min(1.0, epoch / warmup_epochs)


def load_weights(model: nn.Module, init) -> None:
    """Load ``init`` (checkpoint path, loaded checkpoint dict, state dict or model) into ``model``.

    Names that differ from ours are matched by architecture order and shape
    (``checkpoint.match_state_dict``), which names every tensor that does not fit.
    """
    if isinstance(init, nn.Module):
        state, source = init.state_dict(), type(init).__name__
    elif isinstance(init, dict):
        state, source = init.get("model_state", init), "init"
    else:
        state, source = load_checkpoint(init)["model_state"], str(init)
    mapped, _, _ = match_state_dict(model, state, source)
    model.load_state_dict(mapped)


class _LogitsForward(nn.Module):
    """Routes ``forward`` to ``forward_logits``: DDP only syncs gradients through ``forward``."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, x):
        return self.vae.forward_logits(x)


def fit(
    model,
    train,
    val=None,
    epochs: int = 100,
    *,
    out_dir=None,
    batch_size: int = 256,
    lr: float | None = None,
    beta_warmup_epochs: int | None = None,
    beta_max: float = 1.0,
    free_bits: float = 0.5,
    grad_clip: float = 1.0,
    lr_patience: int = 10,
    lr_factor: float = 0.5,
    min_lr: float = 1e-5,
    seed: int = DEFAULT_SEED,
    resume: bool = False,
    overwrite: bool = False,
    init=None,
    freeze_encoder: bool = False,
    device=None,
    threads: int | None = None,
    precision: str = "auto",
    max_samples: int | None = None,
    time_budget_s: float | None = None,
    progress: bool = True,
    check_every: int | None = None,
) -> list[dict]:
    """Train ``model`` on ``train`` with the card's recipe; return the per-epoch history.

    Args:
        model: a ``MusicVAE``; trained in place and left in eval mode on ``device``.
        train, val: ``data.PianoRollDataset`` of ``(N, 88, 32)`` segments; ``val``
            optional (then the scheduler watches the training -ELBO).
        epochs: total epochs (with ``resume``: including those already done).
        out_dir: run folder for checkpoints and history; None writes nothing.
        batch_size: segments per optimiser step, over all processes under torchrun.
        lr: Adam's learning rate (default 1e-3, or ``FINE_TUNE_LR`` with ``init``).
        beta_warmup_epochs: epochs for beta 0 -> ``beta_max`` (default 50, or 0 with ``init``).
        free_bits: nats per latent dimension below which KL is not pushed down.
        grad_clip: max gradient norm. lr_patience, lr_factor, min_lr: ReduceLROnPlateau.
        seed: fixes initial batch order and noise (see module docstring).
        resume: continue from ``out_dir/last.pt`` if it exists.
        overwrite: allow starting afresh in an ``out_dir`` that already holds ``last.pt``.
        init: weights to start from (path, checkpoint dict or model): fine-tuning.
        freeze_encoder: train only the decoder (encoder weights and BatchNorm statistics kept).
        device: default CUDA, else MPS, else CPU. On CUDA the data is moved to the GPU.
        threads: CPU threads (default ``devices.default_cpu_threads()``); ignored on GPU.
        precision: "auto" (bf16 autocast on CUDA, fp32 elsewhere), "bf16" or "fp32".
        max_samples, time_budget_s: stop early after this many training segments or
            seconds; the last epoch is then partial (recorded, saved, but not resumable exactly).
        progress: show a tqdm bar (a widget in notebooks). check_every: batches between
            NaN checks (default 1 on CPU, 25 elsewhere).

    Returns:
        History: one dict per epoch with ``epoch, beta, lr, loss`` (objective),
        ``reconstruction, kl, neg_elbo`` (nats per segment), ``grad_norm``,
        ``val_loss`` (-ELBO), ``val_reconstruction, val_kl, val_frame_f1,
        val_onset_f1, val_active_units``, ``samples, samples_per_s, seconds``.

    Raises:
        TrainingDiverged: NaN/inf loss or gradient (epoch, batch and term named).

    Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
    """
    options = dict(locals())  # the arguments, recorded before anything else is defined
    context = distributed.context_from_env()
    device = choose_device(device, context.local_rank)
    if device.type == "cpu":
        set_cpu_threads(threads, processes=context.world_size)
    elif device.type == "cuda":
        torch.cuda.set_device(device)
    created = distributed.start(context, device)
    try:
        run = _Run(model, train, val, context, device, options)
        return run.run(epochs)
    finally:
        distributed.stop(created)


class _Run:
    """One call of ``fit``: the state its epochs share."""

    def __init__(self, model, train, val, context, device, args):
        if len(train) == 0:
            raise ValueError("train: the training set is empty")
        if val is not None and len(val) == 0:
            raise ValueError("val: the validation set is empty (pass val=None to train without one)")
        if args["batch_size"] < context.world_size:
            raise ValueError(f"batch_size {args['batch_size']} is smaller than the {context.world_size} processes")
        fine_tune = args["init"] is not None
        self.settings = dict(
            epochs=int(args["epochs"]),
            batch_size=int(args["batch_size"]),
            lr=float(args["lr"] if args["lr"] is not None else FINE_TUNE_LR if fine_tune else 1e-3),
            beta_warmup_epochs=int(
                args["beta_warmup_epochs"] if args["beta_warmup_epochs"] is not None else 0 if fine_tune else 50
            ),
            beta_max=float(args["beta_max"]),
            free_bits=float(args["free_bits"]),
            grad_clip=float(args["grad_clip"]),
            lr_patience=int(args["lr_patience"]),
            lr_factor=float(args["lr_factor"]),
            min_lr=float(args["min_lr"]),
            seed=int(args["seed"]),
            freeze_encoder=bool(args["freeze_encoder"]),
            world_size=context.world_size,
            precision=_precision(args["precision"], device),
        )
        self.model, self.context, self.device, self.args = model, context, device, args
        self.out_dir = Path(args["out_dir"]) if args["out_dir"] is not None else None
        self.amp_dtype = torch.bfloat16 if self.settings["precision"] == "bf16" else None
        self.check_every = int(args["check_every"] or (1 if device.type == "cpu" else 25))
        if fine_tune:
            load_weights(model, args["init"])
        model.to(device)
        if device.type == "cuda":  # NHWC convolutions: measured 2x at large batches with bf16
            model.to(memory_format=torch.channels_last)
            train = train.to(device)
            val = val.to(device) if val is not None else None
        self.train, self.val = train, val
        self.frozen = [
            p
            for part in ENCODER_PARTS
            for p in getattr(model, part).parameters()
            if self.settings["freeze_encoder"] and p.requires_grad
        ]
        for parameter in self.frozen:  # until fit returns: a later fit trains them again
            parameter.requires_grad_(False)
        self.params = [p for p in model.parameters() if p.requires_grad]
        # fused: one kernel for all parameters on CUDA (batch 256 is launch-bound there)
        self.optimizer = torch.optim.Adam(self.params, lr=self.settings["lr"], fused=device.type == "cuda" or None)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            mode="min",
            factor=self.settings["lr_factor"],
            patience=self.settings["lr_patience"],
            min_lr=self.settings["min_lr"],
        )
        self.net = distributed.wrap(_LogitsForward(model), context, device)
        self.history, self.best, self.samples_seen, self.start_epoch = [], math.inf, 0, 0
        self._restore_or_check_out_dir()

    def _restore_or_check_out_dir(self):
        last = self.out_dir / "last.pt" if self.out_dir is not None else None
        if self.args["resume"] and last is None:
            raise ValueError("resume=True needs out_dir (the run folder holding last.pt)")
        if last is None or not last.is_file():
            return
        if not self.args["resume"]:
            if self.args["overwrite"]:
                return
            raise FileExistsError(
                f"{self.out_dir} already holds a run (last.pt): pass "
                "resume=True to continue it, overwrite=True to start again, "
                "or choose another out_dir"
            )
        checkpoint = load_checkpoint(last)
        state = checkpoint.get("training_state")
        if not state:
            raise ValueError(f"{last}: has no training state to resume from")
        changed = {
            k: (checkpoint["config"].get(k), v)
            for k, v in self.settings.items()
            if k != "epochs" and checkpoint["config"].get(k, v) != v
        }
        hardware = {k: changed.pop(k) for k in _HARDWARE_SETTINGS if k in changed}
        if changed:
            raise ValueError(f"{last}: resume with the settings it was started with; changed (file, now): {changed}")
        if hardware:
            warnings.warn(
                f"{last}: resuming with other hardware settings {hardware} (file, "
                "now): training continues, but not bit for bit as it would have",
                stacklevel=4,
            )
        self.model.load_state_dict(checkpoint["model_state"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.history, self.best = list(state["history"]), float(state["best_val_loss"])
        self.samples_seen, self.start_epoch = int(state["samples_seen"]), int(state["epoch"])

    def run(self, epochs: int) -> list[dict]:
        from tqdm.auto import tqdm

        self.stop_reason, self.started = None, time.perf_counter()
        local = len(self.train) // self.context.world_size if self.context.enabled else len(self.train)
        self.local_batch = self.settings["batch_size"] // self.context.world_size
        self.n_batches = math.ceil(local / self.local_batch)
        self.bar = tqdm(
            total=max(0, epochs - self.start_epoch) * self.n_batches,
            unit="batch",
            disable=not (self.args["progress"] and self.context.is_main),
        )
        try:
            for epoch in range(self.start_epoch, epochs):
                epoch_start = time.perf_counter()
                row = self._train_epoch(epoch)
                if self.val is not None:
                    row.update(self._validate())
                row["seconds"] = time.perf_counter() - epoch_start  # training + validation
                self.scheduler.step(row.get("val_loss", row["neg_elbo"]))
                self.history.append(row)
                self.bar.set_postfix(
                    epoch=epoch + 1, loss=f"{row['loss']:.1f}", val_f1=f"{row.get('val_frame_f1', math.nan):.3f}"
                )
                self._save(row)
                if self.stop_reason:
                    break
        finally:
            self.bar.close()
            self.model.eval()
            for parameter in self.frozen:
                parameter.requires_grad_(True)
        return self.history

    def _epoch_batches(self, epoch: int):
        order = torch.Generator().manual_seed(derived_seed(self.settings["seed"], epoch, _ORDER))
        if not self.context.enabled:
            return self.train.batches(self.local_batch, shuffle=True, generator=order, device=self.device)
        indices = distributed.shard(torch.randperm(len(self.train), generator=order), self.context)
        return self.train.subset(indices.numpy()).batches(self.local_batch, shuffle=False, device=self.device)

    def _train_epoch(self, epoch: int) -> dict:
        settings = self.settings
        beta = beta_schedule(epoch, settings["beta_warmup_epochs"], settings["beta_max"])
        lr = self.optimizer.param_groups[0]["lr"]
        torch.manual_seed(derived_seed(settings["seed"], epoch, _NOISE, self.context.rank))
        self.net.train()
        if settings["freeze_encoder"]:  # frozen encoder keeps its BatchNorm statistics too
            for part in ENCODER_PARTS:
                getattr(self.model, part).eval()
        record = torch.zeros(self.n_batches, len(_TERMS), device=self.device)
        sizes, checked, start = [], 0, time.perf_counter()
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()
        )
        for i, x in enumerate(self._epoch_batches(epoch)):
            with autocast:
                logits, mu, log_var = self.net(x)
            loss, reconstruction, kl = vae_loss(logits, x, mu, log_var, beta, settings["free_bits"])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(self.params, settings["grad_clip"])
            torch.stack(
                [loss.detach(), reconstruction.detach(), kl.detach(), grad_norm.float()], out=record[i]
            )  # one kernel, no sync: read at the checks
            sizes.append(len(x))
            if (i + 1) % self.check_every == 0:  # before the step: a bad batch never lands
                checked = self._check(record, checked, i + 1, epoch)
                if self._out_of_time():
                    self.stop_reason = "time_budget_s"
            self.optimizer.step()
            self.samples_seen += len(x) * self.context.world_size
            self.bar.update(1)
            if self.args["max_samples"] and self.samples_seen >= self.args["max_samples"]:
                self.stop_reason = "max_samples"
            if self.stop_reason:
                break
        self._check(record, checked, len(sizes), epoch)
        distributed.average_buffers(self.model, self.context)
        weights = torch.tensor(sizes, device=self.device, dtype=record.dtype)
        totals = torch.cat([weights @ record[: len(sizes)], weights.sum().reshape(1)])
        totals = distributed.all_reduce_sum(totals.double(), self.context).tolist()
        seconds = time.perf_counter() - start  # training steps only
        means = {term: totals[k] / totals[-1] for k, term in enumerate(_TERMS)}
        return {
            "epoch": epoch + 1,
            "beta": beta,
            "lr": lr,
            **means,
            "neg_elbo": means["reconstruction"] + means["kl"],
            "samples": int(totals[-1]),
            "samples_per_s": totals[-1] / seconds,
            **({"stopped_early": self.stop_reason} if self.stop_reason else {}),
        }

    def _out_of_time(self) -> bool:
        budget = self.args["time_budget_s"]
        if budget is None:
            return False
        return distributed.any_rank(time.perf_counter() - self.started > budget, self.context, self.device)

    def _check(self, record: torch.Tensor, start: int, stop: int, epoch: int) -> int:
        """Raise ``TrainingDiverged`` if batches ``start:stop`` hold a non-finite value."""
        bad = ~torch.isfinite(record[start:stop]).all(dim=1)
        if bool(bad.any()):
            batch = start + int(bad.nonzero()[0])
            values = dict(zip(_TERMS, record[batch].tolist()))
            # name the cause: a loss term before the total, the total before the gradient
            term = next(t for t in ("reconstruction", "kl", "loss", "grad_norm") if not math.isfinite(values[t]))
            last = (
                f"{self.out_dir / 'last.pt'} (after epoch {len(self.history)})"
                if self.out_dir is not None and self.history
                else "none written yet"
            )
            raise TrainingDiverged(
                f"training diverged in epoch {epoch + 1}, batch {batch + 1} of {self.n_batches}: "
                f"{term} is {values[term]} (values: {values}). Last good checkpoint: {last}. "
                f"Try a lower lr (now {self.optimizer.param_groups[0]['lr']:g}) or grad_clip."
            )
        return stop

    def _validate(self) -> dict:
        shard = self.val
        if self.context.enabled:  # each rank evaluates every world_size-th segment
            rank, world = self.context.rank, self.context.world_size
            shard = self.val.subset(np.arange(rank, len(self.val), world))
        totals = evaluation_sums(
            self.model,
            shard.batches(self.local_batch * 4, shuffle=False, device=self.device),
            seed=self.settings["seed"],
            amp_dtype=self.amp_dtype,
        )
        table = summarize_sums(distributed.all_reduce_sum(totals, self.context), self.model.latent_dim)
        return {
            "val_loss": table["neg_elbo"],
            "val_reconstruction": table["reconstruction"],
            "val_kl": table["kl"],
            "val_frame_f1": table["frame_f1"],
            "val_onset_f1": table["onset_f1"],
            "val_active_units": table["active_units"],
        }

    def _save(self, row: dict) -> None:
        if self.out_dir is None or not self.context.is_main:
            return
        improved = row.get("val_loss", row["neg_elbo"]) < self.best
        self.best = min(self.best, row.get("val_loss", row["neg_elbo"]))
        state = {
            "epoch": row["epoch"],
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": self.history,
            "best_val_loss": self.best,
            "samples_seen": self.samples_seen,
        }
        save_checkpoint(self.model, self.out_dir / "last.pt", training_state=state, **self.settings)
        if improved:
            save_checkpoint(
                self.model,
                self.out_dir / "best.pt",
                training_state={"epoch": row["epoch"], "val_loss": self.best},
                **self.settings,
            )
        save_history(self.history, self.out_dir)


def _precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    return precision


if __name__ == "__main__":
    from .cli import main

    raise SystemExit(main())
