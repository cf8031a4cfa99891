# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench install

$(BIN)/target-carecycle: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,postgres]"
	touch $@

install: $(BIN)/target-carecycle

demo: install
	bash scripts/demo.sh

test: install
	bash scripts/test.sh

lint: install
	$(BIN)/ruff check target_carecycle tests benchmarks
	$(BIN)/ruff format --check target_carecycle tests benchmarks
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/bench_target.py
