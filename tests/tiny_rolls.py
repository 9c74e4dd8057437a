"""Tiny synthetic training sets for the training tests: learnable, made in milliseconds."""
import numpy as np
import torch


def tiny_segments(n: int = 64, seed: int = 0) -> np.ndarray:
    """``(n, 88, 32)`` bool: a melody of eight 3-step notes within an octave per segment."""
    rng = np.random.default_rng(seed)
    rolls = np.zeros((n, 88, 32), bool)
    for i in range(n):
        base = rng.integers(30, 50)
        for start in range(0, 32, 4):
            rolls[i, base + rng.integers(0, 8), start:start + 3] = True
    return rolls


class PianoRollDataset:
    """Stand-in with data.PianoRollDataset's interface, until data.py lands."""

    def __init__(self, segments):
        self.segments = torch.as_tensor(np.asarray(segments, dtype=np.uint8))

    def __len__(self):
        return len(self.segments)

    def _with(self, segments):
        new = PianoRollDataset.__new__(type(self))
        new.segments = segments
        return new

    def to(self, device):
        return self._with(self.segments.to(device))

    def subset(self, indices):
        return self._with(self.segments[torch.as_tensor(indices)])

    def batches(self, batch_size=256, shuffle=True, generator=None, device=None, drop_last=False):
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            yield self.segments[order[start:start + batch_size]].unsqueeze(1).to(
                device=device, dtype=torch.float32)
