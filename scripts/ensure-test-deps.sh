#!/usr/bin/env bash
# Idempotent: installs Meltano (own venv) and PostgreSQL server binaries when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-meltano/bin/meltano ]; then
  python3 -m venv .venv-meltano
  .venv-meltano/bin/pip install -q --upgrade pip
  .venv-meltano/bin/pip install -q "meltano==4.4.1"
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
fi
