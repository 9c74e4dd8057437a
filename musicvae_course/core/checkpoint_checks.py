"""Checks on a checkpoint file before and after ``torch.load``: bounded sizes, plain data, sound tensors.

Used by :mod:`musicvae_course.core.checkpoint`. Before loading: the file must be a regular file in PyTorch's zip
format whose tensors declare at most ``MAX_CHECKPOINT_BYTES`` in all, none inflating more than
``MAX_COMPRESSION_RATIO`` times (a few MB of deflate can declare gigabytes). After loading (still before any
model is built): ``latent_dim`` within ``MAX_LATENT_DIM`` and agreeing with the tensors, every tensor real and
floating point (``num_batches_tracked`` counters: integers), finite, BatchNorm variances >= 0. Each refusal
names the file and the tensor. Taught, as a black box, in ``notebooks/01_loading_the_pretrained_vae.ipynb``.
"""

from __future__ import annotations

import os
import pickletools
import reprlib
import zipfile

import torch

from .midi_limits import (
    DATASET_BYTES_AT_ANY_RATIO,
    MAX_CHECKPOINT_BYTES,
    MAX_CHECKPOINT_ENTRIES,
    MAX_CHECKPOINT_NESTING,
    MAX_CHECKPOINT_PICKLE_BYTES,
    MAX_COMPRESSION_RATIO,
    MAX_LATENT_DIM,
)
from .safe_files import FileSkip, check_not_hollow, check_regular_file, display_name

