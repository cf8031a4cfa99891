"""The run history and the sync log in a real SQLite store, written by real target processes
against the sandbox, read back by the real `carecycle-report` executable."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from target_runner import TargetRun, run_target, start_target, target_config, wait_for_stats
from test_report_browser import chromium, visit  # noqa: F401 (chromium: a fixture)

from target_carecycle.history import LOG_BATCH_ROWS
from target_carecycle.report import COUNT_KEYS
from target_carecycle.sandbox import SandboxConfig, running_sandbox
from target_carecycle.sandbox.samples import api_leads, singer_lines
from target_carecycle.store import SCHEMA_VERSION, Account, SyncStore

REPORT_EXE = str(Path(sys.executable).parent / "carecycle-report")
SECRET_KEY = "cc_history_test_secret_0123456789"
STATE = {"bookmarks": {"leads": {"replication_key_value": 1}}}


@pytest.fixture
def secret_sandbox():
    with running_sandbox(SandboxConfig(api_keys=(SECRET_KEY,), rate_limit=0)) as sandbox:
        yield sandbox


def leads_of(count: int, start: int = 0) -> list[dict[str, Any]]:
    leads = api_leads(count, start=start)
    for lead in leads:
        lead["firstName"] = f"Qhist{lead['externalId']}x"
    return leads


def lines(leads: list[dict[str, Any]], stream: str = "leads") -> list[str]:
    return list(singer_lines(stream, leads, state=STATE))


def report(
    tmp_path: Path, config: dict[str, Any] | None, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `carecycle-report` with `config` written to a file (None: no --config)."""
    argv = [REPORT_EXE]
    if config is not None:
        path = tmp_path / "report-config.json"
        path.write_text(json.dumps(config))
        argv += ["--config", str(path)]
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_CARECYCLE_")}
    run_env.update(env or {})
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=120, env=run_env, check=False
    )


