"""A question's test cell as graded cases, and the shortcut check of solution cells (AST, no execution).

Used by the grader (grader-side tests) and by ``check()``. A line ``# CASE <id>: <requirement>`` starts a case;
statements up to the next CASE line belong to it; statements before the first CASE line form the case ``main``.
Weights come from the test cell's metadata ``"grading": {"weights": {"<id>": 2}}`` (default 1 each); a case
earns ``points * weight / sum(weights)``. Shortcuts: ``"grading": {"forbidden": ["latent_point", ...]}`` names
kit functions a question asks the student to write; a solution cell that imports from ``musicvae_course`` or
names one of them loses the question.
"""

from __future__ import annotations

import ast
import functools
import os
import re
import symtable
import sys
from dataclasses import dataclass, field
from importlib.machinery import PathFinder

from .code_strings import assigned_names, runner_bindings, runner_code
from .dynamic_routes import (
    ANY_NAME,
    ATTRIBUTE_CALLS,
    DUNDER,
    DYNAMIC_ATTRIBUTES,
    DYNAMIC_MODULES,
    DYNAMIC_NAMES,
    DYNAMIC_NOTE,
    FETCH_ATTRIBUTES,
    HARMLESS_DUNDERS,
    MUTATORS,
    OUTPUTS,
    OWN_MODULE,
    REBINDING,
    SAFE_USES,
    UNPICKLING_KEYWORDS,
    import_bindings,
)
from .literal_names import literal_name, loop_literals
from .magics import python_of_cell
from .markers import GradedStatement, split_tests

CASE_LINE = re.compile(r"^\s*#\s*CASE\s+([A-Za-z0-9_.-]+)\s*:\s*(.*?)\s*$")
KIT_PACKAGE = "musicvae_course"


@dataclass
class Case:
    """One graded case: id, the requirement in words, its statements (code with original line numbers)."""

    case_id: str
    requirement: str
    statements: list[GradedStatement] = field(default_factory=list)
    weight: float = 1.0

    @property
    def hidden(self) -> bool:
        return any(s.hidden for s in self.statements)


def grading_metadata(cell) -> dict:
    """The test cell's ``metadata.grading`` dict (weights, forbidden), or ``{}``."""
    meta = cell.get("metadata", {}).get("grading") if isinstance(cell, dict) else None
    return meta if isinstance(meta, dict) else {}


def drop_hidden_weights(cell) -> None:
    """Keep in a student test cell's ``metadata.grading.weights`` only the cases its source still shows: a hidden
    case's id says what it checks (``exact``, ``gradients``). Grading reads the weights from the instructor's
    source, so nothing else changes."""
    grading = grading_metadata(cell)
    if isinstance(grading.get("weights"), dict):
        public = {"main"} | {m.group(1) for line in cell.source.split("\n") if (m := CASE_LINE.match(line))}
        grading["weights"] = {k: v for k, v in grading["weights"].items() if k in public}


def split_cases(source: str, weights: dict | None = None, where: str = "test cell") -> list[Case]:
    """The test cell's cases in order; a cell without CASE lines is one case ``main`` (all or nothing).

    Raises ValueError naming the cell for duplicate case ids or weights of unknown cases or not > 0.
    """
    starts = []  # (line number 1-based, id, requirement)
    for number, line in enumerate(source.split("\n"), start=1):
        match = CASE_LINE.match(line)
        if match:
            starts.append((number, match.group(1), match.group(2)))
    cases = [(0, Case("main", "the tests before the first CASE line"))]
    for number, case_id, requirement in starts:
        if case_id in [c.case_id for _, c in cases]:
            raise ValueError(f"{where}: case {case_id!r} appears twice")
        cases.append((number, Case(case_id, requirement)))
    for statement in split_tests(source, where):
        owner = [case for number, case in cases if number <= statement.lineno][-1]
        owner.statements.append(statement)
    ids = [c.case_id for _, c in cases]
    cases = [c for _, c in cases if c.statements or c.case_id != "main"]
    weights = weights or {}
    for case_id, weight in weights.items():
        if case_id not in ids:
            raise ValueError(f"{where}: a weight for case {case_id!r}, which does not exist (cases: {ids})")
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0:
            raise ValueError(f"{where}: the weight of case {case_id!r} must be a number > 0, not {weight!r}")
    for case in cases:
        case.weight = float(weights.get(case.case_id, 1))
    return cases


