"""Type aliases for the public signatures: what a roll, a batch of data or a device may be.

The shapes and value rules behind them live with their conventions (:func:`musicvae_course.core.pianoroll.roll_batch`
for rolls, :func:`musicvae_course.core.model.model_input` for model inputs).
"""

from __future__ import annotations

from typing import Iterator, Protocol, Union

import numpy as np
import torch


class Batched(Protocol):
    """Anything that yields model batches, like :class:`musicvae_course.core.data.PianoRollDataset`."""

    def batches(self, batch_size: int = ..., shuffle: bool = ...) -> Iterator[torch.Tensor]: ...


#: A roll or a batch of rolls: ``(88, T)``, ``(B, 88, T)`` or ``(B, 1, 88, T)``; bool or probabilities in [0, 1].
RollLike = Union[np.ndarray, torch.Tensor]
#: Segments to run through the model: a dataset, or rolls of 32 steps as :data:`RollLike`.
RollData = Union[Batched, np.ndarray, torch.Tensor]
#: Where to compute: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``, or None for the kit's default.
DeviceLike = Union[str, torch.device, None]
