"""Run the real `target-carecycle` executable on Singer lines and read what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from target_carecycle.outcomes import OUTCOMES
from target_carecycle.sandbox import RunningSandbox
from target_carecycle.sandbox.server import DEFAULT_API_KEY

TARGET_EXE = str(Path(sys.executable).parent / "target-carecycle")


@dataclass
class TargetRun:
    """What one run of the target executable produced."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def states(self) -> list[dict[str, Any]]:
        """The STATE values the target emitted, in order."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    @property
    def summary(self) -> dict[str, Any]:
        """The run's structured summary (the JSON of its one `Run summary: ` log line)."""
        found = [line for line in self.stderr.splitlines() if " | Run summary: {" in line]
        assert len(found) == 1, self.stderr[-3000:]
        parsed: dict[str, Any] = json.loads(found[0].split(" | Run summary: ", 1)[1])
        return parsed


def state_counts(received: int, **outcomes: int) -> dict[str, int]:
    """One stream's counts as the state metrics hold them: received, then every outcome of
    the registry in its order, 0 unless given (so a new outcome needs no test edited)."""
    unknown = set(outcomes) - set(OUTCOMES)
    assert not unknown, f"not outcomes of the registry: {sorted(unknown)}"
    return {"received": received, **{name: outcomes.get(name, 0) for name in OUTCOMES}}


def fatal_lines(stderr: str) -> list[str]:
    """The lines saying why a run could not go on: logged at ERROR or CRITICAL, each from its
    `target-carecycle: ` on (the SDK's console format puts time, level and logger first)."""
    found = []
    for line in stderr.splitlines():
        parts = line.split(" | ", 3)
        if len(parts) != 4 or parts[1].strip() not in ("ERROR", "CRITICAL"):
            continue
        if parts[3].startswith("target-carecycle: "):
            found.append(parts[3])
    return found


def stop_line(stderr: str) -> str:
    """The one fatal line of a run that stopped (see `fatal_lines`)."""
    lines = fatal_lines(stderr)
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def target_config(sandbox: RunningSandbox, **overrides: Any) -> dict[str, Any]:
    """A config pointing the target at `sandbox`, with fast retries for tests."""
    config: dict[str, Any] = {
        "api_url": sandbox.url,
        "api_key": sandbox.api_key,
        "max_requests_per_minute": 6000,
        "request_timeout": 10,
    }
    config.update(overrides)
    return config


def run_target(
    tmp_path: Path,
    config: dict[str, Any],
    lines: Iterable[str],
    *,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> TargetRun:
    """Pipe Singer `lines` into the `target-carecycle` executable."""
    config_path = tmp_path / "target-config.json"
    config_path.write_text(json.dumps(config))
    run_env = {k: v for k, v in os.environ.items() if k != "TARGET_CARECYCLE_API_KEY"}
    run_env.update(env or {})
    done = subprocess.run(
        [TARGET_EXE, "--config", str(config_path)],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=timeout,
        env=run_env,
        check=False,
    )
    assert_no_key_in(config, env, done.stdout, done.stderr)
    return TargetRun(done.returncode, done.stdout, done.stderr)


def assert_no_key_in(config: dict[str, Any], env: dict[str, str] | None, *outputs: str) -> None:
    """Every run of the executable in the suite checks it never printed a key it was given."""
    given = [config.get("api_key"), (env or {}).get("TARGET_CARECYCLE_API_KEY"), DEFAULT_API_KEY]
    for key in (k for k in given if isinstance(k, str) and len(k) >= 6):
        assert all(key not in output for output in outputs), "the API key appeared in the output"


def start_target(
    tmp_path: Path, config: dict[str, Any], lines: Iterable[str], *, quiet: bool = False
) -> subprocess.Popen[str]:
    """Start the executable and write `lines` to it, leaving stdin open (more may follow)."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    output = subprocess.DEVNULL if quiet else subprocess.PIPE
    proc = subprocess.Popen(
        [TARGET_EXE, "--config", str(config_path)],
        stdin=subprocess.PIPE,
        stdout=output,
        stderr=output,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write("".join(line + "\n" for line in lines))
    proc.stdin.flush()
    return proc


def wait_for_stats(
    sandbox: RunningSandbox, ready: Callable[[dict[str, Any]], bool], limit: float = 120
) -> None:
    """Poll the sandbox's stats until `ready` (no assertion: the test checks what it needs)."""
    deadline = time.monotonic() + limit
    while not ready(sandbox.stats()) and time.monotonic() < deadline:
        time.sleep(0.02)


def all_answered(stats: dict[str, Any]) -> bool:
    """Every upload request that reached the sandbox has been answered (none mid-way)."""
    answered: int = sum(stats["requests"].values())
    return answered >= int(stats["upload_requests"])
