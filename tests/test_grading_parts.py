"""The grader's parts: the strict codec, CASE partial credit, the shortcut check, check()'s model protection,
the similarity report, GradingSession and the kit-hash stop (issue 10, issue 12 item 3)."""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook

from musicvae_course.grading import Checker, autograde, codec, reports, submissions
from musicvae_course.grading.cases import case_points, shortcut_note, shortcut_uses, split_cases
from musicvae_course.grading.reports import normalized_tokens, similar_pairs
from musicvae_course.grading.session import MAX_PROBLEMS, GradingSession

FIXTURES = Path(__file__).parent / "fixtures" / "grading"
SOURCE = FIXTURES / "source" / "melody.ipynb"


# ------------------------------------------------------------------------------------------------------ codec


def test_plain_data_round_trips_with_exact_types():
    value = (
        None,
        True,
        3,
        2.5,
        float("inf"),
        "text",
        b"MThd",
        [1, (2, 3)],
        {"a": np.arange(4, dtype=np.int16), "b": np.float32(1.5), "c": torch.ones(2, 3, dtype=torch.float64)},
    )
    back = codec.decode(codec.encode(value))
    assert back[:8] == value[:8] and type(back[7][1]) is tuple
    assert back[8]["a"].dtype == np.int16 and back[8]["a"].tolist() == [0, 1, 2, 3]
    assert type(back[8]["b"]) is np.float32 and back[8]["b"] == 1.5
    assert type(back[8]["c"]) is torch.Tensor and back[8]["c"].dtype == torch.float64 and back[8]["c"].shape == (2, 3)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"$": "pickle", "v": "x"}', "unknown or malformed"),
        ('{"$": "nd", "dtype": "|O", "shape": [1], "b64": "AAAAAAAAAAA="}', "not plain numbers"),
        ('{"$": "nd", "dtype": "<f8", "shape": [3], "b64": "AAAAAAAAAAA="}', "do not make an array"),
        ('{"$": "dict", "k": [1], "v": [2]}', "distinct str keys"),
        ("NaN", "bare NaN"),
        ("[" * 40 + "]" * 40, "nested deeper"),
    ],
)
def test_the_decoder_refuses_what_is_not_plain_data(text, message):
    with pytest.raises(codec.DecodeError, match=message):
        codec.decode(text)


def test_the_decoder_bounds_the_size_and_names_foreign_types():
    with pytest.raises(codec.DecodeError, match="limit"):
        codec.decode('"' + "x" * 100 + '"', max_text=50)

    class Rigged(list):
        def __eq__(self, other):
            return True

    foreign = codec.decode(json.dumps(codec._GRADER_SIDE["_mvc_encode"](Rigged([1]))))
    assert isinstance(foreign, codec.Foreign) and "Rigged" in foreign.type_name
    with pytest.raises(TypeError, match="cannot be sent"):
        codec.encode(object())


@pytest.mark.parametrize(
    "raw",
    [
        "[" + "0," * 1000 + "]",  # any other literal: ast.literal_eval would build it, at any size
        "'a' 'b'",  # two strings, joined by the parser: millions of them are gigabytes too
        "b'{}'",
        "'''{}'''",
        r"'\\' '{}'",  # an escaped backslash, then the quote ends the string
        "'{}\n'",
        "{'a': 1}",
    ],
)
def test_the_kernels_answer_is_read_only_as_the_repr_of_one_str(raw):
    # a student can replace the helper in the kernel with one whose answer's repr is any text it likes
    with pytest.raises(codec.DecodeError, match="repr"):
        codec.read_repr(raw)


def test_the_repr_of_honest_answers_reads_back_and_json_is_counted_before_it_is_parsed():
    for text in ['{"ok": "can\'t"}', "{'ok': 1}", r'{"ok": "a\\b\n"}', json.dumps({"ok": "\u00e9\\'"})]:
        assert codec.read_repr(repr(text)) == text
    bomb = "[" + "[]," * (codec.MAX_SEPARATORS + 1) + "[]]"  # millions of lists, built before any check
    for parse in (codec.loads, codec.decode):
        with pytest.raises(codec.DecodeError, match="values"):
            parse(bomb)
    assert codec.decode(codec.encode([np.zeros((88, 32))] * 1000))[999].shape == (88, 32)


# ------------------------------------------------------------------------------------------------------ cases


