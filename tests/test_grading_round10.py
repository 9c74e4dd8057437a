"""The grader against the tenth round: what a cell leaves on the model the tests use, and on torch, between questions.

The kernel restored a locked cell's model with ``load_state_dict`` only. What a student's cell attached to the model
outlived it: a forward hook or pre-hook, a backward hook, a method patched on the instance (``model.forward = ...``),
a submodule replaced (``model.fc = nn.Identity()``: the keys no longer matched, the restore raised and stopped). So
did torch's global switches: ``torch.set_grad_enabled(False)``, ``torch.set_default_dtype(torch.float64)`` and hooks
registered for every module. Each cost an honest later answer its points, and a method patched on the model in a
scratch cell (``model.named_parameters = ...``) forged the given helper that the tests call in the kernel.
"""

from __future__ import annotations

import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook
from test_grading_attacks import _graded
from test_grading_round9 import _session

from musicvae_course.grading.kernel_state import STATE_SOURCE

SETUP = """import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x)


torch.manual_seed(0)
model = Net().eval()
probe = torch.ones(1, 3)"""

Q2 = '''def outputs(m, x):
    ### BEGIN SOLUTION
    return m(x).detach()
    ### END SOLUTION


def input_gradient(m):
    """Given, do not change: d sum(m(x)) / dx at x = torch.ones(1, 3)."""
    x = torch.ones(1, 3, requires_grad=True)
    m(x).sum().backward()
    return x.grad'''

Q2_TESTS = """# CASE outputs: the model's outputs
assert torch.allclose(torch.as_tensor(outputs(model, probe)), model(probe).detach()), 'outputs'
# CASE gradient: the gradient of the outputs' sum
assert torch.allclose(input_gradient(model), model.fc.weight.detach().sum(0, keepdim=True)), 'gradient'"""

Q3 = '''def freeze(m):
    ### BEGIN SOLUTION
    m.requires_grad_(False)
    ### END SOLUTION


def trainable(m):
    """Given, do not change: the names of m's parameters that still train."""
    return sorted(name for name, p in m.named_parameters() if p.requires_grad)'''


def _source():
    cells = [_graded(new_code_cell(SETUP), "setup", locked=True)]
    questions = [
        ("def one():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION", "assert one() == 1, 'one'", 1),
        (Q2, Q2_TESTS, 2),
        (Q3, "freeze(model)\nassert trainable(model) == [], 'frozen'", 1),
    ]
    for n, (answer, tests, points) in enumerate(questions, 1):
        cells.append(_graded(new_code_cell(answer), f"q{n}_solution", solution=True))
        cells.append(_graded(new_code_cell(tests), f"q{n}", grade=True, locked=True, points=points))
    return new_notebook(cells=cells)


LEFTOVERS = [
    "model.register_forward_hook(lambda m, i, o: o * 0)",
    "model.fc.register_forward_pre_hook(lambda m, i: (i[0] * 0,))",
    "model.fc.register_full_backward_hook(lambda m, grad_in, grad_out: (grad_in[0] * 0,))",
    "model.forward = lambda x: x[:, :2] * 0",
    "model.fc = torch.nn.Identity()",
    "model.fc.weight = torch.nn.Parameter(torch.zeros(2, 3), requires_grad=False)",
    "torch.set_grad_enabled(False)",
    "torch.set_default_dtype(torch.float64)",
    "torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: o * 0)",
]


@pytest.mark.parametrize("leftover", LEFTOVERS)
def test_what_an_answer_leaves_on_the_model_or_on_torch_costs_no_later_question(tmp_path, leftover):
    # before: q2's reference answer lost 1 or 2 of its 2 points after each of these in q1's cell
    with _session(tmp_path, "model.ipynb", _source()) as session:
        first = session.grade_question("q1", {"q1_solution": f"def one():\n    return 1\n\n\n{leftover}"})
        second = session.grade_question("q2", {})
        third = session.grade_question("q3", {})
    assert (first.points, second.points, third.points) == (1, 2, 1), second.detail