def report_json(tmp_path: Path, config: dict[str, Any], *args: str) -> list[dict[str, Any]]:
    done = report(tmp_path, config, "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    runs: list[dict[str, Any]] = json.loads(done.stdout)["runs"]
    return runs


def one_line_error(done: subprocess.CompletedProcess[str], *secrets: str) -> str:
    """The report failed with exactly one line on stderr, no traceback, no secret anywhere."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    lines_ = done.stderr.splitlines()
    assert len(lines_) == 1, done.stderr
    assert lines_[0].startswith("carecycle-report: ")
    assert "Traceback" not in done.stderr
    for secret in secrets:
        assert secret not in done.stderr
    return lines_[0]


def rows(store: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(store)) as conn, conn:
        return conn.execute(sql).fetchall()


def assert_summary_matches(run: dict[str, Any], target_run: TargetRun) -> None:
    """The report's run equals the run's own `Run summary:` line, count for count."""
    summary = target_run.summary
    assert run["run_id"] == summary["run_id"]
    assert set(run["streams"]) == set(summary["streams"])
    for stream, counts in run["streams"].items():
        assert counts == {key: summary["streams"][stream][key] for key in COUNT_KEYS}
    assert run["requests"] == summary["requests"]
    assert run["rate_limited"] == summary["rate_limited_429"]
    assert run["retries"] == summary["retries"]


def test_three_runs_report_what_each_run_summary_said(secret_sandbox, tmp_path):
    """Changed and invalid leads over three runs: the JSON report equals each run's summary,
    the CSV lists exactly the last run's refused records, repeated refusals are found."""
    sandbox = secret_sandbox
    store = tmp_path / "store.sqlite"
    config = target_config(
        sandbox,
        sync_store=str(store),
        sync_log=True,
        reject_file=str(tmp_path / "rejects-{run_id}.jsonl"),
        batch_size_rows=40,
    )
    leads = leads_of(120)
    leads[3]["phoneNumber"] = "123"  # rejected in every run
    leads[9]["sourceId"] = "no-such-source"  # refused by careCycle in every run
    extra = leads_of(30, start=500)
    summaries = []

    first = run_target(tmp_path, config, lines(leads) + lines(extra, "contacts"))
    assert first.returncode == 0, first.stderr[-3000:]
    summaries.append(first)
    leads[20]["lastName"] = "Changed"
    leads[21]["phoneNumber"] = "42"  # a lead that was fine becomes invalid
    second = run_target(tmp_path, config, lines(leads))
    assert second.returncode == 0, second.stderr[-3000:]
    summaries.append(second)
    leads[50]["postalCode"] = "10001"
    leads.insert(61, dict(leads[60]))  # the same externalId twice in a batch: merged
    third = run_target(tmp_path, config, lines(leads))
    assert third.returncode == 0, third.stderr[-3000:]
    summaries.append(third)

    runs = report_json(tmp_path, config)
    assert [run["status"] for run in runs] == ["succeeded"] * 3
    for run, target_run in zip(runs, reversed(summaries), strict=True):
        assert_summary_matches(run, target_run)
        assert run["account"]["api_url"] == sandbox.url
    assert runs[0]["streams"]["leads"]["merged"] == 1
    assert runs[2]["streams"]["contacts"]["succeeded"] == 30

    # The CSV: exactly the last run's refused records, as its reject file has them.
    done = report(tmp_path, config, "--format", "csv")
    assert done.returncode == 0, done.stderr
    table = list(csv.reader(io.StringIO(done.stdout)))
    assert table[0] == ["externalId", "stream", "outcome", "reason"]
    reject_file = tmp_path / f"rejects-{third.summary['run_id']}.jsonl"
    rejected = [json.loads(line) for line in reject_file.read_text().splitlines()]
    expected = sorted((r["externalId"], r["stream"], r["status"], r["reason"]) for r in rejected)
    assert sorted(tuple(row) for row in table[1:]) == expected
    assert {row[0] for row in table[1:]} == {"leads-3", "leads-9", "leads-21"}

    # Refused leads are not stored as sent: the one careCycle refused was sent every time.
    assert [run["streams"]["leads"]["failed"] for run in runs] == [1, 1, 1]
    # The HTML names the externalIds refused in several runs in a row.
    (tmp_path / "r.html").write_text("old")
    (tmp_path / "r.html").chmod(0o644)
    done = report(tmp_path, config, "--format", "html", "--out", str(tmp_path / "r.html"))
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "r.html").read_text()
    assert (tmp_path / "r.html").stat().st_mode & 0o777 == 0o600
    repeated = page.split("several runs in a row</h2>", 1)[1].split("<h2>", 1)[0]
    assert "leads-3" in repeated and "leads-9" in repeated and "leads-21" in repeated
    assert "leads-20" not in repeated
    assert SECRET_KEY not in page
    for lead in leads[::7]:
        for name in ("phoneNumber", "firstName", "email", "lastName"):
            assert len(lead[name]) < 6 or lead[name] not in page

    # The sync log holds one row per record with an outcome, careCycle's id when accepted.
    log = rows(store, "SELECT outcome, external_id, carecycle_id FROM carecycle_sync_log")
    assert len(log) == 150 + 120 + 121
    # Invariant: per run and stream, the log's rows by outcome are the run's counts.
    by_run = {run["run_id"]: run for run in runs}
    tokens = dict(rows(store, "SELECT run, run_id FROM carecycle_sync_runs"))
    grouped = rows(
        store,
        "SELECT run, stream, outcome, count(*) FROM carecycle_sync_log "
        "GROUP BY run, stream, outcome",
    )
    for run_token, stream, outcome, count in grouped:
        assert by_run[tokens[run_token]]["streams"][stream][outcome] == count
    for run in runs:
        for stream, counts in run["streams"].items():
            logged = sum(c for t, s, _, c in grouped if tokens[t] == run["run_id"] and s == stream)
            assert logged == counts["received"] - counts["skipped"]
    accepted = [r for r in log if r[0] == "succeeded"]
    assert accepted and all(r[2] for r in accepted)
    assert all(r[2] is None for r in log if r[0] != "succeeded")

    # text: a terminal table of the three runs.
    done = report(tmp_path, config)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("succeeded") >= 3


