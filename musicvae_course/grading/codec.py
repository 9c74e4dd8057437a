"""Plain data across the process boundary: the kernel-side helper (a code string) and the strict decoder.

The grader never unpickles or evaluates anything that comes from a student's kernel. Values cross as JSON text
with a few tagged forms, and :func:`decode` rebuilds them checking every node: exact JSON types, known tags,
numeric dtypes only, bounded sizes and depth. A value that is anything else (a subclass, a foreign object, a
rigged ``__eq__``) cannot come back; the kernel side names its type instead, so the feedback can say
"slerp returned a <class 'Foo'>". Plain data (the grading contract): None, bool, int, float, str, bytes, list,
tuple, dict with str keys, numpy arrays and scalars (bool/int/uint/float), torch tensors (sent as arrays, decoded
as CPU tensors of the same dtype when the grader has torch loaded), ``pathlib`` paths, nested.

Wire forms: JSON null/true/false/int/float/str/list stand for themselves; ``{"$": tag, ...}`` for the rest:
``tuple`` (``v``), ``dict`` (``k``, ``v``), ``bytes`` (``b64``), ``float`` (``v``: "nan"/"inf"/"-inf"),
``nd``/``tensor``/``scalar`` (``dtype``, ``shape``, ``b64``), ``path`` (``v``), ``ref`` (``name``: a grader-side
object passed by name, resolved in the kernel), ``foreign`` (``type``: a value that is not plain data).

:data:`KERNEL_HELPER` is executed in each student kernel before any student code. It defines ``_mvc_grader``
(calls, fetches, snapshots of protected objects). Student code can replace it, but all it can then forge is
data that its own functions could have returned anyway: the verdict is computed in the grader's process.
"""

from __future__ import annotations

import ast
import base64
import json
import sys

from .kernel_state import STATE_SOURCE

MAX_TEXT = 64 * 1024 * 1024  # characters of one encoded value (a few (88, 32) rolls are ~100 kB)
MAX_NODES = 200_000
MAX_DEPTH = 32
DTYPE_KINDS = "biuf"  # bool, int, uint, float; no object, string, complex or structured arrays
# json.loads builds every value before _strict can count them: 64 MB of "[[],[],..." would be 20 million lists
# (gigabytes, seconds) in the grader. Each value but the first follows a "[", "," or ":", so counting those
# characters (strings included, which only overcounts) bounds the values; a tagged array is about ten of them.
MAX_SEPARATORS = 16 * MAX_NODES


class DecodeError(ValueError):
    """The kernel sent something that is not plain data (or is too big); the message says what."""


