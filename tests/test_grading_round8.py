"""The shortcut check against routes to a forbidden kit function that it did not read (eighth round of attacks).

Each attack below scored full points with the kit's own function in a question that forbids it: IPython's output
cache (a scratch cell shows ``kit_sort``, the answer is ``sort_1 = _``), ``getattr`` called under another name
(``g = getattr``, a default argument, ``reduce(getattr, ...)``, ``from operator import attrgetter as ag``), a
container that a scratch cell fills by a method (``helpers.append(kit_sort)``; ``helpers = []`` named no kit), and
other routes from a string built at run time to an object (``string.Formatter().get_field``, ``typing.get_type_hints``
of a computed annotation, a frame's ``f_builtins``, ``pydoc.locate``, ``_pickle.loads``, ``np.load(...,
allow_pickle=True)``, ``getattr(answer, name)`` with ``name`` rebound after a loop over written names), and
scratch cells that bind no answer name but reach the notebook's namespace (``importlib.import_module("__main__")``,
``__import__``, ``gc.get_referrers``, ``code``, a pickle that calls ``setattr``), which the check never read. And
honest code that calls ``getattr`` with a written name and torch's ``.modules()`` in one cell made the check
raise TypeError, which stopped the grading of the whole notebook: every later question scored 0.
"""

from __future__ import annotations

import nbformat
import pytest
from test_grading_attacks import _answered, _sorting_source  # the sorting source of the attack suite

from musicvae_course.grading import autograde
from musicvae_course.grading.cases import shortcut_uses
from musicvae_course.grading.sandbox import bwrap_path

GLOBALS = "'__glo' + 'bals__'"  # a dunder built at run time: no string the check reads names it
KIT = "'kit_' + 'sort'"


def _graded_sorting(tmp_path, answers: dict, added: dict) -> list:
    """Grade one student's answers to the attack suite's sorting notebook in the sandbox; their grades."""
    assert bwrap_path(), "the attack suite needs bubblewrap: apt-get install bubblewrap (CI installs it)"
    source = _sorting_source()
    (tmp_path / "source").mkdir()
    nbformat.write(source, tmp_path / "source" / "sorting.ipynb")
    (tmp_path / "subs" / "student").mkdir(parents=True)
    nbformat.write(_answered(source, answers, added), tmp_path / "subs" / "student" / "sorting.ipynb")
    return autograde.autograde(
        tmp_path / "subs", tmp_path / "source", tmp_path / "grades", cell_timeout=20, jobs=1, sandbox="bwrap"
    )