def test_kill_9_leaves_an_unfinished_run_and_no_counts(tmp_path):
    store = tmp_path / "s.sqlite"
    with running_sandbox(SandboxConfig(rate_limit=0, latency=0.1)) as sandbox:
        config = target_config(sandbox, sync_store=str(store), batch_size_rows=50)
        proc = start_target(tmp_path, config, lines(leads_of(2000))[:-1], quiet=True)
        wait_for_stats(sandbox, lambda stats: stats["upload_requests"] >= 2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.stdin is not None
        proc.stdin.close()
        after = run_target(tmp_path, config, lines(leads_of(10, start=9000)))
        assert after.returncode == 0, after.stderr[-3000:]
        runs = report_json(tmp_path, config)
    assert [run["status"] for run in runs] == ["succeeded", "unfinished"]
    killed = runs[1]
    assert killed["ended_at"] is None and killed["streams"] == {}
    assert_summary_matches(runs[0], after)


def test_a_stopped_run_is_interrupted_and_a_failed_run_says_why(secret_sandbox, tmp_path):
    sandbox = secret_sandbox
    store = tmp_path / "s.sqlite"
    config = target_config(sandbox, sync_store=str(store))
    bad = leads_of(5)
    for lead in bad:
        lead["phoneNumber"] = "1"
    failed = run_target(tmp_path, config, lines(bad))
    assert failed.returncode == 1

    with running_sandbox(SandboxConfig(api_keys=(SECRET_KEY,), rate_limit=0, latency=0.1)) as slow:
        slow_config = target_config(slow, sync_store=str(store), batch_size_rows=20)
        proc = start_target(tmp_path, slow_config, lines(leads_of(400))[:-1])
        wait_for_stats(slow, lambda stats: stats["upload_requests"] >= 2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
        summary = TargetRun(proc.returncode, "", stderr)
        stopped = report_json(tmp_path, slow_config)
    assert stopped[0]["status"] == "interrupted"
    assert stopped[0]["reason"] == "stopped by signal 15"
    assert_summary_matches(stopped[0], summary)

    runs = report_json(tmp_path, config)
    assert runs[0]["status"] == "failed"
    fatal = [line for line in failed.stderr.splitlines() if "target-carecycle: " in line]
    assert runs[0]["reason"] in fatal[0]
    assert "nothing delivered" in runs[0]["reason"]
    assert_summary_matches(runs[0], failed)
    text = report(tmp_path, config)
    assert "failed" in text.stdout and "failure policy" in text.stdout


def test_a_dry_run_writes_nothing(secret_sandbox, tmp_path):
    sandbox = secret_sandbox
    store = tmp_path / "s.sqlite"
    config = target_config(sandbox, sync_store=str(store), sync_log=True, dry_run=True)
    dry = run_target(tmp_path, config, lines(leads_of(20)))
    assert dry.returncode == 0 and not store.exists()

    live = {**config, "dry_run": False}
    assert run_target(tmp_path, live, lines(leads_of(20))).returncode == 0
    before = [
        rows(store, f"SELECT * FROM {table}")
        for table in ("carecycle_sync_runs", "carecycle_sync_run_streams", "carecycle_sync_log")
    ]
    assert run_target(tmp_path, config, lines(leads_of(30))).returncode == 0
    after = [
        rows(store, f"SELECT * FROM {table}")
        for table in ("carecycle_sync_runs", "carecycle_sync_run_streams", "carecycle_sync_log")
    ]
    assert after == before and len(before[0]) == 1


def test_without_the_sync_log_the_store_holds_no_external_id(secret_sandbox, tmp_path):
    sandbox = secret_sandbox
    store = tmp_path / "store" / "s.sqlite"
    config = target_config(sandbox, sync_store=str(store))
    leads = leads_of(60)
    leads[2]["phoneNumber"] = "5"
    leads[4]["sourceId"] = "no-such-source"
    assert run_target(tmp_path, config, lines(leads)).returncode == 0
    raw = b"".join(p.read_bytes() for p in store.parent.iterdir())
    for lead in leads:
        assert lead["externalId"].encode() not in raw
    assert rows(store, "SELECT count(*) FROM carecycle_sync_log") == [(0,)]
    assert len(rows(store, "SELECT * FROM carecycle_sync_runs")) == 1
    # The history is there, the CSV needs the sync log: one clear line.
    assert report_json(tmp_path, config)[0]["streams"]["leads"]["rejected"] == 1
    line = one_line_error(report(tmp_path, config, "--format", "csv"), SECRET_KEY)
    assert "sync_log" in line
    # The HTML says the sync log is off instead of listing records.
    html = report(tmp_path, config, "--format", "html")
    assert html.returncode == 0 and "leads-2" not in html.stdout


def test_the_sync_log_is_pruned_and_written_in_batches(secret_sandbox, tmp_path):
    sandbox = secret_sandbox
    store = tmp_path / "s.sqlite"
    config = target_config(sandbox, sync_store=str(store), sync_log=True, sync_log_retention_days=7)
    count = LOG_BATCH_ROWS + 300
    first = run_target(tmp_path, config, lines(leads_of(count)), timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert rows(store, "SELECT count(*) FROM carecycle_sync_log") == [(count,)]
    # Age the rows: half of them 10 days old, the rest 3 days old.
    with closing(sqlite3.connect(store)) as conn, conn:
        for age, condition in ((10, "id % 2 = 0"), (3, "id % 2 = 1")):
            moment = datetime.now(timezone.utc) - timedelta(days=age)
            conn.execute(
                f"UPDATE carecycle_sync_log SET recorded_at = ? WHERE {condition}",
                (moment.strftime("%Y-%m-%d %H:%M:%S.%f"),),
            )
    second = run_target(tmp_path, config, lines(leads_of(10)))
    assert second.returncode == 0
    kept = rows(store, "SELECT count(*) FROM carecycle_sync_log")[0][0]
    assert kept == (count + 1) // 2 + 10


def test_a_store_failure_while_writing_history_only_warns(secret_sandbox, tmp_path):
    """A store that refuses the history's end still delivers, records digests and exits 0."""
    sandbox = secret_sandbox
    store = tmp_path / "s.sqlite"
    config = target_config(sandbox, sync_store=str(store), sync_log=True)
    assert run_target(tmp_path, config, lines(leads_of(5))).returncode == 0
    with closing(sqlite3.connect(store)) as conn, conn:
        conn.execute(
            "CREATE TRIGGER refuse_end BEFORE UPDATE ON carecycle_sync_runs "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    leads = leads_of(50, start=100)
    run = run_target(tmp_path, config, lines(leads))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.states[-1]["target_carecycle"]["leads"]["succeeded"] == 50
    warnings = [line for line in run.stderr.splitlines() if "Run history:" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0]
    assert sandbox.stats()["leads_received"] == 55
    assert rows(store, "SELECT count(*) FROM carecycle_sync_leads") == [(55,)]
    runs = report_json(tmp_path, config)
    assert [run["status"] for run in runs] == ["unfinished", "succeeded"]


def test_a_version_2_store_is_upgraded_in_place(secret_sandbox, tmp_path):
    sandbox = secret_sandbox
    store = tmp_path / "s.sqlite"
    config = target_config(sandbox, sync_store=str(store))
    leads = leads_of(30)
    assert run_target(tmp_path, config, lines(leads)).returncode == 0
    with closing(sqlite3.connect(store)) as conn, conn:
        for table in ("carecycle_sync_log", "carecycle_sync_run_streams", "carecycle_sync_runs"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("UPDATE carecycle_sync_meta SET value = '2'")
    # A version-2 store has no history: the report says so.
    assert "holds no recorded run" in one_line_error(report(tmp_path, config))
    again = run_target(tmp_path, config, lines(leads))
    assert again.states[-1]["target_carecycle"]["leads"]["unchanged"] == 30
    assert rows(store, "SELECT value FROM carecycle_sync_meta") == [(str(SCHEMA_VERSION),)]
    assert len(report_json(tmp_path, config)) == 1


# -- carecycle-report's error paths ------------------------------------------------------------


def test_report_errors_are_one_line_without_a_secret(secret_sandbox, tmp_path):
    sandbox = secret_sandbox
    config = target_config(sandbox, sync_store=str(tmp_path / "none" / "s.sqlite"))

    line = one_line_error(report(tmp_path, config), SECRET_KEY)
    assert "does not exist yet" in line
    assert not (tmp_path / "none").exists()  # the report never creates a store

    empty = tmp_path / "empty.sqlite"
    SyncStore.open(str(empty), Account.for_key(sandbox.url, SECRET_KEY)).close()
    line = one_line_error(report(tmp_path, {**config, "sync_store": str(empty)}), SECRET_KEY)
    assert "holds no recorded run" in line

    newer = tmp_path / "newer.sqlite"
    newer_config = {**config, "sync_store": str(newer)}
    assert run_target(tmp_path, newer_config, lines(leads_of(3))).returncode == 0
    with closing(sqlite3.connect(newer)) as conn, conn:
        conn.execute("UPDATE carecycle_sync_meta SET value = ?", (str(SCHEMA_VERSION + 1),))
    line = one_line_error(report(tmp_path, newer_config), SECRET_KEY)
    assert "newer" in line and "schema version" in line

    password = "Pg-Report-Sekr3t"
    unreachable = f"postgresql+psycopg://sync:{password}@127.0.0.1:9/history?timeout=2"
    line = one_line_error(
        report(tmp_path, {**config, "sync_store": unreachable}), SECRET_KEY, password
    )
    assert "sync_store" in line

    line = one_line_error(report(tmp_path, {**config, "sync_store": "off"}), SECRET_KEY)
    assert "off" in line

    (tmp_path / "broken.json").write_text("{not json")
    done = subprocess.run(
        [REPORT_EXE, "--config", str(tmp_path / "broken.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "not a JSON object" in one_line_error(done)
    assert "--runs" in one_line_error(report(tmp_path, newer_config, "--runs", "0"))


def test_report_reads_the_environment_and_only_the_accounts_runs(tmp_path):
    """Settings from TARGET_CARECYCLE_* alone (as Meltano passes them); another key's runs in
    the same store are not shown."""
    store = tmp_path / "s.sqlite"
    with running_sandbox(SandboxConfig(api_keys=(SECRET_KEY, "cc_other_key_0123456789"))) as sb:
        for key, count in ((SECRET_KEY, 4), ("cc_other_key_0123456789", 6)):
            config = {**target_config(sb, sync_store=str(store)), "api_key": key}
            assert run_target(tmp_path, config, lines(leads_of(count))).returncode == 0
        env = {
            "TARGET_CARECYCLE_API_URL": sb.url,
            "TARGET_CARECYCLE_API_KEY": SECRET_KEY,
            "TARGET_CARECYCLE_SYNC_STORE": str(store),
        }
        done = report(tmp_path, None, "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)["runs"]
    assert len(runs) == 1 and runs[0]["streams"]["leads"]["received"] == 4
    assert SECRET_KEY not in done.stdout + done.stderr


def test_requests_and_429s_are_counted_per_stream(tmp_path):
    store = tmp_path / "s.sqlite"
    # A burst of 3 then 429s: the client waits them out (retryAfter) and goes on.
    with running_sandbox(SandboxConfig(rate_limit=600, rate_burst=3)) as sandbox:
        config = target_config(sandbox, sync_store=str(store), batch_size_rows=10)
        run = run_target(tmp_path, config, lines(leads_of(40)) + lines(leads_of(30, 100), "b"))
        assert run.returncode == 0, run.stderr[-3000:]
        runs = report_json(tmp_path, config)
    assert_summary_matches(runs[0], run)
    uploads = runs[0]["uploads"]
    assert uploads["leads"]["requests"] >= 4 and uploads["b"]["requests"] >= 3
    assert runs[0]["requests"] == run.summary["requests"]


def test_runs_option_limits_the_report(secret_sandbox, tmp_path):
    sandbox = secret_sandbox
    config = target_config(sandbox, sync_store=str(tmp_path / "s.sqlite"))
    for start in (0, 10, 20):
        assert run_target(tmp_path, config, lines(leads_of(2, start))).returncode == 0
        time.sleep(0.01)
    assert len(report_json(tmp_path, config, "--runs", "2")) == 2
    assert len(report_json(tmp_path, config)) == 3


@pytest.mark.browser
def test_the_html_of_real_runs_opens_in_chromium_without_a_request(
    chromium,  # noqa: F811 (the fixture imported from test_report_browser)
    secret_sandbox,
    tmp_path,
):
    sandbox = secret_sandbox
    config = target_config(sandbox, sync_store=str(tmp_path / "s.sqlite"), sync_log=True)
    leads = leads_of(40)
    leads[1]["phoneNumber"] = "7"
    for _ in range(2):
        assert run_target(tmp_path, config, lines(leads)).returncode == 0
        leads[2]["lastName"] = "Changed"
    page = tmp_path / "report.html"
    done = report(tmp_path, config, "--format", "html", "--out", str(page))
    assert done.returncode == 0, done.stderr
    seen = visit(chromium, page.as_uri(), tmp_path / "profile")
    assert seen.requests == [page.as_uri()]
    assert seen.problems == [] and seen.scripts == 0
    assert "leads-1" in seen.text and "Refused records per run, by reason" in seen.text


def test_runs_sharing_a_meltano_run_id_stay_apart(secret_sandbox, tmp_path):
    """The targets of one `meltano run` share MELTANO_RUN_ID: the CSV is the latest's only."""
    sandbox = secret_sandbox
    config = target_config(sandbox, sync_store=str(tmp_path / "s.sqlite"), sync_log=True)
    env = {"MELTANO_RUN_ID": "3f2c9e1a-shared"}
    first, second = leads_of(10), leads_of(10, start=50)
    first[1]["phoneNumber"] = "1"
    second[2]["phoneNumber"] = "2"
    for leads in (first, second):
        assert run_target(tmp_path, config, lines(leads), env=env).returncode == 0
    runs = report_json(tmp_path, config)
    ids = [run["run_id"] for run in runs]
    assert len(set(ids)) == 2 and all(i.startswith("3f2c9e1a-shared/") for i in ids)
    done = report(tmp_path, config, "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert [row[0] for row in csv.reader(io.StringIO(done.stdout))][1:] == ["leads-52"]


def test_two_runs_at_once_on_one_store_both_appear(tmp_path):
    """Two target processes writing one SQLite store at the same time: both runs, true counts."""
    store = tmp_path / "s.sqlite"
    with running_sandbox(SandboxConfig(rate_limit=0, latency=0.02)) as sandbox:
        config = target_config(sandbox, sync_store=str(store), sync_log=True, batch_size_rows=25)
        procs = []
        for n, start in enumerate((0, 5000)):
            folder = tmp_path / f"runner-{n}"
            folder.mkdir()
            leads = leads_of(300, start=start)
            leads[7]["phoneNumber"] = "3"
            procs.append(start_target(folder, config, lines(leads)))
        results = []  # communicate() ends each input: both runs worked through theirs at once
        for proc in procs:
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err[-3000:]
            results.append(TargetRun(proc.returncode, out, err))
        runs = report_json(tmp_path, config)
    assert len(runs) == 2 and {run["status"] for run in runs} == {"succeeded"}
    by_id = {run["run_id"]: run for run in runs}
    for result in results:
        assert_summary_matches(by_id[result.summary["run_id"]], result)
    assert rows(store, "SELECT count(*) FROM carecycle_sync_log") == [(600,)]


# -- carecycle-report: --out never onto a store, the target's config rules ---------------------


def test_report_out_refuses_the_store_its_companions_and_any_sqlite_file(tmp_path):
    from target_carecycle.report_cli import ReportError, check_out

    store = tmp_path / "store.sqlite"
    with closing(sqlite3.connect(store)) as conn, conn:
        conn.execute("CREATE TABLE t (x)")
    (tmp_path / "sub").mkdir()
    os.link(store, tmp_path / "hard.sqlite")
    for out in (
        store,
        tmp_path / "sub" / ".." / "store.sqlite",  # another spelling
        tmp_path / "hard.sqlite",  # a hard link: the same file
        tmp_path / "store.sqlite-wal",  # companions, whether they exist or not
        tmp_path / "store.sqlite-shm",
        tmp_path / "store.sqlite-journal",
    ):
        with pytest.raises(ReportError, match="the sync store"):
            check_out(str(out), str(store))
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn, conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(ReportError, match="is a SQLite database"):
        check_out(str(other), str(store))
    with pytest.raises(ReportError, match="is a SQLite database"):
        check_out(str(other), None)  # a PostgreSQL store: any SQLite file is still refused
    report_file = tmp_path / "old-report.html"
    report_file.write_text("<html>last week's report</html>")
    check_out(str(report_file), str(store))  # an old report may be replaced
    check_out(str(tmp_path / "new.html"), str(store))


def test_report_reads_config_files_and_env_as_the_target_does(tmp_path, monkeypatch):
    from target_carecycle.report_cli import ReportError, load_settings

    for name in [k for k in os.environ if k.startswith("TARGET_CARECYCLE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env file
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"api_url": "https://one.example", "sync_store": "x.sqlite"}))
    second.write_text(json.dumps({"sync_store": "y.sqlite"}))
    assert load_settings([str(first), str(second)]).sync_store == "y.sqlite"  # later wins
    monkeypatch.setenv("TARGET_CARECYCLE_API_KEY", SECRET_KEY)
    with pytest.raises(ReportError, match="--config ENV"):
        load_settings([str(first)])  # key from the environment, URL from a file
    for order in ([str(first), "ENV"], ["ENV", str(first)]):
        settings = load_settings(order)
        assert settings.api_key == SECRET_KEY and settings.api_url == "https://one.example"
    misspelt = tmp_path / "m.json"
    misspelt.write_text(json.dumps({"sync_stor": "z.sqlite", "api_url": "https://one.example"}))
    with pytest.raises(ReportError, match=r"^sync_stor: .*looks like sync_store"):
        load_settings([str(misspelt), "ENV"])
    monkeypatch.delenv("TARGET_CARECYCLE_API_KEY")
    harmless = tmp_path / "h.json"
    harmless.write_text(json.dumps({"sync_store": "z.sqlite", "colour": "blue"}))
    assert load_settings([str(harmless)]).sync_store == "z.sqlite"  # an unknown name: ignored


@pytest.mark.parametrize(
    ("extra", "why"),
    [({"sync_store": "off"}, "sync_store is off"), ({"dry_run": True}, "a dry run")],
)
def test_sync_log_that_cannot_be_kept_is_one_warning(sandbox, tmp_path, extra, why):
    settings = {"sync_store": str(tmp_path / "s.sqlite"), "sync_log": True, **extra}
    done = run_target(tmp_path, target_config(sandbox, **settings), lines(leads_of(2)))
    assert done.returncode == 0, done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if "sync_log is true" in line]
    assert len(said) == 1 and "WARNING" in said[0] and why in said[0], said


def test_each_sync_log_row_keeps_its_own_writers_retention(tmp_path):
    """Pruning ages out every account's rows, each by the retention of the run that wrote it."""
    from target_carecycle.history import prune_sync_log

    path = tmp_path / "s.sqlite"
    store = SyncStore.open(str(path), Account.for_key("https://api.carecycle.ai", "k"))
    store.close()
    now = datetime.now(timezone.utc)
    rows_ = []  # (account, keep_days, age in days, kept?)
    for account, keep in ((b"a" * 16, 1), (b"b" * 16, 30), (b"c" * 16, 365)):
        for age in (0.5, 2, 40, 400):
            rows_.append((account, keep, age, age < keep))
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany(
            "INSERT INTO carecycle_sync_log (run, account, stream, external_id, outcome, "
            "recorded_at, keep_days) VALUES (?, ?, 's', ?, 'succeeded', ?, ?)",
            [
                (b"r" * 16, account, f"{keep}-{age}",
                 (now - timedelta(days=age)).strftime("%Y-%m-%d %H:%M:%S.%f"), keep)
                for account, keep, age, _ in rows_
            ],
        )  # fmt: skip
    store = SyncStore.open(str(path), Account.for_key("https://other.example", "k2"))
    try:
        store.transaction(lambda conn: prune_sync_log(conn, now))
    finally:
        store.close()
    left = {row[0] for row in rows(path, "SELECT external_id FROM carecycle_sync_log")}
    assert left == {f"{keep}-{age}" for _, keep, age, kept in rows_ if kept}


def test_report_to_a_closed_or_full_stdout_is_one_line(secret_sandbox, tmp_path):
    """A reader that goes away (`carecycle-report | head -1`) or a full device: one line, exit 1."""
    config = target_config(secret_sandbox, sync_store=str(tmp_path / "s.sqlite"))
    assert run_target(tmp_path, config, lines(leads_of(3))).returncode == 0
    path = tmp_path / "report-config.json"
    path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_CARECYCLE_")}
    argv = [REPORT_EXE, "--config", str(path), "--format", "html"]
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            argv, stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=120
        )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "carecycle-report: cannot write the report to stdout (No space left on device)"
    ]
    reader, writer = os.pipe()
    os.close(reader)  # nobody reads: the first write fails with EPIPE
    proc = subprocess.run(
        argv, stdout=writer, stderr=subprocess.PIPE, text=True, env=env, timeout=120
    )
    os.close(writer)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "carecycle-report: stdout closed before the whole report was written"
    ], proc.stderr
