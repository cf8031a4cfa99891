"""Settings from the environment in real pipelines (docs/settings.md).

The issue's first scenario: `TARGET_CARECYCLE_API_KEY` and `TARGET_CARECYCLE_API_URL` exported,
no `--config ENV`. Through `meltano run` and through a plain pipe of a real tap, the leads go
to the URL the environment names, and a normal Meltano run (which sets each setting both in
its config file and as a variable, plus variables of its own) neither stops nor warns.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from pipeline_helpers import (
    MeltanoProject,
    by_external_id,
    clean_env,
    stream_counts,
    target_executable,
    write_csv,
    write_jsonl,
)

from target_carecycle.sandbox import RunningSandbox

HEADER = ["External ID", "First Name", "Phone", "Zip Code"]
ROWS = [["E-1", "Jane", "(312) 847-1928", "60614"], ["E-2", "John", "617.370.1625", "02134"]]


def test_meltano_run_with_key_and_url_in_the_environment_neither_stops_nor_warns(
    meltano_project: MeltanoProject,
    sandbox: RunningSandbox,
    target_env: dict[str, str],
    data_dir: Path,
) -> None:
    """`prod` names the real API in meltano.yml; the exported URL wins, in file and variable."""
    write_csv(data_dir / "leads.csv", HEADER, ROWS)
    env = {**target_env, "PIPELINE_DATA_DIR": str(data_dir), "TARGET_CARECYCLE_STREAMS": "{}"}
    result = meltano_project.command(
        "--environment=prod",
        "--log-format=json",
        "run",
        "--full-refresh",
        "tap-csv-test",
        "target-carecycle",
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert sorted(by_external_id(sandbox.customers())) == ["E-1", "E-2"]
    lines = [
        json.loads(line).get("event", "")
        for line in result.stdout.splitlines()
        if line.startswith("{") and '"target-carecycle"' in line
    ]
    config_lines = [line for line in lines if "Config:" in line or "invalid config" in line]
    assert config_lines == []
    provenance = [line for line in lines if "Settings from" in line]
    assert len(provenance) == 1
    assert "api_key" in provenance[0] and "api_url" in provenance[0]
    assert "from both the config file and the environment (same values)" in provenance[0]
    assert sandbox.api_key not in result.stdout


def test_a_plain_pipe_with_key_and_url_in_the_environment_uploads_to_that_url(
    meltano_project: MeltanoProject, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """`tap | target-carecycle --config target.json`: the URL was ignored, production used."""
    tap = meltano_project.plugin_executable("extractors", "tap-jsonl")
    write_jsonl(
        tmp_path / "in" / "leads.jsonl",
        [
            {"external_id": "P-1", "phone": "(602) 254-1187", "zip": "85004"},
            {"external_id": "P-2", "phone": "+1 813 526 4477", "zip": "33602"},
        ],
    )
    tap_config = tmp_path / "tap.json"
    tap_config.write_text(json.dumps({"path": str(tmp_path / "in" / "*.jsonl")}))
    target_config = tmp_path / "target.json"
    # No api_url and no key in the file: only settings that have nothing to do with where.
    target_config.write_text(json.dumps({"max_retries": 0, "request_timeout": 5}))
    env = clean_env(
        {"TARGET_CARECYCLE_API_KEY": sandbox.api_key, "TARGET_CARECYCLE_API_URL": sandbox.url}
    )
    tap_proc = subprocess.run(
        [str(tap), "--config", str(tap_config)],
        env=clean_env(),
        capture_output=True,
        timeout=120,
        check=True,
    )
    target_proc = subprocess.run(
        [str(target_executable()), "--config", str(target_config)],
        input=tap_proc.stdout,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    stderr = target_proc.stderr.decode()
    assert target_proc.returncode == 0, stderr[-3000:]
    assert sorted(by_external_id(sandbox.customers())) == ["P-1", "P-2"]
    assert "from the environment: api_key, api_url" in stderr
    assert "The API key comes from TARGET_CARECYCLE_API_KEY, while other settings" in stderr
    assert sandbox.api_key not in stderr
    summary = [line for line in stderr.splitlines() if ": received 2" in line]
    assert (
        len(summary) == 1
        and stream_counts(summary, summary[0].split(":")[0].strip())["succeeded"] == 2
    )


def test_a_plain_pipe_with_the_key_in_the_environment_and_the_url_in_the_file_sends_nothing(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    target_config = tmp_path / "target.json"
    target_config.write_text(json.dumps({"api_url": sandbox.url}))
    lines = [
        {"type": "SCHEMA", "stream": "s", "schema": {"properties": {}}, "key_properties": []},
        {"type": "RECORD", "stream": "s", "record": {"phone": "(602) 254-1187", "zip": "85004"}},
    ]
    done = subprocess.run(
        [str(target_executable()), "--config", str(target_config)],
        input="\n".join(json.dumps(line) for line in lines) + "\n",
        env=clean_env({"TARGET_CARECYCLE_API_KEY": sandbox.api_key}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "api_key and api_url: api_key comes from TARGET_CARECYCLE_API_KEY" in done.stderr
    assert sum(sandbox.stats()["requests"].values()) == 0
    with_env = subprocess.run(
        [str(target_executable()), "--config", str(target_config), "--config", "ENV"],
        input="\n".join(json.dumps(line) for line in lines) + "\n",
        env=clean_env({"TARGET_CARECYCLE_API_KEY": sandbox.api_key}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert with_env.returncode == 0, with_env.stderr[-3000:]
    assert sandbox.stats()["created"] == 1
