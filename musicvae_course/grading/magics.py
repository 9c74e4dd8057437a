"""A cell's code as the kernel runs it, for the shortcut check: IPython syntax turned into the Python it runs.

Used by :func:`.cases.shortcut_uses`. Blanking ``%`` and ``!`` lines (what the grader does with cells it runs itself)
hid code from the check that the kernel still ran: ``%time sort_3 = kit_sort`` binds the answer to the kit's
function, and a cell holding ``x = !true`` or ``kit_sort?`` anywhere did not parse as Python, so it was skipped whole
while IPython ran it. Here IPython's own input transformer turns the cell into Python; then each magic call it made is
replaced by the Python that magic runs in the notebook (``%time``, ``%%capture``... run their line or body), dropped
when it runs none (``%matplotlib``), or named as a use that can hide a call (``%run``, ``!`` shell commands, any
magic not known here).
"""

from __future__ import annotations

import ast

#: Magics that run their argument (line, or the cell's body) as Python in the notebook's namespace.
CODE_MAGICS = {"time", "timeit", "prun", "capture", "debug"}
#: Magics that run no code of the cell's and bind no name of the answer (help, plots, listing, display).
QUIET_MAGICS = {"matplotlib", "config", "autoreload", "pinfo", "pinfo2", "pdoc", "pdef", "psource", "pfile"}
QUIET_MAGICS |= {"who", "whos", "who_ls", "pwd", "ls", "precision", "xmode", "html", "markdown", "latex", "svg"}
QUIET_MAGICS |= {"javascript", "js", "pip", "conda", "history", "lsmagic", "magic", "page", "doctest_mode"}
QUIET_MAGICS |= {"cd", "env", "set_env", "reset", "reset_selective"}
#: ...and with these arguments only (IPython's own extension; another one is a module that runs code)
QUIET_CALLS = {("load_ext", "autoreload"), ("reload_ext", "autoreload")}
_CALLS = {"run_line_magic", "run_cell_magic", "getoutput", "system"}


def ipython_python(source: str) -> str:
    """The cell as IPython hands it to Python (magics as ``get_ipython()`` calls); the text itself if IPython
    cannot transform it."""
    from IPython.core.inputtransformer2 import TransformerManager  # the kernel's own transformer

    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - then the kernel cannot run it either
        return source


def _code_in(text: str) -> str | None:
    """The Python in a magic's argument: the longest tail that parses (options such as ``-n1 -r1`` come first)."""
    words = text.split(" ")
    for start in range(len(words)):
        tail = " ".join(words[start:])
        try:
            ast.parse(tail)
        except (SyntaxError, ValueError):
            continue
        return tail
    return None


class _Magics(ast.NodeTransformer):
    """Replaces ``get_ipython().run_line_magic(...)`` and the like by ``None``, collecting what they run."""

    def __init__(self):
        self.code: list[str] = []
        self.uses: list[str] = []
        self.made = False

    def visit_Call(self, node):
        self.generic_visit(node)
        func = node.func
        made = (
            isinstance(func, ast.Attribute)
            and func.attr in _CALLS
            and isinstance(func.value, ast.Call)
            and isinstance(func.value.func, ast.Name)
            and func.value.func.id == "get_ipython"
            and node.args
            and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
        )
        if not made:
            return node
        self.made = True
        args = [a.value for a in node.args]
        if func.attr in ("getoutput", "system"):
            self.uses.append("a shell command (!)")
        elif args[0] in CODE_MAGICS:
            found = [_code_in(text) for text in args[1:]]
            if any(code is None for code in found):
                self.uses.append(f"%{args[0]} with code the check cannot read")
            self.code += [code for code in found if code]
        elif args[0] not in QUIET_MAGICS and (args[0], " ".join(args[1:]).strip()) not in QUIET_CALLS:
            self.uses.append(f"%{args[0]}")
        return ast.copy_location(ast.Constant(None), node)


def python_of_cell(source: str) -> tuple[ast.Module | None, str, list[str]]:
    """``(tree, text)`` of the plain Python the kernel runs for the cell (tree None when it does not parse), and the
    uses of magics that can run code the check cannot read (such a use can bind any name)."""
    text = source
    try:  # plain Python runs as it is (IPython changes only what is not Python); its transformer is slow on megabytes
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        text = ipython_python(source)
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            return None, text, []
    if "get_ipython" not in text:  # no magic, and walking a tree of megabytes costs seconds
        return tree, text, []
    magics = _Magics()
    tree = magics.visit(tree)
    if not magics.made:
        return tree, text, []
    parts = [ast.unparse(tree)]
    for code in magics.code:  # a magic's code is Python, possibly with magic calls of its own
        inner, inner_text, uses = python_of_cell(code)
        parts.append(inner_text if inner is not None else "")
        magics.uses += uses
    text = "\n".join(parts)
    return ast.parse(text), text, magics.uses
