"""What ``fit`` takes in besides its settings: the training and validation data, and weights to start from.

Data: a ``PianoRollDataset`` is used as it is (its bit-packed segments can only be 0 or 1). Rolls given as
an array or tensor ``(N, 88, 32)`` or ``(N, 1, 88, 32)`` are checked (no NaN or infinity, values in
[0, 1]), binarised with the kit's one rule (``pianoroll.binarize``: on at >= 0.5) and packed. Any other
object with ``batches`` and ``len`` (a dataset of your own) is read once before training and refused if a
batch holds NaN, infinity or values outside [0, 1]. Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from ..core.checkpoint import load_checkpoint, match_state_dict
from ..core.data import PianoRollDataset
from ..core.pianoroll import N_PITCHES, SEGMENT_STEPS, binarize, roll_batch, to_numpy

__all__ = ["TrainingDataError", "training_data", "load_weights"]


class TrainingDataError(ValueError):
    """The training or validation data cannot be trained on; the message names which and why."""


def training_data(data, name: str):
    """``data`` as a dataset ``fit`` can batch, or ``TrainingDataError`` naming ``name`` ("train" or "val").

    Args:
        data: a ``PianoRollDataset``; rolls ``(N, 88, 32)``/``(N, 1, 88, 32)`` (numpy, tensor or lists; bool, or
            numbers in [0, 1], binarised at 0.5); or an object with ``batches(batch_size, shuffle=..., device=...)``
            yielding float ``(B, 1, 88, 32)`` and ``__len__``.
        name: the argument's name for error messages.
    """
    if isinstance(data, PianoRollDataset):
        checked = data
    elif isinstance(data, (np.ndarray, torch.Tensor, list, tuple)):
        checked = PianoRollDataset(_binary_rolls(data, name))
    elif callable(getattr(data, "batches", None)) and hasattr(data, "__len__"):
        checked = data
        _scan(data, name)
    else:
        raise TrainingDataError(
            f"{name} must be a PianoRollDataset or rolls of shape (N, 88, 32), got {type(data).__name__}"
        )
    if len(checked) == 0:
        hint = " (pass val=None to train without one)" if name == "val" else ""
        raise TrainingDataError(f"{name}: the {'validation' if name == 'val' else 'training'} set is empty{hint}")
    return checked


def _binary_rolls(data, name: str) -> np.ndarray:
    try:
        rolls, _ = roll_batch(data, name)  # refuses NaN, infinity and values outside [0, 1], naming `name`
    except (ValueError, TypeError) as err:
        raise TrainingDataError(str(err)) from None
    if rolls.shape[-1] != SEGMENT_STEPS:
        raise TrainingDataError(
            f"{name} must hold 2-bar segments of {SEGMENT_STEPS} steps, got {rolls.shape[-1]} steps "
            "(cut longer rolls with pianoroll.segments)"
        )
    return binarize(to_numpy(rolls))


def _scan(data, name: str, batch_size: int = 1024) -> None:
    """Read ``data`` once; refuse a batch of the wrong shape or with values outside [0, 1] (NaN included)."""
    seen = 0
    for x in data.batches(batch_size, shuffle=False):
        if tuple(x.shape[1:]) != (1, N_PITCHES, SEGMENT_STEPS):
            raise TrainingDataError(f"{name}: batches must be (B, 1, 88, 32), got {tuple(x.shape)}")
        finite = torch.isfinite(x)
        inside = finite & (x >= 0) & (x <= 1)
        if not bool(inside.all()):
            row = seen + int((~inside).flatten(1).any(dim=1).nonzero()[0])
            what = "NaN or infinity" if not bool(finite.all()) else "values outside [0, 1]"
            raise TrainingDataError(
                f"{name}: segment {row} holds {what}; rolls must be 0/1 (or probabilities in [0, 1])"
            )
        seen += len(x)


def load_weights(model: nn.Module, init) -> None:
    """Load ``init`` (checkpoint path, loaded checkpoint dict, state dict or model) into ``model``.

    Names that differ from ours are matched by architecture order and shape
    (``checkpoint.match_state_dict``), which names every tensor that does not fit; a warning says when the
    mu and log-var heads could only be told apart by their order.
    """
    if isinstance(init, nn.Module):
        state, source = init.state_dict(), type(init).__name__
    elif isinstance(init, dict):
        state, source = init.get("model_state", init), "init"
    else:
        state, source = load_checkpoint(init)["model_state"], str(init)
    mapped, renamed, _, heads = match_state_dict(model, state, source)
    if renamed and heads == "by order":
        warnings.warn(
            f"{source}: tensor names differ from the kit's and do not say which head is mu and which log-var; "
            "they were matched by order (first mu, then log-var). Check the reconstructions.",
            stacklevel=3,
        )
    model.load_state_dict(mapped)
