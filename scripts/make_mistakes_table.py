#!/usr/bin/env python
"""Write docs/exercise_mistakes.md: each exercise's plausible wrong attempts and what the checks say about them.

The table is generated from the mutation suite's fixtures, ``tests/fixtures/exercises/<notebook>/<question>/*.py``
(each what a student wrote in the solution cell of a wrong attempt, the question's given helpers left out: they are
appended as the notebook has them; headed by ``# mistake: ...`` and ``# loses: <case ids>``; honest answers
written another way under ``<question>/honest/``, headed by ``# honest: ...``), and from the
notebooks' test cells (the requirement text of each ``# CASE`` line, the points and weights). tests/test_exercises.py
grades every fixture and checks that it fails exactly the cases it names, and that this file is up to date, so the
table cannot drift from what the checks say::

    python scripts/make_mistakes_table.py          # rewrite docs/exercise_mistakes.md
    python scripts/make_mistakes_table.py --check  # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "exercises"
NOTEBOOKS = ROOT / "notebooks"
OUTPUT = ROOT / "docs" / "exercise_mistakes.md"
CASE_LINE = re.compile(r"^\s*# CASE ([A-Za-z0-9_]+): (.+?)\s*$")


@dataclass
class Attempt:
    """One attempt at a question kept as a fixture: its solution cell source, how it differs from the reference,
    and the cases it must fail (none for an honest answer written another way)."""

    notebook: str  # file stem, e.g. "01_loading_the_pretrained_vae"
    question: str  # e.g. "q1"
    name: str  # fixture file stem
    description: str
    loses: list[str]
    solutions: dict[str, str] = field(default_factory=dict)  # solution cell id -> source

    @property
    def test_id(self) -> str:
        return f"{self.notebook[:2]}-{self.question}-{self.name}"


@functools.cache
def given_helpers(notebook: str) -> dict[str, dict[str, str]]:
    """``{question: {function name: source}}``: the functions each question's solution cell gives as is ("Given, do
    not change", e.g. ``latent_gradients``), as the notebook holds them."""
    from musicvae_course.grading.source import load_source

    found = {}
    for question, text in load_source(NOTEBOOKS / f"{notebook}.ipynb").given_helpers.items():
        lines = text.split("\n")
        found[question] = {
            node.name: "\n".join(lines[node.lineno - 1 : node.end_lineno])
            for node in ast.parse(text).body
            if isinstance(node, ast.FunctionDef)
        }
    return found


def whole_cell(text: str, notebook: str, question: str) -> str:
    """A fixture's text as the student's cell holds it: the fixture is what the student wrote, and the question's
    given helpers it does not define itself follow it as in the notebook (the grader runs the instructor's again
    before the tests in any case), so adding a helper to a question does not mean editing every fixture."""
    defined = set(re.findall(r"^def (\w+)\(", text, flags=re.M))
    missing = [source for name, source in given_helpers(notebook).get(question, {}).items() if name not in defined]
    return text.rstrip("\n") + "".join(f"\n\n\n{source}" for source in missing) + "\n"


def read_mistake(path: Path) -> Attempt:
    """Parse one fixture; ValueError naming the file when a header line is missing."""
    text = path.read_text(encoding="utf-8")
    header = {}
    for line in text.split("\n"):
        match = re.match(r"^# (mistake|loses|solution): (.+)$", line)
        if not match:
            break
        header[match.group(1)] = match.group(2).strip()
    if "mistake" not in header or "loses" not in header:
        raise ValueError(f"{path}: the first lines must be '# mistake: ...' and '# loses: <case ids>'")
    question = path.parent.name
    return Attempt(
        notebook=path.parent.parent.name,
        question=question,
        name=path.stem,
        description=header["mistake"],
        loses=header["loses"].split(),
        solutions={header.get("solution", f"{question}_solution"): whole_cell(text, path.parent.parent.name, question)},
    )


def read_mistakes(fixtures: Path = FIXTURES) -> list[Attempt]:
    """All fixtures, sorted by notebook, question and file name."""
    return [read_mistake(p) for p in sorted(fixtures.glob("*/q*/*.py"))]