TESTS = """x = 1
# CASE small: works for small inputs
assert f(1) == 1, "f(1)"
# CASE big: works for big inputs
assert f(10) == 10, "f(10)"
### BEGIN HIDDEN TESTS
assert f(100) == 100, "f(100)"
### END HIDDEN TESTS
"""


def test_case_lines_split_a_test_cell_and_weights_share_the_points():
    cases = split_cases(TESTS, {"big": 3})
    assert [(c.case_id, c.requirement, len(c.statements), c.weight) for c in cases] == [
        ("main", "the tests before the first CASE line", 1, 1.0),
        ("small", "works for small inputs", 1, 1.0),
        ("big", "works for big inputs", 2, 3.0),
    ]
    assert cases[2].hidden and not cases[1].hidden
    assert case_points(5, cases, [True, True, False]) == [1.0, 1.0, 0.0]
    assert [c.case_id for c in split_cases("assert True")] == ["main"]
    with pytest.raises(ValueError, match="'huge', which does not exist"):
        split_cases(TESTS, {"huge": 1})


def test_code_too_long_to_check_for_shortcuts_is_a_use_that_can_hide_a_call_not_minutes_of_parsing():
    # the check parses each cell per forbidden question in the grader: 6 MB of "x = 1" lines took 84 s and 3.9 GB,
    # a notebook may hold 60; split over many cells, each small, it cost the same
    answer = "def slerp(a, b, t):\n    return a * (1 - t) + b * t\n"
    padding = ["x = 1\n" * 30_000] * 3  # 540,000 characters in three cells
    uses = shortcut_uses([answer], ["latent_point"], ["slerp"], padding)
    assert uses == [
        f"{len(answer) + 540_000:,} characters of code, too many to check (limit 524,288) (a dynamic lookup)"
    ]
    assert shortcut_note("q1", uses, ["latent_point"]).endswith(
        "your code uses 540,051 characters of code, too many to check (limit 524,288), which can hide a call to the "
        "kit, so q1 scores 0"
    )
    assert shortcut_uses([answer], ["latent_point"], ["slerp"], padding[:1]) == []  # 180 kB: checked


def test_the_shortcut_check_finds_kit_imports_and_forbidden_names():
    forbidden = ["latent_point", "interpolate"]
    assert shortcut_uses(["def slerp(a, b, t):\n    return a * (1 - t) + b * t"], forbidden) == []
    assert shortcut_uses(["from musicvae_course import latent_point as lp\nslerp = lp"], forbidden) == [
        "musicvae_course",
        "latent_point",
    ]
    assert shortcut_uses(["import musicvae_course.core.model as m\nm.interpolate(1, 2)"], forbidden) == [
        "musicvae_course.core.model",
        "interpolate",
    ]
    assert shortcut_uses(["getattr(kit, 'latent_point')"], forbidden) == ["latent_point"]


@pytest.mark.parametrize(
    "honest",
    [
        'def freeze(model):\n    for part in ("encoder", "fc_mu"):\n        getattr(model, part).requires_grad_(False)',
        "import operator\ndef notes(found):\n    return sorted(found, key=operator.itemgetter(1, 0))",
        'if __name__ == "__main__":\n    print(type(x).__class__.__name__, len(x))',
        "import re\nPATTERN = re.compile(r'q\\d')",
        "def frozen(model):\n    return [m for m in model.decoder.modules() if not m.training]",  # torch's method
    ],
)
def test_the_shortcut_check_leaves_honest_lookups_alone(honest):
    # a loop over named parts, a sort key, a script guard: none can reach a kit function by a hidden name
    assert shortcut_uses([honest], ["latent_point"]) == []


@pytest.mark.parametrize(
    "attack, found",
    [
        ('getattr(model, "latent_" + "point")', "getattr with a computed name"),
        ('for name in ("a", hidden):\n    getattr(model, name)', "getattr with a computed name"),
        ('from operator import attrgetter\nf = attrgetter("latent_" + "point")', "attrgetter with a computed name"),
        ("from operator import attrgetter\nf = attrgetter('encode', 'latent_' + 'point')", "attrgetter with"),
        ('import operator\nf = operator.attrgetter("encode.__globals__")', "__globals__"),
        ('import operator\nf = operator.attrgetter("core.latent.latent_point")', "latent_point"),
        ('kit = __import__("musicvae_" + "course")', "__import__"),
        ("import importlib\nm = importlib.import_module(name)", "importlib"),
        ("import sys\nm = sys.modules[name]", "modules"),
        ("import sys as s\nm = s.modules.get(name)", "modules"),
        ('import sys\nm = getattr(sys, "modules")[name]', "modules"),
    ],
)
def test_the_shortcut_check_finds_kit_functions_reached_by_a_computed_name(attack, found):
    assert any(use.startswith(found) for use in shortcut_uses([attack], ["latent_point"]))


