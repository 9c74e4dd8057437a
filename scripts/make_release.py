#!/usr/bin/env python
"""Build the student release: ``dist/musicvae-course-student/`` and ``dist/musicvae-course-student.zip``.

The release holds what a student needs and nothing an instructor keeps back::

    musicvae-course-student/
        README.md          how to start (make lab) and check the bundle (make test)
        Makefile           the repository's setup block (PyTorch choice, venv), lab on notebooks/, test
        environment.yml    the conda route
        notebooks/         the exercise copies, from student/ (no solutions, no hidden tests, no outputs)
        data_samples/      every ``../<path>`` the notebooks read, copied from beside student/
        reference/         (idem: notebook 03's reference run)
        wheels/            the package as a wheel: code, the bundled checkpoint and its card

Not in it: ``notebooks/`` of the repository (solutions, hidden tests), ``tests/`` (grading fixtures),
``docs/`` (the instructor guide), ``scripts/``, git history. The files the notebooks read are found by
scanning their code cells for ``"../..."`` literals, so a notebook that starts reading a new file gets it in the
release without a change here; a missing one stops the build with the notebook's name.
``tests/test_release.py`` builds a release, searches every file in it (archives opened) for the solution and
hidden-test text of the instructor notebooks, and runs its notebooks where they lie.

Usage::

    python scripts/make_release.py --out dist            # (make release)
    python scripts/make_release.py --out /tmp/r --no-zip
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NAME = "musicvae-course-student"
EXERCISES = "notebooks"  # the exercise folder's name inside the release
SETUP_BEGIN, SETUP_END = "# --- setup: shared with the student release", "# --- end setup ---"
# A string literal that starts with ../ in a notebook's code: a file or folder beside the notebooks' folder.
RELATIVE_PATH = re.compile(r"""["'](\.\./[^"'\s]+)["']""")

STUDENT_MAKEFILE = """\
# The course's two commands (see README.md):
#   make lab    set up .venv if needed (a few minutes, once), then open JupyterLab on the exercises
#   make test   set up .venv if needed, then check the bundle: the model loads, every notebook runs
# Everything installs from PyPI (PyTorch: see TORCH below) into .venv; nothing is downloaded at run time.
LAB_DIR ?= {exercises}

{setup_block}

WHEEL := $(firstword $(wildcard wheels/musicvae_course-*.whl))
KIT ?= "$(WHEEL)[notebook]"

.PHONY: lab setup test clean-venv

$(BIN)/.installed: $(WHEEL) Makefile
\t$(PYTHON) -m venv $(VENV)
\t$(BIN)/python -m pip install --quiet --upgrade pip
\t# torch first and pinned: with it present, the package's "torch>=" range pulls nothing more.
\t$(install_torch)
\t$(BIN)/python -m pip install --quiet $(KIT)
\t# tinysoundfont renders sampled piano; its metadata asks for pyaudio, which it does not need to render.
\t$(BIN)/python -m pip install --quiet --no-deps "tinysoundfont>=0.3"
\t$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (musicvae-course)" >/dev/null
\ttouch $@

setup: $(BIN)/.installed

lab: $(BIN)/.installed
\t$(BIN)/jupyter lab $(FOLDER_FLAG) $(ROOT_FLAG) $(LAB_ARGS)

# The bundle works when the bundled model loads (SHA-256 checked) and every notebook runs top to bottom,
# failing only in the exercise cells you have not solved yet (they raise NotImplementedError).
test: $(BIN)/.installed
\t$(BIN)/python -c "import musicvae_course as m; m.load_pretrained(); print('the bundled model loads')"
\t$(BIN)/python -m musicvae_course.grading run-student-versions {exercises} --cell-timeout 600

