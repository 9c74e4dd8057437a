"""Protected objects (a model the tests use): snapshot, detect changes, restore. Duck-typed: no torch import.

Used by ``Checker(notebook, protect={"model": model})`` (public tests in the student's kernel) and by the grader
(its own copies of locked-cell objects stay pristine between questions). An object is protectable when it has
``state_dict``, ``load_state_dict`` and ``modules`` (a ``torch.nn.Module``); others are ignored.
"""

from __future__ import annotations


def protectable(obj) -> bool:
    """True for objects with ``state_dict``/``load_state_dict``/``modules`` (torch modules)."""
    if isinstance(obj, type):  # the class MusicVAE has these attributes too, unbound
        return False
    return all(callable(getattr(obj, name, None)) for name in ("state_dict", "load_state_dict", "modules"))


def snapshot(obj):
    """A copy of the object's parameters and buffers (cloned), train/eval flags, requires_grad flags, and each
    tensor's dtype and device (``model.double()`` swaps in new tensors, which ``load_state_dict`` only fills)."""
    state = {key: value.detach().clone() for key, value in obj.state_dict().items()}
    modes = [(module, module.training) for module in obj.modules()]
    grads = [(name, p, p.requires_grad) for name, p in obj.named_parameters()]
    return state, modes, grads, _placements(obj)


def _placements(obj) -> list:
    """(module, "_parameters" or "_buffers", name, dtype, device) of every tensor the object holds."""
    return [
        (module, kind, key, tensor.dtype, tensor.device)
        for module in obj.modules()
        for kind in ("_parameters", "_buffers")
        for key, tensor in getattr(module, kind, {}).items()
        if tensor is not None
    ]


def changes(name: str, obj, snap) -> list[str]:
    """What changed since ``snap``, in words: parameters/buffers by name, train/eval mode, requires_grad."""
    state, modes, grads, placed = snap
    now = obj.state_dict()
    changed = [key for key, value in state.items() if key not in now or not now[key].equal(value)]
    found = []
    if changed or set(now) != set(state):
        listed = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        found.append(f"{name}'s parameters or buffers ({listed or 'their set'})")
    if any(module.training != training for module, training in modes):
        found.append(f"{name}'s train/eval mode")
    if any(p.requires_grad != grad for _, p, grad in grads):
        found.append(f"requires_grad of {name}'s parameters")
    if [place[3:] for place in _placements(obj)] != [place[3:] for place in placed]:
        found.append(f"{name}'s dtype or device (model.double(), .to(...))")
    return found


def restore(obj, snap) -> None:
    """Put back parameters, buffers, modes and requires_grad flags as ``snap`` holds them."""
    state, modes, grads, placed = snap
    for module, kind, key, dtype, device in placed:
        tensor = getattr(module, kind).get(key)
        if tensor is not None and (tensor.dtype != dtype or tensor.device != device):
            if kind == "_parameters":  # the Parameter object stays (optimizers hold it); its data moves back
                tensor.data = tensor.data.to(device=device, dtype=dtype)
            else:
                module._buffers[key] = tensor.to(device=device, dtype=dtype)
    obj.load_state_dict(state)
    for module, training in modes:
        module.training = training
    for _, p, grad in grads:
        p.requires_grad_(grad)


def set_eval(obj) -> None:
    """Eval mode for the object and its submodules (``obj.eval()``)."""
    obj.eval()
