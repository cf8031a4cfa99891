"""Without Meltano: `tap-jsonl --config tap.json | target-carecycle --config target.json`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from pipeline_helpers import (
    REPO_ROOT,
    MeltanoProject,
    by_external_id,
    clean_env,
    plugin_definition,
    repo_meltano_yml,
    stream_counts,
    summary_from_lines,
    target_executable,
    write_jsonl,
)

from target_carecycle.sandbox import RunningSandbox

# Flat records whose keys are common aliases of lead fields: no mapping needed.
RECORDS = [
    {
        "external_id": "P-1",
        "fname": "Olga",
        "surname": "Petrova",
        "mobile": "(602) 254-1187",
        "email_address": "olga@example.com",
        "postal_code": "85004",
        "birth_date": "1957-09-30",
        "sex": "F",
    },
    {
        "external_id": "P-2",
        "first_name": "Ade",
        "last_name": "Okafor",
        "phone_number": "+1 813 526 4477",
        "zip": "33602-1234",
        "dob": "2/9/1948",
        "marital_status": "widowed",
    },
    {"external_id": "P-3", "first_name": "Nope", "phone": "12", "zip": "33602"},
]


def test_tap_pipe_target(
    meltano_project: MeltanoProject, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """The two executables piped together, each with a JSON config file."""
    tap = meltano_project.plugin_executable("extractors", "tap-jsonl")
    assert tap.exists(), f"meltano install did not create {tap}"
    write_jsonl(tmp_path / "in" / "leads.jsonl", RECORDS)
    tap_config = tmp_path / "tap.json"
    tap_config.write_text(
        json.dumps({"path": str(tmp_path / "in" / "*.jsonl"), "stream_name": "pipe_leads"})
    )
    target_config = tmp_path / "target.json"
    target_config.write_text(
        json.dumps(
            {
                "api_url": sandbox.url,
                "api_key": sandbox.api_key,
                "source_id": "sandbox-source",
                "reject_file": str(tmp_path / "rejects.jsonl"),
            }
        )
    )

    env = clean_env()
    tap_log = tmp_path / "tap.log"
    with (
        tap_log.open("w") as tap_stderr,
        subprocess.Popen(
            [str(tap), "--config", str(tap_config)],
            stdout=subprocess.PIPE,
            stderr=tap_stderr,
            env=env,
            cwd=tmp_path,
        ) as tap_proc,
    ):
        assert tap_proc.stdout is not None
        target_proc = subprocess.run(
            [str(target_executable()), "--config", str(target_config)],
            stdin=tap_proc.stdout,
            capture_output=True,
            env=env,
            cwd=tmp_path,
            timeout=180,
            check=False,
        )
        tap_proc.stdout.close()
    assert tap_proc.returncode == 0, tap_log.read_text()[-3000:]
    stderr = target_proc.stderr.decode()
    assert target_proc.returncode == 0, stderr[-3000:]

    stored = by_external_id(sandbox.customers())
    assert sorted(stored) == ["P-1", "P-2"]
    olga = stored["P-1"]
    assert olga["phoneNumber"] == "+16022541187"
    assert olga["firstName"] == "Olga"
    assert olga["lastName"] == "Petrova"
    assert olga["email"] == "olga@example.com"
    assert olga["postalCode"] == "85004"
    assert olga["dateOfBirth"] == "09-30-1957"
    assert olga["gender"] == "Female"
    assert olga["sourceId"] == "sandbox-source"
    ade = stored["P-2"]
    assert ade["phoneNumber"] == "+18135264477"
    assert ade["postalCode"] == "33602"
    assert ade["dateOfBirth"] == "02-09-1948"
    assert ade["maritalStatus"] == "Widowed"

    # A target writes each state as one JSON line on stdout: the tap's state plus the
    # target's own per-stream counts.
    states = [json.loads(line) for line in target_proc.stdout.decode().splitlines() if line.strip()]
    assert states, "the target emitted no state"
    last = states[-1]
    assert "bookmarks" in last
    assert last["target_carecycle"]["pipe_leads"]["received"] == 3
    assert last["target_carecycle"]["pipe_leads"]["succeeded"] == 2
    assert last["target_carecycle"]["pipe_leads"]["rejected"] == 1

    counts = stream_counts(summary_from_lines(stderr.splitlines()), "pipe_leads")
    assert (counts["received"], counts["succeeded"], counts["rejected"]) == (3, 2, 1)
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [r.get("externalId") for r in rejects] == ["P-3"]


def test_demo_pipe_configs(
    meltano_project: MeltanoProject, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """demo/config/*.json, as docs/pipelines.md uses them, upload the web forms."""
    tap = meltano_project.plugin_executable("extractors", "tap-jsonl")
    target_config = json.loads((REPO_ROOT / "demo" / "config" / "target-sandbox.json").read_text())
    meltano_loader = plugin_definition(repo_meltano_yml(), "loaders", "target-carecycle")
    # The pipe config maps the web forms exactly as meltano.yml does.
    assert target_config["streams"]["web_forms"] == meltano_loader["config"]["streams"]["web_forms"]
    assert target_config["api_url"].startswith("http://127.0.0.1:")
    target_config["api_url"] = sandbox.url
    config_file = tmp_path / "target.json"
    config_file.write_text(json.dumps(target_config))

    tap_proc = subprocess.run(
        [str(tap), "--config", "demo/config/tap-jsonl.json"],
        cwd=REPO_ROOT,
        env=clean_env(),
        capture_output=True,
        timeout=120,
        check=True,
    )
    target_proc = subprocess.run(
        [str(target_executable()), "--config", str(config_file)],
        input=tap_proc.stdout,
        env=clean_env(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert target_proc.returncode == 0, target_proc.stderr.decode()[-3000:]
    stored = by_external_id(sandbox.customers())
    assert len(stored) == 93
    assert all(key.startswith("WF-") for key in stored)
