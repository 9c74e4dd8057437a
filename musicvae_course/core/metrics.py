"""How good is a reconstruction, and do samples look like the data?

Two kinds of measure, both on binary rolls ``(..., 88, T)`` (4 steps per
beat, 16 per bar; a cell is on where its value ``>= threshold``, as in
``pianoroll.pianoroll_to_midi``):

* Reconstruction: frame precision/recall/F1 (cell by cell) and note-onset
  F1. An onset is a step where a pitch turns on (a pitch already on at a
  roll's first step counts as an onset there). mir_eval's 50 ms onset
  tolerance is less than one sixteenth at 120 BPM (125 ms), so on this grid
  an onset matches only at the exact step and pitch. Counts are summed over
  all segments before dividing (micro average). Taught in
  ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
* Sample statistics after MusPy (salu133445/muspy ``muspy/metrics/metrics.py``),
  adapted to a roll: a "note" is an onset, so a held note counts once.
  Taught in ``notebooks/04_generation.ipynb``.

We write these ourselves (numpy/torch, vectorised over a batch) because MusPy
works on one ``Music`` object at a time and two of its anchors have bugs:
pypianoroll's ``empty_beat_rate`` returns the *non*-empty rate, and MusPy's
groove consistency divides by the bar length, so a silent bar next to a kick
bar scores 0.967 (salu133445/muspy#73). Our groove consistency divides by the
onset positions that either bar uses (see ``groove_consistency``).
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterable

import numpy as np
import torch

from .model import MusicVAE, input_batches, kl_per_dimension
from .pianoroll import LOWEST_PITCH, STEPS_PER_BAR, STEPS_PER_BEAT, binarize, roll_batch, to_numpy
from .types import DeviceLike, RollData, RollLike

ACTIVE_UNIT_THRESHOLD = 0.01  #: Burda et al. (2016): a unit is active if Var_x E[z|x] > 0.01
# MusPy's scale masks, C major and C natural minor; the other keys are rotations.
_C_MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], bool)
_C_MINOR = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], bool)
_SCALES = np.stack([np.roll(_C_MAJOR, r) for r in range(12)] + [np.roll(_C_MINOR, r) for r in range(12)])  # (24, 12)


def _binary(roll: RollLike, threshold: float = 0.5) -> torch.Tensor:
    """Tensor or array -> bool tensor (same device), on where ``>= threshold``."""
    return torch.as_tensor(binarize(roll, threshold))


def onsets(roll: RollLike, threshold: float = 0.5) -> torch.Tensor:
    """Steps where a pitch turns on: ``(..., 88, T)`` -> bool, same shape."""
    on = _binary(roll, threshold)
    starts = on.clone()
    starts[..., 1:] &= ~on[..., :-1]
    return starts


def _confusion(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[true positives, false positives, false negatives]`` as a float64 tensor; ``ValueError`` for two shapes.

    Shapes that differ only by axes of length 1 (``(1, 88, 32)`` and ``(88, 32)``) are one shape; any other pair was
    broadcast before: a batch against one roll counted each true positive once per roll and the target's notes once.
    """
    if predicted.shape != target.shape:
        if predicted.squeeze().shape != target.squeeze().shape:
            raise ValueError(
                f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} differ in shape; "
                "compare rolls of one shape"
            )
        predicted = predicted.reshape(target.shape)
    tp = (predicted & target).sum()
    return torch.stack([tp, predicted.sum() - tp, target.sum() - tp]).double()


def precision_recall_f1(tp: float, fp: float, fn: float) -> dict:
    """The kit's one precision/recall/F1, from true positives, false positives and false negatives (counts >= 0).

    Rule for empty cases: precision is 1 when nothing was claimed (``tp + fp == 0``) and recall is 1 when there
    was nothing to find (``tp + fn == 0``), so an empty reconstruction of an empty roll scores 1, 1, 1 and an
    empty reconstruction of a non-empty roll scores precision 1, recall 0, F1 0.

    Returns:
        ``{"precision", "recall", "f1"}``, floats in [0, 1].

    Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb`` (reconstruction quality).
    """
    tp, fp, fn = float(tp), float(fp), float(fn)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _prf_of(counts: torch.Tensor) -> dict:
    return precision_recall_f1(*(float(c) for c in counts))