# -------------------------------------------------------------------------------------------- check() guards


def _graded(cell, grade_id, **flags):
    cell.metadata["nbgrader"] = {
        "grade": flags.get("grade", False),
        "grade_id": grade_id,
        "locked": flags.get("locked", False),
        "points": flags.get("points", 0),
        "schema_version": 3,
        "solution": flags.get("solution", False),
        "task": False,
    }
    return cell


def test_check_runs_public_tests_with_the_model_protected_and_names_shortcuts(tmp_path):
    test = _graded(
        new_code_cell(
            "model.train()\nwith torch.no_grad():\n    model.weight.fill_(0)\nassert scale(2) == 4, 'scale(2)'"
        ),
        "q1",
        grade=True,
        locked=True,
        points=1,
    )
    test.metadata["grading"] = {"forbidden": ["double_it"]}
    solution = _graded(
        new_code_cell("from musicvae_course import double_it\ndef scale(x):\n    return 2 * x"),
        "q1_solution",
        solution=True,
    )
    path = tmp_path / "nb.ipynb"
    nbformat.write(new_notebook(cells=[solution, test]), path)
    model = torch.nn.Linear(2, 2)
    model.train()
    weights = model.weight.detach().clone()
    namespace = {"torch": torch, "model": model, "scale": lambda x: 2 * x}
    result = Checker(path, protect={"model": model}).run("q1", namespace)
    assert result.ok
    text = str(result)
    assert "your code changed model's parameters or buffers (weight) and model's train/eval mode" in text
    assert "q1 asks you to write this yourself without the kit's double_it" in text
    assert torch.equal(model.weight, weights) and model.training  # put back as it was before check()


# ------------------------------------------------------------------------------------------------ similarity


def test_similarity_ignores_names_comments_and_layout_but_not_different_code():
    a = "def f(values):\n    total = sum(values)  # add\n    return [v / total for v in values]"
    b = "def g(xs):\n    s = sum(xs)\n\n    return [x / s for x in xs]"
    c = "def f(values):\n    return sorted(values, reverse=True)[:3] + [max(values) - min(values)]"
    assert normalized_tokens(a) == normalized_tokens(b)
    source = type("S", (), {})()
    question = type("Q", (), {"solution_ids": ["q1_solution"]})()
    source.questions, source.solutions = {"q1": question}, {"q1_solution": "### BEGIN SOLUTION\npass\n### END SOLUTION"}
    records = [
        {"student": s, "notebook": "n.ipynb", "solutions": {"q1_solution": text}} for s, text in zip("abc", (a, b, c))
    ]
    assert similar_pairs(records, {"n.ipynb": source}) == [["n.ipynb", "q1", "a", "b", "1.00"]]


def test_a_huge_solution_costs_the_similarity_report_little_and_copies_are_still_found(monkeypatch):
    # the report is rebuilt after every graded notebook: a 600 kB "solution" compared with each classmate's took
    # a second per pair (minutes per rebuild in a class), and a record kept it whole
    compared, full = [], []  # tokens per comparison; comparisons that ran the quadratic ratio()

    class Counting(reports.SequenceMatcher):
        def __init__(self, isjunk, a, b, autojunk):
            compared.append(max(len(a), len(b)))
            super().__init__(isjunk, a, b, autojunk)

        def ratio(self):
            full.append(1)
            return super().ratio()

    monkeypatch.setattr(reports, "SequenceMatcher", Counting)
    honest = "def f(values):\n    total = sum(values)\n    return [v / total for v in values]"
    huge = "def f(values):\n" + "    values = (values, values)\n" * 20_000
    source = type("S", (), {})()
    question = type("Q", (), {"solution_ids": ["q1_solution"]})()
    source.questions, source.solutions = {"q1": question}, {"q1_solution": "### BEGIN SOLUTION\npass\n### END SOLUTION"}
    texts = {"a": honest, "b": honest, "huge": huge}
    texts |= {
        f"other{n}": honest.replace("sum(values)", f"sum(values) + {n} * len(values) - max(values)") for n in range(8)
    }
    records = [{"student": s, "notebook": "n.ipynb", "solutions": {"q1_solution": t}} for s, t in texts.items()]
    pairs = similar_pairs(records, {"n.ipynb": source})
    assert [p[2:4] for p in pairs if p[4] == "1.00"] == [["a", "b"]]
    assert max(compared) <= reports.MAX_TOKENS  # the huge one by its first tokens only
    assert len(full) < len(compared)  # pairs whose cheap bounds are under the threshold skip ratio()
    nb = new_notebook(cells=[new_code_cell(huge, metadata={"nbgrader": {"grade_id": "q1_solution"}})])
    kept = autograde._solutions_of(nb, source)["q1_solution"]
    assert kept == huge[: reports.MAX_SOLUTION_CHARS]


