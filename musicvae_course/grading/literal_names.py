"""Which names a ``getattr`` call of a cell fetches are fixed in its code: for the shortcut check of :mod:`.cases`.

``getattr(model, part)`` inside ``for part in ("encoder", "fc_mu"):`` fetches only the written names (an honest
loop over a model's parts), but a loop variable is that only inside its own loop, and only while nothing there binds
it again. Round 8: the check took any name that some loop of the cell ran over string literals as fixed, wherever
the call stood, so ``for name in ("x",): pass`` then ``name = "__glo" + "bals__"`` (or ``name += ...``, a parameter
or a walrus of that name) made ``getattr(answer, name)`` read the notebook's namespace unnoticed.
"""

from __future__ import annotations

import ast

# scopes that run later than the loop (a closure reads the variable when it is called: rebound by then)
_LATER = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)


def _now(nodes):
    """The nodes under ``nodes`` that run as they are reached: not inside a function, lambda, class or a
    comprehension of their own (a generator runs later)."""
    stack = list(nodes)
    while stack:
        node = stack.pop()
        yield node
        stack += [c for c in ast.iter_child_nodes(node) if not isinstance(c, _LATER + _COMPREHENSIONS)]


def _rebinds(node, name: str, target) -> bool:
    """Whether ``node`` binds ``name`` (other than the loop's own ``target``)."""
    if isinstance(node, ast.Name):
        return node.id == name and not isinstance(node.ctx, ast.Load) and node is not target
    if isinstance(node, ast.arg):
        return node.arg == name
    if isinstance(node, (ast.Global, ast.Nonlocal)):
        return name in node.names
    if isinstance(node, ast.alias):
        return (node.asname or node.name).split(".")[0] == name
    return isinstance(node, ast.ExceptHandler) and node.name == name


def loop_literals(tree) -> dict[int, set[str]]:
    """``{id(call): loop variables fixed there}``: for each call that runs inside a ``for`` loop or a comprehension
    over a literal tuple, list or set of strings, the loop's variable, unless the cell binds that name anywhere
    else in the loop or declares it ``global``/``nonlocal``."""
    fixed: dict[int, set[str]] = {}
    everywhere = list(ast.walk(tree))
    for node in everywhere:
        if isinstance(node, ast.For):
            loops, body = [node], node.body
        elif isinstance(node, _COMPREHENSIONS):
            loops, body = node.generators, [c for c in ast.iter_child_nodes(node)]
        else:
            continue
        for loop in loops:
            items = loop.iter.elts if isinstance(loop.iter, (ast.Tuple, ast.List, ast.Set)) else None
            if not isinstance(loop.target, ast.Name) or not items:
                continue
            if not all(isinstance(i, ast.Constant) and isinstance(i.value, str) for i in items):
                continue
            name, inside = loop.target.id, list(_now(body))
            if any(_rebinds(n, name, loop.target) for n in inside) or any(
                isinstance(n, (ast.Global, ast.Nonlocal)) and name in n.names for n in everywhere
            ):
                continue
            for call in inside:
                if isinstance(call, ast.Call):
                    fixed.setdefault(id(call), set()).add(name)
    return fixed


def literal_name(name, fixed: set[str]) -> bool:
    """Whether an attribute name a call fetches is fixed in the code: a string literal, or a loop variable fixed at
    that call (``fixed``: from :func:`loop_literals`; the forbidden-name check still reads the loop's strings)."""
    if isinstance(name, ast.Constant) and isinstance(name.value, str):
        return True
    return isinstance(name, ast.Name) and name.id in fixed
