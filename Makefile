# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need
# on a machine that has only python3: uv (pinned, from PyPI) into .venv-uv, then the project
# and its dev tools into .venv at exactly the versions in uv.lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The tool venv: uv installs the project, nox runs the Python 3.10-3.13 matrix (noxfile.py).
TOOLS := .venv-uv
UV := $(TOOLS)/bin/uv
NOX := $(TOOLS)/bin/nox
UV_VERSION := 0.13.9
NOX_VERSION := 2026.10.20
# Extras the tests need: psycopg for the PostgreSQL sync store; faker, parquet (pyarrow) and s3
# (s3fs) for the capabilities the SDK advertises (tests/test_extras.py). All four are wheels.
EXTRAS := --extra postgres --extra faker --extra parquet --extra s3

.PHONY: demo test lint bench install lock matrix dist pre-commit

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --disable-pip-version-check "uv==$(UV_VERSION)" "nox==$(NOX_VERSION)"
	touch $@

# --locked: fail instead of resolving again when pyproject.toml and uv.lock disagree
# (run `make lock` after changing dependencies, and commit uv.lock).
$(BIN)/target-carecycle: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked $(EXTRAS) --python $(PYTHON)
	touch $@

install: $(BIN)/target-carecycle

lock: $(UV)
	$(UV) lock

demo: install
	bash scripts/demo.sh

# scripts/test.sh installs chromium (ensure-test-deps.sh), so a missing one fails the HTML
# report's browser test here instead of skipping it.
test: install
	TARGET_CARECYCLE_REQUIRE_BROWSER=1 bash scripts/test.sh

# The fast tier (no Meltano pipelines) on each Python of MATRIX, each installed from uv.lock
# (noxfile.py): `make matrix`, or `make matrix MATRIX="3.10 3.13"`.
MATRIX ?= 3.10 3.11 3.12 3.13
matrix: $(UV)
	$(NOX) -s $(foreach version,$(MATRIX),tests-$(version))

lint: install
	$(BIN)/ruff check target_carecycle tests benchmarks scripts noxfile.py
	$(BIN)/ruff format --check target_carecycle tests benchmarks scripts noxfile.py
	$(BIN)/mypy
	$(BIN)/mypy tests/pipelines/*.py

# Every hook of .pre-commit-config.yaml on every file (ruff, uv lock --check, the workflow,
# dependabot and meltano.yml schemas, Hub's yamllint rules, generated files, YAML/TOML, EOF).
pre-commit: install
	$(BIN)/pre-commit run --all-files

bench: install
	$(BIN)/python benchmarks/bench_target.py

# The sdist and wheel, as the release workflow builds them (.github/workflows/release.yml): the
# build backend and the inspectors at their uv.lock versions, in their own venv (a `uv sync`
# into .venv would remove the dev tools), built without isolation so the locked hatchling and
# hatch-vcs are the ones used; then twine's metadata check and check-wheel-contents.
RELEASE_VENV := .venv-release
dist: $(UV)
	rm -rf dist
	UV_PROJECT_ENVIRONMENT=$(RELEASE_VENV) $(UV) sync --locked --only-group release --no-install-project --python $(PYTHON)
	$(UV) build --no-build-isolation --python $(RELEASE_VENV)/bin/python --out-dir dist
	$(RELEASE_VENV)/bin/twine check --strict dist/*
	$(RELEASE_VENV)/bin/check-wheel-contents dist/*.whl