# ---------------------------------------------------------------------------------------- sessions and runs


def test_grading_session_grades_given_and_reference_solutions_with_partial_credit():
    with GradingSession(SOURCE, sandbox="auto", cell_timeout=30) as session:
        wrong = session.grade_question(
            "q4",
            solutions={
                "q4_solution": "def logits_and_probs(model, x):\n    return torch.zeros(2, 2), torch.zeros(2, 2)"
            },
        )
        reference = session.grade_question("q4")
        raising = session.grade_question(
            "q1", solutions={"q1_solution": "def normalize(w):\n    raise ValueError('no weights')"}
        )
    assert (wrong.points, wrong.max_points) == (0.5, 2)
    assert [tuple(c)[:3] for c in wrong.cases] == [
        ("shapes", "both results have the batch's shape (2, 2)", True),
        ("values", "the logits are the model's outputs and the probabilities their softmax", False),
    ]
    assert (reference.points, [c.passed for c in reference.cases]) == (2, [True, True])
    assert raising.points == 0 and "normalize raised ValueError: no weights in case main" in raising.cases[0].message


def test_the_grader_stops_when_the_kits_files_change_and_records_isolation_none(tmp_path):
    data = tmp_path / "notes.txt"
    data.write_text("given data\n")
    nb = nbformat.read(FIXTURES / "submissions" / "correct" / "melody.ipynb", as_version=4)
    nb.cells.insert(2, new_code_cell(f"open({str(data)!r}, 'a').write('changed by a submission')"))
    for name in ("ada", "bob"):
        (tmp_path / "subs" / name).mkdir(parents=True)
        nbformat.write(nb, tmp_path / "subs" / name / "melody.ipynb")
    with pytest.raises(autograde.KitChanged, match="notes.txt"):
        autograde.autograde(
            tmp_path / "subs", SOURCE.parent, tmp_path / "out", jobs=1, sandbox="none", data={"notes.txt": data}
        )
    records = sorted((tmp_path / "out" / "records").glob("*/*.json"))
    assert len(records) == 1  # ada graded and kept; bob never started
    assert json.loads(records[0].read_text())["isolation"] == "none"


def test_a_grading_worker_refuses_a_huge_allocation_instead_of_being_killed():
    # what a hostile (N, 1) answer compared with a roll makes grader-side code allocate: MemoryError in that test,
    # not the OOM killer ending the worker and the submissions graded beside it
    with ProcessPoolExecutor(
        1, mp_context=get_context("spawn"), initializer=autograde.limit_worker_memory, initargs=(512 * 1024**2,)
    ) as pool:
        with pytest.raises(MemoryError):
            pool.submit(eval, "len(bytearray(2 * 1024**3))").result()
        assert pool.submit(eval, "len(bytearray(64 * 1024**2))").result() == 64 * 1024**2  # room for honest work


def test_a_scratch_cell_that_imports_numpy_again_and_calls_the_kit_is_not_the_answer():
    answer = "def f1(a, b):\n    return float(np.mean(a == b))"
    scratch = "import numpy as np\nprint(f1(a, b), latent_point(a, b))  # comparing with the kit is fine"
    assert shortcut_uses([answer], ["latent_point"], ["f1"], [scratch]) == []
    # ...but a cell that binds a name the answer uses to kit code is part of it
    alias = "import numpy as np\nfrom musicvae_course.core import latent as np"
    assert shortcut_uses([answer], ["latent_point"], ["f1"], [alias]) == ["musicvae_course.core"]


# ------------------------------------------------------------------------------------------------- submissions and runs


