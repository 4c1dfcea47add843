# Two commands on a fresh machine (Python 3.11, nothing installed):
#   make demo   - set up .venv and run the offline demo
#   make test   - set up .venv and run the test suite (tests, doctests, smoke notebooks), as CI does
#   make test-full-path - the notebooks' full path on the tiny model (CI runs it after make test)
#   make lab    - set up .venv and open the notebooks in JupyterLab
#   make lint   - ruff (lint + format check) and mypy over protein_lm/, as CI does
#   make docs   - build the documentation site strictly into site/, as CI does
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= torch,tf,fold,notebooks,dev,docs

.PHONY: setup demo test test-full-path lab lint docs clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@# 3Dmol.js for offline 3D views, into the data cache (SHA-256 checked); never a failure
	-$(PY) -c "from protein_lm.data import data_path; data_path('viewers/3Dmol-min.js')"
	touch $@

demo: setup
	$(PY) -m protein_lm.demo

# tests: 2 xdist workers, one test module per unit of work, modules with slow tests first
# (tests/conftest.py), plus every >>> example in the package's docstrings; notebooks: nbval runs every cell, notebooks/conftest.py checks the outputs.
test: setup
	$(VENV)/bin/pytest -n 2 --dist loadscope --no-loadscope-reorder --durations=25 -m "not full_path" --doctest-modules tests protein_lm
	PROTEIN_LM_SMOKE=1 $(VENV)/bin/pytest --nbval-lax --current-env --durations=25 notebooks/

# The notebooks' full (Colab) path on all the data with the tiny model and 5 training steps
# (tests/test_notebooks_full.py): about 8 minutes more, so apart from `make test`; CI runs both.
test-full-path: setup
	$(VENV)/bin/pytest -n 2 --dist load --durations=10 -m full_path tests/test_notebooks_full.py

lint: setup
	$(VENV)/bin/ruff check protein_lm
	$(VENV)/bin/ruff format --check protein_lm
	$(VENV)/bin/mypy

# The documentation site: generated pages (CLI reference, index from the README), then a strict
# build (every warning, e.g. a broken link or an unparsable docstring, is an error).
docs: setup
	$(PY) scripts/make_generated_docs.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis site
