"""The HTTP client against a real sandbox: answers, 429s, pacing, ordering, classification."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from target_carecycle.client import (
    PACE_RECOVERY_SECONDS,
    PACING_MARGIN,
    BatchResult,
    ClientSettings,
    DeliveryFailed,
    FatalApiError,
    LeadUploadClient,
    RequestPacer,
    UploadDispatcher,
    UploadInterrupted,
    check_api_url,
)
from target_carecycle.sandbox import SandboxConfig, running_sandbox
from target_carecycle.sandbox.samples import api_leads


def client_for(url: str, key: str, **overrides) -> LeadUploadClient:
    settings: dict[str, Any] = dict(
        api_url=url,
        api_key=key,
        request_timeout=5,
        max_retries=3,
        max_requests_per_minute=6000,
        backoff_base=0.05,
    )
    settings.update(overrides)
    return LeadUploadClient(ClientSettings(**settings))


def test_validation_error_drops_exactly_the_bad_records_and_resends_the_rest(sandbox):
    leads = api_leads(6)
    leads[1]["gender"] = "male"  # not the exact enum
    leads[4]["dateOfBirth"] = "1990-01-31"  # not MM-DD-YYYY
    client = client_for(sandbox.url, sandbox.api_key)

    result = client.upload(leads)

    assert sorted(result.failures) == [1, 4]
    assert result.failures[1].startswith("careCycle validation: gender:")
    assert result.failures[4].startswith("careCycle validation: dateOfBirth:")
    assert "1990-01-31" not in result.failures[4]
    assert sorted(result.ids) == [0, 2, 3, 5]
    assert result.requests == 2
    stats = sandbox.stats()
    assert stats["requests"] == {"422": 1, "200": 1}
    assert {c["externalId"] for c in sandbox.customers()} == {
        leads[i]["externalId"] for i in (0, 2, 3, 5)
    }
    stored = {c["externalId"]: c["id"] for c in sandbox.customers()}
    assert result.ids[0] == stored[leads[0]["externalId"]]


def test_business_errors_in_a_200_are_matched_by_external_id(sandbox):
    leads = api_leads(4)
    leads[2]["sourceId"] = "no-such-source"
    result = client_for(sandbox.url, sandbox.api_key).upload(leads)

    assert list(result.failures) == [2]
    assert "Source not found" in result.failures[2]
    assert sorted(result.ids) == [0, 1, 3]
    assert sandbox.stats()["created"] == 3


@pytest.mark.parametrize(
    ("sandbox_config", "key", "url_suffix", "expected"),
    [
        (SandboxConfig(rate_limit=0), "cc_wrong_key", "", "refused the API key (HTTP 401)"),
        (
            SandboxConfig(rate_limit=0, read_only_keys=("cc_read_only",)),
            "cc_read_only",
            "",
            "refused the API key (HTTP 403)",
        ),
        (SandboxConfig(rate_limit=0), None, "/v1", "404 NOT_FOUND for POST http://"),
    ],
    ids=["401", "403", "404"],
)
def test_fatal_answers_raise_at_once_without_retrying(sandbox_config, key, url_suffix, expected):
    with running_sandbox(sandbox_config) as sandbox:
        client = client_for(sandbox.url + url_suffix, key or sandbox.api_key)
        with pytest.raises(FatalApiError) as caught:
            client.upload(api_leads(2))
        assert sandbox.stats()["created"] == 0
        assert sum(sandbox.stats()["requests"].values()) == 1
    assert expected in str(caught.value)
    assert (key or "") not in str(caught.value) or not key


def test_429_waits_retry_after_then_resends_and_slows_the_pace():
    with running_sandbox(SandboxConfig(rate_limit=60, rate_burst=1)) as sandbox:
        client = client_for(sandbox.url, sandbox.api_key)
        results = [client.upload(api_leads(5, start=5 * i)) for i in range(3)]
        stats = sandbox.stats()
    assert all(not r.failures and len(r.ids) == 5 for r in results)
    assert stats["created"] == 15
    assert stats["requests"].get("429", 0) >= 1
    assert client.pacer.interval > 60 / 6000


def test_pacing_lets_the_kth_request_start_no_sooner_than_k_intervals_in():
    """The budget holds from the first call: the k-th start comes at least k intervals
    later (waits only ever run long, so a busy machine cannot break this). How close a
    busy client gets to a strict server's limit is a timing claim, measured by
    benchmarks/bench_pacing.py."""
    pacer = RequestPacer(per_minute=1200, stop=threading.Event())
    assert pacer.interval == pytest.approx(60 * PACING_MARGIN / 1200)
    began = time.monotonic()
    starts = []
    for _ in range(6):
        pacer.wait_turn()
        starts.append(time.monotonic())
    for k, start in enumerate(starts):
        assert start - began >= k * pacer.interval - 1e-3  # float rounding only


def test_retries_exhausted_raise_delivery_failed():
    with running_sandbox(SandboxConfig(rate_limit=0, fault="500", fault_every=1)) as sandbox:
        client = client_for(sandbox.url, sandbox.api_key, max_retries=2)
        with pytest.raises(DeliveryFailed, match="after 3 attempts"):
            client.upload(api_leads(2))
        assert sandbox.stats()["requests"] == {"500": 3}


def test_a_stop_interrupts_the_wait_between_retries():
    stop = threading.Event()
    with running_sandbox(SandboxConfig(rate_limit=0, fault="503", fault_every=1)) as sandbox:
        settings = ClientSettings(
            api_url=sandbox.url, api_key=sandbox.api_key, max_retries=5, backoff_base=30
        )
        client = LeadUploadClient(settings, stop=stop)
        threading.Timer(0.3, stop.set).start()
        with pytest.raises(UploadInterrupted):
            client.upload(api_leads(1))


def submit(
    dispatcher: UploadDispatcher, leads: list[dict[str, Any]], on_done=lambda result: None
) -> None:
    ids = frozenset(lead["externalId"] for lead in leads)
    dispatcher.make_room(ids)
    dispatcher.enqueue(leads, ids, on_done=on_done, on_lost=lambda: None)


def test_batches_sharing_an_external_id_never_race():
    with running_sandbox(SandboxConfig(rate_limit=0, latency=0.2)) as sandbox:
        client = client_for(sandbox.url, sandbox.api_key, max_concurrent_requests=8)
        dispatcher = UploadDispatcher(client)
        done: list[BatchResult] = []
        for round_ in range(6):
            lead = api_leads(1, start=round_ % 2)[0] | {"firstName": f"Version{round_}"}
            others = api_leads(3, start=100 + 3 * round_)
            submit(dispatcher, [*others, lead], on_done=done.append)
        dispatcher.wait_all()
        dispatcher.close()
        names = {c["externalId"]: c["firstName"] for c in sandbox.customers()}
    assert len(done) == 6
    assert names["leads-0"] == "Version4"
    assert names["leads-1"] == "Version5"


def test_dispatcher_overlaps_requests_up_to_its_limit():
    with running_sandbox(SandboxConfig(rate_limit=0, latency=0.3)) as sandbox:
        client = client_for(sandbox.url, sandbox.api_key, max_concurrent_requests=4)
        dispatcher = UploadDispatcher(client)
        for i in range(4):
            submit(dispatcher, api_leads(2, start=2 * i))
        assert dispatcher.in_flight == 4
        dispatcher.wait_all()
        assert dispatcher.in_flight == 0
        dispatcher.close()
        assert sandbox.stats()["created"] == 8


def test_a_429_halves_the_pace_once_per_wait_and_successes_bring_it_back():
    pacer = RequestPacer(per_minute=120, stop=threading.Event())
    assert pacer.interval == pytest.approx(0.5 * PACING_MARGIN)
    pacer.hold_off(0)
    assert pacer.interval == pytest.approx(1.0 * PACING_MARGIN)
    pacer.hold_off(0)  # another request already on its way when careCycle said so
    assert pacer.interval == pytest.approx(1.0 * PACING_MARGIN)
    # Additive recovery: the whole budget per PACE_RECOVERY_SECONDS of successes.
    successes = 0
    while pacer.interval > 0.5 * PACING_MARGIN + 1e-9:
        pacer.note_success()
        successes += 1
    assert 1 < successes <= PACE_RECOVERY_SECONDS


def test_a_429_holds_every_sender_back_for_the_wait_careCycle_asked_for():
    pacer = RequestPacer(per_minute=6000, stop=threading.Event())
    pacer.wait_turn()
    pacer.hold_off(0.3)
    began = time.monotonic()
    pacer.wait_turn()
    assert time.monotonic() - began >= 0.3 - 1e-3  # waits only ever run long


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://api.carecycle.ai", True),
        ("https://staging.example.com/base", True),
        ("http://127.0.0.1:8765", True),
        ("http://localhost:8765", True),
        ("http://[::1]:8765", True),
        ("http://api.carecycle.ai", False),
        ("http://10.0.0.5:8765", False),
        ("ftp://api.carecycle.ai", False),
        ("api.carecycle.ai", False),
    ],
)
def test_check_api_url(url, ok):
    assert (check_api_url(url) is None) is ok


def test_settings_repr_never_shows_the_key():
    settings = ClientSettings(api_url="https://api.carecycle.ai", api_key="cc_secret_value_123")
    assert "cc_secret_value_123" not in repr(settings)
    assert "cc_secret_value_123" not in repr(LeadUploadClient(settings))
