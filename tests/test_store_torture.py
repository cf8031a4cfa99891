"""Several target processes on one SQLite store, faults and kill -9: the store never lies.

The harness and what it checks: tests/store_torture.py.
"""

from __future__ import annotations

import pytest
from store_runs import stored_digests
from store_torture import torture


@pytest.mark.slow
def test_concurrent_runs_faults_and_kill_9_never_make_the_sqlite_store_lie(tmp_path):
    store = tmp_path / "store" / "sync.sqlite"
    torture(tmp_path, str(store), seed=19, sqlite_path=store, digests=lambda: stored_digests(store))