def read_honest(fixtures: Path = FIXTURES) -> list[Attempt]:
    """The honest alternatives, ``<notebook>/<question>/honest/*.py``, headed ``# honest: <how it differs>``: answers
    written another way than the reference (numpy, loops, another formula) that must keep full marks: attempts
    with nothing to lose."""
    found = []
    for path in sorted(fixtures.glob("*/q*/honest/*.py")):
        text = path.read_text(encoding="utf-8")
        match = re.match(r"^# honest: (.+)\n", text)
        if not match:
            raise ValueError(f"{path}: the first line must be '# honest: <how it differs from the reference>'")
        question = path.parent.parent.name
        found.append(
            Attempt(
                path.parent.parent.parent.name,
                question,
                path.stem,
                match.group(1).strip(),
                [],
                {f"{question}_solution": whole_cell(text, path.parent.parent.parent.name, question)},
            )
        )
    return found


def _test_cells(notebook: Path) -> dict[str, dict]:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    found = {}
    for cell in cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") == "code" and meta.get("grade"):
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            found[meta["grade_id"]] = {
                "source": source,
                "points": meta["points"],
                "grading": cell.get("metadata", {}).get("grading", {}),
            }
    return found


def question_ids(notebook: Path) -> list[str]:
    """The graded questions of a source notebook, in order."""
    return list(_test_cells(notebook))


def _cases(source: str) -> dict[str, str]:
    cases = {}
    for line in source.split("\n"):
        match = CASE_LINE.match(line)
        if match:
            cases[match.group(1)] = match.group(2)
    return cases


def render(fixtures: Path = FIXTURES, notebooks: Path = NOTEBOOKS) -> str:
    """The markdown of docs/exercise_mistakes.md."""
    out = [
        "# Exercise mistakes and what the checks say",
        "",
        "Generated by `scripts/make_mistakes_table.py` from the mutation suite (`tests/fixtures/exercises/`); do not",
        "edit by hand. Each row is a plausible wrong attempt, kept as a fixture that `tests/test_exercises.py` grades:",
        "it must fail exactly the test cases listed (the student sees each case's requirement and the assertion",
        'message, never the hidden test code) while the reference solution keeps full marks. "Points" is what the',
        'attempt keeps, by the case weights of the test cell. "forbidden" means the attempt calls the kit\'s own',
        "version of what the exercise asks the student to write, which scores 0 with a plain note.",
        "",
    ]
    mistakes = read_mistakes(fixtures)
    for notebook in sorted({m.notebook for m in mistakes}):
        tests = _test_cells(notebooks / f"{notebook}.ipynb")
        out += [f"## {notebook}", "", "| question | wrong attempt | fails | points |", "|---|---|---|---|"]
        for m in (m for m in mistakes if m.notebook == notebook):
            test = tests[m.question]
            cases = _cases(test["source"])
            weights = test["grading"].get("weights", {})
            if m.loses == ["forbidden"]:
                failed, kept = "forbidden: uses the kit's own function", 0.0
            else:
                total = sum(weights.get(c, 1) for c in cases) or 1
                lost = sum(weights.get(c, 1) for c in m.loses)
                kept = test["points"] * (total - lost) / total
                failed = "; ".join(f"`{c}`: {cases.get(c, '(all-or-nothing)')}" for c in m.loses)
            out.append(f"| {m.question} | {m.description} | {failed} | {kept:.2f} / {test['points']} |")
        out.append("")
        honest = [h for h in read_honest(fixtures) if h.notebook == notebook]
        if honest:
            out += ["Honest answers written another way, each graded and keeping full marks:", ""]
            out += ["| question | how it differs from the reference |", "|---|---|"]
            out += [f"| {h.question} | {h.description} |" for h in honest]
            out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/exercise_mistakes.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.is_file() else ""
        if current != text:
            print(f"{OUTPUT} is stale: run python scripts/make_mistakes_table.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
