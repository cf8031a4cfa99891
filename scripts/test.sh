#!/usr/bin/env bash
# Runs the whole test suite. Installs what the tests need that pip cannot (PostgreSQL server
# binaries from Debian's packages) and Meltano in its own virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."
export MELTANO_SEND_ANONYMOUS_USAGE_STATS=false MELTANO_CLI_DISABLE_VERSION_CHECK=true
bash scripts/ensure-test-deps.sh
.venv/bin/ruff check target_carecycle tests benchmarks scripts noxfile.py
.venv/bin/mypy
.venv/bin/mypy tests/pipelines/*.py  # a second run: both conftest.py files are `conftest`
exec .venv/bin/pytest "$@"