def frame_scores(predicted: RollLike, target: RollLike, threshold: float = 0.5) -> dict:
    """Cell-by-cell precision, recall and F1 of ``predicted`` against ``target``.

    Args:
        predicted, target: rolls of one shape ``(..., 88, T)``; bool, or
            probabilities in [0, 1] thresholded at ``threshold``.

    Returns:
        ``{"precision", "recall", "f1"}`` in [0, 1], micro-averaged over all cells.
    """
    return _prf_of(_confusion(_binary(predicted, threshold), _binary(target, threshold)))


def onset_scores(predicted: RollLike, target: RollLike, threshold: float = 0.5) -> dict:
    """Note-onset precision, recall and F1: an onset matches at the same pitch and step.

    Shapes and values as ``frame_scores``.
    """
    return _prf_of(_confusion(onsets(predicted, threshold), onsets(target, threshold)))


def active_units(mu: torch.Tensor | np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD) -> tuple[int, torch.Tensor]:
    """Latent dimensions the encoder uses (Burda, Grosse & Salakhutdinov, 2016).

    Args:
        mu: ``(N, latent_dim)`` encoder means over a data set, N >= 2.

    Returns:
        ``(number active, per-dimension variance of mu over the data)``.
    """
    mu = torch.as_tensor(mu).double()
    if mu.dim() != 2 or mu.shape[0] < 2:
        raise ValueError(f"mu must be (N >= 2, latent_dim), got {tuple(mu.shape)}")
    variance = mu.var(dim=0, unbiased=False)
    return int((variance > threshold).sum()), variance


# --- sample statistics (MusPy's, on binary rolls) ---------------------------------


def binary_rolls(rolls: RollLike, threshold: float = 0.5) -> np.ndarray:
    """Any roll or batch -> ``(N, 88, T)`` bool numpy, on where ``>= threshold``.

    Shapes and values as :func:`~musicvae_course.core.pianoroll.roll_batch` (tensor or array, bool or
    probabilities in [0, 1]).
    """
    batch, _ = roll_batch(rolls, "rolls")
    return to_numpy(binarize(batch, threshold))


def _pitch_class_histogram(rolls: np.ndarray) -> np.ndarray:
    """Notes (onsets) per pitch class: ``(N, 12)``."""
    per_pitch = onsets(torch.from_numpy(rolls)).sum(-1).numpy()  # (N, 88)
    classes = (LOWEST_PITCH + np.arange(rolls.shape[1])) % 12
    histogram = np.zeros((rolls.shape[0], 12))
    np.add.at(histogram.T, classes, per_pitch.T)
    return histogram


def pitch_range(rolls: RollLike, threshold: float = 0.5) -> np.ndarray:
    """Highest minus lowest sounding pitch, semitones, per segment: ``(N,)``; NaN if silent."""
    used = binary_rolls(rolls, threshold).any(-1)  # (N, 88)
    rows = np.arange(used.shape[1])
    high = np.where(used, rows, -1).max(1)
    low = np.where(used, rows, 10**6).min(1)
    return np.where(used.any(1), high - low, np.nan)


def n_pitch_classes_used(rolls: RollLike, threshold: float = 0.5) -> np.ndarray:
    """Distinct pitch classes that sound, 0-12, per segment: ``(N,)``."""
    return (_pitch_class_histogram(binary_rolls(rolls, threshold)) > 0).sum(1).astype(float)


def polyphony(rolls: RollLike, threshold: float = 0.5) -> np.ndarray:
    """Mean pitches on per step, over steps where any pitch is on: ``(N,)``; NaN if silent."""
    per_step = binary_rolls(rolls, threshold).sum(1)  # (N, T)
    sounding = (per_step > 0).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sounding > 0, per_step.sum(1) / sounding, np.nan)