def test_a_file_name_that_is_not_utf8_does_not_stop_the_records_and_the_class_files(tmp_path):
    # such a name reaches Python as lone surrogates; the record (JSON) holds them, UTF-8 text files cannot
    name = b"\xff\xfe.ipynb".decode("utf-8", "surrogateescape")
    autograde.write_record(tmp_path, autograde._plain_record("ada", name, "unreadable", f"{name} is not readable"))
    reports.write_all(tmp_path, {})
    assert "# ??.ipynb: 0 / 0 points" in (tmp_path / "feedback" / "ada" / f"{name[:-6]}.md").read_text()
    assert "ada,??.ipynb,,0,0,unreadable" in (tmp_path / "grades_long.csv").read_text()


def test_a_submission_too_big_to_read_is_not_read(tmp_path):
    # the batch's own process reads and parses each file, with no rlimit: a zip bomb's notebook would end the run
    (tmp_path / "subs" / "mallory").mkdir(parents=True)
    with open(tmp_path / "subs" / "mallory" / "melody.ipynb", "wb") as handle:
        handle.truncate(submissions.MAX_NOTEBOOK_BYTES + 1)  # sparse: no disk used here
    autograde.autograde(tmp_path / "subs", SOURCE.parent, tmp_path / "out", jobs=1, sandbox="none")
    record = json.loads((tmp_path / "out" / "records" / "mallory" / "melody.json").read_text())
    assert record["status"] == "error" and "over the grader's limit" in record["problems"][0]
    assert record["questions"] and all(q["points"] == 0 for q in record["questions"])


