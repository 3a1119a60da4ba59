# The few commands people use. `make lab` and `make test` are the two a newcomer needs;
# both set up .venv first if it is missing or older than pyproject.toml.

PYTHON    ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
PY        := $(BIN)/python
STAMP     := $(VENV)/.installed
# Installed alone and first, so that no later resolve can pull a newer (CUDA, multi-GB) torch.
# Every package is then installed at its version in constraints.txt (pyproject.toml has ranges);
# tests/test_environment.py checks that this pin matches constraints.txt.
TORCH_PIN := torch==2.13.0

LAB_ARGS  ?=
# NB=01 rebuilds only the notebooks whose name starts with 01.
NB        ?=
# FAST=1 runs the notebook tests with LOSSVIZ_FAST=1 (shorter training). Training outputs are
# never compared verbatim, so a FAST run checks the same outputs; its asserts see shorter runs.
FAST      ?= 0

NOTEBOOK_SRC := $(filter notebooks/$(NB)%,$(sort $(wildcard notebooks/[0-9][0-9]_*.py)))

# Notebooks run with the inline plot backend and their own thread count; an MPLBACKEND set in
# the caller's shell (Agg, say) would drop every figure from the outputs.
# LOSSVIZ_RUN_CACHE=0: committed outputs and the tests come from runs trained now, never from the
# disk cache of finished runs that notebooks and Voila pages share (data/cache/runs).
NB_ENV := env -u MPLBACKEND -u LOSSVIZ_FAST LOSSVIZ_RUN_CACHE=0
ifeq ($(FAST),1)
NB_TEST_ENV := env -u MPLBACKEND LOSSVIZ_FAST=1 LOSSVIZ_RUN_CACHE=0
else
NB_TEST_ENV := $(NB_ENV)
endif

.PHONY: venv lab test notebooks bench clean distclean figure present slides html

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -c constraints.txt '$(TORCH_PIN)'
	$(PY) -m pip install -c constraints.txt -e '.[lab,test]'
	touch $@

lab: venv
	$(BIN)/jupyter lab notebooks/00_tour.ipynb $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# Unit tests, then every notebook twice under strict nbval (paths given explicitly: pyproject's
# testpaths only covers tests/). --nbval-current-env runs the notebooks in this venv's Python.
# Pass 1 uses this machine's fastest math kernels; pass 2 (`make test-portable`) switches them
# (MKL's conditional-numerical-reproducibility path, ATen's scalar kernels, oneDNN capped at AVX2),
# so training runs take other last bits, as on another CPU: a notebook whose committed outputs or
# asserts hold only on the CPU that executed it fails there. Both passes compare only outputs that
# are the same on every machine; cells that show a training result carry nbval-ignore-output and
# assert what they are for. Two notebooks run at once (pytest-xdist, one notebook per worker).
# The browser test (tests/test_browser.py) drives Debian's chromium, never a browser that
# playwright would download; with apt it is installed when missing, without apt it is skipped.
CHROMIUM  ?= /usr/bin/chromium
SUDO      := $(if $(filter 0,$(shell id -u)),,sudo)
NB_WORKERS ?= $(if $(NB),1,2)
PORTABLE_ENV := MKL_CBWR=COMPATIBLE ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=AVX2
NBVAL     := $(PY) -m pytest --nbval --nbval-current-env -n $(NB_WORKERS) --dist loadfile \
	--nbval-sanitize-with notebooks/nbval_sanitize.cfg -p no:cacheprovider
NOTEBOOK_TESTS := $(if $(NB),$(wildcard notebooks/$(NB)*.ipynb),notebooks/)

.PHONY: chromium test-unit test-notebooks test-portable

chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; \
	else echo "no $(CHROMIUM) and no apt-get: the browser test (tests/test_browser.py) will be skipped"; fi

test: test-unit test-notebooks test-portable

test-unit: venv chromium
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MPLBACKEND=Agg $(PY) -m pytest tests

# NB=01 limits either notebook pass to the notebooks whose name starts with 01.
test-notebooks: venv
	$(NB_TEST_ENV) $(NBVAL) $(NOTEBOOK_TESTS)

test-portable: venv
	$(NB_TEST_ENV) $(PORTABLE_ENV) $(NBVAL) $(NOTEBOOK_TESTS)

