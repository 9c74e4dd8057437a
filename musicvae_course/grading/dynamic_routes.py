"""How code can reach an object without naming it: the vocabulary of the shortcut check in :mod:`.cases`.

A question that forbids kit functions (``"grading": {"forbidden": [...]}``) scores 0 when the answer's code uses
one of these routes, since each can hide a call to the kit (docs/grading.md lists them and what is not defended).
Each set grew from a submission that used it and scored full points; the round is named where it came from.
"""

from __future__ import annotations

import ast
import re

# Ways to reach a kit function without naming it: the answer's code may not use them when the question forbids
# functions (honest answers to these exercises need none of them).
DYNAMIC_NAMES = {"eval", "exec", "compile", "__import__", "globals", "vars", "locals", "get_ipython", "__builtins__"}
DYNAMIC_MODULES = {"importlib", "inspect", "pickle", "marshal", "runpy", "pkgutil", "gc", "ctypes"}
# the notebook's namespace by another name: `__main__.answer = kit_function`, `builtins.helper = kit_function`
DYNAMIC_MODULES |= {"__main__", "builtins"}
# attributes that lead to a namespace (IPython's, a frame's): `IPython.get_ipython().user_ns["answer"] = ...`,
# `sys._getframe().f_globals[...]` bind any name without naming it
DYNAMIC_ATTRIBUTES = {"get_ipython", "user_ns", "user_global_ns", "user_module", "_getframe", "f_globals"}
DYNAMIC_ATTRIBUTES |= {"f_locals", "f_back", "tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_builtins"}
DYNAMIC_ATTRIBUTES |= {"_current_frames"}
# ...and IPython's shell reached as a singleton (`IPKernelApp.instance().shell.push({"answer": kit_function})`)
DYNAMIC_ATTRIBUTES |= {"shell", "instance", "push", "run_cell", "run_line_magic", "run_cell_magic", "ex", "ev"}
OWN_MODULE = "module of your own"
# getattr(obj, name) and operator.attrgetter(name) fetch by a computed name; hasattr and delattr fetch nothing
ATTRIBUTE_CALLS = {"getattr", "setattr", "attrgetter", "methodcaller"}
# Other routes from a string built at run time to an object (round 8: each scored full points with the forbidden
# function): string.Formatter's field lookup (`get_field("0.__glo" + "bals__", ...)`), typing's evaluation of string
# annotations in a function's globals (`get_type_hints`), a frame's builtins (`f_builtins["get" + "attr"]`) found
# through `sys._current_frames()`, and modules that import or unpickle by name (`pydoc.locate`, `_pickle.loads`)
FETCH_ATTRIBUTES = {"Formatter", "get_field", "get_value", "get_type_hints", "ForwardRef", "_evaluate", "_eval_type"}
FETCH_ATTRIBUTES |= {"read_pickle", "ForkingPickler", "Unpickler"}
DYNAMIC_MODULES |= {"pydoc", "_pickle", "shelve", "_imp", "_frozen_importlib", "zipimport"}
DYNAMIC_MODULES |= {"_frozen_importlib_external", "dill", "cloudpickle", "joblib"}
# ...and loaders that unpickle when asked to: np.load(..., allow_pickle=True), torch.load(..., weights_only=False)
UNPICKLING_KEYWORDS = {"allow_pickle": False, "weights_only": True}
# IPython's output cache: what a cell showed last (`_`, `__`, `___`), by number (`_5`, `Out[5]`, `_oh[5]`), and the
# display hook that holds it (`sys.displayhook._`)
OUTPUTS = re.compile(r"^(_{1,3}|_\d+|Out|_oh)$")
FETCH_ATTRIBUTES |= {"displayhook"}
# Methods that put a value into a container (`helpers.append(kit_function)`); `np.append(a, b)`, a module's function
# of the same name, changes nothing: names bound by imports are left out
IMPORTS = (ast.Import, ast.ImportFrom)
ANY_NAME = "*"
MUTATORS = {"append", "extend", "insert", "update", "setdefault", "add", "appendleft", "extendleft", "put", "push"}
# Dunders honest answers use (a class of their own, `if __name__ == "__main__"`); the rest (__globals__, __dict__,
# __subclasses__, __wrapped__, ...) lead from an object to others by name
HARMLESS_DUNDERS = {"__name__", "__qualname__", "__doc__", "__init__", "__version__", "__main__", "__file__"}
HARMLESS_DUNDERS |= {"__class__", "__call__", "__len__", "__iter__", "__next__", "__repr__", "__str__", "__eq__"}
HARMLESS_DUNDERS |= {"__lt__", "__hash__", "__enter__", "__exit__", "__post_init__", "__slots__", "__all__"}
DUNDER = re.compile(r"^__\w+__$")
DYNAMIC_NOTE = " (a dynamic lookup)"
# Round 9: doctest runs the examples of any docstring, or of a string it is handed, in the notebook's namespace;
# unittest.mock's `patch("__main__.answer", new=...)` (imported from it: :mod:`.code_strings`; `fig.patch` is a
# plot's background) and YAML's unsafe loaders (`!!python/name:`, `/apply:`) reach
# an object by a dotted name and can set it; `breakpoint(*args)` calls the hook that `PYTHONBREAKPOINT` names
# (`builtins.exec`) with its arguments; and the import machinery (`sys.meta_path`, `path_hooks`) decides which file
# an import runs: the kernel imports installed modules first, and code that changes that can run its own
DYNAMIC_MODULES |= {"doctest"}
NAMED_SETTERS = {"mock", "Loader", "UnsafeLoader", "FullLoader", "unsafe_load", "unsafe_load_all"}
NAMED_SETTERS |= {"full_load", "full_load_all"}
FETCH_ATTRIBUTES |= NAMED_SETTERS
DYNAMIC_ATTRIBUTES |= {"breakpointhook", "meta_path", "path_hooks", "path_importer_cache"}
# ...of which these can also bind names: a cell using them may define any answer, so every question checks it
REBINDING = {"exec", "eval", "compile", "globals", "vars", "locals", "get_ipython", "__builtins__", "__dict__"}
REBINDING |= {"__globals__", "setattr", "delattr", "modules", "__main__", "builtins"} | DYNAMIC_ATTRIBUTES
REBINDING |= NAMED_SETTERS
# ...and every module that can reach the notebook's namespace (round 8: a scratch cell that names no answer,
# `importlib.import_module("__main__").sort_1 = kit_sort`, a pickle that calls setattr, was never read), except in
# uses that reach no namespace (`gc.collect()`, `pickle.dump(...)`, `inspect.getsource(...)`, a plain import)
DYNAMIC_MODULES |= {"code", "codeop"}  # run a string, as exec does
REBINDING |= DYNAMIC_MODULES | {"__import__", "gc.get_referrers", "gc.get_objects", "gc.get_referents"}
SAFE_USES = {"gc": {"collect", "disable", "enable", "isenabled", "get_count", "get_stats", "freeze"}}
SAFE_USES |= {"pickle": {"dump", "dumps", "HIGHEST_PROTOCOL", "DEFAULT_PROTOCOL", "PicklingError"}}
SAFE_USES |= {"inspect": {"getsource", "getsourcelines", "signature", "getdoc", "getfile", "cleandoc", "isfunction"}}
# a scratch cell's `importlib.reload(musicvae_course)` after editing the kit is common and honest; import_module is not
SAFE_USES |= {"importlib": {"reload", "invalidate_caches"}}


def import_bindings(tree: ast.AST | None) -> set[str]:
    """Names a cell's imports bind (``import numpy as np`` -> ``np``; ``import os.path`` -> ``os``); none for a cell
    that does not parse. A module's name reaches that module only where some cell binds it so."""
    if tree is None:
        return set()
    return {(a.asname or a.name).split(".")[0] for n in ast.walk(tree) if isinstance(n, IMPORTS) for a in n.names}