# The kernel side. Kept as one string: it runs in the student's kernel (which imports the grading package
# nowhere), and the grader encodes arguments with the same functions (exec'd below), so there is one codec.
ENCODER_SOURCE = r'''
import base64 as _b64, json as _json, math as _math, pathlib as _pathlib, sys as _sys

def _mvc_encode(value, refs=None, depth=0):
    """Plain data -> JSON-able structure; refs: {id(obj): name} of objects that travel by name."""
    if depth > 32:
        raise ValueError("nested too deeply")
    t = type(value)
    if refs and id(value) in refs:
        return {"$": "ref", "name": refs[id(value)]}
    if value is None or t is bool or t is str:
        return value
    if t is int:
        return value
    if t is float:
        return value if _math.isfinite(value) else {"$": "float", "v": repr(value)}
    if t is list:
        return [_mvc_encode(v, refs, depth + 1) for v in value]
    if t is tuple:
        return {"$": "tuple", "v": [_mvc_encode(v, refs, depth + 1) for v in value]}
    if t is dict:
        if not all(type(k) is str for k in value):
            return {"$": "foreign", "type": "dict with non-str keys"}
        return {"$": "dict", "k": list(value), "v": [_mvc_encode(v, refs, depth + 1) for v in value.values()]}
    if t is bytes:
        return {"$": "bytes", "b64": _b64.b64encode(value).decode()}
    if t in (_pathlib.PosixPath, _pathlib.PurePosixPath, _pathlib.WindowsPath, _pathlib.PureWindowsPath):
        return {"$": "path", "v": str(value)}
    np = _sys.modules.get("numpy")
    torch = _sys.modules.get("torch")
    if np is not None and t is np.ndarray or (np is not None and isinstance(value, np.generic) and
                                              t.__module__ == "numpy"):
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            return {"$": "foreign", "type": "numpy array of dtype %s" % arr.dtype}
        arr = np.array(arr, order="C")  # ascontiguousarray would make a 0-d scalar 1-d
        return {"$": "nd" if t is np.ndarray else "scalar", "dtype": arr.dtype.str, "shape": list(arr.shape),
                "b64": _b64.b64encode(arr.tobytes()).decode()}
    if torch is not None and t in (torch.Tensor, torch.nn.Parameter):
        if value.dtype == torch.bfloat16:
            value = value.float()
        arr = value.detach().cpu().contiguous().numpy()
        if arr.dtype.kind not in "biuf":
            return {"$": "foreign", "type": "tensor of dtype %s" % value.dtype}
        return {"$": "tensor", "dtype": arr.dtype.str, "shape": list(arr.shape),
                "b64": _b64.b64encode(arr.tobytes()).decode()}
    return {"$": "foreign", "type": repr(t)}

def _mvc_rebuild(node, resolve, tensors=True):
    """JSON structure -> values (the kernel's decoder for arguments; the grader's is strict, in codec.py)."""
    if type(node) is list:
        return [_mvc_rebuild(v, resolve, tensors) for v in node]
    if type(node) is not dict:
        return node
    tag = node.get("$")
    if tag == "tuple":
        return tuple(_mvc_rebuild(v, resolve, tensors) for v in node["v"])
    if tag == "dict":
        return {k: _mvc_rebuild(v, resolve, tensors) for k, v in zip(node["k"], node["v"])}
    if tag == "float":
        return float(node["v"])
    if tag == "bytes":
        return _b64.b64decode(node["b64"])
    if tag == "path":
        return _pathlib.Path(node["v"])
    if tag == "ref":
        return resolve(node["name"])
    if tag in ("nd", "tensor", "scalar"):
        import numpy as np
        arr = np.frombuffer(_b64.b64decode(node["b64"]), dtype=np.dtype(node["dtype"])).reshape(node["shape"]).copy()
        if tag == "scalar":
            return arr[()]
        torch = _sys.modules.get("torch")
        if tag == "tensor" and tensors and torch is not None:
            return torch.from_numpy(arr)
        return arr
    raise ValueError("unknown tag %r" % (tag,))
'''