def test_a_small_submission_holding_millions_of_json_values_is_not_parsed(tmp_path):
    # 6 MB of "[],[],..." in a notebook's metadata: nbformat builds every list (at 256 MB: 13 GB, 100 s)
    (tmp_path / "subs" / "mallory").mkdir(parents=True)
    lists = ",".join(["[]"] * (submissions.MAX_NOTEBOOK_SEPARATORS // 2))  # a "[" and a "," each
    bomb = '{"nbformat": 4, "nbformat_minor": 5, "metadata": {"x": [' + lists + ']}, "cells": []}'
    (tmp_path / "subs" / "mallory" / "melody.ipynb").write_text(bomb)
    with pytest.raises(ValueError, match=r"melody\.ipynb holds about 2,000,00\d JSON values"):
        submissions.parse_submission(bomb.encode(), "melody.ipynb")
    autograde.autograde(tmp_path / "subs", SOURCE.parent, tmp_path / "out", jobs=1, sandbox="none")
    record = json.loads((tmp_path / "out" / "records" / "mallory" / "melody.json").read_text())
    assert record["status"] == "unreadable" and "clear its outputs" in record["problems"][0]


def _grade_or_end_the_worker(job):
    """A stand-in for the worker's grading: "mallory"'s notebook ends its process, as a crash in native code would."""

    if job["student"] == "mallory":
        time.sleep(0.5)  # the others are being graded beside it when it ends the pool
        os._exit(1)
    time.sleep(1)
    record = autograde._plain_record(job["student"], "melody.ipynb", "graded", "graded")
    autograde.write_record(Path(job["out_dir"]), record)
    return record


def test_a_submission_that_ends_its_worker_does_not_take_the_ones_graded_beside_it(tmp_path):
    # the pool ends for every notebook in it, and which one did it is unknown: those are graded again alone
    todo = [
        {"student": s, "path": f"{s}/melody.ipynb", "source_path": str(SOURCE), "out_dir": str(tmp_path)}
        for s in ("ada", "bob", "mallory", "zoe")
    ]
    for job in todo:
        job["limits"] = {"memory_bytes": 4 * 1024**3}
    lines = []
    autograde._run_jobs(todo, 3, tmp_path, {}, lambda: None, lines.append, grade=_grade_or_end_the_worker)
    status = {p.parent.name: json.loads(p.read_text())["status"] for p in (tmp_path / "records").glob("*/*.json")}
    assert status == {"ada": "graded", "bob": "graded", "mallory": "error", "zoe": "graded"}
    assert sum("grading mallory" in line for line in lines) == 3  # beside others once, then alone twice


def test_a_student_folder_that_is_a_link_is_not_read(tmp_path):
    # a link named like a student, to the instructor's sources: its notebooks would be read with the grader's
    # rights and score full marks
    subs = tmp_path / "subs"
    (subs / "ada").mkdir(parents=True)
    (subs / "ada" / "melody.ipynb").write_text(SOURCE.read_text())
    (subs / "mallory").symlink_to(SOURCE.parent, target_is_directory=True)
    found, stray = submissions.scan(subs, None)
    assert found == {"ada": [subs / "ada" / "melody.ipynb"], "mallory": []}
    assert any("mallory" in line and "link" in line for line in stray)


def test_a_copy_in_a_subfolder_is_not_graded_and_does_not_replace_the_grade_on_a_resumed_run(tmp_path):
    # backup/melody.ipynb sorts before melody.ipynb, and its "second copy" record had the graded one's path: graded
    # instead of the student's notebook, then replaced by an error on the next (resumed) run
    student = tmp_path / "subs" / "ada"
    (student / "backup").mkdir(parents=True)
    shutil.copy(FIXTURES / "submissions" / "correct" / "melody.ipynb", student / "melody.ipynb")
    shutil.copy(FIXTURES / "submissions" / "partial" / "melody.ipynb", student / "backup" / "melody.ipynb")
    for _ in range(2):  # the second run resumes
        (grade,) = autograde.autograde(tmp_path / "subs", SOURCE.parent, tmp_path / "out", cell_timeout=20, jobs=1)
        assert (grade.status, grade.total) == ("graded", 8)
        assert grade.problems == ["ada/backup/melody.ipynb is a second copy of melody.ipynb; not graded"]


def test_a_notebook_of_many_failing_or_repeated_cells_lists_a_bounded_number_of_problems(tmp_path):
    # each cell that raises or repeats a locked cell is a line of the record and the feedback: a million of them
    # would be read again by every rebuild of the class files
    nb = nbformat.read(FIXTURES / "submissions" / "correct" / "melody.ipynb", as_version=4)
    setup = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "setup")
    nb.cells += [new_code_cell("1 / 0") for _ in range(150)]
    nb.cells += [new_code_cell(setup.source, metadata=json.loads(json.dumps(setup.metadata))) for _ in range(150)]
    (tmp_path / "subs" / "ada").mkdir(parents=True)
    nbformat.write(nb, tmp_path / "subs" / "ada" / "melody.ipynb")
    (grade,) = autograde.autograde(tmp_path / "subs", SOURCE.parent, tmp_path / "out", cell_timeout=20, jobs=1)
    assert grade.total == 8 and len(grade.problems) == MAX_PROBLEMS + 1
    assert grade.problems[-1] == "and 200 more problems (cells that raised, repeated or ran too long)"


def test_a_notebook_name_of_255_bytes_does_not_stop_the_run_for_the_class(tmp_path):
    # its record, "<stem>.json", written through ".<stem>.json.<random>.tmp", passed the file system's 255 bytes:
    # ENAMETOOLONG stopped the batch before anyone was graded
    (tmp_path / "subs" / "ada").mkdir(parents=True)
    (tmp_path / "subs" / "mallory").mkdir()
    shutil.copy(FIXTURES / "submissions" / "correct" / "melody.ipynb", tmp_path / "subs" / "ada" / "melody.ipynb")
    long_name = "é" * 124 + "m.ipynb"  # 255 bytes
    (tmp_path / "subs" / "mallory" / long_name).write_text("not a notebook")
    grades = autograde.autograde(tmp_path / "subs", SOURCE.parent, tmp_path / "out", cell_timeout=20, jobs=1)
    assert {g.student: g.total for g in grades} == {"ada": 8, "mallory": 0}
    (record,) = (tmp_path / "out" / "records" / "mallory").glob("*.json")
    assert json.loads(record.read_text())["notebook"] == long_name and len(record.name.encode()) < 130
    (feedback,) = (tmp_path / "out" / "feedback" / "mallory").glob("*.md")
    assert "not a readable notebook" in feedback.read_text()


def test_a_broken_copy_in_a_subfolder_does_not_replace_the_grade_on_a_resumed_run(tmp_path):
    # a backup/melody.ipynb that is not a notebook (or a link) wrote its "unreadable" record over the graded
    # copy's: on the first run the worker's record came after it, on a resumed run nothing did, and the grade was 0
    student = tmp_path / "subs" / "ada"
    (student / "backup").mkdir(parents=True)
    shutil.copy(FIXTURES / "submissions" / "correct" / "melody.ipynb", student / "melody.ipynb")
    (student / "backup" / "melody.ipynb").write_text("{")
    for _ in range(2):  # the second run resumes
        (grade,) = autograde.autograde(tmp_path / "subs", SOURCE.parent, tmp_path / "out", cell_timeout=20, jobs=1)
        assert (grade.status, grade.total) == ("graded", 8)
        assert grade.problems == ["ada/backup/melody.ipynb is a second copy of melody.ipynb; not graded"]
