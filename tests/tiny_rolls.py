"""Tiny synthetic training sets for the training tests: learnable, made in milliseconds."""

import numpy as np


def tiny_segments(n: int = 64, seed: int = 0) -> np.ndarray:
    """``(n, 88, 32)`` bool: a melody of eight 3-step notes within an octave per segment."""
    rng = np.random.default_rng(seed)
    rolls = np.zeros((n, 88, 32), bool)
    for i in range(n):
        base = rng.integers(30, 50)
        for start in range(0, 32, 4):
            rolls[i, base + rng.integers(0, 8), start : start + 3] = True
    return rolls
