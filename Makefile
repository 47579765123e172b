# Both entry points create their own virtualenv, so a fresh clone needs only Python 3.11+ and git.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= examples/demo/gateway.toml

.PHONY: install run test lint typecheck bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/mcp-gateway serve --config $(CONFIG)

test: install
	$(BIN)/ruff check mcp_gateway stubs sandbox tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: install
	$(BIN)/python benchmarks/overhead.py

.PHONY: bench-tokens
bench-tokens: install
	$(BIN)/python benchmarks/tokens.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