@pytest.mark.parametrize(
    "answer, others, found",
    [
        ("sort_1 = _", ["kit_sort"], "_, IPython's output cache"),
        ("def sort_1(xs):\n    return helpers[0](xs)", ["helpers = []", "helpers.append(kit_sort)"], "kit_sort"),
        ("def sort_1(xs):\n    return table['f'](xs)", ["table = {}", "table.update(f=kit_sort)"], "kit_sort"),
        ("def sort_1(xs):\n    return Out[3](xs)", ["kit_sort"], "Out, IPython's output cache"),
        ("def sort_1(xs):\n    return _3(xs)", [], "_3, IPython's output cache"),
        ("import sys\n\n\ndef sort_1(xs):\n    return sys.displayhook._(xs)", [], "displayhook"),
        (f"g = getattr\n\n\ndef sort_1(xs):\n    return g(sort_1, {GLOBALS})[{KIT}](xs)", [], "getattr as a value"),
        (f"def sort_1(xs, g=getattr):\n    return g(sort_1, {GLOBALS})[{KIT}](xs)", [], "getattr as a value"),
        (
            "import functools\n\n\ndef sort_1(xs):\n"
            f"    return functools.reduce(getattr, [{GLOBALS}], sort_1)[{KIT}](xs)",
            [],
            "getattr as a value",
        ),
        (
            f"from operator import attrgetter as ag\n\n\ndef sort_1(xs):\n    return ag({GLOBALS})(sort_1)[{KIT}](xs)",
            [],
            "attrgetter as ag",
        ),
        (
            "import operator\nag = operator.attrgetter\n\n\ndef sort_1(xs):\n"
            f"    return ag({GLOBALS})(sort_1)[{KIT}](xs)",
            [],
            "attrgetter as a value",
        ),
        (
            "import string\n\n\ndef sort_1(xs):\n"
            f"    found, _ = string.Formatter().get_field('0.' + {GLOBALS}, (sort_1,), {{}})\n"
            f"    return found[{KIT}](xs)",
            [],
            "get_field",
        ),
        (
            f"import typing\n\n\ndef hint(x: ({KIT})):\n    pass\n\n\n"
            "def sort_1(xs):\n    return typing.get_type_hints(hint)['x'](xs)",
            [],
            "get_type_hints",
        ),
        (
            "import sys\n\n\ndef sort_1(xs):\n    frame = list(sys._current_frames().values())[0]\n"
            f"    return frame.f_builtins['get' + 'attr'](sort_1, {GLOBALS})[{KIT}](xs)",
            [],
            "f_builtins",
        ),
        ("import pydoc\n\n\ndef sort_1(xs):\n    return pydoc.locate('__main__.' + " + KIT + ")(xs)", [], "pydoc"),
        (
            "import _pickle\n\n\ndef sort_1(xs):\n    return _pickle.loads(('c__main__\\n' + "
            + KIT
            + " + '\\n.').encode())(xs)",
            [],
            "_pickle",
        ),
        (
            "import io\nimport numpy as np\n\n\ndef sort_1(xs):\n"
            "    data = ('c__main__\\n' + " + KIT + " + '\\n.').encode()\n"
            "    return np.load(io.BytesIO(data), allow_pickle=True)(xs)",
            [],
            "allow_pickle=True",
        ),
    ],
)
def test_lookups_by_a_name_built_at_run_time_or_through_the_output_cache_are_uses_that_can_hide_a_call(
    answer, others, found
):
    uses = shortcut_uses([answer], ["kit_sort"], ["sort_1"], others)
    assert any(use.startswith(found) for use in uses), uses


@pytest.mark.parametrize(
    "answer",
    [
        "def sort_1(xs):\n    part = getattr(model, 'encoder')\n"
        "    count = len(list(part.modules()))\n    return sorted(xs)",
        "def sort_1(xs):\n    for name in ('encoder', 'fc_mu'):\n        getattr(model, name)\n    return sorted(xs)",
        "from operator import attrgetter\n\n\ndef sort_1(xs):\n    return sorted(xs, key=attrgetter('real'))",
        "import numpy as np\n\nsaved = np.load('a.npy', allow_pickle=False)\n\n\n"
        "def sort_1(xs):\n    return sorted(xs)",
        "_ = print('plotted')\nfor _ in range(2):\n    pass\n\n\n"
        "def sort_1(xs):\n    return [x for _, x in sorted((x, 0) for x in xs)]",
    ],
)
def test_honest_getattr_modules_unpickling_off_and_underscores_of_ones_own_are_no_shortcut(answer):
    # the first raised TypeError inside the check (a name reused for two things), which ended the notebook's grading
    assert shortcut_uses([answer], ["kit_sort"], ["sort_1"], ["print(kit_sort([2, 1]))"]) == []


@pytest.mark.parametrize(
    "answer",
    [
        f"def sort_1(xs):\n    for name in ('encoder',):\n        pass\n    name = {GLOBALS}\n"
        f"    return getattr(sort_1, name)[{KIT}](xs)",
        f"def sort_1(xs):\n    for name in ('__glo',):\n        name += 'bals__'\n"
        f"        return getattr(sort_1, name)[{KIT}](xs)",
        f"for name in ('x',):\n    pass\n\n\ndef sort_1(xs, name={GLOBALS}):\n"
        f"    return getattr(sort_1, name)[{KIT}](xs)",
        f"def sort_1(xs):\n    for name in ('x',):\n        pass\n    if name := {GLOBALS}:\n"
        f"        return getattr(sort_1, name)[{KIT}](xs)",
        f"for name in ('x',):\n    fetch = lambda o: getattr(o, name)\nname = {GLOBALS}\n\n\n"
        f"def sort_1(xs):\n    return fetch(sort_1)[{KIT}](xs)",
    ],
)
def test_a_loop_variable_over_written_names_is_fixed_only_inside_its_loop_while_nothing_rebinds_it(answer):
    # each passed as "a loop over written names" because some loop of the cell ran `name` over string literals
    assert shortcut_uses([answer], ["kit_sort"], ["sort_1"]) == ["getattr with a computed name (a dynamic lookup)"]


