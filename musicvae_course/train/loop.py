"""Training and fine-tuning with the model card's recipe: ``fit``.

The settings, their defaults (the card's recipe) and rules live in ``config.TrainConfig``; the run folder's
files and when they are written in ``run_folder``; the data ``fit`` accepts in ``inputs``.

Where the card is silent, this kit chooses (and says why):

* The validation loss is -ELBO = reconstruction + KL (beta 1, no free
  bits), nats per segment. The training objective changes as beta is
  annealed; -ELBO does not, so the scheduler and ``best.pt`` compare like
  with like.
* beta is constant within an epoch: ``beta_max * min(1, epoch / beta_warmup_epochs)``
  for epoch 0, 1, ... (``beta_schedule``).
* Fine-tuning (``init=...``) defaults to lr 1e-4 and no warm-up (beta = 1
  from the start): ``config.FINE_TUNE_LR`` and ``config.FINE_TUNE_BETA_WARMUP_EPOCHS``.
* Resumable to the bit: the batch order and the reparameterisation noise of
  each epoch come from seeds derived from (seed, epoch), never from the
  global RNG's history. So a resumed run ends with the same weights as an
  uninterrupted one, and no RNG state needs to be saved.
* A non-finite loss or gradient stops training with ``TrainingDiverged``
  naming epoch, batch and term; so does a non-finite validation loss. On CPU
  every batch is checked before its optimiser step; on a GPU every
  ``check_every`` batches (checking forces a device sync). ``last.pt`` only
  ever holds the state after a clean epoch.

Files in ``out_dir`` (written by rank 0 only, each atomically): ``last.pt``
(every ``checkpoint_every_s`` seconds, at the end and on interruption, with
optimiser/scheduler/history for ``resume``), ``best.pt`` (lowest validation
loss; the card's format), ``history.json``, ``history.csv``.

Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``. Command line:
``python -m musicvae_course.train --help`` (``train.cli``).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings

import numpy as np
import torch
from torch import nn

from ..core.checkpoint import CheckpointError
from ..core.devices import choose_device, set_cpu_threads
from ..core.metrics import evaluation_sums, summarize_sums
from ..core.model import vae_loss
from ..core.seeding import derived_seed
from . import distributed
from .config import SettingError, TrainConfig, config_from_call
from .inputs import TrainingDataError, load_weights, training_data
from .run_folder import RunFolder

__all__ = ["fit", "beta_schedule", "TrainingDiverged", "ENCODER_PARTS"]

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


class _LogitsForward(nn.Module):
    """Routes ``forward`` to ``forward_logits``: DDP only syncs gradients through ``forward``."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, x):
        return self.vae.forward_logits(x)


def fit(model, train, val=None, config: TrainConfig | int | None = None, **overrides) -> list[dict]:
    """Train ``model`` on ``train`` with the card's recipe; return the per-epoch history.

    Args:
        model: a ``MusicVAE``; trained in place and left in eval mode on the chosen device.
        train, val: ``data.PianoRollDataset`` of ``(N, 88, 32)`` segments, or such rolls as an array or tensor
            (0/1, or probabilities in [0, 1] binarised at 0.5; NaN and infinity refused: ``inputs``). ``val``
            optional (then the scheduler and ``best.pt`` watch the training -ELBO).
        config: a ``TrainConfig`` (default: the card's recipe). An int is read as ``epochs``.
        **overrides: any ``TrainConfig`` setting by name, e.g. ``epochs=10, lr=1e-4, out_dir="runs/a"``; an
            unknown name raises ``UnknownSettingError`` listing the valid ones. See ``TrainConfig`` for every
            setting, its default, unit and rule.

    Returns:
        History: one dict per epoch with ``epoch, beta, lr, loss`` (objective),
        ``reconstruction, kl, neg_elbo`` (nats per segment), ``grad_norm``,
        ``val_loss`` (-ELBO), ``val_reconstruction, val_kl, val_frame_f1,
        val_onset_f1, val_active_units``, ``samples, samples_per_s, seconds``.

    Raises:
        SettingError: a setting outside its rule (named, with its value). TrainingDataError: empty data, NaN,
        infinity or values outside [0, 1]. FileExistsError: ``out_dir`` holds a run and neither ``resume`` nor
        ``overwrite`` is set. RunFolderBusy: another run uses ``out_dir``.
        TrainingDiverged: NaN/inf loss or gradient (epoch, batch and term named), or NaN/inf validation loss.

    Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
    """
    config = config_from_call(config, overrides)
    train = training_data(train, "train")
    val = training_data(val, "val") if val is not None else None
    context = distributed.context_from_env()
    if config.batch_size < context.world_size:
        raise SettingError(f"batch_size {config.batch_size} is smaller than the {context.world_size} processes")
    device = _device(config.device, context.local_rank)
    if device.type == "cpu":
        set_cpu_threads(config.threads, processes=context.world_size)
    elif device.type == "cuda":
        torch.cuda.set_device(device)
    created = distributed.start(context, device)
    settings = dict(config.recipe(), world_size=context.world_size, precision=_precision(config.precision, device))
    folder = RunFolder(config.out_dir, config.checkpoint_every_s, settings, writes=context.is_main)
    try:
        run = _Run(model, train, val, context, device, config.resolved(), settings, folder)
        return run.run()
    finally:
        folder.close()
        distributed.stop(created)