def case_points(points: float, cases: list[Case], passed: list[bool]) -> list[float]:
    """Points per case: ``points * weight / sum(weights)`` for a passed case, 0 otherwise."""
    total = sum(c.weight for c in cases) or 1.0
    return [points * c.weight / total if ok else 0.0 for c, ok in zip(cases, passed)]


#: The check parses, unparses and walks each cell once per question that forbids something, in the grader's process
#: (about 14 s and 0.6 GB per MB of code): a notebook's 60 MB of ``x = 1`` lines took a worker minutes and gigabytes
#: per question. An answer is a few kB; code over this, all cells together, counts as a use that can hide a call.
MAX_CHECKED_CHARS = 512 * 1024
#: ...and cells, which cost about 0.6 ms each however short: 300,000 cells of "1" (300 kB, under the limit above) took
#: 3 minutes per question that forbids something, past the notebook's time limit. A notebook has a few hundred.
MAX_CHECKED_CELLS = 2000


def runnable_source(source: str) -> str:
    """Cell source without IPython-only lines (``%magic``, ``!shell``), blanked so line numbers stay: the grader
    runs and reads plain Python."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n"))


def cell_tree(source: str):
    """``(ast tree or None when it does not parse, text)`` of a cell without IPython magics (``%``, ``!`` lines)."""
    text = runnable_source(source)
    try:
        return ast.parse(text), text
    except SyntaxError:
        return None, text


def names_used(source: str) -> set[str]:
    """Every name a cell reads or writes (``ast.Name``); empty when it does not parse."""
    tree = cell_tree(source)[0]
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} if tree else set()


def scope_names(text: str) -> tuple[set[str], set[str]]:
    """(global names the cell reads, in any function too; names it binds at top level or declares global)."""
    reads, binds = set(), set()
    try:
        stack = [symtable.symtable(text, "<cell>", "exec")]
    except SyntaxError:  # parses but cannot compile (return outside a function): it cannot run either
        return reads, binds
    while stack:
        table = stack.pop()
        top = table.get_type() == "module"
        for symbol in table.get_symbols():
            if symbol.is_referenced() and (top or symbol.is_global()):
                reads.add(symbol.get_name())
            if (top and (symbol.is_assigned() or symbol.is_imported())) or (
                symbol.is_declared_global() and symbol.is_assigned()
            ):
                binds.add(symbol.get_name())
        stack += table.get_children()
    return reads, binds


def _dynamic_uses(
    tree, changed: set | None = None, mutated: set | None = None, imported: set | frozenset | None = None
) -> list[str]:
    """Dynamic lookups and imports in a cell that can reach a kit function without naming it; ``changed`` gets the
    names whose objects the cell changes, ``mutated`` those it calls a changing method of (``helpers.append(f)``;
    one walk of the tree: megabytes of code cost seconds per walk)."""
    found, loops = [], loop_literals(tree)
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    safe = {  # gc.collect, pickle.dump: the module's Name node -> the use, reported as such (not rebinding)
        id(n.value): f"{n.value.id}.{n.attr}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.attr in SAFE_USES.get(n.value.id, ())
    }
    for node in ast.walk(tree):
        if changed is not None:
            _note_change(node, changed, mutated)
        if isinstance(node, ast.Name) and (
            node.id in DYNAMIC_NAMES
            # a module's name is that module only where some cell imports it: `for code, sample in ...` (a latent
            # code, 04 q6) is no use of the `code` module and made every question's check flag the notebook
            or (node.id in DYNAMIC_MODULES and (imported is None or node.id in imported))
        ):
            found.append(safe.get(id(node), node.id) + DYNAMIC_NOTE)
        elif (
            isinstance(node, (ast.Name, ast.Attribute))
            and _called_name(node) in ATTRIBUTE_CALLS
            and id(node) not in called
        ):
            # `g = getattr`, `def f(xs, g=getattr)`, `reduce(getattr, ...)`: then `g(obj, computed)` is not a call of
            # getattr that the check below can read (round 8: each reached the forbidden function)
            found.append(f"{_called_name(node)} as a value" + DYNAMIC_NOTE)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [  # `import gc` alone: its uses say what it does; `import gc as g` hides them
                m + DYNAMIC_NOTE
                for m, a in zip(modules, node.names)
                if m.split(".")[0] in DYNAMIC_MODULES
                and not (isinstance(node, ast.Import) and m in SAFE_USES and a.asname is None)
                and not (isinstance(node, ast.ImportFrom) and {n.name for n in node.names} <= SAFE_USES.get(m, set()))
            ]
            if isinstance(node, ast.ImportFrom):  # from IPython import get_ipython; from sys import _getframe
                found += [
                    a.name + DYNAMIC_NOTE
                    for a in node.names
                    if a.name in DYNAMIC_NAMES | DYNAMIC_ATTRIBUTES | FETCH_ATTRIBUTES
                ]
                # `from operator import attrgetter as ag`: `ag(computed)` is no call of attrgetter by its name
                found += [
                    f"{a.name} as {a.asname}" + DYNAMIC_NOTE
                    for a in node.names
                    if a.name in ATTRIBUTE_CALLS and a.asname not in (None, a.name)
                ]
            if not getattr(node, "level", 0):
                found += [
                    f"{OWN_MODULE} {m}{DYNAMIC_NOTE}"
                    for m in modules
                    if m and m.split(".")[0] not in DYNAMIC_MODULES and not _installed(m)
                ]
        elif isinstance(node, ast.Attribute) and (
            node.attr in DYNAMIC_ATTRIBUTES | FETCH_ATTRIBUTES or OUTPUTS.match(node.attr)
        ):
            found.append(node.attr + DYNAMIC_NOTE)
        elif isinstance(node, ast.Attribute) and (
            # sys.modules, a dict; part.modules() is torch's honest method (sys.modules() would only raise)
            (node.attr == "modules" and id(node) not in called)
            or (DUNDER.match(node.attr) and node.attr not in HARMLESS_DUNDERS)
        ):
            found.append(node.attr + DYNAMIC_NOTE)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # each part of a dotted name, as operator.attrgetter("encode.__globals__") reads it
            found += [p + DYNAMIC_NOTE for p in node.value.split(".") if DUNDER.match(p) and p not in HARMLESS_DUNDERS]
        elif isinstance(node, ast.keyword) and node.arg in UNPICKLING_KEYWORDS:
            safe = UNPICKLING_KEYWORDS[node.arg]  # np.load(..., allow_pickle=True) unpickles a global by its name
            if not (isinstance(node.value, ast.Constant) and node.value.value is safe):
                found.append(f"{node.arg}={'True' if safe is False else 'False'}" + DYNAMIC_NOTE)
        elif isinstance(node, ast.Call) and _called_name(node.func) in ATTRIBUTE_CALLS:
            function = _called_name(node.func)  # not `called`, the set above: a later `.modules` raised TypeError
            # the names it fetches: getattr's second argument, methodcaller's first, every one of attrgetter's
            names = {"getattr": node.args[1:2], "setattr": node.args[1:2], "methodcaller": node.args[:1]}
            names = names.get(function, node.args) or [None]
            if not all(literal_name(name, loops.get(id(node), set())) for name in names):
                found.append(f"{function} with a computed name" + DYNAMIC_NOTE)
            texts = [n.value for n in names if isinstance(n, ast.Constant) and isinstance(n.value, str)]
            found += ["modules" + DYNAMIC_NOTE for text in texts if "modules" in text.split(".")]  # getattr(sys, ..)
    return found


@functools.lru_cache(maxsize=1024)
def _installed(module: str) -> bool:
    """Whether a module's top-level package is installed (found outside the working folder): a module the student's
    code wrote beside the notebook (``helper.py``, ``%%writefile``) runs code the check never reads, and can bind
    any name (``import __main__`` inside it)."""
    top = module.split(".")[0]
    if top in sys.builtin_module_names or top in getattr(sys, "stdlib_module_names", ()):
        return True
    here = os.path.realpath(os.getcwd())
    paths = [p for p in sys.path if p and os.path.isabs(p) and os.path.realpath(p) != here]
    for finder in sys.meta_path:  # the path finder without the working folder; the others (editable installs) as is
        try:
            if finder is PathFinder or getattr(finder, "__name__", "") == "PathFinder":
                spec = PathFinder.find_spec(top, paths)
            else:
                spec = finder.find_spec(top, None)
        except (ImportError, ValueError, OSError, AttributeError, TypeError):
            continue
        if spec is not None:
            return True
    return False


def _note_change(node, changed: set, mutated: set | None = None) -> None:
    """Add to ``changed`` the name whose object ``node`` changes: ``np.helper = kit_function``, ``table["f"] = ...``,
    ``setattr(np, ...)`` change what the answer reads through ``np`` or ``table`` as much as binding the name would;
    and to ``mutated`` the name whose changing method it calls with arguments: ``helpers.append(kit_function)``
    (round 8: the answer's ``helpers[0]`` was the kit's function, and no cell that binds ``helpers`` named it)."""
    target, into = None, changed
    if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, (ast.Store, ast.Del)):
        target = node.value
    elif isinstance(node, ast.Call) and node.args and _called_name(node.func) in ("setattr", "delattr"):
        target = node.args[0]
    elif (
        mutated is not None
        and isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in MUTATORS
        and (node.args or node.keywords)
    ):
        target, into = node.func.value, mutated
    else:
        return
    while isinstance(target, (ast.Attribute, ast.Subscript)):
        target = target.value
    # what a call returned (`import_module("__main__").answer = f`) may be any namespace: ANY_NAME binds them all
    into.add(target.id if isinstance(target, ast.Name) else ANY_NAME)


def _called_name(func) -> str:
    """``getattr`` for ``getattr(...)``, ``attrgetter`` for ``operator.attrgetter(...)``; "" for other calls."""
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


class _LibraryImportsRemoved(ast.NodeTransformer):
    """A cell's tree without its imports of other libraries: a scratch cell that imports numpy again brings no code
    of the student's into the answer, so that binding alone does not pull the cell in (kit and dynamic imports,
    and any other way the cell binds the same name, still do)."""

    def visit_Import(self, node):
        return node if any(_kit_or_dynamic(a.name) for a in node.names) else ast.Pass()

    def visit_ImportFrom(self, node):
        return node if node.level or _kit_or_dynamic(node.module or "") else ast.Pass()


def _kit_or_dynamic(module: str) -> bool:
    return module.split(".")[0] in DYNAMIC_MODULES | {KIT_PACKAGE}


def shortcut_uses(
    solution_sources: list[str], forbidden, answer_names=(), other_sources=(), modules=frozenset()
) -> list[str]:
    """What the answer's code uses that the question forbids: kit imports, forbidden names, dynamic lookups.

    The answer's code: the solution cells, and every other cell the student ran (``other_sources``: cells added,
    demo cells, other questions' answers) that binds a name they read or define, or ``answer_names`` (what the
    tests call) or changes an object behind such a name (``np.helper = ...``), transitively, and every cell that can
    bind names dynamically (``globals()[...] = ...``, ``__main__``, a module of the student's own, ``%run``). So an
    alias made in another cell counts, and so does ``getattr(kit, "latent_" + "point")``. Cells are read as IPython
    runs them (:mod:`.magics`: ``%time answer = kit_function`` is code); a cell that does not parse then is skipped
    (the kernel cannot run it either). ``modules``: names the notebook's other cells bind by import (``np``), whose
    functions named like a container's methods (``np.append``) change nothing.
    """
    forbidden = set(forbidden or ())
    size = sum(len(source) for source in list(solution_sources) + list(other_sources))
    if size > MAX_CHECKED_CHARS:
        return [f"{size:,} characters of code, too many to check (limit {MAX_CHECKED_CHARS:,}){DYNAMIC_NOTE}"]
    count = len(solution_sources) + len(other_sources)
    if count > MAX_CHECKED_CELLS:
        return [f"{count:,} cells of code, too many to check (limit {MAX_CHECKED_CELLS:,}){DYNAMIC_NOTE}"]
    cells, calls, modules = [], [], set(modules)  # cells: (tree, reads, binds, dynamic uses, whether they can bind)
    parsed = [python_of_cell(source) for source in list(solution_sources) + list(other_sources)]
    for tree, _, _ in parsed:  # every name an import binds, in any cell, before any cell is judged
        modules |= import_bindings(tree)
    runners = (*runner_bindings(t for t, _, _ in parsed), assigned_names(t for t, _, _ in parsed))
    parsed = [_with_run_strings(tree, text, magics, runners) for tree, text, magics in parsed]
    for tree, text, magics in parsed:  # as the kernel runs it: `%time answer = kit_function` is code
        if tree is None:  # then it does not run in the kernel either
            cells.append(None)
            continue
        reads, own = scope_names(text)
        changed, mutated = set(), set()
        dynamic = _dynamic_uses(tree, changed, mutated, modules) + [use + DYNAMIC_NOTE for use in magics]
        calls.append(mutated)
        # `sort_1 = _` after a cell that shows `kit_sort`: the value comes from IPython's output cache, which no
        # cell binds by name (round 8: it scored full points); a name the cell binds itself (`_ = plot()`) is its own
        dynamic += [
            f"{name}, IPython's output cache" + DYNAMIC_NOTE for name in sorted(reads - own) if OUTPUTS.match(name)
        ]
        # a fresh tree: it is edited
        binds = scope_names(ast.unparse(_LibraryImportsRemoved().visit(ast.parse(text))))[1] | changed
        rebinds = ANY_NAME in changed | mutated
        rebinds |= any(use.split(" ")[0] in REBINDING or use.startswith(OWN_MODULE) for use in dynamic) or any(
            not use.startswith("a shell") for use in magics
        )
        cells.append((tree, reads, binds, dynamic, rebinds))
    for cell, mutated in zip([c for c in cells if c is not None], calls):
        cell[2].update(mutated - modules)  # helpers.append(f) binds helpers; np.append(a, b) binds nothing
    scanned = set(range(len(solution_sources)))
    names = set(answer_names)
    grown = True
    while grown:
        grown = False
        for index, cell in enumerate(cells):
            if cell is None:
                continue
            if index not in scanned and (cell[2] & names or cell[4]):
                scanned.add(index)
            if index in scanned and not (cell[1] | cell[2]) <= names:
                names |= cell[1] | cell[2]
                grown = True
    found = []
    for index in sorted(scanned):
        if cells[index] is None:
            continue
        tree, dynamic = cells[index][0], cells[index][3]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names_ = [a.name for a in node.names]
                found += [n for n in names_ if n.split(".")[0] == KIT_PACKAGE]
                found += [a.asname or a.name for a in node.names if (a.asname or a.name) in forbidden]
            elif isinstance(node, ast.ImportFrom):
                if (node.module or "").split(".")[0] == KIT_PACKAGE:
                    found.append(node.module)
                found += [a.name for a in node.names if a.name in forbidden]
            elif isinstance(node, ast.Name) and node.id in forbidden:
                found.append(node.id)
            elif isinstance(node, ast.Attribute) and node.attr in forbidden:
                found.append(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                # getattr(module, "latent_point"), operator.attrgetter("metrics.latent_point")
                found += [part for part in node.value.split(".") if part in forbidden]
        found += dynamic
    return list(dict.fromkeys(found))


def _with_run_strings(tree, text: str, magics: list[str], runners: tuple):
    """The cell with the written code strings its debugger, profiler and timeit calls run read as its own code
    (:mod:`.code_strings`), and those whose code the check cannot read added to ``magics`` (uses that can bind any
    name, as ``%run`` does)."""
    if tree is None:
        return tree, text, magics
    uses, seen = list(magics), set()
    for _ in range(4):  # a string may hold another call of that kind
        code, found = runner_code(tree, *runners)
        uses += [use for use in found if use not in uses]
        fresh = []
        for piece in code:
            if piece in seen:
                continue
            seen.add(piece)
            try:
                ast.parse(piece)
            except (SyntaxError, ValueError):
                continue  # it fails when it runs, too
            fresh.append(piece)
        if not fresh:
            break
        text = "\n".join([text, *fresh])
        tree = ast.parse(text)
    return tree, text, uses


def shortcut_note(question_id: str, uses: list[str], forbidden) -> str:
    """The plain note for a shortcut: which kit function the question asks for and what the code used."""
    wanted = ", ".join(sorted(forbidden or ())) or "this"
    kit = [use for use in uses if not use.endswith(DYNAMIC_NOTE)]
    dynamic = [use[: -len(DYNAMIC_NOTE)] for use in uses if use.endswith(DYNAMIC_NOTE)]
    used = [f"{', '.join(kit)} from the kit"] if kit else []
    if dynamic:
        used.append(f"{', '.join(dynamic)}, which can hide a call to the kit")
    return (
        f"{question_id} asks you to write this yourself without the kit's {wanted}; your code uses "
        f"{' and '.join(used)}, so {question_id} scores 0"
    )
