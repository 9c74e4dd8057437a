# The course's two commands (see README.md):
#   make lab    set up .venv if needed, then open JupyterLab on the exercises (student/)
#   make test   set up .venv if needed, then run every test (unit, notebooks, release, nbgrader, browser)
# Also: make lab-instructor (JupyterLab on notebooks/, the sources with solutions), make release
# (dist/musicvae-course-student/ and its zip), make student-versions (notebooks/ -> student/).
# Everything installs from PyPI (PyTorch: see TORCH below) into .venv; nothing is downloaded at run time.

# --- setup: shared with the student release (scripts/make_release.py copies this block into its Makefile) ---
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# PyTorch. Left empty, setup picks by platform: Linux without an NVIDIA driver gets the CPU build from PyTorch's
# own CPU index (about 190 MB), falling back to the default index when that index cannot be reached; elsewhere
# the default index's build (macOS: CPU+MPS, about 80 MB; Linux with an NVIDIA driver: CUDA, about 3-4 GB with
# its libraries). Any pip arguments override it, e.g. for a given CUDA version:
#   make lab TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
TORCH ?=
TORCH_VERSION := 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# JupyterLab's root folder for `make lab`; LAB_ARGS adds options (a --notebook-dir/--ServerApp.root_dir of its
# own replaces LAB_DIR rather than clashing with it).
LAB_DIR ?= student
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
FOLDER_FLAG = $(if $(filter --notebook-dir=% --ServerApp.root_dir=% --ServerApp.notebook_dir=%,$(LAB_ARGS)),,--ServerApp.root_dir=$(LAB_DIR))

define install_torch
@if [ -n "$(strip $(TORCH))" ]; then \
	    echo "setup: torch as given: $(TORCH)"; \
	    $(BIN)/python -m pip install --quiet $(TORCH); \
	elif [ "$$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1; then \
	    if $(BIN)/python -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=15)" 2>/dev/null; then \
	        echo "setup: torch==$(TORCH_VERSION), the CPU build, from $(TORCH_CPU_INDEX)"; \
	        $(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION) --index-url $(TORCH_CPU_INDEX); \
	    else \
	        echo "setup: $(TORCH_CPU_INDEX) cannot be reached: torch==$(TORCH_VERSION) from the default index"; \
	        echo "setup: (a CPU wheel on local disk or a mirror is used if pip has one; PyPI's own Linux build is the CUDA one, 3-4 GB)"; \
	        $(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION); \
	    fi; \
	else \
	    echo "setup: torch==$(TORCH_VERSION) from the default index ($$(uname -s)$$(command -v nvidia-smi >/dev/null 2>&1 && echo ', NVIDIA driver found: CUDA build'))"; \
	    $(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION); \
	fi
@$(BIN)/python -W ignore -c "import torch; print('setup: torch', torch.__version__, '| CUDA' if torch.cuda.is_available() else '| no CUDA device')"
endef

# make test's browser test drives Chromium: use the one on PATH (or $MVC_CHROMIUM), else install Debian's through
# apt-get when running as root, else playwright's own build; fail with the command to run only when none works.
define find_browser
chromium="$${MVC_CHROMIUM:-$$(command -v chromium || command -v chromium-browser || true)}"; \
	if [ -z "$$chromium" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "test: installing Debian's chromium for the browser test (apt-get)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || true; \
	    chromium="$$(command -v chromium || true)"; \
	fi; \
	if [ -z "$$chromium" ]; then \
	    echo "test: installing playwright's Chromium for the browser test"; \
	    $(BIN)/python -m playwright install chromium >/dev/null 2>&1 && \
	    chromium="$$($(BIN)/python -c 'from playwright.sync_api import sync_playwright as s; p = s().start(); print(p.chromium.executable_path); p.stop()' 2>/dev/null)"; \
	    [ -x "$$chromium" ] || chromium=""; \
	fi; \
	if [ -z "$$chromium" ]; then \
	    echo "test: no Chromium for the browser test, and none could be installed here. Install one, then run make test again:"; \
	    echo "    sudo apt-get install chromium        # Debian/Ubuntu"; \
	    echo "    $(BIN)/python -m playwright install --with-deps chromium        # elsewhere"; \
	    exit 1; \
	fi
endef
# --- end setup ---

KIT ?= -e ".[test,notebook]"

.PHONY: lab lab-instructor lint test setup student-versions release nbgrader-course clean-venv

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: with it present, the package's "torch>=" range pulls nothing more.
	$(install_torch)
	$(BIN)/python -m pip install --quiet $(KIT)
	# tinysoundfont renders sampled piano; its metadata asks for pyaudio, which it
	# does not need to render and which fails to build on many machines.
	$(BIN)/python -m pip install --quiet --no-deps "tinysoundfont>=0.3"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (musicvae-course)" >/dev/null
	touch $@

setup: $(BIN)/.installed

# The exercises at JupyterLab's root; the instructor sources (solutions, hidden tests) with lab-instructor.
lab: $(BIN)/.installed
	$(BIN)/jupyter lab $(FOLDER_FLAG) $(ROOT_FLAG) $(LAB_ARGS)

lab-instructor:
	$(MAKE) --no-print-directory lab LAB_DIR=notebooks

# The house style (ruff: lint + format) and the package's layers (import-linter) are part of the tests.
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: lint
	@$(find_browser); \
	MVC_CHROMIUM="$$chromium" $(BIN)/python -m pytest $(PYTEST_ARGS)

student-versions: $(BIN)/.installed
	$(BIN)/python -m musicvae_course.grading student-versions notebooks student

# dist/musicvae-course-student/ and dist/musicvae-course-student.zip: exercises, data, the package as a wheel.
release: $(BIN)/.installed
	$(BIN)/python scripts/make_release.py --out dist

# An nbgrader course folder with one assignment per notebook and the data where nbgrader's kernels look for it.
nbgrader-course: $(BIN)/.installed
	$(BIN)/python scripts/make_nbgrader_course.py nbgrader_course

clean-venv:
	rm -rf $(VENV)
