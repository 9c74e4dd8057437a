# The course's two commands (see README.md):
#   make lab    set up .venv if needed, then open JupyterLab on notebooks/
#   make test   set up .venv if needed, then run every test (unit, notebooks, browser)
# Everything installs from PyPI into .venv; nothing is downloaded at run time.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build. For a GPU build: make lab TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
TORCH ?= torch==2.13.0
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab lint test setup student-versions clean-venv

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: with it present, the package's "torch>=" range pulls nothing more.
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# tinysoundfont renders sampled piano; its metadata asks for pyaudio, which it
	# does not need to render and which fails to build on many machines.
	$(BIN)/python -m pip install --quiet --no-deps "tinysoundfont>=0.3"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (musicvae-course)" >/dev/null
	touch $@

setup: $(BIN)/.installed

lab: $(BIN)/.installed
	$(BIN)/jupyter lab --notebook-dir=notebooks $(ROOT_FLAG) $(LAB_ARGS)

# The house style (ruff: lint + format) and the package's layers (import-linter) are part of the tests.
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

student-versions: $(BIN)/.installed
	$(BIN)/python -m musicvae_course.grading student-versions notebooks student

clean-venv:
	rm -rf $(VENV)
