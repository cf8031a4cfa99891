"""meltanolabs-tap-postgres with `batch_config` -> target-carecycle: records arrive only as
BATCH messages (gzipped JSONL files), and every one is counted, uploaded and bookmarked."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline_helpers import TARGET, MeltanoProject, PostgresServer, stream_counts
from test_postgres import EXPECTED, STREAM, assert_stored, by_phone, new_database

from target_carecycle.sandbox import RunningSandbox

READER_LINE = re.compile(r"(\d+) records, (\d+) batch manifests")


def test_postgres_batch_files_are_loaded_like_records(
    meltano_project: MeltanoProject,
    postgres: PostgresServer,
    sandbox: RunningSandbox,
    target_env: dict[str, str],
    data_dir: Path,
) -> None:
    url = new_database(postgres)
    suffix = "batch"
    env = {
        **target_env,
        "TAP_POSTGRES_SQLALCHEMY_URL": url,
        "TARGET_CARECYCLE_STREAMS": "{}",
        "PIPELINE_DATA_DIR": str(data_dir),
    }
    result = meltano_project.run(
        "tap-postgres-batch",
        "target-carecycle",
        env=env,
        full_refresh=False,
        state_id_suffix=suffix,
    )

    # The tap really sent BATCH messages and no RECORDs.
    assert list((data_dir / "batches").glob("crm-*.json.gz")), result.tail()
    reader = [m for line in result.plugin_lines(TARGET) if (m := READER_LINE.search(line))]
    assert reader, result.tail()
    assert (int(reader[-1][1]), int(reader[-1][2]) >= 1) == (0, True)

    stored = by_phone(sandbox.customers())
    assert len(stored) == len(EXPECTED), result.tail()
    for row_id, expected in EXPECTED.items():
        customer = stored[expected["phoneNumber"]]
        assert_stored(customer, expected)
        assert customer["externalId"] == f"{STREAM}:{row_id}"

    counts = stream_counts(result.target_summary(), STREAM)
    assert (counts["received"], counts["succeeded"], counts["rejected"]) == (6, 5, 1)
    state = meltano_project.state(f"dev:tap-postgres-batch-to-target-carecycle:{suffix}")
    singer_state = state["singer_state"]
    assert singer_state["target_carecycle"][STREAM]["received"] == 6
    assert singer_state["target_carecycle"][STREAM]["succeeded"] == 5
