"""The sync store's file and URL: no password printed, no link followed, nothing in memory,
no other application's database, read-only URLs honoured (docs/security.md)."""

from __future__ import annotations

import os
import socket
import sqlite3
import stat
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from target_runner import run_target, target_config

from target_carecycle.sandbox.samples import api_leads, singer_lines
from target_carecycle.store import (
    Account,
    SettledBatch,
    SyncStore,
    SyncStoreError,
    _parse,
    _store_error,
    location_problem,
)

ACCOUNT = Account.for_key("http://127.0.0.1:1", "cc_store_safety_key_000001")

# Passwords: upper case, digits and every character that needs encoding in a URL; the rest
# of each location is lower case, so any 6 characters of the password found in the output
# come from the password.
PASSWORD_CHARS = st.sampled_from([*"ABCDEFGHJKLMNPQRSTUVWXYZ23456789@:/?#%&=+! ", "\u00c9"])
passwords = st.text(PASSWORD_CHARS, min_size=8, max_size=24).filter(
    lambda pw: sum(c.isalnum() for c in pw) >= 6 and pw.strip() == pw
)


def shapes(password: str, port: int = 5432) -> dict[str, str]:
    """The ways a password reaches `sync_store`."""
    encoded = quote(password, safe="")
    return {
        "encoded": f"postgresql+psycopg://sync:{encoded}@127.0.0.1:{port}/store?timeout=2",
        "no driver": f"postgresql://sync:{encoded}@127.0.0.1:{port}/store?timeout=2",
        "not encoded": f"postgresql+psycopg://sync:{password}@127.0.0.1:{port}/store",
        "query": f"postgresql+psycopg://sync@127.0.0.1:{port}/store?password={quote_plus(password)}",
        "query raw": f"postgresql+psycopg://sync@127.0.0.1:{port}/store?password={password}",
        "libpq dsn": f"host=127.0.0.1 port={port} user=sync password={password} dbname=store",
        "libpq dsn quoted": f"host=127.0.0.1 user=sync password='{password}' dbname=store",
    }


def leaks(password: str, output: str) -> list[str]:
    """Pieces of the password (6 characters, 4 of them letters or digits) found in `output`,
    as typed or percent-encoded."""
    found = []
    for start in range(len(password) - 5):
        piece = password[start : start + 6]
        if sum(c.isalnum() for c in piece) < 4:
            continue
        found += [s for s in {piece, quote(piece, safe=""), quote_plus(piece)} if s in output]
    return found


def everything_said_about(location: str, password: str) -> str:
    """The config check's line, or the INFO description and a driver error naming the password."""
    problem = location_problem(location)
    if problem is not None:
        return problem
    where = _parse(location)
    driver_says = Exception(
        f'connection to "{password}" failed: password "{quote(password, safe="")}" rejected'
    )
    return where.describe() + "\n" + str(_store_error(driver_says, where))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(password=passwords, shape=st.sampled_from(sorted(shapes("x"))))
def test_no_password_appears_whatever_the_url_shape(password, shape):
    output = everything_said_about(shapes(password)[shape], password)
    assert leaks(password, output) == [], (shape, output)


def test_the_store_is_described_by_kind_host_port_database_and_user():
    url = "postgresql+psycopg://sync:S3kr%40t@db.example:6543/store?password=Other5ecret&sslmode=prefer"
    assert _parse(url).describe() == "PostgreSQL database store on db.example:6543 as user sync"
    assert _parse("/tmp/s.sqlite").describe() == "SQLite file /tmp/s.sqlite"


@pytest.mark.parametrize("shape", ["not encoded", "libpq dsn", "libpq dsn quoted"])
def test_ambiguous_locations_are_refused_in_one_line_naming_the_setting(shape):
    password = "Pa@ss:W0RD/X?Y"
    problem = location_problem(shapes(password)[shape])
    assert problem is not None and problem.startswith("sync_store: ")
    assert leaks(password, problem) == []


@pytest.mark.parametrize("shape", ["encoded", "no driver", "query", "query raw"])
def test_an_unreachable_store_never_shows_its_password(shape):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    password = "Zq9-Wx7@Yv5:Ut3/Rs1"
    location = shapes(password, port)[shape]
    with pytest.raises(SyncStoreError) as caught:
        SyncStore.open(location, ACCOUNT)
    message = str(caught.value)
    if shape == "query raw":  # an unencoded @ / : in the query: refused before connecting
        assert message.startswith("sync_store: ")
    else:
        where = f"PostgreSQL database store on 127.0.0.1:{port} as user sync"
        assert message.startswith(f"sync_store: cannot reach {where}")
    assert leaks(password, message) == []


# In-memory SQLite


@pytest.mark.parametrize(
    "location",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///file::memory:?uri=true",
        "sqlite:///file:x.db?mode=memory&uri=true",
    ],
)
def test_an_in_memory_sqlite_store_is_refused(location):
    problem = location_problem(location)
    assert problem is not None
    assert problem.startswith("sync_store: an in-memory SQLite database keeps nothing")


