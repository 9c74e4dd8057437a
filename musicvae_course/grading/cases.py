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
import re
from dataclasses import dataclass, field

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


def shortcut_uses(solution_sources: list[str], forbidden) -> list[str]:
    """What the solution cells use that the question forbids: kit imports and forbidden names, one entry each.

    IPython magics are ignored (``%timeit`` lines); a cell that does not parse is skipped (it fails anyway).
    """
    forbidden = set(forbidden or ())
    found = []
    for source in solution_sources:
        text = "\n".join(line for line in source.split("\n") if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
                found += [n for n in names if n.split(".")[0] == KIT_PACKAGE]
                found += [a.asname or a.name for a in node.names if (a.asname or a.name) in forbidden]
            elif isinstance(node, ast.ImportFrom):
                if (node.module or "").split(".")[0] == KIT_PACKAGE:
                    found.append(node.module)
                found += [a.name for a in node.names if a.name in forbidden]
            elif isinstance(node, ast.Name) and node.id in forbidden:
                found.append(node.id)
            elif isinstance(node, ast.Attribute) and node.attr in forbidden:
                found.append(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in forbidden:
                found.append(node.value)  # getattr(module, "latent_point")
    return list(dict.fromkeys(found))


def shortcut_note(question_id: str, uses: list[str], forbidden) -> str:
    """The plain note for a shortcut: which kit function the question asks for and what the code used."""
    wanted = ", ".join(sorted(forbidden or ())) or "this"
    return (
        f"{question_id} asks you to write this yourself without the kit's {wanted}; your code uses "
        f"{', '.join(uses)} from the kit, so {question_id} scores 0"
    )
