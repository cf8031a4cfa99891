#!/usr/bin/env bash
# The demo (`make demo`): uploads the bundled sample leads (demo/data/) with Meltano to a local
# careCycle sandbox, then shows what the target reported and what the sandbox stored.
# Nothing leaves this machine: the sandbox listens on 127.0.0.1 and the `dev` environment of
# meltano.yml points the target at it.
#
# Needs Python 3.11 and PyPI. Installs Meltano into .venv-meltano (not PostgreSQL: the demo
# does not need it). Everything it writes goes under .work/ and .meltano/ (both git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
WORK=$ROOT/.work/demo
mkdir -p "$WORK"
rm -f "$WORK"/*.log "$WORK"/*.jsonl "$WORK"/sandbox.out "$WORK"/sync-store.sqlite* "$WORK"/report.html

export MELTANO_SEND_ANONYMOUS_USAGE_STATS=false
export MELTANO_CLI_DISABLE_VERSION_CHECK=true
export XDG_CACHE_HOME=$ROOT/.work/cache
export XDG_STATE_HOME=$ROOT/.work/state
# The sync store (what careCycle acknowledged; docs/sync-store.md) lives in the demo's work
# folder and starts empty, so every `make demo` first sends everything, then nothing.
export TARGET_CARECYCLE_SYNC_STORE=$WORK/sync-store.sqlite
# The sync log (docs/history.md) keeps each record's outcome, so the report at the end lists
# the refused records by externalId.
export TARGET_CARECYCLE_SYNC_LOG=true
# A real key in the caller's environment must never reach the demo (it would only go to the
# sandbox, but there is no reason to hand it out).
unset TARGET_CARECYCLE_API_KEY TARGET_CARECYCLE_SOURCE_ID

step() { printf '\n==> %s\n' "$*"; }

# 1. The target itself (`make demo` has already done this through `make install`).
if [ ! -x .venv/bin/target-carecycle ]; then
  step "Installing target-carecycle into .venv (from uv.lock)"
  make install PYTHON="$PYTHON"
fi

# 2. Meltano, in its own virtual environment (the same one `make test` uses).
if [ ! -x .venv-meltano/bin/meltano ]; then
  step "Installing Meltano 4.4.1 into .venv-meltano"
  "$PYTHON" -m venv .venv-meltano
  .venv-meltano/bin/pip install -q --upgrade pip
  .venv-meltano/bin/pip install -q "meltano==4.4.1"
fi
MELTANO=$ROOT/.venv-meltano/bin/meltano

# 3. The sandbox, on a free port (it prints its base URL as its first line).
step "Starting the careCycle sandbox"
.venv/bin/carecycle-sandbox --port 0 --rate-limit 0 >"$WORK/sandbox.out" 2>"$WORK/sandbox.log" &
SANDBOX_PID=$!
cleanup() {
  kill "$SANDBOX_PID" 2>/dev/null || true
  wait "$SANDBOX_PID" 2>/dev/null || true
}
trap cleanup EXIT
SANDBOX_URL=
for _ in $(seq 1 100); do
  SANDBOX_URL=$(head -n 1 "$WORK/sandbox.out" 2>/dev/null || true)
  [ -n "$SANDBOX_URL" ] && break
  kill -0 "$SANDBOX_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$SANDBOX_URL" ]; then
  echo "the sandbox did not start:" >&2
  cat "$WORK/sandbox.log" >&2
  exit 1
fi
echo "sandbox listening on $SANDBOX_URL"

# 4. The plugins (first time: about a minute; afterwards: seconds).
step "Installing the Meltano plugins (tap-spreadsheets, tap-jsonl, target-carecycle)"
if ! "$MELTANO" install tap-spreadsheets tap-jsonl target-carecycle >"$WORK/install.log" 2>&1; then
  cat "$WORK/install.log" >&2
  exit 1
fi

# 5. The pipelines: the CRM export (CSV) and the web forms (nested JSONL), both to careCycle.
step "meltano run tap-spreadsheets target-carecycle tap-jsonl target-carecycle"
echo "(demo/data/crm_leads.csv: $(($(wc -l <demo/data/crm_leads.csv) - 1)) rows," \
  "demo/data/web_forms.jsonl: $(wc -l <demo/data/web_forms.jsonl) rows; full log, JSON lines: .work/demo/run.log)"
export TARGET_CARECYCLE_API_URL=$SANDBOX_URL
START=$(date +%s)
if ! "$MELTANO" --environment=dev --log-format=json run --full-refresh \
  tap-spreadsheets target-carecycle tap-jsonl target-carecycle >"$WORK/run.log" 2>&1; then
  tail -n 60 "$WORK/run.log" >&2
  echo "meltano run failed; the full log is .work/demo/run.log" >&2
  exit 1
fi
echo "done in $(($(date +%s) - START)) s"

# 6. What the target said at the end of each run (its summary on stderr, relayed by Meltano).
step "target-carecycle's summaries"
"$ROOT/.venv/bin/python" "$ROOT/demo/show_run.py" summary "$WORK/run.log"

# 7. What the sandbox stored.
step "What the sandbox received and stored"
"$ROOT/.venv/bin/python" "$ROOT/demo/show_run.py" sandbox "$SANDBOX_URL"
if [ -s "$WORK/rejects.jsonl" ]; then
  echo
  echo "Rejected records with their reasons: .work/demo/rejects.jsonl ($(wc -l <"$WORK/rejects.jsonl") lines)"
fi

# 8. The same pipelines again, as a nightly full export would be: nothing changed, so the sync
#    store finds every lead unchanged and not one request is sent.
step "The same pipelines again (--full-refresh): only what changed is sent"
upload_requests() {
  "$ROOT/.venv/bin/python" -c 'import json, sys, urllib.request
print(json.load(urllib.request.urlopen(sys.argv[1] + "/__sandbox/stats", timeout=10))["upload_requests"])' "$SANDBOX_URL"
}
BEFORE=$(upload_requests)
if ! "$MELTANO" --environment=dev --log-format=json run --full-refresh \
  tap-spreadsheets target-carecycle tap-jsonl target-carecycle >"$WORK/rerun.log" 2>&1; then
  tail -n 60 "$WORK/rerun.log" >&2
  echo "meltano run failed; the full log is .work/demo/rerun.log" >&2
  exit 1
fi
"$ROOT/.venv/bin/python" "$ROOT/demo/show_run.py" summary "$WORK/rerun.log"
echo
echo "upload requests sent by the second run: $(($(upload_requests) - BEFORE))" \
  "(sync store: .work/demo/sync-store.sqlite)"

# 9. The report of these runs from the sync store's history (docs/history.md): one HTML file,
#    self-contained (no network), through the plugin's `report` command.
step "The report of these runs (meltano invoke target-carecycle:report)"
if ! "$MELTANO" --environment=dev invoke target-carecycle:report --format html \
  --out "$WORK/report.html" >"$WORK/report.log" 2>&1; then
  cat "$WORK/report.log" >&2
  exit 1
fi
echo "HTML report: .work/demo/report.html (open it in a browser; it loads nothing from anywhere)"
