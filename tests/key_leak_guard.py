"""A pytest plugin: a test whose captured output holds a test API key fails.

Captured stdout, stderr and log records of every phase are scanned for the sandbox's default
key and for the keys a test module lists in `SECRETS_TO_WATCH`. This checks the suite itself
(the target in-process, the client, the sandbox) keeps the promise that the key is never
printed; output of the target executable is checked by `target_runner.run_target`.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any

import pytest

from target_carecycle.sandbox.server import DEFAULT_API_KEY

ALWAYS_WATCHED = (DEFAULT_API_KEY,)


def leaked_sections(sections: Iterable[tuple[str, str]], secrets: Iterable[str]) -> list[str]:
    """Titles of the captured-output sections that contain any of `secrets`."""
    watched = [secret for secret in secrets if secret]
    return [title for title, text in sections if any(secret in text for secret in watched)]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    """Turn a passing phase into a failure when its captured output shows a watched key."""
    del call
    outcome = yield
    report = outcome.get_result()
    module = getattr(item, "module", None)
    secrets = (*ALWAYS_WATCHED, *getattr(module, "SECRETS_TO_WATCH", ()))
    leaks = leaked_sections(report.sections, secrets)
    if leaks and not report.failed:
        report.outcome = "failed"
        report.longrepr = f"a test API key appeared in captured output: {', '.join(leaks)}"
