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
	$(BIN)/mcp-gateway serve --config $(CONFIG) $(if $(PORT),--port $(PORT))

test: install
	$(BIN)/ruff check mcp_gateway stubs sandbox tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: install
	$(BIN)/python benchmarks/overhead.py

.PHONY: bench-tokens bench-sandbox bench-load bench-soak bench-hostile bench-memory bench-scale bench-dashboard \
	bench-big-results bench-sign-in
bench-tokens: install
	$(BIN)/python benchmarks/tokens.py

bench-sandbox: install
	$(BIN)/python benchmarks/sandbox.py

# FASTMCP=/path/to/bin/fastmcp adds the fastmcp 4.1.2 proxy as a peer (install it in its own venv).
bench-load: install
	$(BIN)/python benchmarks/load.py $(if $(FASTMCP),--fastmcp $(FASTMCP))

bench-soak: install
	$(BIN)/python benchmarks/soak.py

bench-hostile: install
	$(BIN)/python benchmarks/hostile.py

bench-big-results: install
	$(BIN)/python benchmarks/big_results.py

bench-memory: install
	$(BIN)/python benchmarks/sandbox_memory.py

bench-scale: install
	$(BIN)/python benchmarks/scale.py

bench-dashboard: install
	$(BIN)/python benchmarks/dashboard.py

# Starts oidc-provider (npm, Node 22) through tests/identity/idp.py, as the sign-in tests do.
bench-sign-in: install
	$(BIN)/python benchmarks/sign_in.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
