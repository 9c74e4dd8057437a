"""A model the tests use is put back between questions: its values, modes, flags, and its dtype and device.

``model.double()`` swaps each parameter's data and each buffer for float64 ones; ``load_state_dict`` copies the
snapshot into them, so a restore that only loaded the state left a float64 model, and every later question that
fed it float32 rolls failed (found while writing 01 q2's wrong answers: a ``model_to_double`` fixture broke the
fixtures graded after it).
"""

from __future__ import annotations

import torch
from nbformat.v4 import new_code_cell, new_notebook
from test_grading_attacks import _graded
from test_grading_round9 import _session

from musicvae_course.grading import protect


def _model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))


def test_restore_puts_back_the_dtype_of_parameters_and_buffers_and_keeps_the_parameter_objects():
    model = _model()
    weight = model[0].weight
    snap = protect.snapshot(model)
    model.double()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert "model's dtype or device (model.double(), .to(...))" in protect.changes("model", model, snap)
    protect.restore(model, snap)
    assert {t.dtype for t in model.state_dict().values() if t.is_floating_point()} == {torch.float32}
    assert model[0].weight is weight  # an optimizer built on the model still holds it
    assert protect.changes("model", model, snap) == []
    assert model(torch.zeros(2, 3)).dtype == torch.float32


def test_a_question_whose_answer_turns_the_model_to_float64_costs_no_later_question(tmp_path):
    setup = "import torch\n\ntorch.manual_seed(0)\nmodel = torch.nn.Sequential(torch.nn.Linear(3, 1))"
    cells = [_graded(new_code_cell(setup), "setup", locked=True)]
    questions = {
        1: ("def size(m):\n    ### BEGIN SOLUTION\n    return 3\n    ### END SOLUTION", "assert size(model) == 3, 's'"),
        2: (
            "def score(m):\n    ### BEGIN SOLUTION\n    return m(torch.zeros(1, 3)).dtype == torch.float32\n"
            "    ### END SOLUTION",
            "assert score(model), 'float32 in, float32 out'",
        ),
    }
    for n, (answer, tests) in questions.items():
        cells.append(_graded(new_code_cell(answer), f"q{n}_solution", solution=True))
        cells.append(_graded(new_code_cell(tests), f"q{n}", grade=True, locked=True, points=1))
    with _session(tmp_path, "model.ipynb", new_notebook(cells=cells)) as session:
        first = session.grade_question("q1", {"q1_solution": "def size(m):\n    m.double()\n    return 3"})
        second = session.grade_question("q2", {})
    assert (first.points, second.points) == (1, 1), second.detail
