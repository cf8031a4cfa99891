"""The demo output in docs/pipelines.md is what `make demo` prints now.

`scripts/demo_output.py --check` runs scripts/demo.sh (the repository's meltano.yml, a real
Meltano 4.4.1 pipeline into the sandbox, twice) and compares its output with the block in the
page, ignoring only ports, ids, timestamps and durations. When the target's summary or the demo
changes, run `scripts/demo_output.py` and commit the page.
"""

from __future__ import annotations

import re
import subprocess
import sys

from pipeline_helpers import REPO_ROOT, clean_env, find_meltano, unavailable

SCRIPT = REPO_ROOT / "scripts" / "demo_output.py"
PAGE = REPO_ROOT / "docs" / "pipelines.md"


def test_demo_output_in_the_docs_is_current() -> None:
    if find_meltano() is None:
        unavailable("meltano not found (run scripts/ensure-test-deps.sh)")
    env = clean_env()  # demo.sh sets the Meltano and XDG variables it needs
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]


def test_how_to_read_it_quotes_only_what_the_block_shows() -> None:
    """Counts quoted in the prose under the block (`unchanged 2`, `created 456, updated 0`)
    appear in the block, so a regenerated block cannot leave the explanation behind."""
    text = PAGE.read_text(encoding="utf-8")
    block = text[text.index("<!-- BEGIN demo output") : text.index("<!-- END demo output -->")]
    prose = text[text.index("How to read it:") : text.index("### The sample data")]
    quoted = re.findall(r"`([a-z ]+ \d+(?:, [a-z ]+ \d+)*)`", prose)
    assert quoted
    for snippet in quoted:
        assert snippet in block, snippet