clean-venv:
\trm -rf $(VENV)
"""

STUDENT_ENVIRONMENT = """\
# conda env create -f environment.yml && conda activate musicvae-course && jupyter lab {exercises}/
# The PyTorch line picks the CPU build from PyTorch's CPU index where it can be reached; for a GPU build,
# replace both lines by the ones pytorch.org gives for your CUDA version.
name: musicvae-course
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
      - --extra-index-url https://download.pytorch.org/whl/cpu
      - torch==2.13.0
      - ./wheels/{wheel}[notebook]
"""

STUDENT_README = """\
# MusicVAE course: the exercises

Four Jupyter notebooks that teach music generation with a convolutional variational autoencoder on piano
rolls, with the pretrained model, real MIDI samples and graded exercises you can check yourself.

## Two commands

On a machine with Python >= 3.10 and `make` (everything installs from PyPI into `./.venv`):

```bash
make lab    # set up .venv if needed, then open JupyterLab on {exercises}/
make test   # set up .venv if needed, then check the bundle: the model loads, every notebook runs
```

The first call takes a few minutes (installs); later calls start at once. Start with
`01_loading_the_pretrained_vae.ipynb`.

* **PyTorch**: on Linux without an NVIDIA driver you get the CPU build from PyTorch's CPU index (about
  190 MB); where that index cannot be reached, from the default index. On macOS, PyPI's build (CPU and Apple's
  MPS, about 80 MB); on Linux with an NVIDIA driver, PyPI's CUDA build (3-4 GB with its libraries). To choose:
  `make lab TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"`.
* **Other options**: `make lab LAB_ARGS="--port=8890"` passes options to JupyterLab; Jupyter Notebook 7 is
  installed too (`.venv/bin/jupyter notebook {exercises}/`).
* **conda**: `conda env create -f environment.yml`, `conda activate musicvae-course`, `jupyter lab {exercises}/`.

## What is here

| path | what |
|---|---|
| `{exercises}/` | the four notebooks, in order 01 to 04 (about five hours in all) |
| `data_samples/` | the MIDI pieces the notebooks read, with each file's source and licence (`data_samples/README.md`) |
| `reference/` | notebook 03's reference fine-tuning run, to compare your curves with |
| `wheels/` | the `musicvae_course` package with the pretrained model and its card (`pretrained/MODEL_CARD.md`) |

## Working through the exercises

Each exercise (marked ✎) has a solution cell, where you replace `raise NotImplementedError()` with your code,
and a read-only test cell below it. `check("q1")` in any cell runs the public tests of question q1 and says
which one failed. Passing them is necessary, not sufficient: when the course is graded, hidden tests also run;
the **Hint** under each exercise says what they look at. Before you hand a notebook in, run
**Kernel -> Restart Kernel and Run All Cells**, and hand in the `.ipynb` file under its own name.

In notebook 03, `TRAIN_LIVE = False` runs a short fine-tune and shows the reference run; `TRAIN_LIVE = True`
trains for about 3 minutes. Hand notebook 03 in with `TRAIN_LIVE = False`.

## Licences

Code: MIT. `data_samples/`: each file's licence is in `data_samples/README.md`. The pretrained model: see its
model card for the terms of the data it was trained on.
"""


def notebook_reads(notebook: Path) -> list[str]:
    """The ``../<path>`` string literals in a notebook's code cells, in order of first use."""
    found: list[str] = []
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for match in RELATIVE_PATH.findall(source):
            if match not in found:
                found.append(match)
    return found


def setup_block(makefile: Path) -> str:
    """The repository Makefile's setup block (PyTorch choice, venv, lab folder, browser), shared with the release."""
    text = makefile.read_text(encoding="utf-8")
    start, end = text.find(SETUP_BEGIN), text.find(SETUP_END)
    if start < 0 or end < start:
        raise SystemExit(f"{makefile}: no block between {SETUP_BEGIN!r} and {SETUP_END!r}")
    return text[start : end + len(SETUP_END)]