def pitch_class_entropy(rolls: RollLike, threshold: float = 0.5) -> np.ndarray:
    """Shannon entropy (bits, 0 to log2 12 = 3.58) of the notes' pitch classes: ``(N,)``; NaN if no note."""
    histogram = _pitch_class_histogram(binary_rolls(rolls, threshold))
    total = histogram.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = histogram / total
        entropy = -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=1) + 0.0  # no -0.0
    return np.where(total[:, 0] > 0, entropy, np.nan)


def scale_consistency(rolls: RollLike, threshold: float = 0.5) -> np.ndarray:
    """Largest share of notes inside one major or minor scale, in [0, 1]: ``(N,)``; NaN if no note."""
    histogram = _pitch_class_histogram(binary_rolls(rolls, threshold))
    total = histogram.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (histogram @ _SCALES.T).max(1) / total, np.nan)


def _check_steps(name: str, steps) -> None:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"{name} must be a whole number of steps >= 1, got {steps!r}")


def empty_beat_rate(rolls: RollLike, threshold: float = 0.5, steps_per_beat: int = STEPS_PER_BEAT) -> np.ndarray:
    """Share of beats in which no cell is on, in [0, 1]: ``(N,)``. A silent segment scores 1.

    (pypianoroll's function of this name returns the non-empty rate.)
    """
    _check_steps("steps_per_beat", steps_per_beat)
    rolls = binary_rolls(rolls, threshold)
    if rolls.shape[-1] % steps_per_beat:
        raise ValueError(f"roll length {rolls.shape[-1]} is not a whole number of {steps_per_beat}-step beats")
    beats = rolls.reshape(*rolls.shape[:2], -1, steps_per_beat).any(axis=(1, 3))  # (N, beats)
    return 1.0 - beats.mean(1)


def groove_consistency(rolls: RollLike, threshold: float = 0.5, steps_per_bar: int = STEPS_PER_BAR) -> np.ndarray:
    """How alike neighbouring bars' rhythms are, in [0, 1]: ``(N,)``; NaN if undefined.

    A bar's groove is the set of positions (0-15) where some note starts.
    For each pair of neighbouring bars the distance is the Jaccard distance
    ``|A xor B| / |A or B|``; the score is 1 minus the mean distance over
    pairs in which at least one bar has an onset. So two identical bars score
    1, a silent bar next to a kick bar scores 0. (MusPy divides the Hamming
    distance by the bar length instead, which scores sparse rhythms near 1
    whatever they are: salu133445/muspy#73.) A 2-bar segment has one pair;
    NaN when no pair has an onset.
    """
    _check_steps("steps_per_bar", steps_per_bar)
    starts = onsets(torch.from_numpy(binary_rolls(rolls, threshold))).numpy()
    if starts.shape[-1] % steps_per_bar:
        raise ValueError(f"roll length {starts.shape[-1]} is not a whole number of {steps_per_bar}-step bars")
    grooves = starts.any(1).reshape(starts.shape[0], -1, steps_per_bar)  # (N, bars, positions)
    either = (grooves[:, :-1] | grooves[:, 1:]).sum(-1)
    differ = (grooves[:, :-1] ^ grooves[:, 1:]).sum(-1)
    defined = either > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        distance = np.where(defined, differ / np.maximum(either, 1), 0.0)
        return np.where(defined.any(1), 1.0 - distance.sum(1) / defined.sum(1), np.nan)


SAMPLE_STATISTICS = {
    "pitch_range": pitch_range,
    "n_pitch_classes_used": n_pitch_classes_used,
    "polyphony": polyphony,
    "pitch_class_entropy": pitch_class_entropy,
    "scale_consistency": scale_consistency,
    "empty_beat_rate": empty_beat_rate,
    "groove_consistency": groove_consistency,
}  #: name -> per-segment function, as averaged by ``sample_statistics``