def test_a_method_patched_on_the_model_in_a_cell_does_not_forge_the_given_helper(tmp_path):
    # before: trainable(model) read the patched named_parameters, [], and the answer that freezes nothing scored 1
    forged = "def freeze(m):\n    pass\n\n\nmodel.named_parameters = lambda *args, **kwargs: iter(())"
    with _session(tmp_path, "model.ipynb", _source()) as session:
        result = session.grade_question("q3", {"q3_solution": forged + "\n\n\n" + Q3.split("\n\n\n", 1)[1]})
        honest = session.grade_question("q3", {})
    assert (result.points, honest.points) == (0, 1), result.detail


def test_what_an_honest_student_adds_to_the_model_stays(tmp_path):
    # an attribute of the student's own and a hook that changes nothing are theirs to keep
    keeps = "def one():\n    return 1\n\n\nmodel.scale = 1\nmodel.register_forward_hook(lambda m, i, o: None)"
    uses = Q2.replace("return m(x).detach()", "return m(x).detach() * m.scale")
    with _session(tmp_path, "model.ipynb", _source()) as session:
        first = session.grade_question("q1", {"q1_solution": keeps})
        second = session.grade_question("q2", {"q2_solution": uses})
    assert (first.points, second.points) == (1, 2), second.detail


def test_the_students_code_keeps_the_students_torch_switches_and_the_given_helper_gets_the_locked_cells(tmp_path):
    # gradients off for the whole notebook, then .numpy() on the model's output: it worked for the student, and
    # still does; the given helper that measures a gradient gets them on, and hands the student's dtype back
    off = "def one():\n    return 1\n\n\ntorch.set_grad_enabled(False)\ntorch.set_default_dtype(torch.float64)"
    uses = Q2.replace(
        "return m(x).detach()", "assert torch.get_default_dtype() == torch.float64\n    return m(x).numpy()"
    )
    later = "def one():\n    assert not torch.is_grad_enabled()\n    return 1"
    with _session(tmp_path, "model.ipynb", _source()) as session:
        first = session.grade_question("q1", {"q1_solution": off})
        second = session.grade_question("q2", {"q2_solution": uses})
        third = session.grade_question("q1", {"q1_solution": later})
    assert (first.points, second.points, third.points) == (1, 2, 1), second.detail


def test_the_kernel_side_restore_puts_back_hooks_parts_methods_and_torch_switches():
    space: dict = {}
    exec("import sys as _sys\n" + STATE_SOURCE, space)
    state = space["_MvcState"]
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).eval()
    first, x = model[0], torch.randn(5, 3)
    expected = model(x)
    snap, switches, hooks = state.take_model(model), state.take_switches(), state.take_hooks()
    model.register_forward_hook(lambda m, i, o: o * 0)
    model[0] = torch.nn.Identity()
    model.forward = lambda x: x
    model.cache = {"kept": True}
    model.train().double()
    torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: o * 0)
    torch.set_default_dtype(torch.float64)
    try:
        in_helper = state.switched(lambda: (torch.get_default_dtype(), torch.is_grad_enabled()), switches)
        with torch.no_grad():
            assert in_helper() == (torch.float32, True)
            assert not torch.is_grad_enabled() and torch.get_default_dtype() == torch.float64
    finally:
        state.put_switches(switches)
        state.put_hooks(hooks)
    state.put_model(model, snap)
    assert model[0] is first and not model.training and model.cache == {"kept": True}
    assert torch.equal(model(x), expected) and torch.get_default_dtype() == torch.float32


def test_what_the_hidden_tests_calls_switch_in_torch_is_not_carried_to_later_cells(tmp_path):
    # the tests' calls of an answer that sets the default dtype (as 01 q3's default_dtype_set does) left it float64
    # for every later cell and question, which the student's own run of the notebook never saw
    sets = Q2.replace("return m(x).detach()", "torch.set_default_dtype(torch.float64)\n    return m(x).detach()")
    later = "def one():\n    assert torch.get_default_dtype() == torch.float32\n    return 1"
    with _session(tmp_path, "model.ipynb", _source()) as session:
        session.grade_question("q2", {"q2_solution": sets})
        result = session.grade_question("q1", {"q1_solution": later})
    assert result.points == 1, result.detail