def build_wheel(package: Path, pyproject: Path, readme: str, wheel_dir: Path) -> Path:
    """Build the package's wheel from a clean staging copy (no caches, no egg-info; the student README as its text)."""
    with tempfile.TemporaryDirectory(prefix="mvc-wheel-") as staging_name:
        staging = Path(staging_name)
        shutil.copy2(pyproject, staging / "pyproject.toml")
        (staging / "README.md").write_text(readme, encoding="utf-8")
        shutil.copytree(package, staging / package.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        wheel_dir.mkdir(parents=True, exist_ok=True)
        # No build isolation: setuptools is already in the environment, and the build needs no network.
        built = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", wheel_dir]
            + [str(staging)],
            capture_output=True,
            text=True,
        )
        if built.returncode != 0:  # setuptools' deprecation warnings are noise; its errors are not
            raise SystemExit(f"building the wheel failed:\n{built.stdout}{built.stderr}")
    wheels = sorted(wheel_dir.glob("musicvae_course-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one musicvae_course wheel in {wheel_dir}, found {[w.name for w in wheels]}")
    return wheels[0]


def make_release(out: Path, student: Path, repo: Path = REPO, zip_it: bool = True) -> Path:
    """Write ``out/musicvae-course-student/`` (and its zip unless ``zip_it`` is false); return the folder.

    ``student`` is the folder of exercise copies (``student/``); the files they read are taken relative to it.
    """
    notebooks = sorted(student.glob("*.ipynb"))
    if not notebooks:
        raise SystemExit(f"{student}: no exercise notebooks (run make student-versions first)")
    target = out / NAME
    if target.exists():
        shutil.rmtree(target)
    (target / EXERCISES).mkdir(parents=True)
    for notebook in notebooks:
        shutil.copy2(notebook, target / EXERCISES / notebook.name)

    for notebook in notebooks:
        for relative in notebook_reads(notebook):
            source = (student / relative).resolve()
            destination = target / EXERCISES / relative
            if not source.exists():
                raise SystemExit(f"{notebook.name} reads {relative!r}, but {source} does not exist")
            if not destination.resolve().is_relative_to(target.resolve()):
                raise SystemExit(f"{notebook.name} reads {relative!r}, outside the release's folder")
            if destination.exists():
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", ".*"))
            else:
                shutil.copy2(source, destination)

    readme = STUDENT_README.format(exercises=EXERCISES)
    (target / "README.md").write_text(readme, encoding="utf-8")
    wheel = build_wheel(repo / "musicvae_course", repo / "pyproject.toml", readme, target / "wheels")
    block = setup_block(repo / "Makefile")
    (target / "Makefile").write_text(STUDENT_MAKEFILE.format(exercises=EXERCISES, setup_block=block))
    (target / "environment.yml").write_text(STUDENT_ENVIRONMENT.format(exercises=EXERCISES, wheel=wheel.name))

    if zip_it:
        archive = out / f"{NAME}.zip"
        archive.unlink(missing_ok=True)
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            for path in sorted(target.rglob("*")):
                if path.is_file():
                    bundle.write(path, path.relative_to(out).as_posix())
    return target


def describe(folder: Path) -> list[str]:
    """One line per file of the release, with its size, then the total."""
    lines, total = [], 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = path.stat().st_size
        total += size
        lines.append(f"{size:>12,}  {path.relative_to(folder.parent)}")
    lines.append(f"{total:>12,}  total")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "dist"), help="folder for the release and its zip")
    parser.add_argument("--student", default=str(REPO / "student"), help="the exercise copies")
    parser.add_argument("--no-zip", action="store_true", help="write the folder only")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    target = make_release(Path(args.out), Path(args.student), zip_it=not args.no_zip)
    print("\n".join(describe(target)))
    archive = Path(args.out) / f"{NAME}.zip"
    if archive.exists():
        print(f"{archive.stat().st_size:>12,}  {archive}")
    print(f"release written in {time.perf_counter() - started:.1f} s: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
