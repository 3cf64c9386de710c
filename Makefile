# The two commands of the README: `make serve` runs kotae on the embedded default, `make test` runs the
# tests. Both set up .venv first (scripts/bootstrap.sh; a no-op when it is up to date). `make test-fast`
# leaves out the tests that start a vLLM engine or a server (marker `engine`, tests/engine_marker.py) and
# those that train, quantize or build in processes of their own for tens of seconds (marker `slow`).
VENV ?= .venv
export HF_HUB_OFFLINE := 1

.PHONY: serve test test-fast lint bootstrap

bootstrap:
	@bash scripts/bootstrap.sh

serve: bootstrap
	$(VENV)/bin/kotae serve

# `lint-imports` checks the import layers of pyproject.toml [tool.importlinter].
lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# Two workers (pytest-xdist), each taking whole test packages: the CI machine has two cores, and more
# workers would each hold a package's vLLM engines in memory at once.
test: lint
	$(VENV)/bin/pytest -n 2

test-fast: lint
	$(VENV)/bin/pytest -m "not engine and not slow"
