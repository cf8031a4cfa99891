"""The run history through Meltano (`meltano invoke target-carecycle:report`) and in a
PostgreSQL store shared by runners in different homes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipeline_helpers import MeltanoProject, PostgresServer, clean_env, write_csv
from test_sync_store_pipelines import HEADER, crm_rows, run_in_home
from test_unattended_meltano import run_summary

from target_carecycle.sandbox import RunningSandbox, SandboxConfig, running_sandbox
from target_carecycle.sandbox.samples import api_leads, singer_lines

SECRET_KEY = "cc_pipeline_history_secret_0123456789"
REPORT_EXE = str(Path(sys.executable).parent / "carecycle-report")


def summary_counts(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = [line for line in proc.stderr.splitlines() if " | Run summary: {" in line]
    summary: dict[str, Any] = json.loads(found[0].split(" | Run summary: ", 1)[1])
    return summary


def test_meltano_invokes_the_report_with_the_plugins_settings(
    meltano_project: MeltanoProject,
    sandbox: RunningSandbox,
    target_env: dict[str, str],
    data_dir: Path,
) -> None:
    """`meltano invoke target-carecycle:report` reads the settings Meltano hands over."""
    write_csv(data_dir / "leads.csv", HEADER, crm_rows(30))
    env = {
        **target_env,
        "PIPELINE_DATA_DIR": str(data_dir),
        "TARGET_CARECYCLE_STREAMS": "{}",
        "TARGET_CARECYCLE_SYNC_LOG": "true",
    }
    first = meltano_project.run("tap-csv-test", "target-carecycle", env=env)
    second = meltano_project.run("tap-csv-test", "target-carecycle", env=env)
    out = data_dir / "report.json"
    done = meltano_project.command(
        "invoke", "target-carecycle:report", "--format", "json", "--out", str(out), env=env
    )
    assert done.returncode == 0, done.stdout[-3000:]
    document = json.loads(out.read_text())
    runs = document["runs"]
    assert len(runs) == 2 and [run["status"] for run in runs] == ["succeeded"] * 2
    assert runs[0]["run_id"] == run_summary(second)["run_id"]
    assert runs[1]["run_id"] == run_summary(first)["run_id"]
    assert runs[0]["streams"]["crm_csv"]["unchanged"] == 30
    assert runs[1]["streams"]["crm_csv"]["succeeded"] == 30
    assert sandbox.api_key not in done.stdout


def run_report(config: Path, fmt: str) -> subprocess.CompletedProcess[str]:
    """`carecycle-report --config CONFIG --format FMT` in a clean environment."""
    return subprocess.run(
        [REPORT_EXE, "--config", str(config), "--format", fmt],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=False,
    )


def test_two_runners_on_one_postgresql_store_both_appear(
    store_url: str, postgres: PostgresServer, tmp_path: Path
) -> None:
    with running_sandbox(SandboxConfig(api_keys=(SECRET_KEY,), rate_limit=0)) as sandbox:
        config = {
            "api_url": sandbox.url,
            "api_key": SECRET_KEY,
            "max_requests_per_minute": 6000,
            "sync_store": store_url,
            "sync_log": True,
        }
        leads = api_leads(80)
        leads[4]["phoneNumber"] = "9"
        lines = list(singer_lines("leads", leads, state={"bookmarks": {}}))
        first = summary_counts(run_in_home(tmp_path / "worker-a", config, lines))
        leads[6]["lastName"] = "Moved"
        lines = list(singer_lines("leads", leads, state={"bookmarks": {}}))
        second = summary_counts(run_in_home(tmp_path / "worker-b", config, lines))

    (tmp_path / "report.json").write_text(json.dumps(config))
    report = run_report(tmp_path / "report.json", "json")
    assert report.returncode == 0, report.stderr
    runs = json.loads(report.stdout)["runs"]
    assert [run["run_id"] for run in runs] == [second["run_id"], first["run_id"]]
    for run, summary in zip(runs, (second, first), strict=True):
        assert run["status"] == "succeeded"
        counts = summary["streams"]["leads"]
        assert run["streams"]["leads"] == {k: counts[k] for k in run["streams"]["leads"]}
        assert run["requests"] == summary["requests"]
    csv_report = run_report(tmp_path / "report.json", "csv")
    assert csv_report.returncode == 0, csv_report.stderr
    assert csv_report.stdout.splitlines()[1].startswith("leads-4,leads,rejected,phoneNumber")
    password = store_url.split(":")[2].split("@")[0]
    assert password not in report.stderr + csv_report.stderr
    database = store_url.rsplit("/", 1)[1]
    dump = postgres.psql(
        "SELECT run_id, status FROM carecycle_sync_runs; SELECT count(*) FROM carecycle_sync_log;",
        database=database,
    )
    assert dump.count("succeeded") == 2
