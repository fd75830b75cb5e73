# Two commands for users: `make run` and `make test` (see README.md).
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
PROFILE ?= smoke
STAMP   := $(VENV)/.tgad-installed
KERNEL  := tgad-lite

.PHONY: install run test lint lab bench bench-mtad bench-temporal bench-monitor site clean

# Re-installs when the dependency list changes; otherwise a no-op.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (tgad-lite)" >/dev/null
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m tgad_lite.notebooks run --profile $(PROFILE) $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)

# ruff: lint rules and the format check, both configured in pyproject.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

bench: $(STAMP)
	$(PY) benchmarks/gat_layers.py $(ARGS)

bench-mtad: $(STAMP)
	$(PY) benchmarks/mtad_gat.py $(ARGS)

bench-temporal: $(STAMP)
	$(PY) benchmarks/temporal_gat.py $(ARGS)

# the default model, then the streaming model (one GATv2 layer, minGRU): the issue's target is read on both
bench-monitor: $(STAMP)
	$(PY) benchmarks/monitor.py $(ARGS)
	$(PY) benchmarks/monitor.py --layers 1 --recurrent mingru $(ARGS)

# The book: the newest runs/<timestamp> (SITE_RUNS=<run folder> to choose) built into build/site/html,
# then checked in headless Chromium when it is installed (screenshots in build/site/screenshots).
site: $(STAMP)
	SITE_RUNS="$(SITE_RUNS)" $(PY) -m tgad_lite.site build $(ARGS)

clean:
	rm -rf runs .pytest_cache build/site
