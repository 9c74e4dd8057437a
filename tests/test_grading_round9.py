"""The grader against the ninth round of attacks: code run from strings, shadowed modules, given helpers and tests.

Each attack below scored points its answer did not earn: the standard library's debuggers, profilers and ``timeit``
run a string in the notebook (``cProfile.run("import __main__ as m; m.sort_2 = m.kit_" + "sort")``, ``timeit``'s
``setup``), which the shortcut check never read; a file the student's code wrote beside the notebook under the name
of an installed module (``yaml.py``) was what ``import yaml`` ran; a function the tests call first rebound, with a
plain ``global`` statement, the given helper that the tests call next (or a name that helper reads, ``sorted``); and
a test that checks that a function raises (``except Exception``) caught the grader's own "did not finish in time" or
"not plain data", so a function that loops or returns an object passed it.
"""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from test_grading_attacks import _graded, _sorting_source

from musicvae_course.grading.cases import shortcut_uses
from musicvae_course.grading.sandbox import bwrap_path
from musicvae_course.grading.session import GradingSession

KIT = "'kit_' + 'sort'"
SORT = "def sort_1(xs):\n    return sorted(xs)"
WRONG = "def sort_1(xs):\n    return xs  # wrong"
REBIND = "'import __main__ as m; m.sort_1 = getattr(m, ' + repr(" + KIT + ") + ')'"


@pytest.mark.parametrize(
    "attack",
    [
        f"import pdb\npdb.run({REBIND})",
        f"import bdb\nbdb.Bdb().run({REBIND})",
        f"import cProfile\ncProfile.run({REBIND})",
        f"from cProfile import runctx as go\ngo({REBIND}, {{}}, {{}})",
        f"import profile\nprofiler = profile.Profile()\nprofiler.runctx({REBIND}, {{}}, {{}})",
        f"import timeit\ntimeit.timeit(setup={REBIND}, number=0)",
        f"import timeit\ntimeit.Timer('pass', {REBIND}).timeit(0)",
        f"from timeit import repeat\ncode = {REBIND}\nrepeat(code, number=0)",
        f"import timeit\ntimeit.main(['-s', {REBIND}, 'pass'])",
        f"import trace\ntrace.Trace(count=0, trace=0).run({REBIND})",
        f"from IPython.core.debugger import Pdb\n[Pdb()][0].run({REBIND})",
        "import timeit as t\n\n\ndef sort_1(xs):\n    return t.timeit(" + KIT + ", number=1, globals={})",
        "import doctest\ndoctest.run_docstring_examples('>>> import __main__', {})",
        "from unittest import mock\nmock.patch('__main__.sort_1', new=None).start()",
        "from unittest.mock import patch as p\np('__main__.sort_1', new=None).start()",
        "import yaml\nyaml.unsafe_load('!!python/name:__main__.' + " + KIT + ")",
        "import os\nos.environ['PYTHONBREAKPOINT'] = 'builtins.ex' + 'ec'\nbreakpoint('sort_1 = ' + " + KIT + ")",
        "import sys\nsys.meta_path.clear()",
    ],
)
def test_strings_run_as_code_and_names_set_by_a_dotted_string_are_uses_that_can_hide_a_call(attack):
    # each, in a scratch cell that names no answer, bound the wrong answer to the kit's function unseen
    assert shortcut_uses([WRONG], ["kit_sort"], ["sort_1"], [attack]) != []
    assert shortcut_uses([attack + "\n\n\n" + WRONG], ["kit_sort"], ["sort_1"]) != []


@pytest.mark.parametrize(
    "written",
    [
        "import pdb\npdb.run('sort_1 = kit_sort')",
        "import cProfile\ncProfile.run('import timeit\\ntimeit.timeit(\"sort_1 = kit_sort\", number=1)')",
    ],
)
def test_a_written_code_string_is_read_as_the_cells_own_code(written):
    assert "kit_sort" in shortcut_uses([WRONG], ["kit_sort"], ["sort_1"], [written])


