"""The shortcut check against routes to a forbidden kit function that it did not read (sixth round of attacks).

Each route below scored full points with the kit's own function in a question that forbids it: IPython syntax that
the check blanked or could not parse (``%time answer = kit``, ``x = !true``, ``kit?``), namespaces reached by another
name (``__main__``, ``builtins``, IPython's ``user_ns``, a frame's ``f_globals``), an attribute set on a module the
answer reads (``json.helper = kit``) and a module the student's code wrote beside the notebook.
"""

from __future__ import annotations

import nbformat
import pytest
from test_grading_attacks import _answered, _sorting_source  # the sorting source of the attack suite

from musicvae_course.grading import autograde
from musicvae_course.grading.cases import shortcut_uses
from musicvae_course.grading.sandbox import bwrap_path

WRONG = "def sort_1(xs):\n    return xs  # wrong"


@pytest.mark.parametrize(
    "answer, others, found",
    [
        ("%time sort_1 = kit_sort", [], "kit_sort"),
        ("%timeit -n1 -r1 sort_1 = kit_sort", [], "kit_sort"),
        ("%%time\nsort_1 = kit_sort", [], "kit_sort"),
        ("def sort_1(xs):\n    return kit_sort(xs)\n_ = !true", [], "kit_sort"),
        ("def sort_1(xs):\n    return kit_sort(xs)\nkit_sort?", [], "kit_sort"),
        ("def sort_1(xs):\n    return kit_sort(xs)\n_ = %who_ls", [], "kit_sort"),
        (WRONG, ["%run -i helper.py"], "%run"),
        (WRONG, ["%load_ext helper"], "%load_ext"),
        (WRONG, ["import __main__\n__main__.sort_1 = kit_sort"], "kit_sort"),
        (WRONG, ["import __main__\nsetattr(__main__, 'sort_1', kit_sort)"], "kit_sort"),
        (WRONG, ["import IPython\nIPython.get_ipython().user_ns['sort_1'] = kit_sort"], "kit_sort"),
        (WRONG, ["from IPython import get_ipython as ip\nip().user_ns['sort_1'] = helper"], "get_ipython"),
        (WRONG, ["import sys\nsys._getframe().f_globals['sort_1'] = kit_sort"], "kit_sort"),
        (WRONG, ["from ipykernel.kernelapp import IPKernelApp as A\nA.instance().shell.push({'sort_1': f})"], "shell"),
        ("def sort_1(xs):\n    return helper(xs)", ["import builtins\nbuiltins.helper = kit_sort"], "kit_sort"),
        ("import json\ndef sort_1(xs):\n    return json.f(xs)", ["import json\njson.f = kit_sort"], "kit_sort"),
        ("from helper5 import sort_1", ["open('helper5.py', 'w').write(text)"], "module of your own helper5"),
        (WRONG, ["import helper6  # it binds sort_1 through __main__"], "module of your own helper6"),
    ],
)
def test_the_shortcut_check_reads_code_that_ipython_runs_and_namespaces_reached_by_another_name(answer, others, found):
    uses = shortcut_uses([answer], ["kit_sort"], ["sort_1"], others)
    assert any(use.startswith(found) for use in uses), uses


@pytest.mark.parametrize(
    "scratch",
    [
        "%matplotlib inline\nprint(kit_sort([2, 1]))",  # comparing with the kit in a scratch cell is fine
        "%timeit sort_1([3, 1, 2])",
        "!ls\nkit_sort?",
        "%load_ext autoreload\n%autoreload 2\n%cd .",
        "import numpy as np\nvalues = np.zeros(3)\nvalues[0] = 1\nprint(kit_sort(values))",
        "import json, pretty_midi\nfrom IPython.display import Audio",
    ],
)
def test_magics_and_changes_that_reach_no_answer_name_stay_honest(scratch):
    answer = "import numpy as np\n\n\ndef sort_1(xs):\n    return list(np.sort(xs))"
    assert shortcut_uses([answer], ["kit_sort"], ["sort_1"], [scratch]) == []


def _grade(tmp_path, answers: dict, added: dict):
    source = _sorting_source()
    (tmp_path / "source").mkdir()
    nbformat.write(source, tmp_path / "source" / "sorting.ipynb")
    (tmp_path / "subs" / "student").mkdir(parents=True)
    nbformat.write(_answered(source, answers, added), tmp_path / "subs" / "student" / "sorting.ipynb")
    grades = autograde.autograde(
        tmp_path / "subs", tmp_path / "source", tmp_path / "grades", cell_timeout=20, jobs=1, sandbox="bwrap"
    )
    return {q.question_id: q for q in grades[0].questions}


def test_wrong_answers_bound_to_the_kit_by_magics_modules_or_namespaces_earn_nothing(tmp_path):
    # each of these scored 1 of 1 with the forbidden kit_sort before: the kernel ran what the check did not read
    assert bwrap_path(), "the attack suite needs bubblewrap: apt-get install bubblewrap (CI installs it)"
    wrong = "def sort_{n}(xs):\n    return xs  # wrong"
    by_question = _grade(
        tmp_path,
        {
            "q1_solution": "%time sort_1 = kit_sort",
            "q2_solution": wrong.format(n=2),
            "q3_solution": "def sort_3(xs):\n    return helper3(xs)",
            "q4_solution": "def sort_4(xs):\n    return kit_sort(xs)\n_ = !true\n\n\n"
            "def check_4(xs):\n    return sort_4(list(xs))",
            "q5_solution": "from helper5 import sort_5",
        },
        {
            "q2": "import IPython\nIPython.get_ipython().user_ns['sort_2'] = kit_sort",
            "q3_solution": "import builtins\nbuiltins.helper3 = kit_sort",
            "q5_solution": "open('helper5.py', 'w').write('from __main__ import kit_sort as sort_5\\n')",
        },
    )
    assert {q: r.points for q, r in by_question.items()} == {"q1": 0, "q2": 0, "q3": 0, "q4": 0, "q5": 0}
    assert all("asks you to write this yourself without the kit's kit_sort" in r.detail for r in by_question.values())
    assert "module of your own helper5" in by_question["q5"].detail


def test_too_many_cells_to_check_for_shortcuts_are_a_use_that_can_hide_a_call_not_minutes_of_parsing():
    # each cell costs the check about 0.6 ms however short: 300,000 cells of "1" fit under its 512 kB limit and took
    # minutes per question that forbids something, in the grader's process, past the notebook's time limit
    uses = shortcut_uses(["def sort_1(xs):\n    return sorted(xs)"], ["kit_sort"], ["sort_1"], ["1"] * 300_000)
    assert uses == ["300,001 cells of code, too many to check (limit 2,000) (a dynamic lookup)"]
    assert shortcut_uses(["def sort_1(xs):\n    return sorted(xs)"], ["kit_sort"], ["sort_1"], ["1"] * 1999) == []
