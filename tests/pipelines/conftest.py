"""Fixtures for the pipeline tests: real `meltano run` pipelines against an in-process sandbox.

One Meltano project (a temporary directory, `meltano install`ed once per session) serves every
test; each test gets a fresh sandbox and its own data directory ($PIPELINE_DATA_DIR).
Without Meltano or PostgreSQL the tests that need them are skipped, except under CI=true,
where that is a failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_helpers import (
    MeltanoProject,
    PostgresServer,
    create_meltano_project,
    find_meltano,
    running_postgres,
    unavailable,
)

from target_carecycle.sandbox import RunningSandbox, SandboxConfig, running_sandbox


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything here `pipelines` (deselect with `-m "not pipelines"`)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.pipelines)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "pipelines: real Meltano/Singer pipelines against the local sandbox"
    )


@pytest.fixture(scope="session")
def meltano_project(tmp_path_factory: pytest.TempPathFactory) -> MeltanoProject:
    """The session's Meltano project: the repo's plugin definitions plus test extractors."""
    meltano = find_meltano()
    if meltano is None:
        unavailable("meltano not found (run scripts/ensure-test-deps.sh or set MELTANO_EXECUTABLE)")
        raise AssertionError("unreachable")
    return create_meltano_project(tmp_path_factory.mktemp("meltano") / "project", meltano)


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    """A fresh careCycle sandbox on 127.0.0.1, rate limit off."""
    with running_sandbox(SandboxConfig(rate_limit=0)) as sb:
        yield sb


@pytest.fixture
def target_env(sandbox: RunningSandbox, tmp_path: Path) -> dict[str, str]:
    """Environment variables that point the Meltano loader at this test's sandbox and store.

    The session's Meltano project sets its own XDG_STATE_HOME, so the sync store is named
    explicitly: each test starts with an empty one.
    """
    return {
        "TARGET_CARECYCLE_API_URL": sandbox.url,
        "TARGET_CARECYCLE_API_KEY": sandbox.api_key,
        "TARGET_CARECYCLE_SYNC_STORE": str(tmp_path / "sync-store.sqlite"),
    }


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """This test's input files (the test extractors read $PIPELINE_DATA_DIR)."""
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the session (initdb in a temp dir, stopped after)."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def store_url(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh database for a sync store, as a psycopg URL with a (trust-ignored) password."""
    name = "sync_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    postgres.psql(f'DROP DATABASE IF EXISTS "{name}"')
    postgres.create_database(name)
    return f"postgresql+psycopg://postgres:Pg-Store-Sekr3t@127.0.0.1:{postgres.port}/{name}"
