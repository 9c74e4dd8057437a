"""The student release (``make release``): what it holds, what it must not hold, and that its notebooks run.

The secret texts are taken from the instructor notebooks in ``notebooks/`` with the grading markers (the lines
between ``### BEGIN SOLUTION``/``### END SOLUTION`` and ``### BEGIN HIDDEN TESTS``/``### END HIDDEN TESTS``),
by a parser of this test's own, and searched for in every file of the release and of its zip, archives (the
wheel, the zip, the checkpoint's zip) opened recursively, notebooks also as parsed JSON.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from scripts_loader import load_script

ROOT = Path(__file__).resolve().parents[1]
make_release = load_script("make_release")

SOURCES, STUDENT = ROOT / "notebooks", ROOT / "student"
REGION = re.compile(r"^[ \t]*### BEGIN (SOLUTION|HIDDEN TESTS)[ \t]*$(.*?)^[ \t]*### END \1[ \t]*$", re.M | re.S)
MIN_LENGTH = 16  # shorter lines ("return x", "pass") are not evidence of a leak


def cell_sources(notebook: Path, kind: str | None = None) -> list[str]:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return [
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in cells
        if kind in (None, c["cell_type"])
    ]


def secret_lines(sources: Path = SOURCES) -> dict[str, list[str]]:
    """Per instructor notebook, the distinctive lines of its solutions and hidden tests.

    A line counts when it is at least MIN_LENGTH characters long and is not part of the public text of the
    instructor notebooks (everything outside the marker regions: a hint may quote a solution's line) nor of the
    package's code (a solution may legitimately call the kit the way the kit calls itself).
    """
    public = [path.read_text(encoding="utf-8") for path in (ROOT / "musicvae_course").rglob("*.py")]
    regions: dict[str, list[str]] = {}
    for notebook in sorted(sources.glob("*.ipynb")):
        for source in cell_sources(notebook):
            public.append(REGION.sub("", source))
            for _kind, body in REGION.findall(source):
                regions.setdefault(notebook.name, []).extend(line.strip() for line in body.splitlines())
    public_text = "\n".join(public)
    return {
        name: sorted({line for line in lines if len(line) >= MIN_LENGTH and line not in public_text})
        for name, lines in regions.items()
    }


def needles(lines: list[str]) -> list[tuple[str, bytes]]:
    """Each line as raw UTF-8 and as it looks inside a JSON string (notebooks), ASCII-escaped or not."""
    found = []
    for line in lines:
        variants = {line, json.dumps(line)[1:-1], json.dumps(line, ensure_ascii=False)[1:-1]}
        found.extend((line, variant.encode("utf-8")) for variant in variants)
    return found


def blobs(name: str, data: bytes, seen: set[str]):
    """(name, bytes) for a file and, recursively, for every member of it that is an archive; each content once."""
    digest = hashlib.sha256(data).hexdigest()
    if digest in seen:
        return
    seen.add(digest)
    yield name, data
    if name.endswith(".ipynb"):
        try:
            yield f"{name} (cell sources)", "\n".join(cell_sources_from_bytes(data)).encode("utf-8")
        except ValueError:
            pass
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                yield from blobs(f"{name}!{member}", archive.read(member), seen)


def cell_sources_from_bytes(data: bytes) -> list[str]:
    cells = json.loads(data.decode("utf-8"))["cells"]
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells]


def leaks(folder: Path, secrets: dict[str, list[str]], extra: tuple[Path, ...] = ()) -> list[str]:
    """'file: line (from notebook)' for every secret line found in the files under ``folder`` and in ``extra``.

    Each distinct content is searched once (the zip's members are the folder's files).
    """
    searched = [(notebook, line, needle) for notebook, lines in secrets.items() for line, needle in needles(lines)]
    found, seen = set(), set()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()) + list(extra):
        for name, data in blobs(path.name if path in extra else str(path.relative_to(folder)), path.read_bytes(), seen):
            for notebook, line, needle in searched:
                if needle in data:
                    found.add(f"{name}: {line!r} (from {notebook})")
    return sorted(found)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    folder = make_release.make_release(out, STUDENT)
    return folder, out / f"{make_release.NAME}.zip"


@pytest.fixture(scope="module")
def secrets():
    found = secret_lines()
    assert sorted(found) == sorted(p.name for p in SOURCES.glob("*.ipynb")), "every notebook has marked regions"
    assert all(len(lines) >= 3 for lines in found.values()), {k: len(v) for k, v in found.items()}
    return found


def test_release_holds_the_exercises_data_wheel_readme_and_environment(release):
    folder, archive = release
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    exercises = sorted(f for f in files if f.endswith(".ipynb"))
    assert exercises == sorted(f"notebooks/{p.name}" for p in STUDENT.glob("*.ipynb")), exercises
    for name in exercises:
        assert (folder / name).read_bytes() == (STUDENT / Path(name).name).read_bytes(), f"{name} differs from student/"
    wheels = [f for f in files if f.startswith("wheels/")]
    assert len(wheels) == 1 and wheels[0].endswith("-py3-none-any.whl"), wheels
    assert {"README.md", "Makefile", "environment.yml", "data_samples/manifest.csv"} <= files
    assert Path(wheels[0]).name in (folder / "environment.yml").read_text()
    readme = (folder / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    with zipfile.ZipFile(archive) as bundle:
        assert {n for n in bundle.namelist() if not n.endswith("/")} == {f"{folder.name}/{f}" for f in files}


def test_release_holds_every_file_the_exercises_read_where_they_read_it(release):
    folder, _ = release
    for notebook in sorted((folder / "notebooks").glob("*.ipynb")):
        reads = make_release.notebook_reads(notebook)
        for relative in reads:
            assert (notebook.parent / relative).exists(), f"{notebook.name} reads {relative}: missing in the release"
    assert (folder / "reference" / "fine_tune_reference.json").is_file()


def test_release_has_no_instructor_material_nor_git_history(release):
    folder, _ = release
    names = [p.relative_to(folder).as_posix() for p in folder.rglob("*")]
    forbidden = [n for n in names if re.search(r"(^|/)(\.git|tests?|docs|scripts|fixtures)(/|$)|instructor", n)]
    assert forbidden == [], forbidden
    wheel = next(folder.glob("wheels/*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        members = archive.namelist()
    assert all(m.startswith(("musicvae_course/", "musicvae_course-")) for m in members), members
    assert not [m for m in members if m.endswith(".ipynb") or "/tests/" in m or "fixtures" in m]
    assert "musicvae_course/pretrained/musicvae_music21.pt" in members


def test_no_solution_or_hidden_test_text_is_found_anywhere_in_the_release_or_its_zip(release, secrets):
    folder, archive = release
    assert leaks(folder, secrets, extra=(archive,)) == []  # the zip opened too (and the wheel inside it)


def test_the_leak_search_finds_solutions_hidden_in_nested_archives(tmp_path, secrets):
    # Without this, a search that silently read nothing would pass the test above.
    instructor = SOURCES / "02_latent_space_with_widgets.ipynb"
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", compression=zipfile.ZIP_DEFLATED) as archive:  # no plain text outside
        archive.writestr("course/notes.ipynb", instructor.read_bytes())
    with zipfile.ZipFile(tmp_path / "outer.whl", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("pkg/data.zip", inner.getvalue())
    found = leaks(tmp_path, secrets)
    assert found and all("outer.whl!pkg/data.zip!course/notes.ipynb" in f for f in found), found
    assert {f.rsplit("(from ", 1)[1] for f in found} == {f"{instructor.name})"}


def test_release_makefile_installs_its_own_wheel_and_opens_its_exercises(release):
    folder, _ = release
    wheel = next(folder.glob("wheels/*.whl")).name
    plan = subprocess.run(
        ["make", "-n", "-C", str(folder), "setup", "lab", "test"], capture_output=True, text=True, check=True
    ).stdout
    assert f'pip install --quiet "wheels/{wheel}[notebook]"' in plan, plan
    assert "jupyter lab --ServerApp.root_dir=notebooks" in plan, plan
    assert "run-student-versions notebooks" in plan, plan


def test_release_notebooks_run_where_they_lie_failing_only_in_graded_cells(release, tmp_path):
    folder, _ = release
    # The kernels import the package from the release's wheel (unpacked first on PYTHONPATH), not this checkout.
    unpacked = tmp_path / "wheel"
    with zipfile.ZipFile(next(folder.glob("wheels/*.whl"))) as archive:
        archive.extractall(unpacked)
    env = dict(os.environ, PYTHONPATH=str(unpacked), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    where = subprocess.run(
        [sys.executable, "-c", "import musicvae_course as m; print(m.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(unpacked), where
    ran = subprocess.run(
        [sys.executable, "-m", "musicvae_course.grading", "run-student-versions", "notebooks", "--cell-timeout", "600"],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    report = "\n".join(line for line in ran.stderr.splitlines() if "ipynb" in line)  # not the kernels' warnings
    assert ran.returncode == 0, report or ran.stderr[-3000:]
    assert ran.stderr.count(": ok") == len(list((folder / "notebooks").glob("*.ipynb"))), ran.stderr