@pytest.mark.parametrize(
    "honest",
    [
        "import timeit\n\nprint(timeit.timeit(lambda: sort_1([3, 1]), number=10))",
        "import timeit\n\nprint(timeit.timeit(sort_1, number=10))",
        "import timeit\nfrom functools import partial\n\ntimeit.timeit(partial(sort_1, [2, 1]), number=3)",
        "import cProfile\n\ncProfile.run('sort_1([3, 1, 2])')",
        "import pdb\n\npdb.set_trace()\nbreakpoint()",
        "import cProfile\n\npr = cProfile.Profile()\npr.enable()\nsort_1([2, 1])\npr.disable()\n"
        "pr.runcall(sort_1, [2, 1])",
        "import subprocess\nimport timeit\n\ncmd = ['true']\nsubprocess.run(cmd)\n"
        "t = timeit.Timer(lambda: sort_1([1]))\nt.timeit(5)\nt.repeat(3, 5)",
        "import yaml\n\nsettings = yaml.safe_load('a: 1')",
        "import matplotlib.pyplot as plt\n\nfig = plt.figure()\nfig.patch.set_alpha(0)",  # a plot's background
    ],
)
def test_honest_timing_profiling_and_debugging_stay_honest(honest):
    assert shortcut_uses([SORT + "\n\n\n" + honest], ["kit_sort"], ["sort_1"]) == []
    assert shortcut_uses([SORT], ["kit_sort"], ["sort_1"], [honest]) == []


def _session(tmp_path, name: str, nb, cell_timeout: float = 20) -> GradingSession:
    assert bwrap_path(), "the attack suite needs bubblewrap: apt-get install bubblewrap (CI installs it)"
    nbformat.write(nb, tmp_path / name)
    return GradingSession(tmp_path / name, sandbox="bwrap", cell_timeout=cell_timeout)


SHADOW = (
    "open('yaml.py', 'w').write('import __main__ as m\\nm.sort_3 = getattr(m, ' + repr(" + KIT + ") + ')\\n')\n"
    "import yaml\n\n\ndef sort_3(xs):\n    return xs  # wrong"
)


def test_code_run_from_strings_and_a_module_named_like_an_installed_one_earn_nothing(tmp_path):
    with _session(tmp_path, "sorting.ipynb", _sorting_source()) as session:
        grades = {
            "q1": session.grade_question(
                "q1", {"q1_solution": f"import cProfile\n\n\n{WRONG}\n\n\ncProfile.run({REBIND})"}
            ),
            "q2": session.grade_question(
                "q2",
                {
                    "q2_solution": "import timeit\n\n\ndef sort_2(xs):\n    return xs\n\n\n"
                    + "timeit.timeit(setup='import __main__ as m; m.sort_2 = m.kit_' + 'sort', number=0)"
                },
            ),
            "q3": session.grade_question("q3", {"q3_solution": SHADOW}),  # no check flags it: the real yaml runs
            "q5": session.grade_question(
                "q5",
                {
                    "q5_solution": "import cProfile\nimport timeit\n\n\ndef sort_5(xs):\n    return sorted(xs)\n\n\n"
                    "cProfile.run('sort_5([2, 1])')\ntimeit.timeit(lambda: sort_5([2, 1]), number=3)"
                },
            ),
        }
        problems = list(session.problems)
    # before: q1 1, q2 1, q3 1 (each the kit's sort), q5 1
    assert {q: r.points for q, r in grades.items()} == {"q1": 0, "q2": 0, "q3": 0, "q5": 1}
    assert "run (a debugger, profiler or timer) with code the check cannot read" in grades["q1"].detail
    assert "timeit (a debugger, profiler or timer)" in grades["q2"].detail
    assert grades["q3"].detail == "case main (the tests before the first CASE line): sorts"
    assert problems == []


