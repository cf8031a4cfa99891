"""`meltano run` with TARGET_CARECYCLE_DRY_RUN: Meltano reads unknown spellings as false and
passes its environment on; the target reads the variable itself, so nothing is ever sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_helpers import MeltanoProject, write_csv

from target_carecycle.sandbox import RunningSandbox

HEADER = ["External ID", "First Name", "Phone", "Zip Code"]
ROWS = [["S-1", "Jane", "(312) 847-1928", "60614"], ["S-2", "John", "617.370.1625", "02134"]]


@pytest.mark.parametrize(
    ("spelling", "succeeds", "shows"),
    [
        ("maybe", False, "dry_run: TARGET_CARECYCLE_DRY_RUN must be true or false"),
        ("y", False, "dry_run: TARGET_CARECYCLE_DRY_RUN must be true or false"),
        ("YES", True, "dry run: nothing was sent"),
    ],
)
def test_a_dry_run_meltano_cannot_read_never_sends(
    meltano_project: MeltanoProject,
    sandbox: RunningSandbox,
    target_env: dict[str, str],
    data_dir: Path,
    spelling: str,
    succeeds: bool,
    shows: str,
) -> None:
    write_csv(data_dir / "leads.csv", HEADER, ROWS)
    env = {
        **target_env,
        "PIPELINE_DATA_DIR": str(data_dir),
        "TARGET_CARECYCLE_STREAMS": "{}",
        "TARGET_CARECYCLE_DRY_RUN": spelling,
    }
    result = meltano_project.run("tap-csv-test", "target-carecycle", env=env, check=False)

    assert (result.returncode == 0) is succeeds, result.tail()
    assert shows in result.raw, result.tail()
    assert sum(sandbox.stats()["requests"].values()) == 0
    assert sandbox.api_key not in result.raw
    assert "unknown setting" not in result.raw  # Meltano passes no keys the target lacks