KERNEL_HELPER = (
    ENCODER_SOURCE
    + STATE_SOURCE
    + r'''
import builtins as _builtins, os as _os

class _MvcGrader:
    """The grader's half in the kernel: calls and fetches by request, snapshots of protected objects."""

    def __init__(self):
        self.snapshots = {}
        self.given = {}  # the question's given helpers, as define() made them: what the tests call by those names
        self.bindings = {}  # what the locked cells bound (np, OUT, models), as they bound it: the helpers' globals
        self.state, self.switches, self.hooks, self.outside = _MvcState, None, None, None

    def _ns(self):
        return get_ipython().user_ns

    def _resolve(self, name):
        """A grader object sent by name (``model``): the kernel's as the locked cells bound it, not what the name
        holds now (a function the tests call first could rebind it: ``global small_vae``)."""
        return self.bindings[name] if name in self.bindings else self._ns()[name]

    def _lookup(self, name):
        return self.given[name] if name in self.given else self._ns()[name]

    def describe(self, names):
        ns, out = self._ns(), {}
        for name in names:
            if name in self.given:
                out[name] = "callable"
                continue
            out[name] = "missing" if name not in ns else ("callable" if callable(ns[name]) else "value")
        return _json.dumps(out)

    def _reply(self, fn):
        try:
            value = fn()
        except BaseException as exc:  # SystemExit and KeyboardInterrupt of student code too
            if type(exc) is KeyboardInterrupt:
                raise
            return _json.dumps({"raised": {"type": type(exc).__name__, "message": str(exc)[:2000]}})
        try:
            return _json.dumps({"ok": _mvc_encode(value)}, allow_nan=False)
        except Exception as exc:
            return _json.dumps({"ok": {"$": "foreign", "type": "unencodable value (%s)" % type(exc).__name__}})

    def fetch(self, name):
        return self._reply(lambda: self._ns()[name])

    def call(self, request):
        req = _json.loads(request)
        args = _mvc_rebuild(req["args"], self._resolve)
        kwargs = _mvc_rebuild(req["kwargs"], self._resolve)
        return self._reply(lambda: self._lookup(req["name"])(*args, **kwargs))

    def define(self, source, keep=()):
        """Run the instructor's given helpers again (a student may have changed them); not through run_cell, so
        input transformers do not touch them. They get globals of their own: the notebook's as they are now, with
        what the locked cells bound as they bound it and no builtin rebound, so a student's function that the tests
        call first and that rebinds a helper or a name a helper reads (``global sorted``, ``np``) changes neither
        (the tests call the helpers kept here). ``keep``: the names the source's solution cells bind, the student's
        even where a builtin has that name."""
        ns = self._ns()
        scope = {k: v for k, v in ns.items() if k.startswith("__") or k in keep or not hasattr(_builtins, k)}
        scope.update(self.bindings)
        scope["__builtins__"] = _builtins
        before = dict(scope)
        exec(compile(source, "<given helpers>", "exec"), scope)
        self.given = {k: v for k, v in scope.items() if k not in before or before[k] is not v}
        ns.update(self.given)  # the notebook sees them too, as before
        self.given = {k: self.state.switched(v, self.switches) if type(v).__name__ == "function" else v
                      for k, v in self.given.items()}  # the tests call them with the locked cells' torch switches
        return "ok"

    def snapshot(self, names):
        """Copy the locked-cell models and torch's switches, to restore before each question (see kernel_state.py)."""
        ns = self._ns()
        self.bindings.update({name: ns[name] for name in names if name in ns})
        for name in names:
            obj = ns.get(name)
            if isinstance(obj, type) or not all(
                    callable(getattr(obj, a, None)) for a in ("state_dict", "load_state_dict", "modules")):
                continue  # not a model (a class such as MusicVAE has these attributes unbound)
            try:
                self.snapshots[name] = (obj, self.state.take_model(obj))
            except Exception:
                continue
        if self.switches is None:  # the first locked cell's: a student's cell may run before a later one
            self.switches = self.state.take_switches()
        self.hooks = self.state.take_hooks()

    def restore(self):
        self.given, self.outside = {}, self.state.take_switches()
        ns = self._ns()
        for name, (obj, snap) in self.snapshots.items():
            ns[name] = obj
            try:  # one model that torch refuses to restore leaves the others restored
                self.state.put_model(obj, snap)
            except Exception:
                pass
        self.state.put_hooks(self.hooks)
        return "ok"

    def resume(self):  # after the tests: torch's switches as the student's cells left them, not as hidden tests did
        self.state.put_switches(self.outside)
        return "ok"

class _MvcInstalledFirst:
    """A module that is installed (site-packages, the standard library) is imported from where it is installed, never
    from a file of the same name in the notebook's folder, which lies before site-packages on the kernel's path
    (round 9: a scratch cell wrote yaml.py, whose import then ran code the shortcut check never read)."""

    def __init__(self, paths):
        self.paths = paths

    def find_spec(self, name, path=None, target=None):
        if path is not None or "." in name:
            return None  # submodules are found in their package
        from importlib.machinery import PathFinder
        return PathFinder.find_spec(name, self.paths)

_mvc_here = _os.path.realpath(_os.getcwd())
_sys.meta_path.insert(  # just before the path finder: the finders before it (setuptools' shims) keep their turn
    next((i for i, f in enumerate(_sys.meta_path) if getattr(f, "__name__", "") == "PathFinder"), 0),
    _MvcInstalledFirst(
    [p for p in _sys.path if p and _os.path.realpath(p) != _mvc_here  # '' is the notebook's folder; path hooks
     and (_os.path.isabs(p) or not _os.path.exists(p))]))  # (editable installs) are no folder
_mvc_grader = _MvcGrader()
get_ipython().user_ns_hidden["_mvc_grader"] = _mvc_grader
del _MvcGrader, _MvcInstalledFirst, _MvcState, _mvc_here
'''
)