def _round9_source():
    """q1: a given helper the tests call after the answer; q2: a test that expects a raise; q3: an answer that
    changes its argument; q4: an answer that imports a module of the student's own (not installed)."""
    setup = "class Box:\n    def __init__(self):\n        self.parts = []\n\n\nbox = Box()"
    cells = [_graded(new_code_cell(setup), "setup", locked=True)]
    questions = {
        1: (
            "def freeze(b):\n    ### BEGIN SOLUTION\n    b.parts.append('a')\n    return 1\n"
            "    ### END SOLUTION\n\n\n"
            "def frozen_parts(b):\n    '''Given, do not change.'''\n    return sorted(set(b.parts))",
            "# CASE count: one part\nassert freeze(box) == 1, 'one'\n"
            "# CASE frozen: part a is frozen\nassert frozen_parts(box) == ['a'], f'frozen: {frozen_parts(box)}'",
        ),
        2: (
            "def halve(n):\n    ### BEGIN SOLUTION\n    if n < 0:\n        raise ValueError(n)\n    return n / 2\n"
            "    ### END SOLUTION",
            "# CASE value: halves\nassert halve(4) == 2, 'halves'\n# CASE negative: raises for a negative number\n"
            "try:\n    halve(-1)\nexcept Exception:\n    pass\n"
            "else:\n    raise AssertionError('halve(-1) should raise')",
        ),
        3: (
            "def ordered(xs):\n    ### BEGIN SOLUTION\n    return sorted(xs)\n    ### END SOLUTION",
            "expected = [1, 2, 3]\nassert ordered(expected) == expected, f'expected {expected}'",
        ),
        4: (
            "def twice(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
            "assert twice(2) == 4, 'twice'",
        ),
    }
    for n, (answer, tests) in questions.items():
        cells.append(_graded(new_code_cell(answer), f"q{n}_solution", solution=True))
        cells.append(_graded(new_code_cell(tests), f"q{n}", grade=True, locked=True, points=2 if n < 3 else 1))
    return new_notebook(cells=cells)


GIVEN = "\n\n\ndef frozen_parts(b):\n    '''Given, do not change.'''\n    return sorted(set(b.parts))"


def test_given_helpers_and_tests_that_catch_exceptions_cannot_be_forged_by_plain_python(tmp_path):
    forged_helper = "def freeze(b):\n    global frozen_parts\n    frozen_parts = lambda b: ['a']\n    return 1" + GIVEN
    forged_sorted = "def freeze(b):\n    global sorted\n    sorted = lambda parts: ['a']\n    return 1" + GIVEN
    sorted_before = "def freeze(b):\n    return 1\n\n\nsorted = lambda parts: ['a']" + GIVEN  # rebound before the tests
    # the object the tests pass by name (a model): rebound to one that answers what the helper looks for
    forged_object = "def freeze(b):\n    global box\n    box = type(b)()\n    box.parts = ['a']\n    return 1" + GIVEN
    unreadable = "def halve(n):\n    return n / 2 if n >= 0 else object()"
    looping = "def halve(n):\n    while n < 0:\n        pass\n    return n / 2"
    with _session(tmp_path, "round9.ipynb", _round9_source(), cell_timeout=3) as session:
        scores = [
            session.grade_question("q1", {"q1_solution": forged_helper}),
            session.grade_question("q1", {"q1_solution": forged_sorted}),
            session.grade_question("q1", {"q1_solution": sorted_before}),
            session.grade_question("q1", {"q1_solution": forged_object}),
            session.grade_question("q1"),  # honest
            session.grade_question("q2", {"q2_solution": unreadable}),
            session.grade_question("q2", {"q2_solution": looping}),
            session.grade_question("q2"),  # honest
            session.grade_question("q3", {"q3_solution": "def ordered(xs):\n    xs.append(9)\n    return xs"}),
            session.grade_question(
                "q4",
                {
                    "q4_solution": "open('mytools.py', 'w').write('def double(x):\\n    return 2 * x\\n')\n"
                    "import mytools\n\n\ndef twice(x):\n    return mytools.double(x)"
                },
            ),
        ]
    # before: 2, 2, 2, 2, 2, 2, 2, 2, 0, 1 (the forged helpers and the caught failures passed)
    assert [r.points for r in scores] == [1, 1, 1, 1, 2, 1, 1, 2, 0, 1], [(r.points, r.detail) for r in scores]
    assert scores[0].detail == scores[3].detail == "case frozen (part a is frozen): frozen: []"
    assert "expected plain data in case negative" in scores[5].detail
    assert "did not finish within the 3 s time limit" in scores[6].detail and scores[6].status == "timeout"
    assert scores[8].detail == "case main (the tests before the first CASE line): expected [1, 2, 3]"
