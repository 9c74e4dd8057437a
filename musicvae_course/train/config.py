"""``TrainConfig``: every training setting, its default, unit, meaning and rule, in one place.

``fit(model, train, val, config=None, **overrides)`` and the command line (``python -m
musicvae_course.train``, whose flags are generated from these fields) both read this table, so adding
a setting is one edit here. The defaults are the model card's recipe: Adam lr 1e-3, batch 256, beta
0 -> 1 over 50 epochs, free bits 0.5 nats per latent dimension, gradient-norm clip 1.0,
ReduceLROnPlateau(patience 10, factor 0.5, min_lr 1e-5), 100 epochs. Fine-tuning (``init`` given)
has its own defaults for two settings, written out below as ``FINE_TUNE_LR`` and
``FINE_TUNE_BETA_WARMUP_EPOCHS``: a pretrained model already sits at beta = 1, and beta = 0 or a
large step would undo its latent space.

Every value is checked when a ``TrainConfig`` is made: a wrong one raises ``SettingError`` naming
the setting, the value and the rule. Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core.devices import usable_cpus
from ..core.seeding import DEFAULT_SEED

__all__ = [
    "TrainConfig",
    "SettingError",
    "UnknownSettingError",
    "CARD_LR",
    "FINE_TUNE_LR",
    "CARD_BETA_WARMUP_EPOCHS",
    "FINE_TUNE_BETA_WARMUP_EPOCHS",
    "PRECISIONS",
]

CARD_LR = 1e-3  #: Adam's learning rate when training from scratch (the card's)
FINE_TUNE_LR = 1e-4  #: the learning rate when ``init`` is given: 10x smaller, the weights already work
CARD_BETA_WARMUP_EPOCHS = 50  #: epochs of beta 0 -> beta_max from scratch (the card's)
FINE_TUNE_BETA_WARMUP_EPOCHS = 0  #: no warm-up when ``init`` is given: beta = 0 would undo the latent space
PRECISIONS = ("auto", "bf16", "fp32")


class SettingError(ValueError):
    """A training setting has a value outside its rule; the message names the setting and the value."""


class UnknownSettingError(SettingError, TypeError):
    """A setting name that ``TrainConfig`` does not have (a ``TypeError`` too, as for any unknown keyword)."""


def _setting(default, meaning: str, *, unit: str = "", kind: type | str = int, rule: str = "", **extra):
    """A dataclass field whose metadata says what the setting means and which values it takes.

    ``kind``: int, float, bool, str, "path", "device" or "any". ``rule``: one of ">= N", "> N",
    "(0, 1)" (open interval) or "" (no rule beyond the kind). ``extra``: ``optional`` (None allowed), ``most``
    (a function giving the largest value this machine allows),
    ``choices``, ``recipe`` (a resumed run must keep it), ``scratch``/``fine_tune`` (what None resolves
    to), ``flags`` (command-line spellings, first one shown), ``cli_required`` (the command needs it) and
    ``cli`` (False: not a flag).
    """
    return field(default=default, metadata=dict(meaning=meaning, unit=unit, kind=kind, rule=rule, **extra))


@dataclass(frozen=True)
class TrainConfig:
    """The settings of one ``fit`` call (this list is generated from the fields)."""

    # --- the recipe: a resumed run must use the same values ---
    epochs: int = _setting(
        100, "total epochs; with resume, counting those already done", unit="epochs", rule=">= 1", recipe=True
    )
    batch_size: int = _setting(
        256, "segments per optimiser step, over all processes under torchrun", unit="segments", rule=">= 1", recipe=True
    )
    lr: float | None = _setting(
        None,
        "Adam's learning rate; None: CARD_LR, or FINE_TUNE_LR with init",
        kind=float,
        rule="> 0",
        optional=True,
        scratch=CARD_LR,
        fine_tune=FINE_TUNE_LR,
        recipe=True,
    )
    beta_warmup_epochs: int | None = _setting(
        None,
        "epochs of beta rising linearly 0 -> beta_max; None: CARD_BETA_WARMUP_EPOCHS, or FINE_TUNE_... with init",
        unit="epochs",
        rule=">= 0",
        optional=True,
        scratch=CARD_BETA_WARMUP_EPOCHS,
        fine_tune=FINE_TUNE_BETA_WARMUP_EPOCHS,
        recipe=True,
    )
    beta_max: float = _setting(1.0, "weight of the KL term after the warm-up", kind=float, rule=">= 0", recipe=True)
    free_bits: float = _setting(
        0.5, "KL below this is not pushed down", unit="nats per latent dimension", kind=float, rule=">= 0", recipe=True
    )
    grad_clip: float | None = _setting(
        1.0,
        "largest gradient L2 norm; None: no clipping",
        unit="norm",
        kind=float,
        rule="> 0",
        optional=True,
        recipe=True,
    )
    lr_patience: int = _setting(
        10, "ReduceLROnPlateau: epochs without improvement before a cut", rule=">= 0", recipe=True
    )
    lr_factor: float = _setting(
        0.5, "ReduceLROnPlateau: lr multiplied by this at each cut", kind=float, rule="(0, 1)", recipe=True
    )
    min_lr: float = _setting(1e-5, "ReduceLROnPlateau: lr never cut below this", kind=float, rule=">= 0", recipe=True)
    seed: int = _setting(
        DEFAULT_SEED, "fixes each epoch's batch order and noise (exact resume)", rule=">= 0", recipe=True
    )
    freeze_encoder: bool = _setting(
        False, "train the decoder only (encoder weights and BatchNorm kept)", kind=bool, recipe=True
    )
    # --- where the run starts and what it writes ---
    init: Any = _setting(
        None,
        "weights to fine-tune from: checkpoint path, checkpoint dict or model (command line: path, 'bundled', 'hub')",
        kind="any",
        optional=True,
    )
    out_dir: str | os.PathLike | None = _setting(
        None,
        "run folder for last.pt, best.pt, history; None writes nothing",
        kind="path",
        optional=True,
        flags=("--out", "--out-dir"),
        cli_required=True,
    )
    resume: bool = _setting(False, "continue from out_dir/last.pt if it exists", kind=bool)
    overwrite: bool = _setting(False, "start afresh in an out_dir that already holds last.pt", kind=bool)
    checkpoint_every_s: float = _setting(
        60.0,
        "least time between two saves of last.pt (also saved at the end, on interruption and on divergence); "
        "0: after every epoch",
        unit="s",
        kind=float,
        rule=">= 0",
    )
    # --- hardware and stopping: change freely on resume ---
    device: str | torch.device | None = _setting(
        None, "cuda, cuda:1, mps or cpu; None: CUDA, else MPS, else CPU", kind="device", optional=True
    )
    threads: int | None = _setting(
        None,
        "CPU threads per process; None: devices.default_cpu_threads(); ignored on GPU",
        rule=">= 1",
        optional=True,
        most=usable_cpus,
    )
    precision: str = _setting(
        "auto", "auto (bf16 autocast on CUDA, fp32 elsewhere), bf16 or fp32", kind=str, choices=PRECISIONS
    )
    max_samples: int | None = _setting(
        None,
        "stop after this many training segments (the last epoch is then partial)",
        unit="segments",
        rule=">= 1",
        optional=True,
    )
    time_budget_s: float | None = _setting(
        None,
        "stop after this much time (the last epoch is then partial)",
        unit="s",
        kind=float,
        rule="> 0",
        optional=True,
        flags=("--time-budget-s", "--time-budget"),
    )
    progress: bool = _setting(True, "show a tqdm progress bar (a widget in notebooks)", kind=bool)
    check_every: int | None = _setting(
        None,
        "batches between NaN checks; None: 1 on CPU, 25 on a GPU (a check waits for the GPU)",
        unit="batches",
        rule=">= 1",
        optional=True,
    )

    def __post_init__(self):
        for spec in dataclasses.fields(self):
            object.__setattr__(self, spec.name, _checked(spec, getattr(self, spec.name)))

    @classmethod
    def names(cls) -> list[str]:
        """Every setting's name, in table order."""
        return [spec.name for spec in dataclasses.fields(cls)]

    @classmethod
    def recipe_names(cls) -> list[str]:
        """The settings a resumed run must keep (they change the weights it ends with)."""
        return [spec.name for spec in dataclasses.fields(cls) if spec.metadata.get("recipe")]

    def updated(self, **overrides) -> TrainConfig:
        """A copy with ``overrides`` applied (each checked); an unknown name raises ``UnknownSettingError``."""
        unknown = [name for name in overrides if name not in self.names()]
        if unknown:
            hints = [difflib.get_close_matches(name, self.names(), n=1) for name in unknown]
            said = ", ".join(f"{n!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for n, h in zip(unknown, hints))
            raise UnknownSettingError(f"unknown training setting {said}; the settings are: {', '.join(self.names())}")
        return dataclasses.replace(self, **overrides)

    def resolved(self) -> TrainConfig:
        """A copy whose settings left None get their default: the fine-tuning one when ``init`` is given."""
        fine_tune = self.init is not None
        filled = {
            spec.name: spec.metadata["fine_tune" if fine_tune else "scratch"]
            for spec in dataclasses.fields(self)
            if "scratch" in spec.metadata and getattr(self, spec.name) is None
        }
        return dataclasses.replace(self, **filled)

    def recipe(self) -> dict:
        """``{name: value}`` of the recipe settings (resolved first), as recorded in checkpoints."""
        resolved = self.resolved()
        return {name: getattr(resolved, name) for name in self.recipe_names()}


def config_from_call(config, overrides: dict) -> TrainConfig:
    """The ``TrainConfig`` of ``fit(model, train, val, config, **overrides)``.

    ``config`` may be a ``TrainConfig``, None (the defaults) or an int: the epoch count, as ``fit``'s fourth
    positional argument was before ``TrainConfig`` existed.
    """
    if config is None:
        config = TrainConfig()
    elif isinstance(config, numbers.Integral) and not isinstance(config, bool):
        if "epochs" in overrides:
            raise SettingError(f"epochs given twice: {config} as the fourth argument and epochs={overrides['epochs']}")
        config = TrainConfig(epochs=config)
    elif not isinstance(config, TrainConfig):
        raise SettingError(f"config must be a TrainConfig (or None), got {type(config).__name__}")
    return config.updated(**overrides) if overrides else config


def _checked(spec, value):
    """``value`` of setting ``spec`` cast to its kind (when the cast loses nothing), or ``SettingError``."""
    name, meta = spec.name, spec.metadata
    if value is None:
        if meta.get("optional"):
            return None
        raise SettingError(f"{name} must not be None (default {spec.default!r})")
    kind = meta["kind"]
    if kind is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise SettingError(f"{name} must be True or False, got {value!r}")
    if kind is int:
        value = _as_int(name, value)
    elif kind is float:
        value = _as_float(name, value)
    elif kind is str:
        if not isinstance(value, str):
            raise SettingError(f"{name} must be a string, got {value!r}")
    elif kind == "path":
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise SettingError(f"{name} must be a folder path, got {value!r}")
    elif kind == "device":
        if not isinstance(value, (str, torch.device)):
            raise SettingError(f"{name} must be a device name such as 'cpu' or 'cuda:0', got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        raise SettingError(f"{name} must be one of {', '.join(map(repr, meta['choices']))}; got {value!r}")
    if "most" in meta and value > meta["most"]():  # a bound of this machine, read when the setting is checked
        raise SettingError(f"{name} must be at most {meta['most']()} on this machine; got {value!r}")
    rule = meta["rule"]
    if rule and not _obeys(value, rule):
        off = " (or None to turn it off)" if meta.get("optional") and spec.default is not None else ""
        raise SettingError(f"{name} must be {_said(rule)}{off}; got {value!r}")
    return value


def _as_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SettingError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if math.isfinite(value) and float(value).is_integer():  # 10.0 -> 10: nothing lost
        return int(value)
    raise SettingError(f"{name} must be an integer, got {value!r}")


def _as_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SettingError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise SettingError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _obeys(value, rule: str) -> bool:
    if rule == "(0, 1)":
        return 0 < value < 1
    op, bound = rule.split()
    return value >= float(bound) if op == ">=" else value > float(bound)


def _said(rule: str) -> str:
    return "strictly between 0 and 1" if rule == "(0, 1)" else rule


def describe_settings() -> str:
    """The settings as text, one line each: name = default [unit] (rule): meaning (for docs and ``help``)."""
    lines = []
    for spec in dataclasses.fields(TrainConfig):
        meta = spec.metadata
        default = f"{meta['scratch']!r} ({meta['fine_tune']!r} with init)" if "scratch" in meta else repr(spec.default)
        rule = "one of " + ", ".join(meta["choices"]) if "choices" in meta else _said(meta["rule"])
        about = "; ".join(part for part in (meta["unit"], rule) if part)
        lines.append(f"    {spec.name} = {default}" + (f" [{about}]" if about else "") + f": {meta['meaning']}")
    return "\n".join(lines)


TrainConfig.__doc__ = f"{TrainConfig.__doc__}\n\n{describe_settings()}\n"
