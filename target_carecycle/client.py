"""HTTP client for careCycle's lead upload: session, auth, pacing, retries, error classification.

Everything that touches the network lives here. The client never logs or raises with the API
key or with lead field values: server messages are scrubbed of the values that were sent.
The endpoint's contract (auth, limits, answers, what to retry) is docs/carecycle-api.md.
"""

from __future__ import annotations

import base64
import html
import ipaddress
import logging
import math
import random
import re
import socket
import ssl
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import quote, quote_plus, unquote, urlsplit

import backoff
import requests
from urllib3.exceptions import NewConnectionError
from urllib3.util import parse_url

from target_carecycle.fields import PERSONAL_FIELDS
from target_carecycle.serialization import dumps_json

UPLOAD_PATH = "/v2/leads/upload"
MAX_BATCH_SIZE = 200
MAX_RATE_LIMIT_WAITS = 50
# Requests are spaced 3% wider than the budget allows, so network jitter in arrival times
# never makes a strict server (a bucket of one) see two requests too close together.
PACING_MARGIN = 1.03
# After a 429 the pace is cut to this share of itself (at most once per wait careCycle asks
# for), never below MIN_PACE of the budget; successes bring it back by the whole budget per
# PACE_RECOVERY_SECONDS. Measured in benchmarks/bench_pacing.py (docs/performance.md).
PACE_CUT = 0.5
MIN_PACE = 0.01
PACE_RECOVERY_SECONDS = 20.0
DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 8
DEFAULT_REQUESTS_PER_MINUTE = 60
# careCycle answers in 0.2-0.6 s; 8 in flight keep a 600/min budget full (Little's law + slack).
DEFAULT_MAX_CONCURRENT_REQUESTS = 8
# Text careCycle sends back is cut to this length once scrubbed (a log line, a reject reason).
MAX_SERVER_TEXT = 200
# Server text beyond this is not scanned (scrubbing costs time per personal value sent).
MAX_SCANNED_TEXT = 4096
# Layers of %-encoding the scrubber looks through (a URL quoted inside a URL is two).
MAX_URL_DECODING = 5
KEY_PLACEHOLDER = "<api key>"
VALUE_PLACEHOLDER = "<value>"
EXTERNAL_ID_PLACEHOLDER = "<externalId>"
# Sent values shorter than this identify no one and are not removed when careCycle echoes
# them as a whole token of its own (a custom field's "1", an externalId "7"): removing them
# would garble careCycle's text ("customFields.1.value", "records.7.phoneNumber").
MIN_SCRUBBED_LENGTH = 3
# Custom field values that identify no one whatever their length (leads.py writes booleans
# as true/false): removing them would garble words ("construe", "yesterday").
_NOT_IDENTIFYING = frozenset({"true", "false", "yes", "null", "none"})
# Anything shaped like a careCycle key (`cc_` + 6 or more key characters), even a part of one.
_KEY_SHAPED = re.compile(r"(?<![A-Za-z0-9])cc_[A-Za-z0-9_\-]{6,}", re.IGNORECASE)
# Line breaks and other control characters would let server text forge log lines.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# Characters that make URL parsers disagree about the host; never needed in a base URL.
_AMBIGUOUS_URL_CHARS = re.compile(r"[\s\\\x00-\x1f\x7f]")

logger = logging.getLogger("target-carecycle.client")


class CareCycleError(Exception):
    """A delivery problem; the message is safe to print (no key, no personal data)."""


class FatalApiError(CareCycleError):
    """careCycle gave an answer that retrying cannot fix (bad key, wrong URL, other 4xx)."""


class DeliveryFailed(CareCycleError):
    """A batch could not be delivered within the retry budget."""


class UploadInterrupted(CareCycleError):
    """The run was asked to stop before the batch was delivered."""


