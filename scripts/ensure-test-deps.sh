#!/usr/bin/env bash
# Idempotent: installs Meltano (own venv), PostgreSQL server binaries and chromium when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-meltano/bin/meltano ]; then
  python3 -m venv .venv-meltano
  .venv-meltano/bin/pip install -q --upgrade pip
  .venv-meltano/bin/pip install -q "meltano==4.4.1"
fi

# Debian packages, as root or through sudo; the package lists are read once.
apt_updated=false
apt_install() {
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  if [ "$apt_updated" = false ]; then
    "${sudo[@]}" apt-get update -qq
    apt_updated=true
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt_install postgresql
fi
# The HTML report's browser test (tests/test_report_browser.py) opens the page in Debian's
# chromium, driven by Playwright from PyPI (never a browser download of Playwright's own).
# Without the recommended extras (printing, sound, mDNS); a font for the page's text.
if ! command -v chromium >/dev/null 2>&1; then
  apt_install --no-install-recommends chromium fonts-dejavu-core fonts-liberation
fi