_GRADER_SIDE: dict = {}
exec(compile(ENCODER_SOURCE, "<grading codec>", "exec"), _GRADER_SIDE)


def encode(value, refs: dict | None = None) -> str:
    """Grader-side value -> JSON text for the kernel. ``refs``: ``{id(obj): name}`` of objects sent by name.

    Raises TypeError naming the type for a value that is neither plain data nor in ``refs``.
    """
    node = _GRADER_SIDE["_mvc_encode"](value, refs)
    bad = _find_foreign(node)
    if bad is not None:
        raise TypeError(f"a test argument of type {bad} cannot be sent to the student's kernel")
    return json.dumps(node, allow_nan=False)


def _find_foreign(node):
    if type(node) is list:
        return next((b for b in map(_find_foreign, node) if b is not None), None)
    if type(node) is dict:
        if node.get("$") == "foreign":
            return node["type"]
        return next((b for b in map(_find_foreign, node.get("v", [])) if b is not None), None)
    return None


class Foreign:
    """Decoded stand-in for a value the kernel could not send as plain data; ``type_name`` says what it was."""

    def __init__(self, type_name: str):
        self.type_name = type_name


def decode(text, *, max_text: int = MAX_TEXT):
    """Strictly decode JSON text from a kernel into plain values. Raises DecodeError saying what is wrong.

    A ``foreign`` node decodes to a :class:`Foreign` (the caller reports it); ``ref`` nodes are refused (only the
    grader sends them). Torch tensors become CPU tensors when the grader process has torch loaded (the tests
    import it), else numpy arrays.
    """
    if type(text) is not str:
        raise DecodeError(f"expected JSON text, got {type(text).__name__}")
    if len(text) > max_text:
        raise DecodeError(f"the value is {len(text):,} characters encoded (limit {max_text:,})")
    counter = [0]
    return _strict(loads(text), 0, counter)


def loads(text: str):
    """``json.loads`` of text from a kernel, refused (DecodeError) before parsing when it could hold more values
    than the decoder accepts, or when it is not JSON."""
    if type(text) is not str:
        raise DecodeError(f"expected JSON text, got {type(text).__name__}")
    if text.count(",") + text.count("[") + text.count(":") > MAX_SEPARATORS:
        raise DecodeError(f"more than {MAX_NODES:,} values")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"not valid JSON ({exc})") from None


def read_repr(raw) -> str:
    """The str whose ``repr`` a kernel sent (IPython's ``text/plain`` of the helper's JSON answer), or DecodeError.

    ``ast.literal_eval`` would parse any literal the student's code chose to answer with (a replaced helper can
    return an object whose ``repr`` is 128 MB of ``[0,0,...``): that is minutes and gigabytes of the grader's
    time, outside every limit of the kernel. Only one quoted string, with no prefix and no second string after it,
    is parsed; its size is bounded by the caller.
    """
    if type(raw) is not str or len(raw) < 2 or raw[0] not in "'\"" or raw[-1] != raw[0]:
        raise DecodeError("not the repr of a str")
    body = raw[1:-1].replace("\\\\", "").replace("\\" + raw[0], "")  # escaped backslashes first, then quotes
    if raw[0] in body or "\n" in body:  # an unescaped quote ends the string early; a repr is one line
        raise DecodeError("not the repr of a single str")
    try:
        text = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise DecodeError("not the repr of a str") from None
    if type(text) is not str:
        raise DecodeError("not the repr of a str")
    return text