# The jupytext .py is the source; its paired .ipynb is rebuilt from it and executed in place
# (working directory notebooks/), without timing metadata so a re-run only changes widget ids.
notebooks: venv
	@test -n "$(NOTEBOOK_SRC)" || { echo "no notebooks/[0-9][0-9]_*.py starting with '$(NB)'"; exit 1; }
	@for src in $(NOTEBOOK_SRC); do \
		nb=$${src%.py}.ipynb; \
		echo "== $$src -> $$nb"; \
		$(BIN)/jupytext --to ipynb --update "$$src" || exit 1; \
		$(NB_ENV) $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.kernel_name=python3 \
			--ExecutePreprocessor.timeout=600 \
			--NotebookClient.record_timing=False "$$nb" || exit 1; \
	done

bench: venv
	@if [ -f bench/losses.py ]; then $(PY) bench/losses.py --markdown; else echo "bench/losses.py not written yet"; fi

# Every notebook panel's response to a control change (contract: < 200 ms) and Train presses; README tables.
.PHONY: bench-panels
bench-panels: venv
	$(PY) bench/panels.py --markdown

# Build and test leftovers; `distclean` also drops the venv, the data cache and cached runs.
clean:
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) \
		-type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache build *.egg-info

distclean: clean
	rm -rf $(VENV) data/cache artifacts

# The README's figure.
figure: venv
	$(PY) docs/make_figure.py

# Classroom: `make present NB=01` serves one notebook as a Voila app (code hidden, widgets live) on
# localhost; `make present` serves the list of all of them.  A kernel is started and run ahead of the
# first visitor (preheated) for NB, or, serving the list, for each notebook named in PREHEAT
# (PREHEAT="01 09 14", or all; a preheated kernel holds about 0.5 GB, so all 35 need some 17 GB;
# the others start when opened).  Finished training runs are kept on disk (data/cache/runs), so a reload, a second tab or
# a new kernel skips training; FAST=1 shortens the training runs.
PORT ?= 8866
PREHEAT ?= 00 01
PRESENT_NB = $(firstword $(filter notebooks/$(NB)%,$(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))))
PREHEAT_NBS = $(if $(filter all,$(PREHEAT)),$(notdir $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))),$(foreach n,$(PREHEAT),$(notdir $(firstword $(filter notebooks/$(n)%,$(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb)))))))
comma := ,
PRESENT_POOLS = $(if $(NB),{"default": {"pool_size": 1}},{"default": {"pool_size": 0}$(foreach nb,$(PREHEAT_NBS),$(comma) "$(nb)": {"pool_size": 1})})
PRESENT_ARGS ?=

# The kernel pools go to Voila in a config file (build/present/voila.json, on JUPYTER_CONFIG_PATH).
present: venv
	@test -z "$(NB)" -o -n "$(PRESENT_NB)" || { echo "no notebook starts with '$(NB)' (usage: make present [NB=01])"; exit 1; }
	mkdir -p build/present && echo '{"VoilaKernelManager": {"kernel_pools_config": $(PRESENT_POOLS)}}' > build/present/voila.json
	cd notebooks && env -u MPLBACKEND LOSSVIZ_FAST=$(FAST) JUPYTER_CONFIG_PATH=$(abspath build/present) \
		../$(BIN)/voila $(if $(NB),$(notdir $(PRESENT_NB))) --Voila.ip=127.0.0.1 --port=$(PORT) --preheat_kernel=True $(PRESENT_ARGS)

# Slides: `make slides NB=00` opens a notebook as a reveal.js deck in the browser (JupyterLab's RISE
# presenter, bundled: no network), with a live kernel, so panels and Train buttons work on the slides.
# Every notebook carries slide marks (a slide per section, a sub-slide per explanation).
slides: venv
	@test -n "$(NB)" -a -n "$(PRESENT_NB)" || { echo "usage: make slides NB=00"; exit 1; }
	cd notebooks && env -u MPLBACKEND LOSSVIZ_FAST=$(FAST) ../$(PY) -m jupyterlab_rise $(notdir $(PRESENT_NB)) \
		--ServerApp.ip=127.0.0.1 --port=$(PORT) $(if $(filter 0,$(shell id -u)),--allow-root) $(PRESENT_ARGS)

# Static HTML of the executed notebooks (NB=01 for one), readable offline: a local MathJax, panels as
# their saved pictures, previous / index / next links, an index page in reading-list order (build/html).
html: venv
	rm -rf build/html
	$(PY) docs/build_html.py build/html $(NB)