@pytest.mark.parametrize(
    "answer",
    [
        "def sort_1(xs):\n    for part in ('encoder', 'fc_mu'):\n        getattr(model, part)\n    return sorted(xs)",
        "def sort_1(xs):\n    parts = [getattr(model, p) for p in ('encoder', 'fc_mu')]\n    return sorted(xs)",
        "def sort_1(xs):\n    for part in ('encoder', 'fc_mu'):\n"
        "        for weight in getattr(model, part).parameters():\n            weight.requires_grad_(False)\n"
        "    return sorted(xs)",
    ],
)
def test_honest_loops_over_named_parts_stay_honest(answer):
    assert shortcut_uses([answer], ["kit_sort"], ["sort_1"]) == []


WRONG = "def sort_1(xs):\n    return xs  # wrong"


@pytest.mark.parametrize(
    "scratch, found",
    [
        ("import importlib\nimportlib.import_module('__ma' + 'in__').sort_1 = kit_sort", "kit_sort"),
        ("__import__('__ma' + 'in__').sort_1 = kit_sort", "kit_sort"),
        ("from inspect import getmodule\ngetmodule(print).sort_1 = kit_sort", "kit_sort"),
        ("import gc\n[d for d in gc.get_referrers(kit_sort) if type(d) is dict][0]['sort_1'] = kit_sort", "kit_sort"),
        ("import code\ncode.InteractiveInterpreter().runsource(text)", "code"),
        ("import pickle\npickle.loads(payload)  # REDUCE: setattr(__main__, 'sort_1', kit_sort)", "pickle"),
    ],
)
def test_a_scratch_cell_that_can_reach_the_notebooks_namespace_is_read_though_it_binds_no_answer_name(scratch, found):
    # each bound the wrong answer's name to the kit's function from a cell the check never read
    uses = shortcut_uses([WRONG], ["kit_sort"], ["sort_1"], [scratch])
    assert found in [use.split(" ")[0] for use in uses], uses


@pytest.mark.parametrize(
    "scratch",
    [
        "import gc\n\ndel rolls\ngc.collect()\nprint(kit_sort([2, 1]))",
        "import pickle\n\npickle.dump(kit_sort([2, 1]), open('sorted.pkl', 'wb'))",
        "import inspect\n\nprint(inspect.getsource(kit_sort))",
        "from pickle import dump\n\ndump(kit_sort([1]), open('one.pkl', 'wb'))",
        # reloading the kit after editing it: common in a course, and reaches no namespace
        "import importlib\n\nimportlib.reload(np)\nprint(kit_sort([2, 1]))",
    ],
)
def test_scratch_cells_that_collect_garbage_pickle_results_or_read_the_kits_source_stay_out_of_the_answer(scratch):
    assert shortcut_uses([WRONG], ["kit_sort"], ["sort_1"], [scratch]) == []


def test_a_modules_function_named_like_a_containers_method_puts_nothing_into_the_answer():
    # np.append(a, b) is no helpers.append(f): the scratch cell that compares with the kit stays out of the answer
    answer = "def sort_1(xs):\n    return list(np.sort(xs))"
    scratch = "gap = np.append(np.zeros(2), kit_sort([2, 1]))\nnp.add(1, kit_sort([1])[0])"
    assert shortcut_uses([answer], ["kit_sort"], ["sort_1"], [scratch], {"np"}) == []
    assert shortcut_uses([answer], ["kit_sort"], ["sort_1"], [scratch]) == ["kit_sort"]  # np, bound elsewhere