def test_an_unknown_sqlite_parameter_is_refused():
    assert location_problem("sqlite:////tmp/x.db?immutable=1") == (
        "sync_store: a SQLite URL takes only the parameters timeout, mode and uri"
    )


def test_an_in_memory_store_stops_the_run_before_anything_is_sent(sandbox, tmp_path):
    """It used to send 200 leads, then fail with `no such table`."""
    config = target_config(sandbox, sync_store="sqlite://")
    run = run_target(tmp_path, config, singer_lines("leads", api_leads(250)))
    assert run.returncode == 1
    assert "sync_store: an in-memory SQLite database keeps nothing" in run.stderr
    assert sandbox.stats()["upload_requests"] == 0


# Links, modes, folders


def test_a_dangling_symlink_at_the_store_path_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "store.sqlite"
    elsewhere.parent.mkdir()
    link = tmp_path / "store.sqlite"
    link.symlink_to(elsewhere)
    with pytest.raises(SyncStoreError, match=r"^sync_store: .*store\.sqlite is a symbolic link"):
        SyncStore.open(str(link), ACCOUNT)
    assert not elsewhere.exists()
    with pytest.raises(SyncStoreError, match="is a symbolic link"):
        SyncStore.open(str(link), ACCOUNT, writable=False)  # a dry run: refused too


def test_a_symlink_to_an_existing_store_or_its_wal_is_refused(tmp_path):
    real = tmp_path / "real.sqlite"
    SyncStore.open(str(real), ACCOUNT).close()
    link = tmp_path / "link.sqlite"
    link.symlink_to(real)
    with pytest.raises(SyncStoreError, match="is a symbolic link"):
        SyncStore.open(str(link), ACCOUNT)
    store = tmp_path / "own.sqlite"
    Path(f"{store}-wal").symlink_to(tmp_path / "somewhere-wal")
    with pytest.raises(SyncStoreError, match=r"own\.sqlite-wal is a symbolic link"):
        SyncStore.open(str(store), ACCOUNT)
    assert not (tmp_path / "somewhere-wal").exists()


def test_a_new_store_is_0600_in_folders_made_0700(tmp_path):
    old_umask = os.umask(0o022)
    try:
        path = tmp_path / "a" / "b" / "sync.sqlite"
        SyncStore.open(str(path), ACCOUNT).close()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700


def test_a_folder_at_the_store_path_is_refused(tmp_path):
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(SyncStoreError, match="is not a regular file"):
        SyncStore.open(str(tmp_path / "dir.sqlite"), ACCOUNT)


# Another application's database


def other_application_database(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()


@pytest.mark.parametrize("writable", [True, False])
def test_a_sqlite_file_with_other_tables_is_refused_and_left_alone(tmp_path, writable):
    path = tmp_path / "crm.sqlite"
    other_application_database(path)
    with pytest.raises(
        SyncStoreError, match=r"holds 1 other table\(s\): the sync store needs a file"
    ):
        SyncStore.open(str(path), ACCOUNT, writable=writable)
    with sqlite3.connect(path) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master")]
    conn.close()
    assert tables == ["customers"]


# Read-only URLs


@pytest.mark.parametrize(
    "url_of",
    [
        lambda path: f"sqlite:///{path}?mode=ro",
        lambda path: f"sqlite:///file:{path}?mode=ro&uri=true",
    ],
)
def test_a_read_only_url_serves_a_dry_run_and_is_refused_for_a_real_run(tmp_path, url_of):
    path = tmp_path / "s.sqlite"
    store = SyncStore.open(str(path), ACCOUNT)
    run = os.urandom(16)
    store.claim(run, 1, [(ACCOUNT.lead_key("ext-1"), b"0" * 16)], skip_unchanged=False)
    store.settle(run, [SettledBatch(1, acknowledged=True)])
    store.close()
    before = path.read_bytes()
    url = url_of(path)
    with pytest.raises(SyncStoreError, match="is opened read-only, but a run that sends"):
        SyncStore.open(url, ACCOUNT)
    reader = SyncStore.open(url, ACCOUNT, writable=False)
    try:
        assert reader.describe().endswith("(read-only, mode=ro)")
        assert reader.unchanged_ids({"ext-1": b"0" * 16}) == {"ext-1"}
        with pytest.raises(SyncStoreError):
            reader.claim(os.urandom(16), 1, [(ACCOUNT.lead_key("ext-2"), b"1" * 16)])
    finally:
        reader.close()
    assert path.read_bytes() == before


def test_a_read_only_url_stops_a_real_run_before_anything_is_sent(sandbox, tmp_path):
    path = tmp_path / "s.sqlite"
    SyncStore.open(str(path), ACCOUNT).close()
    config = target_config(sandbox, sync_store=f"sqlite:///{path}?mode=ro")
    run = run_target(tmp_path, config, singer_lines("leads", api_leads(3)))
    assert run.returncode == 1
    assert "is opened read-only, but a run that sends" in run.stderr
    assert sandbox.stats()["upload_requests"] == 0
    dry = run_target(tmp_path, {**config, "dry_run": True}, singer_lines("leads", api_leads(3)))
    assert dry.returncode == 0, dry.stderr
    assert "(read-only, mode=ro)" in dry.stderr
