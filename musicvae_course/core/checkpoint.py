"""Checkpoints in the model card's format, loaded safely.

Format (the card's ``best_model.pt``)::

    {"config": {"latent_dim": 256, ...}, "model_state": state_dict}

This kit's training checkpoints add a ``"training_state"`` entry (optimiser,
scheduler, history...). Everything is loaded with ``torch.load(...,
weights_only=True)``: a file that would run code when unpickled is refused,
and nothing in it executes. Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb``.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch

from ..fileio import atomic_write, interrupts_held, sha256_of, sweep_temp_files
from .checkpoint_checks import (
    ENCODED_FEATURES,
    CheckpointError,
    brief,
    check_file,
    check_loaded,
    check_tensors,
    has_decoder_batchnorm,
    latent_dim_of,
)
from .midi_limits import MAX_CHECKPOINT_BYTES, MAX_CHECKPOINT_TENSORS
from .model import MusicVAE
from .safe_files import display_name

__all__ = ["CheckpointError", "LoadReport", "load_checkpoint", "load_pretrained", "match_state_dict", "save_checkpoint"]

HUB_REPO_ID = "XR-Lin/music-vae-lmd"  #: the original checkpoint on the Hugging Face hub
HUB_FILENAME = "best_model.pt"
PRETRAINED_DIR = Path(str(resources.files("musicvae_course") / "pretrained"))
BUNDLED_CHECKPOINT = PRETRAINED_DIR / "musicvae_music21.pt"  #: shipped with the kit
BUNDLED_SHA256_FILE = PRETRAINED_DIR / "musicvae_music21.pt.sha256"


@dataclass
class LoadReport:
    """What ``load_pretrained`` did: where the weights came from and how keys were matched."""

    source: str
    config: dict
    renamed: dict = field(default_factory=dict)  #: our key -> key in the file
    filled: list = field(default_factory=list)  #: our keys absent from the file, left at defaults
    heads: str = "by name"  #: how mu and log-var were told apart: "by name" or "by order" (then check them)
    decoder_batchnorm: bool = True  #: which decoder variant the file holds


def save_checkpoint(model: MusicVAE, path, training_state: dict | None = None, **config) -> Path:
    """Write ``{"config": {...}, "model_state": ...}`` to ``path`` atomically.

    The file is written to a temporary name in the same folder and renamed
    over ``path`` only when complete, so an interrupted save never leaves a
    half-written checkpoint where a good one was.

    Args:
        model: the model; its ``latent_dim`` is always stored in the config.
        path: destination file (parent folders are created).
        training_state: optional dict of tensors and plain Python values
            (optimiser state, epoch, history...) for resuming training.
        **config: extra plain values recorded in ``config`` (e.g. ``epochs=100``).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temp_files(path.parent, path.name, older_than_s=600.0)  # what killed saves left (not a save running now)
    variant = {} if getattr(model, "decoder_batchnorm", True) else {"decoder_batchnorm": False}
    state = {
        "config": {"latent_dim": model.latent_dim, **variant, **config},
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if training_state is not None:
        state["training_state"] = training_state
    # serialised in memory first, then written: on a full disk torch.save into the file raised "RuntimeError:
    # [enforce fail at inline_container.cc:672] unexpected pos", naming neither the file nor the disk
    buffer = io.BytesIO()
    with interrupts_held():  # Ctrl+C inside torch.save left its zip writer half-closed: a RuntimeError too
        torch.save(state, buffer)
        return atomic_write(path, buffer.getbuffer())


def load_checkpoint(path, max_bytes: int = MAX_CHECKPOINT_BYTES) -> dict:
    """Load a checkpoint file as plain data with ``weights_only=True``, its size checked first.

    Returns:
        ``{"config": dict, "model_state": {name: tensor}, ...}``. A bare state
        dict (a file holding only ``{name: tensor}``) is wrapped in that form
        with an empty config.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: truncated or corrupt file, not a checkpoint, a
            pickle that would execute code (refused, never run), not a regular
            file, or declaring more than ``max_bytes`` (``MAX_CHECKPOINT_BYTES``).
    """
    path = Path(path)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"checkpoint not found: {display_name(path)}")
    check_file(path, max_bytes)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{display_name(path)}: refused to load: the file is not plain tensors and values "
            f"(loading it otherwise could run code from the file, which this kit never does). "
            f"Detail: {_unpickler_detail(err)}"
        ) from None
    except Exception as err:  # torch raises many types for damaged files (IndexError too)
        raise CheckpointError(
            f"{display_name(path)}: not a readable PyTorch checkpoint (truncated or corrupt?): "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from None
    check_loaded(obj, display_name(path), max_bytes)
    state = obj.get("model_state", obj) if isinstance(obj, dict) else obj
    if isinstance(state, dict) and len(state) > MAX_CHECKPOINT_TENSORS:  # matching them by shape is quadratic
        raise CheckpointError(
            f"{display_name(path)}: {len(state):,} entries in its state dict, more than the limit of "
            f"{MAX_CHECKPOINT_TENSORS:,} (MAX_CHECKPOINT_TENSORS); not a MusicVAE checkpoint"
        )
    if isinstance(obj, dict) and "model_state" in obj:
        if not isinstance(obj.get("config", {}), dict) or not _is_state_dict(obj["model_state"]):
            raise CheckpointError(f"{display_name(path)}: 'config' must be a dict and 'model_state' a dict of tensors")
        check_tensors(obj["model_state"], display_name(path))  # every caller, train's --init too: no NaN weights
        return {**obj, "config": dict(obj.get("config", {}))}
    if _is_state_dict(obj):
        check_tensors(obj, display_name(path))
        return {"config": {}, "model_state": obj}
    # not sorted: keys of mixed types (1 and "a") raised TypeError; brief: a key may be megabytes long
    keys = [brief(key) for key in list(obj)[:8]] if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(
        f"{display_name(path)}: not a MusicVAE checkpoint: expected a dict with "
        f"'config' and 'model_state' or a state dict, found {keys}"
    )


def _unpickler_detail(err: Exception) -> str:
    """What torch's weights-only unpickler refused, from its message (whose first line only says that it failed
    and how to load the file unsafely): "Unsupported global: GLOBAL posix.system", or an opcode by name."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    found = next((i for i, line in enumerate(lines) if "WeightsUnpickler error" in line), None)
    if found is None:
        return brief(lines[0] if lines else type(err).__name__, 200)
    detail = lines[found].split("WeightsUnpickler error:", 1)[-1].strip() or " ".join(lines[found + 1 : found + 2])
    code = re.fullmatch(r"Unsupported operand (\d+)", detail)
    if code and int(code.group(1)) in _OPCODES:  # 139: a whole number over 255 bytes long, LONG4
        detail += f" (the pickle opcode {_OPCODES[int(code.group(1))]})"
    return brief(detail, 200)


_OPCODES = {ord(op.code.encode("latin-1")): op.name for op in pickletools.opcodes}


def _is_state_dict(obj) -> bool:
    return (
        isinstance(obj, dict)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _kind(key: str) -> str:
    """The role of a tensor from its last name part (weight, bias, running_mean...)."""
    return key.rsplit(".", 1)[-1]


def match_state_dict(model: MusicVAE, state: dict, source: str = "checkpoint"):
    """Match a state dict to ``model``, by name or else by architecture order and shape.

    When names differ (the original project's ``src/model.py`` may name its
    layers otherwise), tensors are paired in the order the architecture
    defines them, each with the first unused tensor in the file of the same
    role (weight, bias, running mean...) and shape. Every tensor must be paired.
    ``num_batches_tracked`` counters may be absent (older files). The two
    heads, mu and log-var, have the same shape: where the file's names say which
    is which (``mu``/``mean``; ``var``/``sigma``/``std``) they are matched by
    name, whatever their order; otherwise by order, and the caller is told.

    Returns:
        ``(state_dict_for_model, renamed, filled, heads)``, ``heads`` being
        ``"by name"`` or ``"by order"``.

    Raises:
        CheckpointError: naming every tensor that is missing, unused or of the
        wrong shape.
    """
    ours = model.state_dict()
    if set(state) | _counters(ours) == set(ours):  # same names (counters may be absent)
        wrong = [
            f"{brief(k)}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
            for k, v in ours.items()
            if k in state and state[k].shape != v.shape
        ]
        if wrong:
            raise CheckpointError(
                f"{source}: tensors of the wrong shape for MusicVAE(latent_dim={model.latent_dim}): " + "; ".join(wrong)
            )
        filled = sorted(set(ours) - set(state))
        return {**{k: ours[k] for k in filled}, **state}, {}, filled, "by name"
    unused = list(state)
    mapped, renamed, filled, missing = {}, {}, [], []
    for key, tensor in ours.items():
        match = next((k for k in unused if _kind(k) == _kind(key) and state[k].shape == tensor.shape), None)
        if match is None:
            if _kind(key) == "num_batches_tracked":
                mapped[key] = tensor
                filled.append(key)
            else:
                missing.append(f"{key} {tuple(tensor.shape)}")
            continue
        unused.remove(match)
        mapped[key] = state[match]
        if match != key:
            renamed[key] = match
    if missing or unused:
        extra = [f"{brief(k)} {tuple(state[k].shape)}" for k in unused[:20]]
        extra += [f"and {len(unused) - 20:,} more"] if len(unused) > 20 else []  # thousands of tensors: readable
        raise CheckpointError(
            f"{source}: does not fit MusicVAE(latent_dim={model.latent_dim}, "
            f"decoder_batchnorm={model.decoder_batchnorm}) even when "
            f"matched by architecture order and shape. No tensor in the file for: "
            f"{', '.join(missing) or 'none'}. Tensors in the file left over: "
            f"{', '.join(extra) or 'none'}."
        )
    heads = _match_heads_by_name(state, mapped, renamed)
    return mapped, renamed, filled, heads


_MU = re.compile(r"(^|[._])(mu|mean)($|[._])", re.IGNORECASE)
_LOG_VAR = re.compile(r"var|sigma|std", re.IGNORECASE)


def _match_heads_by_name(state: dict, mapped: dict, renamed: dict) -> str:
    """Put the file's mu and log-var heads in their places by name if the names say which is which."""
    prefixes = [k.rsplit(".", 1)[0] for k, t in state.items() if t.dim() == 2 and t.shape[1] == ENCODED_FEATURES]
    mu = [p for p in prefixes if _MU.search(p.rsplit(".", 1)[-1]) and not _LOG_VAR.search(p.rsplit(".", 1)[-1])]
    log_var = [p for p in prefixes if _LOG_VAR.search(p.rsplit(".", 1)[-1])]
    if len(prefixes) != 2 or len(mu) != 1 or len(log_var) != 1:
        return "by order"
    for ours, theirs in (("fc_mu", mu[0]), ("fc_log_var", log_var[0])):
        for kind in ("weight", "bias"):
            key, match = f"{ours}.{kind}", f"{theirs}.{kind}"
            if match in state:
                mapped[key] = state[match]
                if match != key:
                    renamed[key] = match
                else:
                    renamed.pop(key, None)
    return "by name"


def _counters(state: dict) -> set:
    return {k for k in state if _kind(k) == "num_batches_tracked"}


def model_from_checkpoint(checkpoint: dict, source: str = "checkpoint") -> tuple[MusicVAE, LoadReport]:
    """Build the ``MusicVAE`` variant a loaded checkpoint dict describes (see ``load_checkpoint``).

    Everything is checked before the model is allocated: ``latent_dim`` (bounded, agreeing with the tensors),
    each tensor (real floating point, finite, variances >= 0). The decoder variant (with or without BatchNorm)
    is read from the tensors.
    """
    config = checkpoint["config"]
    state = check_tensors(checkpoint["model_state"], source)
    latent_dim = latent_dim_of(config, state, source)
    batchnorm = has_decoder_batchnorm(state)
    model = MusicVAE(latent_dim=latent_dim, decoder_batchnorm=batchnorm)
    mapped, renamed, filled, heads = match_state_dict(model, state, source)
    model.load_state_dict(mapped)
    model.eval()
    return model, LoadReport(source, dict(config), renamed, filled, heads, batchnorm)


def _bundled_path() -> Path:
    if not BUNDLED_CHECKPOINT.is_file():
        raise FileNotFoundError(
            f"No checkpoint is bundled with this copy of the kit ({BUNDLED_CHECKPOINT} is "
            f"missing). Train one with `python -m musicvae_course.train`, or pass a path to "
            f"load_pretrained()."
        )
    expected = BUNDLED_SHA256_FILE.read_text().split()[0] if BUNDLED_SHA256_FILE.is_file() else None
    actual = sha256_of(BUNDLED_CHECKPOINT)
    if expected != actual:
        raise CheckpointError(
            f"{BUNDLED_CHECKPOINT}: SHA-256 {actual} does not match the "
            f"recorded {expected} ({BUNDLED_SHA256_FILE}); the file is damaged "
            "or was replaced. Reinstall the kit or restore the file with git."
        )
    return BUNDLED_CHECKPOINT


def _hub_path() -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:  # pragma: no cover - huggingface_hub is a dependency
        raise ImportError("load_pretrained('hub') needs huggingface_hub: pip install huggingface_hub") from err
    try:
        return Path(hf_hub_download(HUB_REPO_ID, HUB_FILENAME))
    except Exception as online_error:  # offline, DNS, hub down: try the local cache
        try:
            return Path(hf_hub_download(HUB_REPO_ID, HUB_FILENAME, local_files_only=True))
        except Exception:
            raise ConnectionError(
                f"Could not fetch {HUB_FILENAME} from the hub repo {HUB_REPO_ID} "
                f"({type(online_error).__name__}) and it is not in the local Hugging Face "
                f"cache. Offline? Download it on a machine with internet "
                f"(huggingface-cli download {HUB_REPO_ID} {HUB_FILENAME}), copy the file here "
                f"and call load_pretrained('path/to/{HUB_FILENAME}'); or use the bundled "
                f"model: load_pretrained()."
            ) from None


def load_pretrained(source=None, device=None) -> MusicVAE:
    """Load a MusicVAE ready for inference (eval mode).

    Args:
        source: ``None`` for the checkpoint bundled with the kit (SHA-256
            verified); ``"hub"`` for ``best_model.pt`` of ``XR-Lin/music-vae-lmd``
            through huggingface_hub's cache; or a path to the card's format, a
            bare state dict, or a training checkpoint of this kit.
        device: where to put the model (default CPU).

    Returns:
        ``MusicVAE`` in eval mode. ``model.load_report`` (a ``LoadReport``)
        says where it came from and which tensors were matched by order and
        shape because their names differ; a warning says so too.

    Taught in ``notebooks/01_loading_the_pretrained_vae.ipynb``.
    """
    if source is None:
        path = _bundled_path()
    elif isinstance(source, str) and source == "hub":
        path = _hub_path()
    else:
        path = Path(source)
    model, report = model_from_checkpoint(load_checkpoint(path), display_name(path))
    if report.renamed:
        warnings.warn(
            f"{display_name(path)}: {len(report.renamed)} tensors had other names and were matched "
            "by architecture order and shape; see model.load_report.renamed",
            stacklevel=2,
        )
    if report.renamed and report.heads == "by order":
        warnings.warn(
            f"{display_name(path)}: WARNING: the mu and log-var heads have the same shape and their names in the "
            "file do not say which is which, so they were matched BY ORDER (mu first). If the file stores log-var "
            "first, mu and log-var are swapped and encodings are wrong: check that reconstructions look right "
            "(model.load_report.heads == 'by order')",
            stacklevel=2,
        )
    model.load_report = report
    return model.to(device) if device is not None else model
