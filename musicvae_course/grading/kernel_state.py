"""Kernel-side snapshots of what the tests rely on between questions: the models the locked cells made, and torch's
global switches. A code string, run in the student's kernel as part of :data:`codec.KERNEL_HELPER`.

A model's ``state_dict`` is not all of it. What a student's cell attaches to the locked cell's model outlives a
``load_state_dict``: forward hooks and pre-hooks (``model.register_forward_hook(lambda m, i, o: o * 0)`` changed
every later question's outputs), a method patched on the instance (``model.decode = ...``, ``model.forward = ...``,
``model.named_parameters = ...``, which the given helpers that run in the kernel then read), a submodule replaced or
added (``model.fc_mu = nn.Identity()``: its keys no longer matched, ``load_state_dict`` raised and the restore
stopped there, for every model after it too). Torch's global switches, ``torch.set_grad_enabled(False)`` or
``torch.set_default_dtype(torch.float64)`` left on in a scratch cell, broke the given helpers of later questions
(01 q3's ``latent_gradients`` and 03 q3's ``kl_gradients`` returned None for an honest answer), and module hooks
registered for every module (``register_module_forward_hook``) changed every model's outputs.

Restored before each question's tests: each module's ``__dict__`` entries as the snapshot had them (the hook
dicts, ``_modules``, ``_parameters``, ``_buffers`` in place, with their contents), an attribute the student added
that hides a method or a part of the module removed; other attributes a student added (``model.my_cache = {}``) are
kept. Then the dtypes and devices of tensors, the values, modes and ``requires_grad`` flags, and torch's hooks for
every module. Torch's grad mode and default dtype are the locked cells' only while a given helper runs (the
instructor's code, which measures gradients): the student's own code, in the tests as in later cells, keeps the
student's (``torch.set_grad_enabled(False)`` and then ``model(x).numpy()`` works as it did for them), and after the
tests they are put back as the student's cells left them (``_mvc_grader.resume()``): what a hidden test's call of an
answer switched, the student's own run never saw. Everything
here can itself be undone by student code in the kernel (the docs' known limits); it is there so that what an
answer or a scratch cell leaves behind costs no later question and forges no given helper from outside the call.
"""

from __future__ import annotations

STATE_SOURCE = r'''
class _MvcState:
    """Snapshots of models and of torch's global switches, and their restore (no instance state)."""

    @staticmethod
    def take_model(obj):
        """(modules' attributes, state_dict copy, tensor placements, requires_grad flags) of a torch module."""
        modules = list(obj.modules())
        attrs = []
        for m in modules:
            d = vars(m)
            saved = dict(d)
            contents = {k: (list(v.items()) if isinstance(v, dict) else set(v))
                        for k, v in d.items() if isinstance(v, (dict, set))}
            parts = set().union(*(set(d.get(c) or ()) for c in ("_parameters", "_buffers", "_modules")))
            attrs.append((m, saved, contents, parts))
        state = {k: v.detach().clone() for k, v in obj.state_dict().items()}
        placed = [(m, d, k, t.dtype, t.device) for m in modules for d in ("_parameters", "_buffers")
                  for k, t in getattr(m, d).items() if t is not None]
        grads = [(p, p.requires_grad) for m in modules for p in m._parameters.values() if p is not None]
        return attrs, state, placed, grads

    @staticmethod
    def put_model(obj, snap):
        """Put back what take_model saw; raises only where torch itself refuses (the caller goes on)."""
        attrs, state, placed, grads = snap
        for m, saved, contents, parts in attrs:
            d = vars(m)
            for k in [k for k in d if k not in saved]:
                if k in parts or hasattr(type(m), k):  # hides a method or a part: model.forward = ...
                    del d[k]
            for k, v in saved.items():
                if d.get(k, d) is not v:
                    d[k] = v
            for k, items in contents.items():
                box = d[k]
                box.clear()
                box.update(items)
        for m, d, k, dtype, device in placed:  # model.double() swapped in float64 tensors: load_state_dict keeps them
            t = getattr(m, d).get(k)
            if t is not None and (t.dtype != dtype or t.device != device):
                if d == "_parameters":
                    t.data = t.data.to(device=device, dtype=dtype)
                else:
                    m._buffers[k] = t.to(device=device, dtype=dtype)
        obj.load_state_dict(state)
        for p, grad in grads:
            p.requires_grad_(grad)

    @staticmethod
    def take_switches():
        """(torch, grad mode, default dtype), or None before torch is imported."""
        torch = _sys.modules.get("torch")
        return None if torch is None else (torch, torch.is_grad_enabled(), torch.get_default_dtype())

    @staticmethod
    def put_switches(snap):
        if snap is not None:
            torch, grad, dtype = snap
            torch.set_grad_enabled(grad)
            torch.set_default_dtype(dtype)

    @classmethod
    def switched(cls, fn, snap):
        """fn run with the switches of ``snap`` (the locked cells'), the caller's put back after it."""
        take, put = cls.take_switches, cls.put_switches  # not by the class's name: the kernel deletes that

        def helper(*args, **kwargs):
            mine = take()
            put(snap)
            try:
                return fn(*args, **kwargs)
            finally:
                put(mine)

        return helper

    @staticmethod
    def take_hooks():
        """The contents of torch's hooks for every module (``register_module_forward_hook``), by dict."""
        hooks = _sys.modules.get("torch.nn.modules.module")
        return [(v, list(v.items())) for k, v in (vars(hooks).items() if hooks is not None else ())
                if k.startswith("_global_") and isinstance(v, dict)]

    @staticmethod
    def put_hooks(snap):
        for box, items in snap or ():
            box.clear()
            box.update(items)
'''