ENCODED_FEATURES = 2560  #: inputs of the mu and log-var heads (256 x 5 x 2)
# What a legacy pickle of plain tensors and values may name; anything else would run code if unpickled.
_PLAIN_GLOBALS = ("collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch ", "builtins set")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and the problem."""


def check_file(path, max_bytes: int = MAX_CHECKPOINT_BYTES) -> None:
    """Refuse, before ``torch.load``, what is not a regular zip-format checkpoint of bounded declared size."""
    try:
        check_regular_file(path)
    except FileSkip as err:
        raise CheckpointError(f"{display_name(path)}: {err}{_weights_inside(path)}") from None
    if not zipfile.is_zipfile(path):
        _refuse_legacy(path)
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"{display_name(path)}: not a readable PyTorch checkpoint (damaged zip: {err})") from None
    declared = sum(entry.file_size for entry in entries)
    if declared > max_bytes:
        raise CheckpointError(
            f"{display_name(path)}: declares {declared / 1e6:,.0f} MB of data, more than the limit of "
            f"{max_bytes / 1e6:,.0f} MB (MAX_CHECKPOINT_BYTES); refused before loading"
        )
    try:  # a sparse file: its stored tensors are holes on disk, and gigabytes once read
        check_not_hollow(path, declared, MAX_COMPRESSION_RATIO, DATASET_BYTES_AT_ANY_RATIO)
    except ValueError as err:
        raise CheckpointError(f"{display_name(path)}: {err}; refused before loading") from None
    for entry in entries:
        if entry.filename.endswith(".pkl") and entry.file_size > MAX_CHECKPOINT_PICKLE_BYTES:
            # the unpickler builds an object per few bytes, in Python: 512 MB of pickle took minutes and gigabytes
            raise CheckpointError(
                f"{display_name(path)}: entry {entry.filename} is {entry.file_size:,} bytes of pickled structure, "
                f"more than the limit of {MAX_CHECKPOINT_PICKLE_BYTES:,} (MAX_CHECKPOINT_PICKLE_BYTES); refused "
                "before loading"
            )
        if entry.compress_type != zipfile.ZIP_STORED and entry.file_size > MAX_COMPRESSION_RATIO * max(
            entry.compress_size, 1024
        ):
            raise CheckpointError(
                f"{display_name(path)}: entry {entry.filename} inflates from {entry.compress_size:,} to "
                f"{entry.file_size:,} bytes (more than {MAX_COMPRESSION_RATIO:g}x, MAX_COMPRESSION_RATIO): "
                "a compression bomb? refused before loading"
            )


def _weights_inside(path, look: int = 1000) -> str:
    """For a folder given as a checkpoint (a Hugging Face style download: config.json beside the weights), what in
    it may be the file to pass, among its first ``look`` entries; its config.json is never read."""
    try:
        with os.scandir(path) as entries:
            names = sorted(entry.name for _, entry in zip(range(look), entries) if entry.name.endswith(_WEIGHTS))
    except OSError:  # not a folder, or unreadable: the reason given is enough
        return ""
    if not names:
        return "; a checkpoint is one .pt file"
    unread = " (safetensors is not read by this kit: a .pt file is)" if names[0].endswith(".safetensors") else ""
    return f"; pass the weights file inside it, e.g. {display_name(os.path.join(path, names[0]))}{unread}"


_WEIGHTS = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def _refuse_legacy(path) -> None:
    """A non-zip file: PyTorch's legacy format or a bare pickle. Neither is loaded: the legacy format's sizes
    cannot be checked before torch allocates them. A pickle naming code is reported as such."""
    names: list = []
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 20)
        names, strings = [], []
        for op, arg, _ in pickletools.genops(head):
            if isinstance(arg, str):
                strings.append(arg)
            if op.name == "GLOBAL":
                names.append(arg)
            elif op.name == "STACK_GLOBAL":  # protocol 4+: module and name were pushed as strings just before
                names.append(" ".join(strings[-2:]))
    except Exception:  # not a pickle at all, or cut short: what was seen so far still counts
        pass
    foreign = [str(n) for n in names if not str(n).startswith(_PLAIN_GLOBALS)]
    if foreign:
        raise CheckpointError(
            f"{display_name(path)}: refused to load: the file is not plain tensors and values (loading it would "
            f"run code from the file, which this kit never does). It names {foreign[0]!r}"
        )
    raise CheckpointError(
        f"{display_name(path)}: not a readable PyTorch checkpoint: not PyTorch's zip format (truncated, corrupt, or "
        "the legacy pre-1.6 format, whose sizes cannot be checked before loading: re-save it with a current torch)"
    )


_REPR = reprlib.Repr()  # a value's repr, its strings, numbers and containers cut short
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 60


def brief(value, limit: int = 60) -> str:
    """``value`` (a name as it is, anything else as its ``repr``) cut to about ``limit`` characters for a message.

    A file's names and values are the file's to choose: a 3 MB string as ``latent_dim``, or a 1 MB tensor name,
    made an error message of megabytes (one line on the terminal)."""
    text = value if isinstance(value, str) else _REPR.repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _dotted(path: list) -> str:
    """``config.notes.0``: the keys from the top (``None``: the file itself), each cut to 40 characters."""
    return ".".join(brief(str(key), 40) for key in path if key is not None)


def check_loaded(obj, source: str, max_bytes: int = MAX_CHECKPOINT_BYTES) -> None:
    """Refuse, right after ``torch.load``, containers nested deeper than ``MAX_CHECKPOINT_NESTING`` (their repr
    and any recursive walk fail) or reached more than ``MAX_CHECKPOINT_ENTRIES`` times, and tensors whose shapes
    declare more than ``max_bytes`` in all: a view of one stored number can have any shape (stride 0), so the
    zip's sizes do not bound them; the first computation on a (50000, 50000) view of 4 bytes asked for 10 GB."""
    # the path to an entry is kept as its keys and joined only for a message: joined for every entry, one 1 MB key
    # shared (pickle's memo) by 250,000 small dicts cost 20 s of copying
    declared, entries, stack, path = 0, 0, [iter([(None, obj)])], []  # an iterator per open container
    while stack:
        for key, item in stack[-1]:
            entries += 1
            if entries > MAX_CHECKPOINT_ENTRIES:
                raise CheckpointError(
                    f"{source}: more than {MAX_CHECKPOINT_ENTRIES:,} entries in its containers, shared ones counted "
                    "each time (MAX_CHECKPOINT_ENTRIES); not a checkpoint of this kit"
                )
            if isinstance(item, torch.Tensor):
                kind = _unusual_kind(item)
                name = _dotted(path + [key]) if key is not None else "(the whole file)"
                if kind:  # the first computation on one raised RuntimeError or NotImplementedError, naming no file
                    raise CheckpointError(f"{source}: tensor {name} is {kind}; a checkpoint holds dense CPU tensors")
                declared += item.numel() * item.element_size()
                if declared > max_bytes:
                    raise CheckpointError(
                        f"{source}: tensor {name} of shape {tuple(item.shape)} takes the tensors "
                        f"past {max_bytes / 1e6:,.0f} MB (MAX_CHECKPOINT_BYTES), whatever the file stores; refused"
                    )
            elif isinstance(item, (dict, list, tuple, set, frozenset)):
                if len(stack) > MAX_CHECKPOINT_NESTING:
                    raise CheckpointError(
                        f"{source}: containers nested more than {MAX_CHECKPOINT_NESTING} deep, at "
                        f"{_dotted(path + [key])[:60]}... (MAX_CHECKPOINT_NESTING); not a checkpoint of this kit"
                    )
                stack.append(iter(item.items() if isinstance(item, dict) else enumerate(item)))
                path.append(key)
                break
        else:
            stack.pop()
            if path:
                path.pop()


