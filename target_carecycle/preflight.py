"""`target-carecycle --check`: settings, URL, DNS, TLS and the key, without sending a lead.

The key is checked by uploading nothing (`{"records": []}`): careCycle authenticates before it
validates, so a bad key gets 401/403 and a good one a VALIDATION_ERROR (no records). Nothing
can be created. What the check cannot know: that `source_id` exists in careCycle, how much of
the key's per-minute budget other runs use. See docs/preflight.md.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from target_carecycle.client import ClientSettings, check_connection
from target_carecycle.fatal import log_fatal
from target_carecycle.settings import RunSettings

logger = logging.getLogger("target-carecycle")

NOT_CHECKED = "not checked: that source_id exists in careCycle, the key's per-minute budget"


def run_check(settings: RunSettings) -> int:
    """Check what a run would need; log one line; return 0 when the key is accepted.

    A dry-run config without a key is checked up to TLS and passes saying the key was not
    checked (a dry run sends nothing, so it needs none).
    """
    api_key = settings.api_key
    client = _client_settings(settings)
    mode = "dry run, nothing would be sent" if settings.dry_run else "LIVE"
    if not api_key:
        answer = check_connection(client, with_key=False)
        if not answer.accepted:
            log_fatal(f"check failed: {answer.message}")
            return 1
        logger.info(
            "target-carecycle: check passed (%s): settings valid; %s; no api_key, so the key "
            "was not checked; %s",
            mode,
            answer.message,
            NOT_CHECKED,
        )
        return 0
    answer = check_connection(client, with_key=True)
    if not answer.accepted:
        log_fatal(f"check failed: {answer.message} (key sha256:{settings.key_fingerprint})")
        return 1
    logger.info(
        "target-carecycle: check passed (%s): settings valid; %s reached; careCycle accepted "
        "the API key sha256:%s (%s); no lead was sent; %s",
        mode,
        settings.destination,
        settings.key_fingerprint,
        answer.message,
        NOT_CHECKED,
    )
    return 0


def _client_settings(settings: RunSettings) -> ClientSettings:
    """How to reach careCycle, also for a dry-run config (which builds no client to send)."""
    if settings.client is not None:
        return replace(settings.client, max_retries=0)
    return ClientSettings(
        api_url=settings.api_url,
        api_key=settings.api_key or "",
        request_timeout=settings.request_timeout,
    )
