"""Helpers for the pipeline tests: a Meltano project driver, a throwaway PostgreSQL server."""

from __future__ import annotations

import csv
import glob
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}

# Versions pinned in the repository's meltano.yml; the tests reuse its plugin definitions.
TARGET = "target-carecycle"


def unavailable(reason: str) -> None:
    """Skip the test when a tool is missing; under CI=true that is a failure, never a skip."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing tool fails the run)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: no careCycle or tap settings leak in from outside."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TARGET_CARECYCLE_", "TAP_", "MELTANO_", "VIRTUAL_ENV"))
    }
    env.update(
        {
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def find_meltano() -> Path | None:
    """Meltano from $MELTANO_EXECUTABLE, the repo's .venv-meltano, or PATH."""
    candidates = [
        os.environ.get("MELTANO_EXECUTABLE"),
        str(REPO_ROOT / ".venv-meltano" / "bin" / "meltano"),
        shutil.which("meltano"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def target_executable() -> Path:
    """The target-carecycle console script of the environment running the tests."""
    import sys

    beside = Path(sys.executable).parent / "target-carecycle"
    if beside.exists():
        return beside
    found = shutil.which("target-carecycle")
    if not found:
        unavailable("target-carecycle is not installed in the test environment")
    return Path(str(found))


# Meltano


def repo_meltano_yml() -> dict[str, Any]:
    """The repository's meltano.yml, parsed."""
    return cast(  # YAML parses to Any
        "dict[str, Any]", yaml.safe_load((REPO_ROOT / "meltano.yml").read_text(encoding="utf-8"))
    )


def plugin_definition(project: Mapping[str, Any], kind: str, name: str) -> dict[str, Any]:
    """A plugin's definition (a copy) from a parsed meltano.yml."""
    for plugin in project["plugins"][kind]:
        if plugin["name"] == name:
            return cast("dict[str, Any]", json.loads(json.dumps(plugin)))  # JSON parses to Any
    raise KeyError(f"{kind}/{name} is not in meltano.yml")


def project_yml_for_tests() -> dict[str, Any]:
    """The test project: the repo's meltano.yml plus test-only extractors.

    The repository's plugin definitions (pins, settings, the demo's config) are reused as they
    are, so the tests exercise them; only the loader's pip_url is pointed at this checkout.
    Test extractors inherit from the demo's and read `$PIPELINE_DATA_DIR`, which each test sets.
    """
    project = repo_meltano_yml()
    loader = plugin_definition(project, "loaders", TARGET)
    loader["pip_url"] = f"-e {REPO_ROOT}"
    project["plugins"]["loaders"] = [loader]
    extractors = project["plugins"]["extractors"]
    extractors.extend(
        [
            {
                "name": "tap-csv-test",
                "inherit_from": "tap-spreadsheets",
                "config": {
                    "files": [
                        {
                            "path": "$PIPELINE_DATA_DIR/*.csv",
                            "format": "csv",
                            "table_name": "crm_csv",
                            "delimiter": ",",
                        }
                    ]
                },
            },
            {
                "name": "tap-jsonl-test",
                "inherit_from": "tap-jsonl",
                "config": {"path": "$PIPELINE_DATA_DIR/*.jsonl", "stream_name": "web_leads"},
            },
        ]
    )
    for extractor in extractors:
        if extractor["name"] == "tap-postgres":
            # The connection comes from TAP_POSTGRES_SQLALCHEMY_URL, set per test.
            extractor["config"] = {"filter_schemas": ["public"]}
            extractor["metadata"] = {
                "public-*": {"replication-method": "INCREMENTAL", "replication-key": "updated_at"}
            }
            extractor["settings"].append({"name": "batch_config", "kind": "object"})
    # The same tap writing its records to gzipped JSONL batch files (BATCH messages).
    extractors.append(
        {
            "name": "tap-postgres-batch",
            "inherit_from": "tap-postgres",
            "config": {
                "filter_schemas": ["public"],
                "batch_config": {
                    "encoding": {"format": "jsonl", "compression": "gzip"},
                    "storage": {"root": "file://$PIPELINE_DATA_DIR/batches", "prefix": "crm-"},
                },
            },
            "metadata": {
                "public-*": {"replication-method": "INCREMENTAL", "replication-key": "updated_at"}
            },
        }
    )
    return project


@dataclass
class RunResult:
    """A finished `meltano run`: its exit code and its log records (Meltano's JSON log)."""

    args: Sequence[str]
    returncode: int
    log: list[dict[str, Any]]
    raw: str
    seconds: float

    def plugin_lines(self, name: str, stdio: str = "stderr") -> list[str]:
        """What one plugin wrote on stderr (or stdout), line by line, as Meltano relayed it."""
        return [
            str(rec.get("event", ""))
            for rec in self.log
            if rec.get("name") == name and rec.get("stdio") == stdio
        ]

    def target_summary(self) -> list[str]:
        """The target's end-of-run summary lines (the last one if there were several runs)."""
        return summary_from_lines(self.plugin_lines(TARGET))

    def tail(self, lines: int = 30) -> str:
        """The end of the log, for failure messages."""
        return "\n".join(self.raw.splitlines()[-lines:])


# A summary line, with or without its indentation: Meltano strips the leading spaces of a
# plugin's plain-text lines when the plugin has the `structured-logging` capability.
SUMMARY_LINE = re.compile(r"\s*(\S[^:]*: received \d+|optional values left out|top reasons|\d+ x )")


def summary_from_lines(lines: Iterable[str]) -> list[str]:
    """Pick the `target-carecycle summary` block out of the target's stderr lines."""
    summaries: list[list[str]] = []
    for line in lines:
        if line.startswith("target-carecycle summary"):
            summaries.append([line])
        elif summaries and SUMMARY_LINE.match(line) and len(summaries[-1]) < 100:
            summaries[-1].append(line)
    return summaries[-1] if summaries else []


def summary_counts(line: str) -> dict[str, int]:
    """`  crm: received 8, succeeded 4, failed 0, rejected 3, ...` as {"received": 8, ...}."""
    _, _, counts = line.partition(": ")
    out: dict[str, int] = {}
    for part in counts.split(", "):
        name, _, number = part.rpartition(" ")
        if number.isdigit():
            out[name] = int(number)
    return out


def stream_counts(summary: Sequence[str], stream: str) -> dict[str, int]:
    """The counts on the summary line of one stream."""
    for line in summary:
        if line.strip().startswith(f"{stream}:"):
            return summary_counts(line)
    raise AssertionError(f"no summary line for {stream!r} in {summary}")


@dataclass
class MeltanoProject:
    """A Meltano project in a temporary directory, installed once for the session."""

    root: Path
    executable: Path
    env: dict[str, str] = field(default_factory=dict)

    def command(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run `meltano ARGS` in the project; stdout and stderr together."""
        return subprocess.run(
            [str(self.executable), *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run(
        self,
        *blocks: str,
        env: Mapping[str, str] | None = None,
        full_refresh: bool = True,
        state_id_suffix: str | None = None,
        timeout: float = 300,
        check: bool = True,
    ) -> RunResult:
        """`meltano run [--full-refresh] BLOCKS` with a JSON log; fails the test on error."""
        args = ["--log-format=json", "run", "--refresh-catalog"]
        if full_refresh:
            args.append("--full-refresh")
        if state_id_suffix:
            args += ["--state-id-suffix", state_id_suffix]
        args += list(blocks)
        started = time.monotonic()
        proc = self.command(*args, env=env, timeout=timeout)
        result = RunResult(
            args=args,
            returncode=proc.returncode,
            log=parse_json_log(proc.stdout),
            raw=proc.stdout,
            seconds=time.monotonic() - started,
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"meltano {' '.join(args)} exited {proc.returncode}:\n{result.tail()}",
                pytrace=False,
            )
        return result

    def state(self, state_id: str) -> dict[str, Any]:
        """The state Meltano stored for STATE_ID."""
        proc = self.command("--log-level=warning", "state", "get", state_id)
        assert proc.returncode == 0, proc.stdout
        start = proc.stdout.find("{")
        assert start >= 0, proc.stdout
        return cast("dict[str, Any]", json.loads(proc.stdout[start:]))  # JSON parses to Any

    def plugin_executable(self, kind: str, name: str, executable: str | None = None) -> Path:
        """A plugin's console script inside the virtual environment Meltano made for it."""
        return self.root / ".meltano" / kind / name / "venv" / "bin" / (executable or name)


def parse_json_log(text: str) -> list[dict[str, Any]]:
    """Meltano's `--log-format=json` output, one record per line (other lines skipped)."""
    records: list[dict[str, Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def create_meltano_project(root: Path, meltano: Path) -> MeltanoProject:
    """Write the test project (with a copy of the demo data) and `meltano install` it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "meltano.yml").write_text(
        yaml.safe_dump(project_yml_for_tests(), sort_keys=False), encoding="utf-8"
    )
    shutil.copytree(REPO_ROOT / "demo" / "data", root / "demo" / "data")
    env = clean_env(
        {
            "XDG_CACHE_HOME": str(root / ".xdg" / "cache"),
            "XDG_STATE_HOME": str(root / ".xdg" / "state"),
            # Reuse the uv download cache between sessions when the repo has one (speed only).
            "UV_CACHE_DIR": str(REPO_ROOT / ".work" / "cache" / "uv"),
        }
    )
    project = MeltanoProject(root=root, executable=meltano, env=env)
    proc = project.command("install", timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"meltano install failed:\n{proc.stdout[-6000:]}", pytrace=False)
    return project


# Test data


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    """A CSV file as a CRM would export it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> Path:
    """One JSON object per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def by_external_id(customers: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The sandbox's customers keyed by externalId (each must have one, and only once)."""
    out: dict[str, dict[str, Any]] = {}
    for customer in customers:
        key = customer.get("externalId")
        assert key, f"customer without externalId: {customer}"
        assert key not in out, f"externalId {key} stored twice"
        out[str(key)] = dict(customer)
    return out


def custom_fields(customer: Mapping[str, Any]) -> dict[str, str]:
    """A customer's customFields as {fieldKey: value}."""
    return {item["fieldKey"]: item["value"] for item in customer.get("customFields") or []}


# PostgreSQL


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL server on 127.0.0.1 (trust auth, superuser `postgres`)."""

    bindir: Path
    port: int
    base: Path

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with psql over TCP; stop at the first error."""
        proc = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-At",
            ],
            input=sql,
            capture_output=True,
            text=True,
            check=False,
            env=clean_env({"PGCONNECT_TIMEOUT": "10"}),
            timeout=60,
        )
        assert proc.returncode == 0, f"psql failed: {proc.stderr}"
        return proc.stdout

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its SQLAlchemy URL for tap-postgres."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, database: str) -> str:
        """tap-postgres needs a password in the URL even though trust auth ignores it."""
        return f"postgresql://postgres:unused@127.0.0.1:{self.port}/{database}"


def postgres_bindir() -> Path | None:
    """The newest Debian PostgreSQL server binaries, if installed."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(found[-1]).parent if found else None


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """initdb + pg_ctl start in a temporary directory (as `postgres` when run as root)."""
    bindir = postgres_bindir()
    if bindir is None:
        unavailable(
            "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin "
            "(Debian package postgresql; scripts/ensure-test-deps.sh installs it)"
        )
        raise AssertionError("unreachable")
    prefix: list[str] = []
    as_root = os.geteuid() == 0
    # As root, the server runs as `postgres`, which must be able to reach the directory:
    # /tmp is world-traversable, $TMPDIR may not be.
    shared_tmp = "/tmp" if as_root and os.path.isdir("/tmp") else None
    base = Path(tempfile.mkdtemp(prefix="carecycle-pg-", dir=shared_tmp))
    if as_root:
        # initdb and the server refuse to run as root.
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base, ignore_errors=True)
            unavailable("running as root but there is no `postgres` user to run PostgreSQL as")
            raise AssertionError("unreachable") from None
        os.chown(base, user.pw_uid, user.pw_gid)
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        prefix = [runuser, "-u", "postgres", "--"]
    data = base / "data"
    port = free_port()
    env = clean_env({"LC_ALL": "C"})

    def pg(*cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, *cmd],
            cwd=base,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    try:
        init = pg(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        assert init.returncode == 0, f"initdb failed: {init.stdout}\n{init.stderr}"
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
        start = pg(
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(base / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        if start.returncode != 0:
            log = (
                (base / "server.log").read_text(errors="replace")
                if (base / "server.log").exists()
                else ""
            )
            raise AssertionError(f"pg_ctl start failed: {start.stdout}\n{start.stderr}\n{log}")
        try:
            yield PostgresServer(bindir=bindir, port=port, base=base)
        finally:
            pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop", timeout=60)
    finally:
        shutil.rmtree(base, ignore_errors=True)