def _unusual_kind(tensor: torch.Tensor) -> str | None:
    """What a tensor is, if not a plain dense one in memory: sparse, on the meta device, nested or quantized."""
    if tensor.layout != torch.strided:
        return f"a {str(tensor.layout).replace('torch.', '')} tensor"
    if tensor.device.type != "cpu":
        return f"a tensor on the {tensor.device.type!r} device (no data)"
    if tensor.is_nested or tensor.is_quantized:
        return "a nested tensor" if tensor.is_nested else f"a quantized tensor ({tensor.dtype})"
    return None


def check_tensors(state: dict, source: str) -> dict:
    """``state`` with floating tensors as float32; ``CheckpointError`` naming the first unsound tensor."""
    checked = {}
    for key, tensor in state.items():
        role, name = key.rsplit(".", 1)[-1], brief(key)
        if role == "num_batches_tracked":
            if tensor.dtype.is_floating_point or tensor.is_complex() or tensor.dtype == torch.bool:
                raise CheckpointError(f"{source}: tensor {name} must be an integer counter, got {tensor.dtype}")
            checked[key] = tensor
            continue
        if not tensor.dtype.is_floating_point:
            raise CheckpointError(
                f"{source}: tensor {name} has dtype {tensor.dtype}; weights must be real floating point"
            )
        tensor = tensor.float()
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"{source}: tensor {name} holds NaN or infinite values")
        if role == "running_var" and (tensor < 0).any():
            raise CheckpointError(f"{source}: tensor {name} holds negative variances")
        checked[key] = tensor
    return checked


def latent_dim_of(config: dict, state: dict, source: str) -> int:
    """The latent size, from the config checked against the tensors (``(latent_dim, 2560)`` heads), bounded."""
    heads = {k: t for k, t in state.items() if t.dim() == 2 and t.shape[1] == ENCODED_FEATURES}
    from_tensors = {int(t.shape[0]) for t in heads.values()}
    value = config.get("latent_dim")
    if value is None:
        if len(from_tensors) != 1:
            raise CheckpointError(
                f"{source}: no 'latent_dim' in the config and no single (latent_dim, 2560) weight to infer it from"
            )
        value = from_tensors.pop()
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LATENT_DIM:
        raise CheckpointError(
            f"{source}: config latent_dim={_REPR.repr(value)} is not a whole number in 1..{MAX_LATENT_DIM}"
        )
    if from_tensors and value not in from_tensors:
        wrong = "; ".join(f"{brief(k)}: file {tuple(t.shape)} vs model ({value}, 2560)" for k, t in heads.items())
        raise CheckpointError(f"{source}: tensors of the wrong shape for config latent_dim={value}: {wrong}")
    return value


def has_decoder_batchnorm(state: dict) -> bool:
    """True if the file has BatchNorm in its decoder: 7 BatchNorm layers (4 encoder + 3 decoder), not 4."""
    return sum(name.rsplit(".", 1)[-1] == "running_var" for name in state) > 4
