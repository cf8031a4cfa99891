"""meltanolabs-tap-postgres -> target-carecycle: zero-config mapping, then incremental state."""

from __future__ import annotations

import itertools
from typing import Any

from pipeline_helpers import MeltanoProject, PostgresServer, stream_counts

from target_carecycle.sandbox import RunningSandbox, SandboxConfig, running_sandbox

STREAM = "public-crm_contacts"
_databases = itertools.count(1)

CREATE_TABLE = """
CREATE TABLE crm_contacts (
    id integer PRIMARY KEY,
    first_name text,
    last_name text,
    phone_number text,
    email text,
    zip_code text,
    date_of_birth date,
    gender text,
    updated_at timestamp NOT NULL
);
INSERT INTO crm_contacts VALUES
    (1, 'Maria', 'Garcia', '(305) 374-2201', 'maria@example.com', '33130', '1955-02-28', 'F',
     '2024-05-01 10:00:00'),
    (2, 'Tom', 'Baker', '404-527-3310', NULL, '30303-1200', '1949-11-05', 'M',
     '2024-05-01 10:05:00'),
    (3, 'Lee', 'Chen', '+1 206 528 9012', 'lee.chen@example.org', '98101', '1990-07-15', 'female',
     '2024-05-01 10:10:00'),
    (4, 'Sam', 'Hill', NULL, NULL, '60614', '1960-03-03', 'male',
     '2024-05-01 10:15:00'),
    (5, 'Rita', 'Moreno', '8135264477', NULL, '2903', NULL, NULL,
     '2024-05-01 10:20:00'),
    (6, 'Ken', 'Ito', '602.254.1187', 'ken@example.net', '85004', '1962-01-01', 'male',
     '2024-05-01 10:25:00');
"""

# What the sandbox must hold for each row that is a valid lead (row 4 has no phone).
EXPECTED = {
    1: {
        "phoneNumber": "+13053742201",
        "firstName": "Maria",
        "lastName": "Garcia",
        "email": "maria@example.com",
        "postalCode": "33130",
        "dateOfBirth": "02-28-1955",
        "gender": "Female",
    },
    2: {
        "phoneNumber": "+14045273310",
        "firstName": "Tom",
        "postalCode": "30303",
        "dateOfBirth": "11-05-1949",
        "gender": "Male",
    },
    3: {
        "phoneNumber": "+12065289012",
        "postalCode": "98101",
        "dateOfBirth": "07-15-1990",
        "gender": "Female",
    },
    5: {"phoneNumber": "+18135264477", "postalCode": "02903", "firstName": "Rita"},
    6: {
        "phoneNumber": "+16022541187",
        "postalCode": "85004",
        "dateOfBirth": "01-01-1962",
        "gender": "Male",
    },
}


def new_database(postgres: PostgresServer) -> str:
    """A database with the CRM table; returns tap-postgres' SQLAlchemy URL for it."""
    name = f"crm_{next(_databases)}"
    url = postgres.create_database(name)
    postgres.psql(CREATE_TABLE, database=name)
    return url


def by_phone(customers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {c["phoneNumber"]: c for c in customers}
    assert len(out) == len(customers), "two customers with the same phone"
    return out


def assert_stored(customer: dict[str, Any], expected: dict[str, Any]) -> None:
    for name, value in expected.items():
        assert customer.get(name) == value, f"{name}: {customer.get(name)!r} != {value!r}"


def test_postgres_zero_config(
    meltano_project: MeltanoProject,
    postgres: PostgresServer,
    sandbox: RunningSandbox,
    target_env: dict[str, str],
) -> None:
    """CRM-style column names and a DATE column, with no mapping config at all."""
    url = new_database(postgres)
    result = meltano_project.run(
        "tap-postgres",
        "target-carecycle",
        env={**target_env, "TAP_POSTGRES_SQLALCHEMY_URL": url, "TARGET_CARECYCLE_STREAMS": "{}"},
    )

    customers = sandbox.customers()
    stored = by_phone(customers)
    assert len(stored) == len(EXPECTED), result.tail()
    for row_id, expected in EXPECTED.items():
        customer = stored[expected["phoneNumber"]]
        assert_stored(customer, expected)
        assert customer["status"] == "Lead"
        # No external ID column: the primary key (the stream's key property) is used.
        assert customer["externalId"] == f"{STREAM}:{row_id}"

    counts = stream_counts(result.target_summary(), STREAM)
    assert (counts["received"], counts["succeeded"], counts["rejected"]) == (6, 5, 1)


def test_postgres_incremental_state_round_trip(
    meltano_project: MeltanoProject,
    postgres: PostgresServer,
    sandbox: RunningSandbox,
    target_env: dict[str, str],
) -> None:
    """The state the target emits, handed back by Meltano, makes the next run incremental."""
    url = new_database(postgres)
    env = {**target_env, "TAP_POSTGRES_SQLALCHEMY_URL": url, "TARGET_CARECYCLE_STREAMS": "{}"}
    suffix = "incremental"
    state_id = f"dev:tap-postgres-to-target-carecycle:{suffix}"

    meltano_project.run(
        "tap-postgres", "target-carecycle", env=env, full_refresh=False, state_id_suffix=suffix
    )
    assert len(sandbox.customers()) == 5

    state = meltano_project.state(state_id)["singer_state"]
    bookmark = state["bookmarks"][STREAM]
    assert bookmark["replication_key"] == "updated_at"
    assert str(bookmark["replication_key_value"]).startswith("2024-05-01T10:25:00")
    assert state["target_carecycle"][STREAM]["received"] == 6
    assert state["target_carecycle"][STREAM]["succeeded"] == 5

    # Two rows change; the second run must send only them and the bookmark row (the tap's
    # replication-key filter is inclusive: updated_at >= the last value).
    postgres.psql(
        "UPDATE crm_contacts SET first_name = 'Thomas', updated_at = '2024-06-01 09:00:00' "
        "WHERE id = 2;"
        "UPDATE crm_contacts SET zip_code = '98104', updated_at = '2024-06-01 09:05:00' "
        "WHERE id = 3;",
        database=url.rsplit("/", 1)[1],
    )
    with running_sandbox(SandboxConfig(rate_limit=0)) as second:
        result = meltano_project.run(
            "tap-postgres",
            "target-carecycle",
            env={**env, "TARGET_CARECYCLE_API_URL": second.url},
            full_refresh=False,
            state_id_suffix=suffix,
        )
        resent = by_phone(second.customers())
        assert sorted(resent) == sorted(
            [EXPECTED[2]["phoneNumber"], EXPECTED[3]["phoneNumber"], EXPECTED[6]["phoneNumber"]]
        ), result.tail()
        assert resent[EXPECTED[2]["phoneNumber"]]["firstName"] == "Thomas"
        assert resent[EXPECTED[3]["phoneNumber"]]["postalCode"] == "98104"
        assert second.stats()["leads_received"] == 3

    counts = stream_counts(result.target_summary(), STREAM)
    assert (counts["received"], counts["succeeded"]) == (3, 3)
    state = meltano_project.state(state_id)["singer_state"]
    bookmark = state["bookmarks"][STREAM]
    assert str(bookmark["replication_key_value"]).startswith("2024-06-01T09:05:00")
    assert state["target_carecycle"][STREAM]["received"] == 3