def sample_statistics(rolls: RollLike, threshold: float = 0.5) -> dict:
    """MusPy-style statistics averaged over a batch, to compare samples with data.

    Args:
        rolls: ``(N, 88, T)`` or ``(N, 1, 88, T)``, bool or probabilities
            (thresholded at ``threshold``); T a whole number of bars.

    Returns:
        ``{"n_segments", "empty_fraction", "density", <SAMPLE_STATISTICS names>}``.
        ``empty_fraction`` is the share of segments with no cell on;
        ``density`` the share of cells on over all segments; every other
        value is the mean over the non-empty segments (NaN if all are empty),
        so a model that outputs silence is seen in ``empty_fraction`` rather
        than hidden in the averages.

    Taught in ``notebooks/04_generation.ipynb``.
    """
    rolls = binary_rolls(rolls, threshold)
    non_empty = rolls.any(axis=(1, 2))
    result = {
        "n_segments": int(len(rolls)),
        "empty_fraction": float(1.0 - non_empty.mean()) if len(rolls) else math.nan,
        "density": float(rolls.mean()) if len(rolls) else math.nan,
    }
    kept = rolls[non_empty]
    for name, statistic in SAMPLE_STATISTICS.items():
        values = statistic(kept) if len(kept) else np.array([np.nan])
        result[name] = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
    return result


# --- evaluating a model ---------------------------------------------------------

METRIC_DESCRIPTIONS = {
    "n_segments": "segments evaluated",
    "neg_elbo": "-ELBO = reconstruction + KL, nats per segment (lower is better)",
    "reconstruction": "BCE over 88x32 cells, nats per segment, one z ~ q(z|x)",
    "kl": "KL(q(z|x) || N(0, I)), nats per segment",
    "frame_precision": "cells on in the reconstruction (z = mu) that are on in the input",
    "frame_recall": "cells on in the input that the reconstruction has on",
    "frame_f1": "harmonic mean of frame precision and recall",
    "onset_precision": "note onsets reconstructed at the exact pitch and step / predicted",
    "onset_recall": "note onsets reconstructed at the exact pitch and step / in the input",
    "onset_f1": "harmonic mean of onset precision and recall",
    "active_units": "latent dimensions with Var_x E[z|x] > 0.01 (Burda et al. 2016)",
    "latent_dim": "latent dimensions in the model",
}


class MetricsTable(dict):
    """``evaluate``'s result: a dict name -> value that prints as a table."""

    def rows(self) -> list[tuple[str, float, str]]:
        """``[(name, value, description), ...]`` in a fixed order."""
        return [(k, v, METRIC_DESCRIPTIONS.get(k, "")) for k, v in self.items()]

    def __str__(self) -> str:
        width = max(map(len, self))
        lines = []
        for name, value, description in self.rows():
            shown = f"{value:d}" if isinstance(value, int) else f"{value:.4f}"
            lines.append(f"{name:<{width}}  {shown:>12}  {description}")
        return "\n".join(lines)

    def _repr_pretty_(self, printer: object, cycle: bool) -> None:  # IPython's display hook: show the table
        printer.text(str(self))


