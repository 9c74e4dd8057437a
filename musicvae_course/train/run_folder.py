"""The run folder of one ``fit`` call: ``last.pt``, ``best.pt``, ``history.json``/``.csv``.

Rules, and why:

* **One run at a time.** ``fit`` holds a lock on ``.fit.lock`` in the folder (``filelock``: released when the
  process ends, however it ends); a second ``fit`` on the same folder fails at once with ``RunFolderBusy``.
  Under the lock, temp files that killed saves left (``.last.pt.<random>.tmp`` and the like) are removed.
* **``last.pt`` by time, not by epoch.** Writing ``last.pt`` (weights + Adam state, ~40 MB for the card's
  model) every epoch cost 13-16% of a GPU run. It is written when ``checkpoint_every_s`` seconds have passed
  since the last save, at the end of ``fit``, and when training stops by an exception (Ctrl+C, divergence):
  then the state after the last *complete* epoch is written, kept in memory as a copy since the epoch ended,
  so a resumed run still ends with the same weights as an uninterrupted one.
* **``best.pt`` before ``last.pt``.** Each save writes the pending best weights (if the best epoch changed)
  first, then ``last.pt``, then the history. ``last.pt`` records which epoch ``best.pt`` holds
  (``best_epoch``). A kill between the two writes leaves ``best.pt`` at an epoch after ``last.pt``; resuming
  repeats those epochs bit for bit and writes the same best again. A ``best.pt`` older than ``last.pt`` says
  (written by an older kit, or deleted) is repaired on resume when ``last.pt`` holds the best weights itself,
  and reported otherwise.

Only rank 0 writes (under torchrun). Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
"""

from __future__ import annotations

import copy
import errno
import math
import os
import re
import time
import warnings
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from ..core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..core.safe_files import check_place_for_file, display_name
from .config import SettingError
from .history import save_history

__all__ = ["RunFolder", "RunFolderBusy", "RUN_FILES"]

RUN_FILES = ("last.pt", "best.pt", "history.json", "history.csv", "test_metrics.json")
_STALE_TEMP = re.compile(r"^\.(%s)\..+\.tmp$" % "|".join(re.escape(name) for name in RUN_FILES))


class RunFolderBusy(RuntimeError):
    """Another ``fit`` (or training command) is using this run folder now."""