def _no_constant(name):
    raise DecodeError(f"bare {name} is not allowed")


def _strict(node, depth, counter):
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise DecodeError(f"more than {MAX_NODES:,} values")
    if depth > MAX_DEPTH:
        raise DecodeError(f"nested deeper than {MAX_DEPTH}")
    t = type(node)
    if node is None or t is bool or t is str or t is float:
        return node
    if t is int:
        if abs(node) > 1 << 256:
            raise DecodeError("an integer with more than 256 bits")
        return node
    if t is list:
        return [_strict(v, depth + 1, counter) for v in node]
    if t is not dict:
        raise DecodeError(f"unexpected JSON node {t.__name__}")
    tag = node.get("$")
    fields = {
        "tuple": {"v"},
        "dict": {"k", "v"},
        "bytes": {"b64"},
        "float": {"v"},
        "path": {"v"},
        "foreign": {"type"},
        "nd": {"dtype", "shape", "b64"},
        "tensor": {"dtype", "shape", "b64"},
        "scalar": {"dtype", "shape", "b64"},
    }.get(tag)
    if fields is None or set(node) != fields | {"$"}:
        raise DecodeError(f"unknown or malformed tagged value {str(tag)[:40]!r}")
    if tag == "tuple":
        _need(node["v"], list, "tuple values")
        return tuple(_strict(v, depth + 1, counter) for v in node["v"])
    if tag == "dict":
        keys, values = node["k"], node["v"]
        _need(keys, list, "dict keys")
        _need(values, list, "dict values")
        if len(keys) != len(values) or not all(type(k) is str for k in keys) or len(set(keys)) != len(keys):
            raise DecodeError("a dict needs distinct str keys, one per value")
        return {k: _strict(v, depth + 1, counter) for k, v in zip(keys, values)}
    if tag == "float":
        if node["v"] not in ("nan", "inf", "-inf"):
            raise DecodeError(f"bad special float {str(node['v'])[:20]!r}")
        return float(node["v"])
    if tag == "foreign":
        _need(node["type"], str, "foreign type")
        return Foreign(node["type"][:200])
    if tag == "path":
        _need(node["v"], str, "path")
        from pathlib import Path

        return Path(node["v"])
    _need(node["b64"], str, "base64 data")
    try:
        raw = base64.b64decode(node["b64"], validate=True)
    except ValueError:
        raise DecodeError("invalid base64 data") from None
    if tag == "bytes":
        return raw
    return _array(tag, node, raw)


def _need(value, kind, what):
    if type(value) is not kind:
        raise DecodeError(f"{what}: expected {kind.__name__}, got {type(value).__name__}")


def _array(tag, node, raw):
    import numpy as np

    dtype_text, shape = node["dtype"], node["shape"]
    _need(dtype_text, str, "dtype")
    _need(shape, list, "shape")
    if len(shape) > 8 or not all(type(s) is int and 0 <= s for s in shape):
        raise DecodeError(f"bad array shape {shape[:9]}")
    try:
        dtype = np.dtype(dtype_text)
    except TypeError:
        raise DecodeError(f"unknown dtype {dtype_text[:20]!r}") from None
    if dtype.kind not in DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise DecodeError(f"dtype {dtype} is not plain numbers")
    count = 1
    for s in shape:
        count *= s
    if count * dtype.itemsize != len(raw):
        raise DecodeError(f"{len(raw)} bytes do not make an array of shape {tuple(shape)} and dtype {dtype}")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    if tag == "scalar":
        if shape:
            raise DecodeError("a numpy scalar with a shape")
        return array[()]
    torch = sys.modules.get("torch")  # grading/ never imports torch: tests that send tensors have loaded it
    if tag == "tensor" and torch is not None:
        return torch.from_numpy(array)
    return array


def describe_type(value) -> str:
    """How feedback names what came back: ``a tensor``, ``a <class 'Foo'>``..."""
    if isinstance(value, Foreign):
        return f"a {value.type_name}"
    return f"a {type(value).__name__}"