@torch.no_grad()
def evaluation_sums(
    model: MusicVAE,
    batches: Iterable[torch.Tensor],
    threshold: float = 0.5,
    seed: int = 0,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Everything ``evaluate`` reports, as sums over ``batches`` (so shards can be added).

    Returns a float64 tensor (float32 on MPS) on the model's device:
    ``[n, reconstruction, kl, frame tp, fp, fn, onset tp, fp, fn, sum mu (latent_dim),
    sum mu^2 (latent_dim)]``. ``summarize_sums`` turns it into a ``MetricsTable``.
    The reconstruction term uses one ``z ~ q(z|x)`` drawn from a generator
    seeded with ``seed`` (deterministic, unlike the global RNG); the frame and
    onset scores use ``z = mu``, the reconstruction a notebook shows.
    """
    device = model.device
    dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    generator = torch.Generator(device=device).manual_seed(seed)
    totals = torch.zeros(9 + 2 * model.latent_dim, dtype=dtype, device=device)
    cutoff = math.log(threshold / (1 - threshold))  # sigmoid(l) >= threshold  <=>  l >= cutoff
    was_training = model.training
    model.eval()
    try:
        for x in batches:
            with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext():
                mu, log_var = model.encode(x)
                z = model.reparameterize(mu, log_var, generator=generator)
                sampled_logits = model.decode_logits(z)
                mean_logits = model.decode_logits(mu)
            target = x >= threshold
            reconstruction = torch.nn.functional.binary_cross_entropy_with_logits(
                sampled_logits.float(), x.float(), reduction="sum"
            )
            predicted = mean_logits.float() >= cutoff
            mu = mu.to(dtype)
            totals += torch.cat(
                [
                    torch.stack(
                        [
                            torch.tensor(float(len(x)), device=device, dtype=dtype),
                            reconstruction.to(dtype),
                            kl_per_dimension(mu, log_var).sum().to(dtype),
                        ]
                    ),
                    _confusion(predicted, target).to(dtype),
                    _confusion(onsets(predicted), onsets(target)).to(dtype),
                    mu.sum(0),
                    mu.pow(2).sum(0),
                ]
            )
    finally:
        model.train(was_training)
    return totals


def summarize_sums(totals: torch.Tensor, latent_dim: int) -> MetricsTable:
    """``evaluation_sums`` (possibly added over shards) -> ``MetricsTable``."""
    totals = totals.detach().double().cpu()
    n = float(totals[0])
    if n < 1:
        raise ValueError("nothing to evaluate: the data has no segments")
    frame, onset = _prf_of(totals[3:6]), _prf_of(totals[6:9])
    mean = totals[9 : 9 + latent_dim] / n
    variance = (totals[9 + latent_dim :] / n - mean.pow(2)).clamp_min(0)
    return MetricsTable(
        n_segments=int(n),
        neg_elbo=float(totals[1] + totals[2]) / n,
        reconstruction=float(totals[1]) / n,
        kl=float(totals[2]) / n,
        **{f"frame_{k}": v for k, v in frame.items()},
        **{f"onset_{k}": v for k, v in onset.items()},
        active_units=int((variance > ACTIVE_UNIT_THRESHOLD).sum()) if n >= 2 else 0,
        latent_dim=int(latent_dim),
    )


def evaluate(
    model: MusicVAE,
    data: RollData,
    batch_size: int = 512,
    threshold: float = 0.5,
    seed: int = 0,
    device: DeviceLike = None,
) -> MetricsTable:
    """Reconstruction quality and latent use of ``model`` on ``data``.

    Args:
        model: a ``MusicVAE`` (its mode is restored afterwards).
        data: a ``data.PianoRollDataset``, or rolls ``(N, 88, 32)`` /
            ``(N, 1, 88, 32)`` as a numpy array or tensor (bool or {0, 1}).
        batch_size: segments per forward pass (memory only; results do not depend on it
            beyond float rounding).
        threshold: a reconstructed cell is on where its probability ``>= threshold``.
        seed: seeds the one ``z`` sample per segment behind the ELBO terms.
        device: where to run (default: the model's device).

    Returns:
        ``MetricsTable`` (a dict that prints as a table): ``n_segments``,
        ``neg_elbo``, ``reconstruction``, ``kl`` (nats per segment),
        ``frame_precision/recall/f1``, ``onset_precision/recall/f1`` (in [0, 1]),
        ``active_units`` (of ``latent_dim``). ``METRIC_DESCRIPTIONS`` says what each is.

    Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
    """
    if device is not None:
        model = model.to(device)
    totals = evaluation_sums(model, input_batches(data, batch_size, model.device), threshold, seed)
    return summarize_sums(totals, model.latent_dim)
