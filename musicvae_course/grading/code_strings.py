"""Standard-library calls that run a string as code in the notebook: for the shortcut check of :mod:`.cases`.

The debuggers and profilers (``pdb.run``, ``bdb.Bdb().run``, ``cProfile.run``, ``profile.runctx``,
``trace.Trace().run``) and ``timeit`` (its ``stmt`` and ``setup``) compile a string and run it, as ``exec`` does
(round 9: ``cProfile.run("import __main__ as m; m.sort_2 = m.kit_" + "sort")`` and ``timeit.timeit(setup=...)``
bound the answer to the kit's function and scored full points). A written string is code like the cell's own: it is
read with the cell (``cProfile.run("train(model)")``, ``pdb.run("sort_1([2, 1])")`` stay honest); any other argument
there (a string built at run time, a variable) is code the check cannot read. A function or a lambda is no string:
``timeit.timeit(lambda: sort_1(xs))``, ``timeit.timeit(sort_1)`` run nothing else. ``breakpoint()`` with arguments
hands them to the hook that ``PYTHONBREAKPOINT`` names (``builtins.exec``): honest code calls it without.
"""

from __future__ import annotations

import ast

#: Modules whose functions or classes run a string as code.
RUNNER_MODULES = {"pdb", "bdb", "cProfile", "profile", "timeit", "trace"}
RUNNER_MODULES |= {"IPython.core.debugger", "IPython.terminal.debugger"}  # IPython's Pdb, a pdb.Pdb


def _runner_module(module: str) -> bool:
    return module.split(".")[0] in RUNNER_MODULES or module in RUNNER_MODULES


#: Calls (functions, methods, classes) of them that take code: which positions and keywords are code.
CODE_ARGUMENTS = {
    "run": ((0,), {"statement", "cmd"}),
    "runctx": ((0,), {"statement", "cmd"}),
    "runeval": ((0,), {"expression", "expr"}),
    "timeit": ((0, 1), {"stmt", "setup"}),
    "repeat": ((0, 1), {"stmt", "setup"}),
    "Timer": ((0, 1), {"stmt", "setup"}),
}
#: ...and calls that take a command line (``timeit.main(["-s", code, stmt])``): never readable.
COMMAND_LINES = {"main"}
PARTIAL = {"partial"}  # functools.partial(f, ...) is a function, no string
MOCK_MODULES = {"unittest.mock", "mock"}  # patch("__main__.answer", new=...) sets what a dotted string names


def runner_bindings(trees) -> tuple[set[str], dict[str, str], set[str]]:
    """Over all the cells' trees: (names bound to a runner module, ``{name: what it is}`` of those imported from one
    (``from cProfile import run as r``), names bound by importing any other module, whose ``.run`` is not a
    debugger's: ``subprocess.run``)."""
    modules, functions, others = set(), {}, set()
    for tree in trees:
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.Import):
                for alias in node.names:
                    bound = (alias.asname or alias.name).split(".")[0]
                    (modules if _runner_module(alias.name) else others).add(bound)
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    if _runner_module(node.module):
                        functions[alias.asname or alias.name] = alias.name
                    else:
                        others.add(alias.asname or alias.name)
    return modules, functions, others - modules - set(functions)


def assigned_names(trees) -> set[str]:
    """Names the cells bind other than by ``def``/``class`` (assignments, loops, parameters, imports): such a name
    can hold a string."""
    names = set()
    for tree in trees:
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[0])
            elif isinstance(node, ast.ExceptHandler) and node.name:
                names.add(node.name)
    return names


def _call_name(node: ast.Call, modules: set, functions: dict, others: set) -> str | None:
    """The runner call ``node`` makes (``run``, ``Timer``...), or None: a function imported from a runner module, an
    attribute of one, or a method of an object that is no other module (``pdb.Pdb().run``, ``profiler.runctx``)."""
    func = node.func
    if isinstance(func, ast.Name):
        return functions.get(func.id)
    if not isinstance(func, ast.Attribute):
        return None
    if isinstance(func.value, ast.Name) and func.value.id in modules:
        return func.attr
    if isinstance(func.value, ast.Name) and func.value.id in others:
        return None  # subprocess.run, asyncio.run
    return func.attr if func.attr in CODE_ARGUMENTS and func.attr != "Timer" else None


def _readable(node, assigned: set) -> bool | str:
    """True when an argument in a code position runs nothing the check cannot read; the code, when it is a written
    string; False otherwise."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else True
    if isinstance(node, ast.Lambda):
        return True
    if isinstance(node, ast.Name):
        return node.id not in assigned  # bound only by def: a function
    if isinstance(node, ast.Call):
        func = node.func
        return (isinstance(func, ast.Name) and func.id in PARTIAL) or (
            isinstance(func, ast.Attribute) and func.attr in PARTIAL
        )
    return False


def runner_code(tree, modules: set, functions: dict, others: set, assigned: set) -> tuple[list[str], list[str]]:
    """(the written code strings that the cell's runner calls run, the calls whose code the check cannot read, and
    imports from ``unittest.mock``, whose ``patch`` sets an object named by a string)."""
    code, uses = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in MOCK_MODULES:  # from unittest.mock import patch
            uses.append(f"{node.module}, whose patch sets an object by its dotted name")
            continue
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id == "breakpoint" and (node.args or node.keywords):
            uses.append("breakpoint with arguments, which the hook PYTHONBREAKPOINT names runs")  # breakpoint() is fine
            continue
        if not (modules or functions):
            continue
        name = _call_name(node, modules, functions, others)
        if name in COMMAND_LINES:
            uses.append(f"{name} (a debugger, profiler or timer) with code the check cannot read")
            continue
        if name not in CODE_ARGUMENTS:
            continue
        positions, keywords = CODE_ARGUMENTS[name]
        arguments = [a for i, a in enumerate(node.args) if i in positions or isinstance(a, ast.Starred)]
        arguments += [k.value for k in node.keywords if k.arg in keywords or k.arg is None]  # **options too
        for argument in arguments:
            found = _readable(argument, assigned)
            if found is False:
                uses.append(f"{name} (a debugger, profiler or timer) with code the check cannot read")
            elif isinstance(found, str):
                code.append(found)
    return code, uses
