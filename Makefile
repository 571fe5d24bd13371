# The two commands: `make demo` runs the whole product on the sample estate,
# `make test` runs every check CI runs. Both install whatever is missing first.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: demo test deps venv lint clean

deps:
	@scripts/install-system-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: deps venv
	$(VENV)/bin/estate demo

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: deps venv lint
	$(VENV)/bin/pytest

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache .hypothesis
