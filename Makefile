# emucamp: `make demo` runs the demo campaign, `make test` runs the whole test suite.
# Both set up what they need first (a virtual environment in .venv).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch. GPU users: set TORCH to the CUDA build for their driver
# (see PyTorch's install selector), e.g. make setup TORCH="torch==2.13.0 --index-url URL".
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.emucamp-installed

.PHONY: setup demo test lint typecheck unit clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/emucamp run examples/heat2d/campaign.toml

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	bash scripts/typecheck.sh $(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

clean:
	rm -rf build examples/*/runs
