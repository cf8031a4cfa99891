"""Helpers for the tests that run the target against a sync store: leads, counts, a second
process holding the store's lock, and the target's stderr read while it runs."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing, suppress
from pathlib import Path
from typing import IO, Any

from target_runner import TargetRun

from target_carecycle.sandbox.samples import api_leads, singer_lines
from target_carecycle.store import Account

STATE = {"bookmarks": {"leads": {"replication_key_value": 1}}}
LEADS_TABLE = "carecycle_sync_leads"
CLAIMS_TABLE = "carecycle_sync_claims"
WAITING_FOR_LOCK = "is locked by another process: waiting"


def distinctive_leads(count: int, start: int = 0) -> list[dict[str, Any]]:
    """Sample leads with a first name that appears nowhere else (to look for leaks)."""
    leads = api_leads(count, start=start)
    for lead in leads:
        lead["firstName"] = f"Qsync{lead['externalId']}x"
    return leads


def lines(leads: list[dict[str, Any]]) -> list[str]:
    """SCHEMA, one RECORD per lead, then a STATE."""
    return list(singer_lines("leads", leads, state=STATE))


def counts(run: TargetRun) -> dict[str, int]:
    """The last STATE's counts of a run that succeeded."""
    assert run.returncode == 0, run.stderr[-3000:]
    tally: dict[str, int] = run.states[-1]["target_carecycle"]["leads"]
    return tally


def assert_accounted(tally: dict[str, int]) -> None:
    """received = the sum of the outcomes."""
    assert tally["received"] == sum(v for k, v in tally.items() if k != "received")


def summary_counts(stderr: str, stream: str = "leads") -> dict[str, int]:
    """The counts on the summary line of `stream`, by label (runs that emitted no STATE)."""
    line = [text for text in stderr.splitlines() if text.strip().startswith(f"{stream}:")][-1]
    return {label.strip(): int(n) for label, n in re.findall(r"([a-z ()]+) (\d+)", line)}


def table_keys(path: Path, table: str) -> set[bytes]:
    """The lead keys in one of the store's tables, read without opening it as a store."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return {bytes(row[0]) for row in conn.execute(f"SELECT lead_key FROM {table}")}


def stored_digests(path: Path) -> dict[bytes, bytes]:
    """lead_key -> payload digest of every lead the store vouches for."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        rows = conn.execute(f"SELECT lead_key, payload_hash FROM {LEADS_TABLE}").fetchall()
    return {bytes(key): bytes(digest) for key, digest in rows}


def applied_last(ledger: Path, account: Account) -> dict[bytes, bytes]:
    """lead_key -> digest of the version careCycle applied last (the sandbox's ledger holds
    every stored lead exactly as received, in the order it was applied)."""
    last: dict[bytes, bytes] = {}
    if ledger.exists():
        for line in ledger.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            last[account.lead_key(record["externalId"])] = account.payload_hash(record)
    return last


def assert_store_tells_the_truth(digests: dict[bytes, bytes], held: dict[bytes, bytes]) -> None:
    """The truth rule: every digest the store holds is that of what careCycle holds."""
    lies = [key for key, digest in digests.items() if held.get(key) != digest]
    assert not lies, f"{len(lies)} of {len(digests)} leads vouched for hold another version"


def wait_until(ready: Callable[[], bool], limit: float = 120) -> None:
    """Poll `ready()` until true (no assertion: the test checks what it needs)."""
    deadline = time.monotonic() + limit
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.05)


_HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


class LockHolder:
    """A second process holding a SQLite store's write lock until `release()`.

    It also lets go by itself after `limit` seconds, so a test that waits for a target
    blocked on the lock ends even when that target never gives up.
    """

    def __init__(self, path: Path, limit: float = 120) -> None:
        self.proc = subprocess.Popen(
            ["timeout", str(limit), sys.executable, "-c", _HOLD_LOCK, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "locked"

    @property
    def holding(self) -> bool:
        """Still holding the lock (it has not let go, by itself or by `release`)."""
        return self.proc.poll() is None

    def release(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if not self.proc.stdin.closed:
            with suppress(BrokenPipeError):  # it let go by itself already
                self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()

    def __enter__(self) -> LockHolder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class StderrWatch(threading.Thread):
    """Reads a running process's stderr line by line, so a test can wait for a line."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(daemon=True)
        self._stream = stream
        self.lines: list[str] = []
        self.start()

    def run(self) -> None:
        with self._stream:
            for line in self._stream:
                self.lines.append(line)

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    @property
    def text(self) -> str:
        self.join(timeout=30)
        return "".join(self.lines)


def close_pipes(proc: subprocess.Popen[str]) -> str:
    """Close a finished process's stdin and stdout; return what it wrote to stdout."""
    if proc.stdin is not None and not proc.stdin.closed:
        with suppress(BrokenPipeError):
            proc.stdin.close()
    out = ""
    if proc.stdout is not None:
        with proc.stdout:
            out = proc.stdout.read()
    return out