class RunFolder:
    """Checkpoints and history of one run; a no-op when ``path`` is None or on ranks other than 0.

    Args:
        path: the run folder (``out_dir``), created if needed; None: nothing is written.
        every_s: ``checkpoint_every_s``, least seconds between two saves of ``last.pt``.
        config: plain values recorded in every checkpoint's ``config`` (the recipe, world size, precision).
        writes: False on ranks other than 0.
    """

    def __init__(self, path, every_s: float, config: dict, writes: bool = True):
        self.path = Path(path) if path is not None else None
        self.writes = writes and self.path is not None
        self.every_s, self.config = float(every_s), dict(config)
        self._lock = None
        self._saved_at = time.monotonic()
        self._pending_last = None  # (weights copy, training state) of a complete epoch not yet on disk
        self._pending_best = None  # (weights copy, {"epoch", "val_loss"}) not yet on disk
        self._copies: dict[str, torch.nn.Module] = {}  # reused model copies: no allocation per epoch
        self._broken = False  # a write failed: do not try again on the way out

    def open(self, resume: bool, overwrite: bool) -> dict | None:
        """Lock the folder, sweep stale temp files; return ``last.pt`` to resume from, or None to start afresh.

        Raises:
            SettingError: ``resume`` without a folder. NotADirectoryError: ``path`` is a file. FileExistsError:
            the folder holds a run and neither ``resume`` nor ``overwrite`` is set, a folder sits where a run's
            file goes, or the lock file is not a regular file (a link, a folder). CheckpointError: ``resume`` and
            ``last.pt`` is not a readable checkpoint (a FIFO, a dangling link...). RunFolderBusy: another run
            holds the lock.
        """
        if self.path is None:
            if resume:
                raise SettingError("resume=True needs out_dir (the run folder holding last.pt)")
            return None
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"out_dir {display_name(self.path)}: is a file, not a folder")
        # before any training: a folder named last.pt (or history.json) failed the run only at its first save
        check_place_for_file(self.path / ".fit.lock", "lock file", lock=True)
        for name in RUN_FILES:
            check_place_for_file(self.path / name, "run's file")
        if self.writes:
            self._lock = FileLock(self.path / ".fit.lock")
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                self._lock.acquire(timeout=0)
            except Timeout:  # an OSError too: caught first
                self._lock = None
                lock = display_name(self.path / ".fit.lock")
                raise RunFolderBusy(
                    f"{display_name(self.path)} is in use by another training run (lock {lock}); "
                    "wait for it to end or choose another out_dir"
                ) from None
            except OSError as err:  # a read-only folder or disk: a bare PermissionError from inside filelock
                self._lock = None
                if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise
                raise PermissionError(
                    err.errno,
                    f"out_dir {display_name(self.path)}: cannot write there ({err.strerror}); a run folder must be "
                    "writable (checkpoints and history go there): choose another out_dir",
                ) from None
            for stale in self.path.iterdir():
                if _STALE_TEMP.match(stale.name):
                    stale.unlink(missing_ok=True)  # left by a killed save: under the lock, nobody writes it
        last = self.path / "last.pt"
        if not os.path.lexists(last) or not (resume or last.is_file()):  # a FIFO or a dangling link: replaced
            return None
        if not resume:
            if overwrite:
                return None
            raise FileExistsError(
                f"{display_name(self.path)} already holds a run (last.pt): pass resume=True to continue it, "
                "overwrite=True to start again, or choose another out_dir"
            )
        checkpoint = load_checkpoint(last)
        if not checkpoint.get("training_state"):
            raise CheckpointError(
                f"{display_name(last)}: has no training state to resume from (a model file, not a run's last.pt?)"
            )
        problem = _training_state_problem(checkpoint["training_state"])
        if problem:  # else resume raised KeyError, TypeError or AttributeError from deep inside torch
            raise CheckpointError(
                f"{display_name(last)}: its training state is damaged ({problem}); start the run again with "
                "overwrite=True (--overwrite), or resume from a copy of the run that is whole"
            )
        return checkpoint

    def check_best(self, model: torch.nn.Module, checkpoint: dict) -> float:
        """After resuming from ``checkpoint`` (its weights loaded into ``model``): make ``best.pt`` agree.

        Returns:
            The best validation loss to beat from now on.
        """
        state = checkpoint["training_state"]
        best_loss, best_epoch = float(state["best_val_loss"]), state.get("best_epoch", _best_epoch(state))
        if not self.writes or best_epoch is None:
            return best_loss
        held = _epoch_held(self.path / "best.pt")
        if held is not None and held >= best_epoch:  # this best, or a later one that resuming repeats
            return best_loss
        if best_epoch == state["epoch"]:  # last.pt holds the best weights: write them
            save_checkpoint(
                model,
                self.path / "best.pt",
                training_state={"epoch": best_epoch, "val_loss": best_loss},
                **self.config,
            )
            warnings.warn(
                f"{self.path / 'best.pt'}: was behind last.pt; rewritten from epoch {best_epoch}", stacklevel=4
            )
            return best_loss
        warnings.warn(
            f"{self.path / 'best.pt'}: holds epoch {held} but last.pt says epoch {best_epoch} was best, and its "
            "weights are gone; best.pt will hold the best epoch from here on",
            stacklevel=4,
        )
        return math.inf

    def epoch_end(self, model, optimizer, scheduler, state: dict, improved: bool, final: bool) -> None:
        """Record a complete epoch: write now (time is up, or ``final``) or keep a copy for the next save.

        ``state``: the training state of ``last.pt`` (epoch, history, best_val_loss, best_epoch, ...).
        """
        if not self.writes:
            return
        due = final or time.monotonic() - self._saved_at >= self.every_s
        if improved:
            best = {"epoch": state["epoch"], "val_loss": state["best_val_loss"]}
            self._pending_best = (model if due else self._copy("best", model), best)
        if due:
            state = {**state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
            self._pending_last = (model, state)
            self.flush()
        else:  # copies, not references: training goes on changing the live tensors
            state = {
                **state,
                "optimizer": _cloned(optimizer.state_dict()),
                "scheduler": copy.deepcopy(scheduler.state_dict()),
                "history": list(state["history"]),
            }
            self._pending_last = (self._copy("last", model), state)

    def flush(self) -> None:
        """Write what is pending: ``best.pt`` first, then ``last.pt``, then the history."""
        if not self.writes or self._broken or self._pending_last is None:
            return
        try:
            if self._pending_best is not None:
                weights, best = self._pending_best
                save_checkpoint(weights, self.path / "best.pt", training_state=best, **self.config)
                self._pending_best = None
            weights, state = self._pending_last
            save_checkpoint(weights, self.path / "last.pt", training_state=state, **self.config)
            save_history(state["history"], self.path)
        except BaseException:
            self._broken = True
            raise
        self._pending_last, self._saved_at = None, time.monotonic()

    def close(self) -> None:
        """Release the lock (pending state is written by ``flush``, not here)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _copy(self, slot: str, model: torch.nn.Module) -> torch.nn.Module:
        """``model``'s weights and buffers copied into a model kept for ``slot`` (made once, on the same device)."""
        if slot not in self._copies:
            self._copies[slot] = copy.deepcopy(model)
        target = self._copies[slot]
        with torch.no_grad():
            for mine, theirs in zip(target.state_dict().values(), model.state_dict().values()):
                mine.copy_(theirs)
        return target


def _cloned(tree):
    """A deep copy of a state dict: tensors cloned (on their device), containers rebuilt, values shared."""
    if torch.is_tensor(tree):
        return tree.detach().clone()
    if isinstance(tree, dict):
        return {key: _cloned(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_cloned(value) for value in tree)
    return copy.copy(tree)


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _training_state_problem(state) -> str | None:
    """What is wrong with a ``last.pt``'s training state as ``fit`` writes it, or None. A run's own file always
    passes (a diverged step never reaches it); a damaged or hand-made one is named instead of failing mid-resume."""
    if not isinstance(state, dict):
        return f"a {type(state).__name__}, not a dict"
    for key in ("epoch", "samples_seen"):
        if not _count(state.get(key)):
            return f"{key} is {state.get(key)!r}, not a whole number >= 0"
    if state.get("best_epoch") is not None and not _count(state["best_epoch"]):
        return f"best_epoch is {state['best_epoch']!r}"
    history = state.get("history")
    if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
        return "history is not a list of per-epoch rows"
    best = state.get("best_val_loss")
    if isinstance(best, bool) or not isinstance(best, (int, float)) or math.isnan(best):
        return f"best_val_loss is {best!r}"
    optimizer, scheduler = state.get("optimizer"), state.get("scheduler")
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("param_groups"), list):
        return "no optimizer state"
    if not isinstance(scheduler, dict):
        return "no scheduler state"
    for key in ("best", "factor", "eps", "threshold", "patience", "num_bad_epochs", "cooldown", "last_epoch"):
        value = scheduler.get(key, 0.0)  # ReduceLROnPlateau's numbers (best starts at infinity)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return f"the scheduler's {key} is {value!r}"
    for group in optimizer["param_groups"]:
        lr = group.get("lr") if isinstance(group, dict) else None
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
            return f"a learning rate of {lr!r}"
    moments = optimizer.get("state", {})
    for slot in moments.values() if isinstance(moments, dict) else [None]:
        if not isinstance(slot, dict):
            return "the optimizer's state is not a dict per parameter"
        for name, value in slot.items():
            if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
                return f"the optimizer's {name} holds NaN or infinity"
    return None


def _best_epoch(state: dict) -> int | None:
    """The best epoch of a ``last.pt`` written before ``best_epoch`` was recorded: read from its history."""
    scores = [(row.get("val_loss", row.get("neg_elbo", math.inf)), row["epoch"]) for row in state.get("history", [])]
    matching = [epoch for score, epoch in scores if score == state.get("best_val_loss")]
    return matching[0] if matching else None


def _epoch_held(path: Path) -> int | None:
    """The epoch a ``best.pt`` holds, or None when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return int(load_checkpoint(path).get("training_state", {})["epoch"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None
