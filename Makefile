# `make run`: set up .venv and run the default task. `make test`: set up .venv and run the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OUT ?= runs/qed_frag

.PHONY: run test setup clean bench

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PY) tasks/qed_frag.py --out $(OUT) --resume-or-start

test: setup
	$(PY) -m pytest

# every benchmark at full size (long), reports indexed in benchmarks/results/README.md
bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