def test_the_output_cache_and_renamed_getattr_earn_nothing_and_honest_getattr_no_longer_stops_the_grading(tmp_path):
    grades = _graded_sorting(
        tmp_path,
        {
            "q1_solution": "sort_1 = _",  # the kit's function, shown by the cell before
            "q2_solution": f"g = getattr\n\n\ndef sort_2(xs):\n    return g(sort_2, {GLOBALS})[{KIT}](xs)",
            "q3_solution": "import string\n\n\ndef sort_3(xs):\n"
            f"    found, _ = string.Formatter().get_field('0.' + {GLOBALS}, (sort_3,), {{}})\n"
            f"    return found[{KIT}](xs)",
            "q4_solution": "import torch\n\n\ndef sort_4(xs):\n    layer = getattr(torch.nn, 'Identity')()\n"
            "    assert len(list(layer.modules())) == 1\n    return sorted(xs)\n\n\n"
            "def check_4(xs):\n    '''Given, do not change.'''\n    return sort_4(list(xs))",
            "q5_solution": "def sort_5(xs):\n    return sorted(xs)",
        },
        {"q1_solution": "kit_sort"},
    )
    by_question = {q.question_id: q for q in grades[0].questions}
    assert {q: r.points for q, r in by_question.items()} == {"q1": 0, "q2": 0, "q3": 0, "q4": 1, "q5": 1}
    assert "_, IPython's output cache, which can hide a call" in by_question["q1"].detail
    assert "getattr as a value" in by_question["q2"].detail
    assert "get_field" in by_question["q3"].detail
    assert not any("grading stopped early" in problem for problem in grades[0].problems), grades[0].problems


def test_a_variable_named_like_a_module_is_no_use_of_that_module_unless_some_cell_imports_it():
    # 04's q6 answer loops `for code, sample in zip(pool_codes, pool)`: read as the `code` module (which runs
    # strings), it made that cell count as one that can bind any name, so q1's check read it and flagged `sample`
    scratch = "for code, sample in zip(codes, pool):\n    chosen.append(code)"
    answer = "def sort_1(xs):\n    return sorted(xs)"
    assert shortcut_uses([answer], ["sample"], ["sort_1"], [scratch]) == []
    assert shortcut_uses([answer], ["sample"], ["sort_1"], [scratch], modules={"np"}) == []
    # the module itself, imported by any cell (given ones too, passed as modules), still counts
    imported = shortcut_uses([answer], ["sample"], ["sort_1"], ["import code", scratch])
    assert "code (a dynamic lookup)" in imported and "sample" in imported
    given = shortcut_uses([answer], ["sample"], ["sort_1"], [scratch], modules={"code"})
    assert "code (a dynamic lookup)" in given
    assert shortcut_uses(["import inspect\n" + answer + "\nx = inspect.currentframe()"], ["sample"], ["sort_1"])


def test_an_honest_cell_that_compares_with_the_kit_keeps_its_points_beside_a_reloaded_module(tmp_path):
    # q5's added cell calls kit_sort only to compare (nothing sort_5 reads), a scratch cell reloads a module: full
    # points. (Beside another question's importlib.import_module, q5 scores 0: the test below.)
    honest = "def sort_5(xs):\n    return [x for x, _ in sorted((x, i) for i, x in enumerate(xs))]"
    grades = _graded_sorting(
        tmp_path,
        {"q5_solution": honest},
        {"q5_solution": "expected = kit_sort([3, 1])", "q4": "import importlib\nimport math\n\nimportlib.reload(math)"},
    )
    points = {q.question_id: q.points for q in grades[0].questions}
    assert points == {"q1": 0, "q2": 0, "q3": 0, "q4": 0, "q5": 1}, grades[0].questions


def test_a_module_that_reaches_the_namespace_in_one_answer_costs_every_question_that_forbids_something(tmp_path):
    # sort_2 runs during q2's tests, before q5's: importlib.import_module and a computed getattr can fetch setattr
    # and bind sort_5 (the check cannot tell this read from that write), so q5's honest code is read with it
    attack = "import importlib\n\n\ndef sort_2(xs):\n    return getattr(importlib.import_module('__main__'), " + KIT
    grades = _graded_sorting(
        tmp_path,
        {"q2_solution": attack + ")(xs)", "q5_solution": "def sort_5(xs):\n    return sorted(xs)"},
        {},
    )
    by_question = {q.question_id: q for q in grades[0].questions}
    assert {q: r.points for q, r in by_question.items()} == {"q1": 0, "q2": 0, "q3": 0, "q4": 0, "q5": 0}
    for question in ("q2", "q5"):
        assert "importlib" in by_question[question].detail, by_question[question].detail
        assert "getattr with a computed name" in by_question[question].detail
