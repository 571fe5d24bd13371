# The two commands: `make demo` runs the whole product on the sample estate,
# `make test` runs every check CI runs. Both install whatever is missing first, at the
# versions of requirements.lock, so a new release upstream cannot change what they run.
# `make lock` compiles the lock again from pyproject.toml's ranges (the newest releases
# within them); commit it once `make test` passes with it.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed
LOCK := requirements.lock

.PHONY: demo test deps venv lint lock clean

deps:
	@scripts/install-system-deps.sh

# The package itself without dependencies (they are the lock's) and without build
# isolation (the lock's setuptools builds it, not whatever is newest on PyPI).
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r $(LOCK)
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
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

lock: venv
	$(VENV)/bin/pip-compile --quiet --upgrade --extra dev --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --output-file $(LOCK) pyproject.toml

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache .hypothesis