class _Run:
    """One call of ``fit``: the state its epochs share."""

    def __init__(self, model, train, val, context, device, config: TrainConfig, settings: dict, folder: RunFolder):
        self.model, self.context, self.device, self.config = model, context, device, config
        self.settings, self.folder = settings, folder  # settings: recorded in checkpoints, compared on resume
        self.amp_dtype = torch.bfloat16 if settings["precision"] == "bf16" else None
        self.check_every = config.check_every or (1 if device.type == "cpu" else 25)
        checkpoint = folder.open(config.resume, config.overwrite)  # first: a busy or used folder fails fast
        if config.init is not None and checkpoint is None:
            load_weights(model, config.init)
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
            if config.freeze_encoder and p.requires_grad
        ]
        for parameter in self.frozen:  # until fit returns: a later fit trains them again
            parameter.requires_grad_(False)
        self.params = [p for p in model.parameters() if p.requires_grad]
        # fused: one kernel for all parameters on CUDA (batch 256 is launch-bound there)
        self.optimizer = torch.optim.Adam(self.params, lr=config.lr, fused=device.type == "cuda" or None)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience, min_lr=config.min_lr
        )
        self.net = distributed.wrap(_LogitsForward(model), context, device)
        self.history, self.best, self.best_epoch, self.samples_seen, self.start_epoch = [], math.inf, None, 0, 0
        if checkpoint is not None:
            self._restore(checkpoint)

    def _restore(self, checkpoint: dict) -> None:
        last = self.folder.path / "last.pt"
        changed = {
            k: (checkpoint["config"].get(k), v)
            for k, v in self.settings.items()
            if k != "epochs" and checkpoint["config"].get(k, v) != v
        }
        hardware = {k: changed.pop(k) for k in _HARDWARE_SETTINGS if k in changed}
        if changed:
            raise SettingError(f"{last}: resume with the settings it was started with; changed (file, now): {changed}")
        if hardware:
            warnings.warn(
                f"{last}: resuming with other hardware settings {hardware} (file, "
                "now): training continues, but not bit for bit as it would have",
                stacklevel=5,
            )
        state = checkpoint["training_state"]
        self.model.load_state_dict(checkpoint["model_state"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (ValueError, KeyError, TypeError) as err:  # a state of another run or a hand-made one
            raise CheckpointError(f"{last}: its optimizer or scheduler state does not fit this model ({err})") from None
        for parameter in self.params:  # Adam's moments of another shape failed only at the first step
            for name, value in self.optimizer.state.get(parameter, {}).items():
                if torch.is_tensor(value) and value.dim() and value.shape != parameter.shape:
                    raise CheckpointError(
                        f"{last}: the optimizer's {name} has shape {tuple(value.shape)} for a parameter of shape "
                        f"{tuple(parameter.shape)}: not this model's run"
                    )
        self.history = list(state["history"])
        self.samples_seen, self.start_epoch = int(state["samples_seen"]), int(state["epoch"])
        self.best = self.folder.check_best(self.model, checkpoint)
        self.best_epoch = state.get("best_epoch")

    def run(self) -> list[dict]:
        from tqdm.auto import tqdm

        epochs = self.config.epochs
        self.stop_reason, self.started = None, time.perf_counter()
        local = len(self.train) // self.context.world_size if self.context.enabled else len(self.train)
        self.local_batch = self.config.batch_size // self.context.world_size
        self.n_batches = math.ceil(local / self.local_batch)
        self.bar = tqdm(
            total=max(0, epochs - self.start_epoch) * self.n_batches,
            unit="batch",
            disable=not (self.config.progress and self.context.is_main),
        )
        try:
            for epoch in range(self.start_epoch, epochs):
                epoch_start = time.perf_counter()
                row = self._train_epoch(epoch)
                if self.val is not None:
                    row.update(self._validate(epoch))
                row["seconds"] = time.perf_counter() - epoch_start  # training + validation
                self.scheduler.step(row.get("val_loss", row["neg_elbo"]))
                self.history.append(row)
                self.bar.set_postfix(
                    epoch=epoch + 1, loss=f"{row['loss']:.1f}", val_f1=f"{row.get('val_frame_f1', math.nan):.3f}"
                )
                self._save(row, final=bool(self.stop_reason) or epoch + 1 == epochs)
                if self.stop_reason:
                    break
        except BaseException:
            self.folder.flush()  # the last complete epoch, if it was not written yet (Ctrl+C, divergence)
            raise
        finally:
            self.bar.close()
            self.model.eval()
            for parameter in self.frozen:
                parameter.requires_grad_(True)
        return self.history

    def _epoch_batches(self, epoch: int):
        order = torch.Generator().manual_seed(derived_seed(self.config.seed, epoch, _ORDER))
        if not self.context.enabled:
            return self.train.batches(self.local_batch, shuffle=True, generator=order, device=self.device)
        indices = distributed.shard(torch.randperm(len(self.train), generator=order), self.context)
        return self.train.subset(indices.numpy()).batches(self.local_batch, shuffle=False, device=self.device)

    def _train_epoch(self, epoch: int) -> dict:
        config = self.config
        beta = beta_schedule(epoch, config.beta_warmup_epochs, config.beta_max)
        lr = self.optimizer.param_groups[0]["lr"]
        torch.manual_seed(derived_seed(config.seed, epoch, _NOISE, self.context.rank))
        self.net.train()
        if config.freeze_encoder:  # frozen encoder keeps its BatchNorm statistics too
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
            loss, reconstruction, kl = vae_loss(logits, x, mu, log_var, beta, config.free_bits)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # grad_clip None: no clipping, but the norm is still measured (the NaN guard and the history read it)
            grad_norm = nn.utils.clip_grad_norm_(self.params, config.grad_clip or math.inf)
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
            if config.max_samples and self.samples_seen >= config.max_samples:
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
        budget = self.config.time_budget_s
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
                f"{self.folder.path / 'last.pt'} (after epoch {len(self.history)})"
                if self.folder.path is not None and self.history
                else "none written yet"
            )
            raise TrainingDiverged(
                f"training diverged in epoch {epoch + 1}, batch {batch + 1} of {self.n_batches}: "
                f"{term} is {values[term]} (values: {values}). Last good checkpoint: {last}. "
                f"Try a lower lr (now {self.optimizer.param_groups[0]['lr']:g}) or grad_clip."
            )
        return stop

    def _validate(self, epoch: int) -> dict:
        shard = self.val
        if self.context.enabled:  # each rank evaluates every world_size-th segment
            rank, world = self.context.rank, self.context.world_size
            shard = self.val.subset(np.arange(rank, len(self.val), world))
        try:
            totals = evaluation_sums(
                self.model,
                shard.batches(self.local_batch * 4, shuffle=False, device=self.device),
                seed=self.config.seed,
                amp_dtype=self.amp_dtype,
            )
        except ValueError as err:  # the model refuses a batch (NaN, values outside [0, 1]): say it is val's
            raise TrainingDataError(f"val: {err}") from None
        table = summarize_sums(distributed.all_reduce_sum(totals, self.context), self.model.latent_dim)
        if not math.isfinite(table["neg_elbo"]):  # else no best.pt and a scheduler fed NaN, silently
            raise TrainingDiverged(
                f"validation -ELBO is {table['neg_elbo']} after epoch {epoch + 1} (reconstruction "
                f"{table['reconstruction']}, KL {table['kl']}): the model's outputs overflow on the validation "
                "data in eval mode. Last good checkpoint: "
                + (f"{self.folder.path / 'last.pt'} (after epoch {len(self.history)})" if self.history else "none")
            )
        return {
            "val_loss": table["neg_elbo"],
            "val_reconstruction": table["reconstruction"],
            "val_kl": table["kl"],
            "val_frame_f1": table["frame_f1"],
            "val_onset_f1": table["onset_f1"],
            "val_active_units": table["active_units"],
        }

    def _save(self, row: dict, final: bool) -> None:
        score = row.get("val_loss", row["neg_elbo"])
        improved = score < self.best
        if improved:
            self.best, self.best_epoch = score, row["epoch"]
        state = {
            "epoch": row["epoch"],
            "history": self.history,
            "best_val_loss": self.best,
            "best_epoch": self.best_epoch,
            "samples_seen": self.samples_seen,
        }
        self.folder.epoch_end(self.model, self.optimizer, self.scheduler, state, improved, final)


def _device(name, local_rank: int) -> torch.device:
    """``devices.choose_device``, with a ``SettingError`` for a name torch does not know or a device not here."""
    try:
        device = choose_device(name, local_rank)
    except RuntimeError:  # torch's message lists twenty device types: ours names the usual ones
        raise SettingError(f"device {name!r} is not a device name such as 'cpu', 'cuda', 'cuda:1' or 'mps'") from None
    mps = getattr(torch.backends, "mps", None)
    present = {"cuda": torch.cuda.is_available, "mps": lambda: bool(mps and mps.is_available())}
    if device.type in present and not present[device.type]():
        raise SettingError(f"device {name!r}: this machine (torch {torch.__version__}) has no {device.type} device")
    return device


def _precision(precision: str, device: torch.device) -> str:
    """ "auto" -> bf16 autocast on CUDA (where supported), fp32 elsewhere; the others as given (checked by config)."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return precision