class _Transient(Exception):
    """A failure worth retrying (5xx, timeout, dropped connection).

    `maybe_applied`: careCycle may have received the request and stored its leads (a timeout,
    a connection lost after sending, a 5xx answer); False only when nothing reached it.
    """

    def __init__(self, message: str, *, maybe_applied: bool = True) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class _RateLimited(Exception):
    """A 429 answer, with the wait careCycle asked for (None when it named none)."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after


def check_api_url(api_url: str) -> str | None:
    """Return why `api_url` is unusable, or None when it is fine.

    https is required, except plain http to a loopback host (the local sandbox), decided by
    parsing alone: the host must be exactly `localhost` or a loopback IP literal. A name is
    never resolved, so `127.0.0.1.nip.io` or `127.evil.example` stay remote. URLs that parsers
    could read differently (user info, backslashes, spaces) are refused outright.
    """
    if _AMBIGUOUS_URL_CHARS.search(api_url):
        return "must not contain spaces, backslashes or control characters"
    try:
        parts = urlsplit(api_url)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    del port  # read only to validate it
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL such as https://api.carecycle.ai"
    if "@" in parts.netloc:
        return "must not contain a user name or password"
    if parts.query or parts.fragment or api_url.endswith(("?", "#")):
        return "must not contain a query or fragment"
    if not _same_host_for_requests(api_url, parts.hostname):
        return "is not a valid URL"
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        return "must use https (plain http only to localhost or a loopback IP such as 127.0.0.1)"
    return None


def is_loopback_host(host: str) -> bool:
    """True for exactly `localhost` or an IP literal in 127.0.0.0/8, ::1 or ::ffff:127.x.

    Never resolves a name: that would trust DNS to keep the key on this machine.
    """
    host = host.lower()
    if host == "localhost":
        return True
    if "%" in host:  # an IPv6 zone: "::1%anything" is not a plain loopback literal
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _same_host_for_requests(api_url: str, host: str) -> bool:
    """True when requests can use the URL and connects to the host urllib reads."""
    prepared = requests.PreparedRequest()
    try:
        prepared.prepare_url(api_url.rstrip("/") + UPLOAD_PATH, None)
        seen = parse_url(prepared.url or "").host
    except (requests.RequestException, ValueError):
        return False
    return seen is not None and seen.strip("[]").lower() == host.lower()


class Scrubber:
    """Makes text careCycle sent back safe to print or store.

    Removes the API key (raw, URL-encoded, base64, and anything shaped like a key), every
    personal value of the leads in the batch (also in the spellings careCycle may echo: phone
    digits, date separators, URL-encoded), custom field values included, and the batch's
    externalIds (`<externalId>`: a reason is kept in the store's run history, which holds no
    externalId; logs and reject files name the record by its externalId in a field of their
    own), and turns control characters into spaces so the text stays one log line. Every
    message, code, per-record error and header value from careCycle passes through one of
    these before it reaches a log, an exception, the reject file, the summary or the store.
    """

    def __init__(
        self,
        api_key: str,
        leads: Sequence[Mapping[str, Any]] = (),
        *,
        personal_fields: Collection[str] = PERSONAL_FIELDS,
    ) -> None:
        self._key_needles = _needles(_key_variants(api_key))
        self._leads = leads
        # The fields whose values are removed (fields.py marks them; a test passes its own).
        self.personal_fields = personal_fields
        self._value_needles: list[tuple[str, str]] | None = None  # built on first use
        self._id_needles: list[tuple[str, str]] = []  # the batch's externalIds, with them
        self._phones: frozenset[str] = frozenset()  # national numbers and their last 7 digits
        self._dates: frozenset[tuple[int, int, int]] = frozenset()  # (year, month, day)

    def __call__(self, text: object, limit: int = MAX_SERVER_TEXT) -> str:
        """`text` without the key or any personal value sent, on one line, at most `limit`."""
        raw = str(text)
        clean = self._remove_exact(raw[:MAX_SCANNED_TEXT])
        for _ in range(MAX_URL_DECODING):  # each decoded layer, so no encoding hides a value
            decoded = _decoded(clean)
            if decoded == clean:
                break
            clean = self._remove_exact(decoded)
        if len(raw) > MAX_SCANNED_TEXT:  # the cut may have split a value: drop the tail
            clean = clean[: max(0, len(clean) - self._longest_needle())]
        return _finish(clean, limit)

    def _longest_needle(self) -> int:
        needles = [*self._key_needles, *(self._value_needles or []), *self._id_needles]
        return max((len(value) for value, _ in needles), default=0)

    def holds_key(self, text: str) -> bool:
        """True when `text` holds the key in any spelling removed here, or anything key-shaped."""
        folded = text.casefold()
        return bool(_KEY_SHAPED.search(text)) or any(
            needle in folded for _, needle in self._key_needles
        )

    def key_only(self, text: object, limit: int | None = MAX_SERVER_TEXT) -> str:
        """`text` without the key or control characters (for careCycle's ids)."""
        return _finish(_replace(str(text), self._key_needles, KEY_PLACEHOLDER), limit)

    def _remove_exact(self, text: str) -> str:
        if self._value_needles is None:
            self._value_needles = _needles(_personal_values(self._leads, self.personal_fields))
            self._id_needles = _needles(_external_ids(self._leads))
            self._phones = _phone_numbers(self._leads)
            self._dates = _birth_dates(self._leads)
        text = _replace(text, self._key_needles, KEY_PLACEHOLDER)
        text = _replace(text, self._value_needles, VALUE_PLACEHOLDER)
        if self._phones:
            text = _replace_phones(text, self._phones)
        if self._dates:
            text = _replace_dates(text, self._dates)
        return _replace_tokens(text, self._id_needles, EXTERNAL_ID_PLACEHOLDER)


def _finish(text: str, limit: int | None) -> str:
    """Key-shaped leftovers out (only after exact matching: it would split a key), one line."""
    text = _CONTROL_CHARS.sub(" ", _KEY_SHAPED.sub(KEY_PLACEHOLDER, text))
    return text if limit is None else text[:limit]


def _key_variants(api_key: str) -> set[str]:
    raw = api_key.encode()
    return {
        api_key,
        quote(api_key, safe=""),
        quote_plus(api_key),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    } - {""}


def _personal_values(
    leads: Sequence[Mapping[str, Any]], personal_fields: Collection[str]
) -> set[str]:
    r"""Every personal value sent, with the other spellings careCycle might echo.

    Each value also in its Unicode normal forms (a name sent composed may come back
    decomposed, and the decoded text is NFKC); escaped spellings (JSON `\u00e9`, HTML
    `&eacute;`, `%C3%A9`) are decoded from the text instead (`_decoded`).
    """
    found: set[str] = set()
    for lead in leads:
        for name, value in sent_personal_values(lead, personal_fields):
            found |= _spellings(value)
            if name == "phoneNumber":
                found.update(_phone_spellings(value))
            elif name == "dateOfBirth":
                found.update({value.replace("-", "/"), value.replace("/", "-")})
    return {value for value in found if value}


def sent_personal_values(
    lead: Mapping[str, Any], personal_fields: Collection[str] = PERSONAL_FIELDS
) -> Iterator[tuple[str, str]]:
    """(field, value) for each personal text value of `lead`, each custom field value too.

    A list of `{fieldKey, value}` items (customFields) gives each item's `value` (not its
    `fieldKey`, which careCycle's settings define), except values that identify no one: under
    MIN_SCRUBBED_LENGTH characters or a yes/no word (`_NOT_IDENTIFYING`), so a custom field
    holding "1" or "true" does not garble careCycle's text.
    """
    for name, value in lead.items():
        if name not in personal_fields:
            continue
        if isinstance(value, str):
            if value.strip():
                yield name, value
        elif isinstance(value, list | tuple):
            for item in value:
                text = item.get("value") if isinstance(item, Mapping) else None
                if isinstance(text, str) and _identifying(text):
                    yield name, text


def _identifying(value: str) -> bool:
    text = value.strip()
    return len(text) >= MIN_SCRUBBED_LENGTH and text.casefold() not in _NOT_IDENTIFYING


def _spellings(value: str) -> set[str]:
    """`value` as sent, stripped, in each Unicode normal form, and URL-encoded."""
    forms = {value, value.strip()}
    forms |= {unicodedata.normalize(form, value.strip()) for form in _NORMAL_FORMS}
    found: set[str] = set()
    for form in forms:
        found.update({form, quote(form, safe=""), quote_plus(form)})
    return found


def _external_ids(leads: Sequence[Mapping[str, Any]]) -> set[str]:
    """The batch's externalIds (at least MIN_SCRUBBED_LENGTH long) in the spellings echoed."""
    found: set[str] = set()
    for lead in leads:
        value = lead.get("externalId")
        if isinstance(value, str) and len(value.strip()) >= MIN_SCRUBBED_LENGTH:
            found |= _spellings(value)
    return {value for value in found if len(value) >= MIN_SCRUBBED_LENGTH}


_NORMAL_FORMS: tuple[Literal["NFC", "NFD", "NFKC", "NFKD"], ...] = ("NFC", "NFD", "NFKC", "NFKD")
_JS_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|[\"\\/bfnrt'])")
_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _decoded(text: str) -> str:
    r"""One layer of every encoding careCycle's text could hide a value in, undone.

    %-escapes, HTML entities (`&eacute;`, `&#233;`), JSON and JavaScript escapes (`\u00e9`,
    surrogate pairs included), then Unicode NFKC (decomposed and compatibility forms).
    """
    if "%" in text:
        text = unquote(text)
    if "&" in text:
        text = html.unescape(text)
    if "\\" in text:
        text = _JS_ESCAPE.sub(_unescape, text)
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return unicodedata.normalize("NFKC", text)


def _unescape(match: re.Match[str]) -> str:
    escape = match.group(1)
    if escape[0] in "uUx":
        code = int(escape[1:], 16)
        return chr(code) if code <= sys.maxunicode else "\ufffd"
    return _SIMPLE_ESCAPES.get(escape, escape)


# A run of digits with separators between them, as a phone number is written in any common US
# format: 312 847 1928, (312)847-1928, 312.847.1928, +1-312-847-1928, 1 (312) 847-1928.
_DIGIT_RUN = re.compile(r"[0-9](?:[\s().\-/+\u00a0]{0,3}[0-9])+")


def _phone_numbers(leads: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    """The national numbers (10 digits) of the phones sent, and their last 7 digits."""
    numbers: set[str] = set()
    for lead in leads:
        digits = re.sub(r"[^0-9]", "", str(lead.get("phoneNumber") or ""))
        national = digits[1:] if len(digits) == 11 and digits.startswith("1") else digits
        if len(national) == 10:
            numbers |= {national, national[3:]}
    return frozenset(numbers)


def _replace_phones(text: str, numbers: frozenset[str]) -> str:
    """Every digit run (separators allowed) holding a phone sent, whatever its format."""

    def scrub(match: re.Match[str]) -> str:
        digits = re.sub(r"[^0-9]", "", match.group(0))
        if len(digits) < 7:
            return match.group(0)
        found = any(
            digits[start : start + size] in numbers
            for size in (10, 7)
            for start in range(len(digits) - size + 1)
        )
        return VALUE_PLACEHOLDER if found else match.group(0)

    return _DIGIT_RUN.sub(scrub, text)


def _birth_dates(leads: Sequence[Mapping[str, Any]]) -> frozenset[tuple[int, int, int]]:
    """(year, month, day) of each dateOfBirth sent (MM-DD-YYYY or MM/DD/YYYY)."""
    dates = set()
    for lead in leads:
        found = re.fullmatch(
            r"(\d{1,2})[-/](\d{1,2})[-/](\d{4})", str(lead.get("dateOfBirth") or "")
        )
        if found:
            month, day, year = (int(part) for part in found.groups())
            dates.add((year, month, day))
    return frozenset(dates)


_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_MONTH_NAME = "(?:" + "|".join(_MONTHS) + r")[a-z]*\.?"
_DATE_SPELLINGS = re.compile(
    r"(?<![0-9])(?:"
    r"(?P<a>[0-9]{1,4})[-/. ](?P<b>[0-9]{1,2})[-/. ](?P<c>[0-9]{1,4})"  # 1980-03-07, 3/7/1980
    r"|(?P<compact>[0-9]{8})"  # 19800307, 03071980
    rf"|(?P<mon1>{_MONTH_NAME})\s+(?P<d1>[0-9]{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y1>[0-9]{{4}})"
    rf"|(?P<d2>[0-9]{{1,2}})(?:st|nd|rd|th)?\s+(?P<mon2>{_MONTH_NAME}),?\s+(?P<y2>[0-9]{{4}})"
    r")(?![0-9])",
    re.IGNORECASE,
)


def _replace_dates(text: str, dates: frozenset[tuple[int, int, int]]) -> str:
    """Every spelling of a birth date sent: ISO, US, day-first, compact, month names."""

    def readings(match: re.Match[str]) -> set[tuple[int, int, int]]:
        parts = match.groupdict()
        if parts["a"] is not None:
            a, b, c = parts["a"], parts["b"], parts["c"]
            found = set()
            if len(a) == 4:
                found.add((int(a), int(b), int(c)))
            if len(c) in (2, 4):
                found |= {(int(c), int(a), int(b)), (int(c), int(b), int(a))}
            return found
        if parts["compact"] is not None:
            d = parts["compact"]
            return {
                (int(d[:4]), int(d[4:6]), int(d[6:])),
                (int(d[4:]), int(d[:2]), int(d[2:4])),
                (int(d[4:]), int(d[2:4]), int(d[:2])),
            }
        if parts["mon1"] is not None:
            month = _MONTHS.index(parts["mon1"].lower()[:3]) + 1
            return {(int(parts["y1"]), month, int(parts["d1"]))}
        month = _MONTHS.index(parts["mon2"].lower()[:3]) + 1
        return {(int(parts["y2"]), month, int(parts["d2"]))}

    def scrub(match: re.Match[str]) -> str:
        for year, month, day in readings(match):
            for sent_year, sent_month, sent_day in dates:
                same_year = year == sent_year or (year < 100 and year == sent_year % 100)
                if same_year and (month, day) == (sent_month, sent_day):
                    return VALUE_PLACEHOLDER
        return match.group(0)

    return _DATE_SPELLINGS.sub(scrub, text)


def _phone_spellings(phone: str) -> set[str]:
    digits = re.sub(r"\D", "", phone)
    national = digits[1:] if len(digits) == 11 and digits.startswith("1") else digits
    spellings = {digits, national}
    if len(national) == 10:
        area, exchange, line = national[:3], national[3:6], national[6:]
        spellings |= {f"({area}) {exchange}-{line}", f"{area}-{exchange}-{line}"}
        spellings |= {f"{area}.{exchange}.{line}", f"+1 {area} {exchange} {line}"}
    return {s for s in spellings if len(s) >= 7}


def _needles(values: set[str]) -> list[tuple[str, str]]:
    """(value, casefolded value), longest first so a longer match wins."""
    return sorted(((v, v.casefold()) for v in values), key=lambda n: -len(n[0]))


def _replace(text: str, needles: list[tuple[str, str]], placeholder: str) -> str:
    """Replace every needle in `text`, ignoring case; values under 3 characters whole-word only."""
    folded = text.casefold()
    hits = [value for value, folded_value in needles if folded_value in folded]
    if not hits:
        return text
    alternatives = [re.escape(v) if len(v) >= 3 else rf"(?<!\w){re.escape(v)}(?!\w)" for v in hits]
    return re.sub("|".join(alternatives), placeholder, text, flags=re.IGNORECASE)


def _replace_tokens(text: str, needles: list[tuple[str, str]], placeholder: str) -> str:
    """Replace every needle in `text` ignoring case, where it is not part of a longer word.

    An externalId is often a number ("255", "1001"): careCycle's text holds numbers of its
    own ("at most 255 characters", "1001 records") that must stay whole, and an id inside
    a longer run of letters or digits is another value.
    """
    folded = text.casefold()
    hits = [value for value, folded_value in needles if folded_value in folded]
    if not hits:
        return text
    alternatives = [
        ("(?<![^\\W_])" if value[0].isalnum() else "")
        + re.escape(value)
        + ("(?![^\\W_])" if value[-1].isalnum() else "")
        for value in hits
    ]
    return re.sub("|".join(alternatives), placeholder, text, flags=re.IGNORECASE)


@dataclass(frozen=True)
class ClientSettings:
    """How to reach careCycle. The key is kept out of repr()."""

    api_url: str
    api_key: str = field(repr=False)
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    max_requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE
    max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS
    backoff_base: float = 1.0
    backoff_max: float = 60.0

    @property
    def upload_url(self) -> str:
        """Full URL of the upload endpoint."""
        return self.api_url.rstrip("/") + UPLOAD_PATH


@dataclass
class SendRecord:
    """What the requests of one batch may have done, whatever the batch's outcome.

    `maybe_applied`: some request of the batch had an unknown fate (no answer, a connection
    lost after sending, a 5xx): careCycle may store that version of its leads at any time,
    even after a later request was answered.
    """

    maybe_applied: bool = False
    # The batch's HTTP requests, 429 answers and repeated attempts (the run history's
    # per-stream counts: UploadDispatcher.traffic).
    requests: int = 0
    rate_limited: int = 0
    retries: int = 0


@dataclass
class BatchResult:
    """What careCycle did with one batch, by position in the batch."""

    ids: dict[int, str | None] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)
    requests: int = 0
    # Counted as succeeded, but careCycle's answer held errors matching no externalId sent
    # and did not list these leads among its results: they may have been refused.
    unconfirmed: set[int] = field(default_factory=set)
    # careCycle `id`s that were not identifiers (kept as None: not stored, not written).
    unusable_ids: int = 0


class SharedBudget(Protocol):
    """A request budget shared by every run on one account (kept in the sync store)."""

    def reserve_request(self, interval: float) -> float:
        """Reserve the next slot, `interval` after the last one; return seconds to wait."""

    def hold_off(self, seconds: float) -> None:
        """No run of the account starts a request for `seconds`."""


class RequestPacer:
    """Spaces request starts so a key stays under its per-minute budget (thread-safe).

    A 429 holds every sender of the run back for the `retryAfter` careCycle asks (plus a
    random part of one interval, so runs that were told to wait alike do not all start again
    at once) and cuts the pace, at most once per such wait; each success then brings the
    pace back by the same amount per second (additive increase, multiplicative decrease:
    runs on one key without a shared store converge on sharing the limit instead of
    collapsing). With a `shared` budget the slots are reserved there, so concurrent runs on
    one key split the budget between them.
    """

    def __init__(
        self, per_minute: int, stop: threading.Event, shared: SharedBudget | None = None
    ) -> None:
        self._base_interval = 60.0 * PACING_MARGIN / per_minute if per_minute > 0 else 0.0
        self._max_rate = 1.0 / self._base_interval if self._base_interval else 0.0
        self._rate = self._max_rate  # requests a second at the current pace
        self._next_start = 0.0
        self._last_cut = -math.inf
        self._lock = threading.Lock()
        self._stop = stop
        self._shared = shared if per_minute > 0 else None

    @property
    def interval(self) -> float:
        """Seconds between request starts at the current pace."""
        return 1.0 / self._rate if self._rate else 0.0

    def wait_turn(self) -> None:
        """Block until this caller may start a request."""
        if self._shared is not None:
            _sleep(self._shared.reserve_request(self.interval), self._stop)
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + self.interval
        _sleep(start - now, self._stop)

    def hold_off(self, seconds: float) -> None:
        """careCycle answered 429: every sender waits `seconds`; the pace is cut once."""
        with self._lock:
            now = time.monotonic()
            # Requests already on their way when careCycle said so meet the same 429: one
            # cut per wait, not one per request.
            if self._max_rate and now - self._last_cut >= max(seconds, self.interval):
                self._rate = max(self._max_rate * MIN_PACE, self._rate * PACE_CUT)
                self._last_cut = now
            jitter = random.uniform(0.0, self.interval)
            self._next_start = max(self._next_start, now + seconds + jitter)
        if self._shared is not None:
            self._shared.hold_off(seconds)

    def note_success(self) -> None:
        """Recover pace lost to 429s: the full budget again after PACE_RECOVERY_SECONDS."""
        if self._rate < self._max_rate:
            with self._lock:
                step = self._max_rate / (PACE_RECOVERY_SECONDS * self._rate)
                self._rate = min(self._max_rate, self._rate + step)


def _sleep(seconds: float, stop: threading.Event) -> None:
    if seconds > 0 and stop.wait(seconds):
        raise UploadInterrupted("stopped while waiting to send")


class LeadUploadClient:
    """Posts batches of leads to careCycle, riding out 429s and transient failures."""

    def __init__(
        self,
        settings: ClientSettings,
        stop: threading.Event | None = None,
        shared_budget: SharedBudget | None = None,
    ) -> None:
        if problem := check_api_url(settings.api_url):
            raise FatalApiError(f"api_url: {problem}")
        self.settings = settings
        self.stop = stop or threading.Event()
        self.pacer = RequestPacer(settings.max_requests_per_minute, self.stop, shared_budget)
        self._local = threading.local()
        self.requests_sent = 0
        self.unusable_ids = 0  # careCycle ids that were not identifiers, this run
        self._warned_unusable_ids = False
        self.rate_limited = 0  # 429 answers waited out
        self.retries = 0  # attempts repeated after a transient failure
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LeadUploadClient(api_url={self.settings.api_url!r})"

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            if urlsplit(self.settings.api_url).scheme == "http":
                # Plain http goes to loopback only: no proxy from the environment may see the key.
                session.trust_env = False
            session.headers.update(
                {
                    "x-api-key": self.settings.api_key,
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                    "User-Agent": "target-carecycle",
                }
            )
            self._local.session = session
        return session

    def upload(
        self, leads: Sequence[Mapping[str, Any]], record: SendRecord | None = None
    ) -> BatchResult:
        """Deliver one batch; records careCycle refuses are reported, the rest resent.

        A VALIDATION_ERROR answer rejects the whole request: the records it names are
        removed (with careCycle's reasons) and the others are sent again. `record` notes
        whether any request may have been applied without an answer (also when this raises).
        """
        result = BatchResult()
        scrub = Scrubber(self.settings.api_key, leads)
        in_body = list(range(len(leads)))
        sent = record if record is not None else SendRecord()
        while in_body:
            body = [leads[i] for i in in_body]
            answer = self._send_with_retries(body, scrub, sent)
            result.requests += 1
            if answer.get("code") == "VALIDATION_ERROR":
                bad = _validation_failures(answer, body, scrub)
                if not bad:
                    reason = "careCycle VALIDATION_ERROR without record positions"
                    result.failures.update(dict.fromkeys(in_body, reason))
                    return result
                result.failures.update({in_body[pos]: why for pos, why in bad.items()})
                in_body = [p for pos, p in enumerate(in_body) if pos not in bad]
                continue
            _read_success(answer, body, in_body, result, scrub)
            self._warn_about_unusable_ids(result)
            return result
        return result

    def _warn_about_unusable_ids(self, result: BatchResult) -> None:
        """Say once per run that careCycle returned ids that are not identifiers."""
        if not result.unusable_ids:
            return
        with self._count_lock:
            self.unusable_ids += result.unusable_ids
            first = not self._warned_unusable_ids
            self._warned_unusable_ids = True
        if first:
            logger.warning(
                "careCycle returned an id that is not an identifier (letters, digits, - and _, "
                "at most 64 characters): such ids are written as null to the results file and "
                "not stored (said once per run)"
            )

    def _send_with_retries(
        self, body: list[Mapping[str, Any]], scrub: Scrubber, sent: SendRecord
    ) -> dict[str, Any]:
        """POST once per attempt: waits out 429s, retries transient failures with backoff."""
        payload = dumps_json({"records": body})
        delays = _backoff_delays(self.settings)
        rate_waits = 0
        attempt = 0
        while True:
            if self.stop.is_set():
                raise UploadInterrupted("stopped before the batch was sent")
            self.pacer.wait_turn()
            attempt += 1
            try:
                answer = self._post(payload, scrub, sent)
            except _RateLimited as limited:
                rate_waits += 1
                sent.rate_limited += 1
                with self._count_lock:
                    self.rate_limited += 1
                if rate_waits > MAX_RATE_LIMIT_WAITS:
                    raise DeliveryFailed(
                        f"careCycle kept answering 429 after {MAX_RATE_LIMIT_WAITS} waits (another "
                        "run may share the key's budget: stagger the schedules or lower "
                        "max_requests_per_minute)"
                    ) from None
                wait = limited.retry_after if limited.retry_after is not None else next(delays)
                logger.warning("careCycle rate limit hit (429): waiting %.1f s", wait)
                self.pacer.hold_off(wait)
                continue
            except _Transient as problem:
                if problem.maybe_applied:
                    sent.maybe_applied = True
                if attempt > self.settings.max_retries:
                    raise DeliveryFailed(
                        f"careCycle upload failed after {attempt} attempts: {problem}"
                    ) from None
                wait = next(delays)
                sent.retries += 1
                with self._count_lock:
                    self.retries += 1
                logger.warning(
                    "Upload attempt %d failed (%s); retrying in %.1f s", attempt, problem, wait
                )
                _sleep(wait, self.stop)
                continue
            self.pacer.note_success()
            return answer

    def _post(
        self, payload: bytes, scrub: Scrubber, sent: SendRecord | None = None
    ) -> dict[str, Any]:
        url = self.settings.upload_url
        try:
            response = self._session().post(
                url, data=payload, timeout=self.settings.request_timeout, allow_redirects=False
            )
        except requests.exceptions.SSLError as exc:
            raise _tls_failure(exc, url, scrub) from None
        except requests.ConnectTimeout:
            raise _Transient("connection failed (ConnectTimeout)", maybe_applied=False) from None
        except requests.Timeout:
            raise _Transient(f"no answer within {self.settings.request_timeout:g} s") from None
        except requests.RequestException as exc:
            # Only the type: requests' messages quote URLs and header values.
            never_sent = _connection_refused(exc)
            raise _Transient(
                f"connection failed ({type(exc).__name__})", maybe_applied=not never_sent
            ) from None
        with self._count_lock:
            self.requests_sent += 1
        if sent is not None:
            sent.requests += 1
        return _classify(response, url, scrub)


@dataclass(frozen=True)
class KeyCheck:
    """What careCycle said to an upload of nothing, in one line.

    Accepted: what careCycle answered. Not accepted: the cause and what to do.
    """

    accepted: bool
    message: str


# The one request the preflight check sends: careCycle refuses a bad key (401/403) before it
# validates the body, and a valid key's empty upload fails validation (1 to 200 records), so
# nothing can be created.
EMPTY_UPLOAD = b'{"records": []}'


def check_connection(settings: ClientSettings, *, with_key: bool) -> KeyCheck:
    """The preflight check's network part: DNS, TLS, and (`with_key`) the key.

    Sends at most one request and never a lead: `{"records": []}` with the key, or, without
    one (a dry run's config), a HEAD of the base URL that carries no key. Every line is
    scrubbed of the key and names the cause and what to do.
    """
    if problem := check_api_url(settings.api_url):
        return KeyCheck(False, f"api_url: {problem}")
    parts = urlsplit(settings.api_url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    where = f"{parts.scheme}://{host}:{port}"
    client = LeadUploadClient(settings)
    session = client._session()
    if session.trust_env and requests.utils.get_environ_proxies(settings.upload_url):
        pass  # a proxy resolves the name: a local lookup would prove nothing
    else:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            return KeyCheck(False, f"cannot resolve {host} (DNS: {reason}): check api_url and DNS")
    scrub = Scrubber(settings.api_key)
    url = settings.upload_url
    try:
        if with_key:
            response = session.post(
                url, data=EMPTY_UPLOAD, timeout=settings.request_timeout, allow_redirects=False
            )
        else:
            del session.headers["x-api-key"]
            response = session.head(
                settings.api_url, timeout=settings.request_timeout, allow_redirects=False
            )
    except requests.exceptions.SSLError as exc:
        return KeyCheck(False, str(_tls_failure(exc, url, scrub)))
    except requests.Timeout:
        return KeyCheck(
            False,
            f"no answer from {where} within {settings.request_timeout:g} s: check api_url, "
            "the network and any firewall, or try again",
        )
    except requests.RequestException as exc:
        return KeyCheck(
            False,
            f"cannot connect to {where} ({type(exc).__name__}): check api_url, the network "
            "and any proxy",
        )
    finally:
        session.close()
    if not with_key:
        return KeyCheck(True, f"{where} reached over {parts.scheme.upper()}")
    return _key_verdict(response, url, scrub)


def _key_verdict(response: requests.Response, url: str, scrub: Scrubber) -> KeyCheck:
    """Read careCycle's answer to an empty upload (see docs/carecycle-api.md and EMPTY_UPLOAD)."""
    status = response.status_code
    answer = _json_body(response)
    code = scrub(answer.get("code") or "", limit=60)
    if status in (401, 403):
        return KeyCheck(False, f"careCycle refused the API key (HTTP {status}): check api_key")
    if answer.get("code") == "VALIDATION_ERROR":
        return KeyCheck(
            True, f"HTTP {status} VALIDATION_ERROR for an empty upload, a valid key's answer"
        )
    if 200 <= status < 300:
        return KeyCheck(True, f"HTTP {status} for an empty upload")
    if status == 404:
        return KeyCheck(False, f"careCycle answered 404 NOT_FOUND for POST {url}: check api_url")
    if 300 <= status < 400:
        where = scrub(response.headers.get("Location", "?"))
        return KeyCheck(False, f"careCycle redirected POST {url} to {where}: check api_url")
    if status == 429:
        wait = _retry_after(answer, response.headers)
        later = f"in {wait:g} s" if wait is not None else "later"
        return KeyCheck(
            False,
            f"careCycle answered 429 RATE_LIMIT_EXCEEDED: the key was not checked; try again "
            f"{later} (another run may be using the key's budget)",
        )
    text = f"HTTP {status} {code}".strip()
    if status >= 500:
        return KeyCheck(
            False, f"careCycle answered {text} (a server error): the key was not checked; try later"
        )
    message = scrub(answer.get("message") or "", limit=120)
    return KeyCheck(
        False,
        f"careCycle answered {text} {message}".rstrip()
        + ": neither a valid nor an invalid key's answer; check api_url",
    )


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception linked to it (cause, context, urllib3's `reason`, args), once.

    requests wraps urllib3's errors, which wrap the socket's or OpenSSL's: the root cause can
    sit at any depth, and in `args` as well as in `__cause__`.
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        error = todo.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        linked = [error.__cause__, error.__context__, getattr(error, "reason", None), *error.args]
        todo.extend(item for item in linked if isinstance(item, BaseException))


def _connection_refused(exc: BaseException) -> bool:
    """True when the connection was never made (so no request reached careCycle)."""
    return any(isinstance(error, NewConnectionError) for error in _exception_chain(exc))


def _backoff_delays(settings: ClientSettings) -> Iterator[float]:
    """Exponential waits with full jitter, from the `backoff` library's generators."""
    gen = backoff.expo(base=2, factor=settings.backoff_base, max_value=settings.backoff_max)
    for value in gen:
        if value:  # versions differ in what they yield first (None or 0): skip it
            yield backoff.full_jitter(value)


def _tls_failure(exc: requests.exceptions.SSLError, url: str, scrub: Scrubber) -> Exception:
    """Classify a TLS failure: a refused certificate is fatal, anything else transient.

    Retrying cannot fix a certificate; a handshake cut short is like any dropped connection.
    """
    problem = _certificate_problem(exc)
    if problem is None:
        return _Transient("TLS handshake failed (SSLError)")
    host = urlsplit(url).hostname
    return FatalApiError(
        f"TLS certificate of {host} failed verification ({scrub.key_only(problem)}): "
        "stopping; check api_url or the server's certificate"
    )


def _certificate_problem(exc: BaseException) -> str | None:
    """OpenSSL's reason for refusing the certificate, found in the exception chain."""
    for error in _exception_chain(exc):
        if isinstance(error, ssl.SSLCertVerificationError):
            return str(error.verify_message or error.reason or "certificate verify failed")
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return "certificate verify failed"
    return None


def _classify(response: requests.Response, url: str, scrub: Scrubber) -> dict[str, Any]:
    """Return the JSON body of a usable answer (2xx or VALIDATION_ERROR), else raise.

    Every piece of the answer that reaches a message (code, message, Location) is scrubbed.
    """
    status = response.status_code
    answer = _json_body(response)
    code = answer.get("code")
    if code == "VALIDATION_ERROR" or 200 <= status < 300:
        return answer
    if status == 429:
        raise _RateLimited(_retry_after(answer, response.headers))
    code_text = f"HTTP {status} {scrub(code or '', limit=60)}".strip()
    if status >= 500:
        raise _Transient(code_text)
    if status in (401, 403):
        raise FatalApiError(f"careCycle refused the API key (HTTP {status}): check api_key")
    if status == 404:
        raise FatalApiError(f"careCycle answered 404 NOT_FOUND for POST {url}: check api_url")
    if 300 <= status < 400:
        where = scrub(response.headers.get("Location", "?"))
        raise FatalApiError(f"careCycle redirected POST {url} to {where}: check api_url")
    message = scrub(answer.get("message") or "")
    raise FatalApiError(f"careCycle refused the upload ({code_text}): {message}".strip())


def _json_body(response: requests.Response) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _retry_after(answer: Mapping[str, Any], headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from the body's `retryAfter` or the `Retry-After` header."""
    for raw in (answer.get("retryAfter"), headers.get("Retry-After")):
        try:
            seconds = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return min(seconds, 600.0)
    return None


def _validation_failures(
    answer: Mapping[str, Any], body: list[Mapping[str, Any]], scrub: Scrubber
) -> dict[int, str]:
    """Map positions named by a VALIDATION_ERROR answer to careCycle's reasons."""
    messages: dict[int, list[str]] = {}
    for error in _dicts(answer.get("errors")):
        path = error.get("path")
        if isinstance(path, list) and len(path) >= 2 and isinstance(path[1], int):
            where = scrub(".".join(str(p) for p in path[2:]), limit=60) or "record"
            text = scrub(error.get("message") or error.get("code") or "invalid")
            messages.setdefault(path[1], []).append(f"{where}: {text}")
    positions = {
        item["index"]
        for item in _dicts(answer.get("failedRecords"))
        if isinstance(item.get("index"), int) and 0 <= item["index"] < len(body)
    }
    positions |= {pos for pos in messages if 0 <= pos < len(body)}
    return {
        pos: "careCycle validation: " + "; ".join(messages.get(pos, ["record refused"]))
        for pos in positions
    }


def _read_success(
    answer: Mapping[str, Any],
    body: list[Mapping[str, Any]],
    in_body: list[int],
    result: BatchResult,
    scrub: Scrubber,
) -> None:
    """Record a 200: `errors` items (matched by externalId) failed, every other lead succeeded.

    `in_body[pos]` is the batch index of the lead at position `pos` of the request body.
    """
    position_by_id = {lead.get("externalId"): pos for pos, lead in enumerate(body)}
    unmatched = 0
    for error in _dicts(answer.get("errors")):
        pos = position_by_id.get(error.get("externalId"))
        if pos is None:
            unmatched += 1
            continue
        text = scrub(error.get("error") or "refused")
        result.failures[in_body[pos]] = f"careCycle: {text}"
    failed = answer.get("failed")
    matched = sum(1 for pos in range(len(body)) if in_body[pos] in result.failures)
    if isinstance(failed, int) and not isinstance(failed, bool) and failed > matched:
        unmatched = max(unmatched, failed - matched)
    if unmatched:
        logger.warning(
            "careCycle reported %d errors that match no externalId sent: leads it did not "
            "list as results are not remembered in the sync store, so they are sent again",
            unmatched,
        )
    ids = {item.get("externalId"): item.get("id") for item in _dicts(answer.get("results"))}
    for pos, lead in enumerate(body):
        index = in_body[pos]
        if index not in result.failures:
            found = ids.get(lead.get("externalId"))
            result.ids[index] = usable_id(found, scrub, lead)
            if found is not None and result.ids[index] is None:
                result.unusable_ids += 1
            if unmatched and lead.get("externalId") not in ids:
                result.unconfirmed.add(index)


_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,64}")


def usable_id(value: Any, scrub: Scrubber, lead: Mapping[str, Any]) -> str | None:
    """careCycle's `id` for `lead` when it looks like an identifier, else None.

    Letters, digits, `-` and `_`, at most 64 characters (a UUID, a number, `cus_...`), holding
    neither the key nor a personal value of its lead (a name as one of its `-`/`_` parts, a
    longer value anywhere, the phone's digits, the birth date): anything else is not stored
    in the sync store or written to the results file.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    if not _IDENTIFIER.fullmatch(text) or scrub.holds_key(text):
        return None
    folded = text.casefold()
    joined = folded.replace("-", "").replace("_", "")  # 312-847-1928 and 1980_03_07 too
    digits = re.sub(r"[^0-9]", "", str(lead.get("phoneNumber") or ""))
    national = digits[1:] if len(digits) == 11 and digits.startswith("1") else digits
    if len(national) == 10 and (national in joined or national[3:] in joined):
        return None
    born = _BIRTH_DATE.fullmatch(str(lead.get("dateOfBirth") or ""))
    if born:
        month, day, year = born.group(1).zfill(2), born.group(2).zfill(2), born.group(3)
        if any(
            date in joined for date in (year + month + day, month + day + year, day + month + year)
        ):
            return None
    if _UUID.fullmatch(text):
        return text  # hex in fixed groups: no room for a name or an address
    parts = set(folded.replace("_", "-").split("-"))
    for _name, sent in sent_personal_values(lead, scrub.personal_fields):
        if len(sent) < MIN_SCRUBBED_LENGTH:
            continue
        sent = sent.strip().casefold()
        if sent in parts or (len(sent) >= 6 and sent in folded):
            return None
    return text


_BIRTH_DATE = re.compile(r"(\d{1,2})[-/](\d{1,2})[-/](\d{4})")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


@dataclass
class _Job:
    future: Future[BatchResult]
    external_ids: frozenset[str]
    on_done: Callable[[BatchResult], None]
    on_lost: Callable[[], None]


AnswerHook = Callable[[BatchResult | None, bool], None]
"""Runs on the upload thread as soon as a batch is finished: (result or None when it was not
delivered, whether any request may have been applied without an answer). Must not raise."""


class UploadDispatcher:
    """Keeps up to `max_concurrent_requests` batches in flight inside the pacing budget.

    Results are handed back on the caller's thread (`make_room`, `wait_all`, `settle`), so
    outcome bookkeeping needs no locks. Ordering: batches are handed over in input order for
    every externalId (the sinks see to that, see `run_context.LeadsWaiting`), and a batch sharing
    an externalId with an earlier one never starts before that one is finished, so the newer
    version of a lead always lands last. Batches that share no externalId overlap freely.

    Handing over a batch is two calls: `make_room(ids)`, then `enqueue(...)`. Between them
    (and only there) every earlier batch sharing an externalId with the new one is finished,
    its results handed back: the single point to consult anything that depends on earlier
    versions having landed (say, a store of what careCycle already holds).
    """

    def __init__(
        self, client: LeadUploadClient, guard: AbstractContextManager[Any] | None = None
    ) -> None:
        self.client = client
        self._limit = max(1, client.settings.max_concurrent_requests)
        self._pool = ThreadPoolExecutor(self._limit, thread_name_prefix="carecycle-upload")
        self._jobs: list[_Job] = []
        # Held while jobs change hands, so a stop signal never falls between a batch leaving
        # one owner and reaching the next (it would then be counted twice or not at all).
        self._guard = guard or nullcontext()
        # Per stream (as `enqueue` names it): the requests, 429s and retries of its batches.
        self.traffic: dict[str, SendRecord] = {}
        self._traffic_lock = threading.Lock()

    def make_room(self, external_ids: frozenset[str]) -> None:
        """Block until a batch with these IDs may be queued (limit, ID conflicts).

        On return, every batch enqueued earlier that shares an externalId with `external_ids`
        is finished and its `on_done`/`on_lost` has run; that stays true until the next
        `enqueue` (results are handed back only on the caller's thread). Interruptible:
        nothing changes hands while it waits, except through `_finish`.
        """
        for job in [j for j in self._jobs if j.external_ids & external_ids]:
            self._finish(job)
        self._reap(block_until_below=self._limit)

    def enqueue(
        self,
        leads: Sequence[Mapping[str, Any]],
        external_ids: frozenset[str],
        on_done: Callable[[BatchResult], None],
        on_lost: Callable[[], None],
        on_answer: AnswerHook | None = None,
        stream: str = "",
    ) -> None:
        """Start a batch now (call `make_room` first; call under the caller's guard).

        `on_done` gets the batch's result; `on_lost` runs instead when it was not delivered
        (both on the caller's thread, when it next collects results). `on_answer` runs on
        the upload thread the moment the batch is finished, whatever the caller is doing.
        """
        future = self._pool.submit(self._deliver, leads, on_answer, stream)
        self._jobs.append(_Job(future, external_ids, on_done, on_lost))

    def _deliver(
        self, leads: Sequence[Mapping[str, Any]], on_answer: AnswerHook | None, stream: str = ""
    ) -> BatchResult:
        record = SendRecord()
        try:
            result = self.client.upload(leads, record)
        except BaseException:
            if on_answer is not None:
                on_answer(None, record.maybe_applied)
            raise
        finally:
            self._count_traffic(stream, record)
        if on_answer is not None:
            on_answer(result, record.maybe_applied)
        return result

    def _count_traffic(self, stream: str, record: SendRecord) -> None:
        with self._traffic_lock:
            total = self.traffic.setdefault(stream, SendRecord())
            total.requests += record.requests
            total.rate_limited += record.rate_limited
            total.retries += record.retries

    def wait_all(self) -> None:
        """Block until every submitted batch is delivered (or raise its error)."""
        self._reap(block_until_below=1)

    @property
    def in_flight(self) -> int:
        """Batches submitted and not yet handed back."""
        return len(self._jobs)

    def _reap(self, block_until_below: int) -> None:
        """Hand back finished batches; block until fewer than `block_until_below` remain."""
        for job in [j for j in self._jobs if j.future.done()]:
            self._finish(job)
        while len(self._jobs) >= block_until_below:
            wait([j.future for j in self._jobs], return_when=FIRST_COMPLETED)
            for job in [j for j in self._jobs if j.future.done()]:
                self._finish(job)

    def settle(self) -> None:
        """After a stop: hand back every batch still in flight, delivered or lost."""
        for job in list(self._jobs):
            try:
                self._finish(job)
            except Exception:
                continue

    def _finish(self, job: _Job) -> None:
        error = job.future.exception()  # waits; a signal raised here leaves the job queued
        with self._guard:
            self._jobs.remove(job)
            if error is None:
                job.on_done(job.future.result())
                return
            job.on_lost()
        raise error

    def close(self) -> None:
        """Stop the worker threads (waits for requests already on the wire)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


__all__ = [
    "BatchResult",
    "CareCycleError",
    "ClientSettings",
    "DeliveryFailed",
    "FatalApiError",
    "KeyCheck",
    "LeadUploadClient",
    "RequestPacer",
    "Scrubber",
    "SendRecord",
    "SharedBudget",
    "UploadDispatcher",
    "UploadInterrupted",
    "check_api_url",
    "check_connection",
    "is_loopback_host",
]
