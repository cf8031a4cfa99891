"""A local HTTP server that behaves like careCycle's ``POST /v2/leads/upload``.

It follows the contract in docs/carecycle-api.md.

Standard library only. :class:`SandboxApp` holds the logic (auth, rate limit, faults,
validation, upsert, statistics) behind one lock that is never held while sleeping;
:class:`SandboxHandler` only moves bytes between HTTP/1.1 keep-alive connections and the app.
"""

from __future__ import annotations

import json
import math
import random
import socket
import socketserver
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from target_carecycle.sandbox.validation import BadRequest, parse_body, to_e164, validate_records

DEFAULT_API_KEY = "cc_sandbox_demo_key"
DEFAULT_SOURCE_ID = "sandbox-source"
DEFAULT_RATE_LIMIT = 60
UPLOAD_PATH = "/v2/leads/upload"
SANDBOX_PREFIX = "/__sandbox/"
FAULT_KINDS = ("500", "503", "drop", "stall", "hold")
MAX_BODY_BYTES = 32 * 1024 * 1024


def _as_tuple(values: Iterable[str] | str) -> tuple[str, ...]:
    return (values,) if isinstance(values, str) else tuple(values)


@dataclass(frozen=True)
class SandboxConfig:
    """How a sandbox behaves; the defaults are the ``carecycle-sandbox`` CLI defaults."""

    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    read_only_keys: tuple[str, ...] = ()
    sources: tuple[str, ...] = (DEFAULT_SOURCE_ID,)
    rate_limit: int = DEFAULT_RATE_LIMIT
    rate_burst: int | None = None  # bucket size; None: the same as rate_limit
    latency: float = 0.0
    fault_every: int = 0
    fault: str | None = None
    stall_seconds: float = 30.0
    ledger: str | Path | None = None
    host: str = "127.0.0.1"
    port: int = 0
    verbose: bool = False

    def __post_init__(self) -> None:
        for name in ("api_keys", "read_only_keys", "sources"):
            object.__setattr__(self, name, _as_tuple(getattr(self, name)))
        if self.fault is not None:
            object.__setattr__(self, "fault", str(self.fault))
        self._check()

    def _check(self) -> None:
        if not self.api_keys:
            raise ValueError("at least one API key is required")
        if set(self.api_keys) & set(self.read_only_keys):
            raise ValueError("a key cannot be both read-write and read-only")
        if self.rate_limit < 0 or self.latency < 0 or self.stall_seconds < 0:
            raise ValueError("rate_limit, latency and stall_seconds must not be negative")
        if self.rate_burst is not None and self.rate_burst < 1:
            raise ValueError("rate_burst must be at least 1")
        if self.fault_every < 0:
            raise ValueError("fault_every must not be negative")
        if self.fault is not None and self.fault not in FAULT_KINDS:
            raise ValueError(f"fault must be one of {', '.join(FAULT_KINDS)}")
        if (self.fault_every > 0) != (self.fault is not None):
            raise ValueError("fault_every and fault must be given together")


@dataclass(frozen=True)
class Request:
    """An HTTP request as the app sees it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Response:
    """What to answer; ``drop`` closes the connection without answering."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    records: int | None = None


def error_response(status: int, code: str, message: str, **extra: Any) -> Response:
    """Build careCycle's ``{"message", "code", ...}`` error answer."""
    return Response(status, {"message": message, "code": code, **extra})


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TokenBucket:
    """A bucket of ``burst`` (default ``per_minute``) tokens, refilled at ``per_minute / 60``/s."""

    def __init__(self, per_minute: int, now: float, burst: int | None = None) -> None:
        self.capacity = float(per_minute if burst is None else burst)
        self.rate = per_minute / 60.0
        self.tokens = self.capacity
        self.updated = now

    def take(self, now: float) -> float:
        """Take a token; return 0 on success, else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class CustomerStore:
    """Customers in insertion order, matched by externalId when given, else by E.164 phone."""

    def __init__(self) -> None:
        self.customers: dict[str, dict[str, Any]] = {}
        self._by_external: dict[str, str] = {}
        self._by_phone: dict[str, str] = {}

    def find(self, external_id: str | None, phone: str) -> dict[str, Any] | None:
        """Return the customer a lead matches, if any."""
        if external_id is not None:
            customer_id = self._by_external.get(external_id)
            return None if customer_id is None else self.customers[customer_id]
        customer_id = self._by_phone.get(phone)
        if customer_id is None:
            return None
        if self.customers[customer_id]["phoneNumber"] == phone:
            return self.customers[customer_id]
        del self._by_phone[phone]  # that customer's phone changed: does anyone else have it?
        for customer in self.customers.values():
            if customer["phoneNumber"] == phone:
                self._by_phone[phone] = customer["id"]
                return customer
        return None

    def upsert(self, record: dict[str, Any], now: str) -> tuple[dict[str, Any], bool]:
        """Create or update the customer for a valid lead; return (customer, created)."""
        fields = customer_fields(record)
        customer = self.find(record.get("externalId"), fields["phoneNumber"])
        created = customer is None
        if customer is None:
            customer = {"id": str(uuid.uuid4()), "status": "Lead", "createdAt": now}
            self.customers[customer["id"]] = customer
            if record.get("externalId") is not None:
                self._by_external[record["externalId"]] = customer["id"]
        customer.update(fields)
        customer["updatedAt"] = now
        self._by_phone.setdefault(fields["phoneNumber"], customer["id"])
        return customer, created


def customer_fields(record: dict[str, Any]) -> dict[str, Any]:
    """Map an upload record to customer fields (E.164 phone, ``hasMedicaid``)."""
    fields = {("hasMedicaid" if k == "medicaid" else k): v for k, v in record.items()}
    fields["phoneNumber"] = to_e164(record["phoneNumber"])
    return fields


class SandboxApp:
    """The sandbox's behaviour, independent of HTTP plumbing; thread-safe."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._sources = frozenset(config.sources)
        self._read_only = frozenset(config.read_only_keys)
        self._known_keys = frozenset(config.api_keys) | self._read_only
        # The fault schedule: from the config, changeable while serving (set_faults).
        self._fault = config.fault
        self._fault_every = config.fault_every
        self._faults_left: int | None = None  # None: no limit
        self._stall_seconds = config.stall_seconds
        self._release = threading.Event()  # ends every `hold` fault waiting now
        self._ledger: IO[str] | None = None
        if config.ledger is not None:
            self._ledger = open(config.ledger, "a", encoding="utf-8")  # noqa: SIM115
        self._reset_state()

    def _reset_state(self) -> None:
        self.store = CustomerStore()
        self._buckets: dict[str, TokenBucket] = {}
        self._statuses: dict[int, int] = {}
        self._upload_requests = 0
        self._dropped = 0
        self._batch_sizes: list[int] = []
        self._counts = {"leads_received": 0, "created": 0, "updated": 0, "failed": 0}

    def close(self) -> None:
        """Close the ledger file."""
        with self._lock:
            if self._ledger is not None:
                self._ledger.close()
                self._ledger = None

    def reset(self) -> None:
        """Forget all customers, counters, rate-limit buckets and the fault schedule."""
        with self._lock:
            self._reset_state()

    def set_faults(
        self,
        fault: str | None,
        every: int = 0,
        stall_seconds: float | None = None,
        times: int | None = None,
    ) -> None:
        """Change the fault schedule while serving (in-process use: tests, benchmarks).

        Counting goes on from the requests already seen: with `every` N, the next fault hits
        the next upload request whose number is a multiple of N; after `times` faults (None:
        no limit) there are no more. `None`/0 turns faults off.
        """
        SandboxConfig(  # the same checks as the config's
            fault=fault,
            fault_every=every,
            stall_seconds=self._stall_seconds if stall_seconds is None else stall_seconds,
        )
        with self._lock:
            self._fault, self._fault_every, self._faults_left = fault, every, times
            if stall_seconds is not None:
                self._stall_seconds = stall_seconds
            if fault == "hold":
                self._release = threading.Event()

    def release_held(self) -> None:
        """Let every request a `hold` fault keeps waiting be processed and answered now."""
        with self._lock:
            release = self._release
        release.set()

    def stats(self) -> dict[str, Any]:
        """Return the ``GET /__sandbox/stats`` document."""
        with self._lock:
            return {
                "requests": {str(k): v for k, v in sorted(self._statuses.items())},
                "upload_requests": self._upload_requests,
                "dropped": self._dropped,
                "batch_sizes": list(self._batch_sizes),
                **self._counts,
                "customers": len(self.store.customers),
            }

    def customers(self) -> list[dict[str, Any]]:
        """Return copies of all stored customers, in insertion order."""
        with self._lock:
            return [dict(c) for c in self.store.customers.values()]

    def note_status(self, status: int) -> None:
        """Count one answered careCycle-namespace request by status."""
        with self._lock:
            self._statuses[status] = self._statuses.get(status, 0) + 1

    def handle(self, request: Request) -> Response:
        """Answer one request; never raises."""
        if request.path.startswith(SANDBOX_PREFIX):
            return self._introspect(request)
        try:
            response = self._serve(request)
        except Exception as exc:
            self._log_exception(request, exc)
            response = error_response(500, "INTERNAL_ERROR", "Internal server error")
        if not response.drop:
            self.note_status(response.status)
            self._sleep_latency()
        return response

    def _introspect(self, request: Request) -> Response:
        route = (request.method, request.path)
        if route == ("GET", SANDBOX_PREFIX + "stats"):
            return Response(200, self.stats())
        if route == ("GET", SANDBOX_PREFIX + "customers"):
            return Response(200, self.customers())
        if route == ("POST", SANDBOX_PREFIX + "reset"):
            self.reset()
            return Response(200, {"reset": True})
        return error_response(404, "NOT_FOUND", f"Cannot {request.method} {request.path}")

    def _serve(self, request: Request) -> Response:
        if (request.method, request.path) != ("POST", UPLOAD_PATH):
            return error_response(404, "NOT_FOUND", f"Cannot {request.method} {request.path}")
        fault = self._next_fault()
        if fault == "drop":
            return Response(0, drop=True)
        if fault == "500":
            return error_response(500, "INTERNAL_ERROR", "Internal server error (injected)")
        if fault == "503":
            return error_response(503, "SERVICE_UNAVAILABLE", "Service unavailable (injected)")
        if fault == "stall":
            # The request is processed (its leads stored) only when the stall ends: if the
            # client gave up meanwhile, careCycle applies a request after its timeout.
            time.sleep(self._stall_seconds)
        if fault == "hold":  # the same, until release_held() (at most stall_seconds)
            with self._lock:
                release = self._release
            release.wait(self._stall_seconds)
        return self._upload(request)

    def _next_fault(self) -> str | None:
        """Count an upload request; return the fault it must suffer, if any."""
        with self._lock:
            self._upload_requests += 1
            every = self._fault_every
            if every <= 0 or self._upload_requests % every or self._faults_left == 0:
                return None
            if self._faults_left is not None:
                self._faults_left -= 1
            if self._fault == "drop":
                self._dropped += 1
            return self._fault

    def _upload(self, request: Request) -> Response:
        key = request.headers.get("x-api-key")
        if key is None or key not in self._known_keys:
            return error_response(401, "UNAUTHORIZED", "Missing or invalid API key")
        if key in self._read_only:
            return error_response(403, "FORBIDDEN", "This API key may not upload leads")
        wait = self._take_token(key)
        if wait > 0:
            return self._too_many(wait)
        try:
            records = parse_body(request.body)
        except BadRequest as exc:
            return error_response(400, "BAD_REQUEST", str(exc))
        errors, failed = validate_records(records)
        if errors:
            body = [e.to_json() for e in errors]
            response = error_response(
                422, "VALIDATION_ERROR", "Validation failed", errors=body, failedRecords=failed
            )
            response.records = len(records)
            return response
        return self._store(records)

    def _take_token(self, key: str) -> float:
        if self.config.rate_limit <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                config = self.config
                bucket = TokenBucket(config.rate_limit, now, config.rate_burst)
                self._buckets[key] = bucket
            return bucket.take(now)

    @staticmethod
    def _too_many(wait: float) -> Response:
        retry_after = max(1, math.ceil(wait))
        message = f"Rate limit exceeded, retry after {retry_after} seconds"
        response = error_response(429, "RATE_LIMIT_EXCEEDED", message, retryAfter=retry_after)
        response.headers["Retry-After"] = str(retry_after)
        return response

    def _store(self, records: list[dict[str, Any]]) -> Response:
        """Upsert a validated batch; unknown sources are per-record business errors."""
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        with self._lock:
            now = _now_iso()
            for record in records:
                source = record.get("sourceId")
                if source is not None and source not in self._sources:
                    errors.append(_source_error(record, source))
                    continue
                customer, created = self.store.upsert(record, now)
                self._counts["created" if created else "updated"] += 1
                results.append(dict(customer))
                self._write_ledger(record)
            self._flush_ledger()
            self._batch_sizes.append(len(records))
            self._counts["leads_received"] += len(records)
            self._counts["failed"] += len(errors)
        body = {"succeeded": len(results), "failed": len(errors), "results": results}
        return Response(200, {**body, "errors": errors}, records=len(records))

    def _write_ledger(self, record: dict[str, Any]) -> None:
        if self._ledger is not None:
            self._ledger.write(json.dumps(record, ensure_ascii=False) + "\n")

    def _flush_ledger(self) -> None:
        if self._ledger is not None:
            self._ledger.flush()

    def _sleep_latency(self) -> None:
        mean = self.config.latency
        if mean > 0:
            time.sleep(random.uniform(0.5 * mean, 1.5 * mean))

    def _log_exception(self, request: Request, exc: Exception) -> None:
        """Report an unexpected error without the exception text (it may hold lead data)."""
        print(
            f"carecycle-sandbox: internal error ({type(exc).__name__}) "
            f"on {request.method} {request.path}",
            file=sys.stderr,
        )
        if self.config.verbose:
            print("".join(traceback.format_tb(exc.__traceback__)), end="", file=sys.stderr)


def _source_error(record: dict[str, Any], source: Any) -> dict[str, Any]:
    return {
        "id": None,
        "externalId": record.get("externalId"),
        "error": f"Source not found: {source}",
    }


def _json_bytes(body: Any) -> bytes:
    return b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")


class SandboxHandler(BaseHTTPRequestHandler):
    """Move requests between HTTP/1.1 keep-alive connections and :class:`SandboxApp`."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: avoid delayed-ACK stalls
    server_version = "carecycle-sandbox"
    timeout = 120  # an idle keep-alive connection is closed after this many seconds
    server: SandboxHTTPServer

    def version_string(self) -> str:
        """Name the server in the ``Server`` header."""
        return self.server_version

    def __getattr__(self, name: str) -> Any:
        """Route every HTTP method (``do_GET``, ``do_FOO``...) to one dispatcher."""
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def setup(self) -> None:
        """Register the connection so that closing the server can end it."""
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        """Unregister the connection."""
        self.server.track(self.connection, add=False)
        super().finish()

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = urlsplit(self.path).path
        response = self.server.app.handle(Request(self.command, path, headers, body))
        if response.drop:
            self.close_connection = True
            self._log(0, None)
            return
        self._send(response)

    def _read_body(self) -> bytes | None:
        """Read the body by Content-Length; answer 400 and return None when impossible."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._refuse("Chunked bodies are not supported: send Content-Length")
            return None
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self._refuse("Invalid or too large Content-Length")
            return None
        return self.rfile.read(length)

    def _refuse(self, message: str) -> None:
        self.server.app.note_status(400)
        response = error_response(400, "BAD_REQUEST", message)
        response.headers["Connection"] = "close"
        self.close_connection = True
        self._send(response)

    def _send(self, response: Response) -> None:
        payload = _json_bytes(response.body)
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self._log(response.status, response.records)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer an unparseable request with careCycle-style JSON instead of HTML."""
        self.close_connection = True
        name = "NOT_FOUND" if code == 404 else "BAD_REQUEST" if code < 500 else "INTERNAL_ERROR"
        response = error_response(code, name, message or "Bad request")
        response.headers["Connection"] = "close"
        self._send(response)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Keep the default access log quiet (see ``_log``)."""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's own messages."""

    def _log(self, status: int, records: int | None) -> None:
        if self.server.app.config.verbose:
            shown = "dropped" if status == 0 else str(status)
            count = "-" if records is None else str(records)
            path = urlsplit(getattr(self, "path", "") or "").path
            line = f"{self.command} {path} {shown} records={count}"
            print(line, file=sys.stderr, flush=True)


class SandboxHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server carrying one :class:`SandboxApp`."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, config: SandboxConfig) -> None:
        self.app = SandboxApp(config)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        try:
            super().__init__((config.host, config.port), SandboxHandler)
        except BaseException:
            self.app.close()
            raise

    def server_bind(self) -> None:
        """Bind without the reverse DNS lookup http.server does (it can be slow)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def url(self) -> str:
        """Return the base URL, e.g. ``http://127.0.0.1:8765``."""
        host = self.server_name
        return (
            f"http://[{host}]:{self.server_port}"
            if ":" in host
            else f"http://{host}:{self.server_port}"
        )

    def track(self, connection: socket.socket, add: bool) -> None:
        """Add or remove an open client connection."""
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that went away; report other errors briefly."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # reset, broken pipe, timeout: the client went away
            return
        print(f"carecycle-sandbox: connection error ({type(exc).__name__})", file=sys.stderr)

    def server_close(self) -> None:
        """Stop listening, end open keep-alive connections and close the ledger."""
        super().server_close()
        with self._connections_lock:
            for connection in self._connections:
                with suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        self.app.close()


class RunningSandbox:
    """A sandbox serving in a background thread."""

    def __init__(self, server: SandboxHTTPServer, thread: threading.Thread) -> None:
        self.server = server
        self.app = server.app
        self._thread = thread

    @property
    def url(self) -> str:
        """Return the base URL, ``http://127.0.0.1:PORT``."""
        return self.server.url

    @property
    def api_key(self) -> str:
        """Return the first accepted API key."""
        return self.app.config.api_keys[0]

    def stats(self) -> dict[str, Any]:
        """Return the same document as ``GET /__sandbox/stats``."""
        return self.app.stats()

    def customers(self) -> list[dict[str, Any]]:
        """Return all stored customer records, in insertion order."""
        return self.app.customers()

    def reset(self) -> None:
        """Clear customers, counters, rate-limit buckets and the fault schedule."""
        self.app.reset()

    def set_faults(
        self,
        fault: str | None,
        every: int = 0,
        stall_seconds: float | None = None,
        times: int | None = None,
    ) -> None:
        """Change the fault schedule while serving (see SandboxApp.set_faults)."""
        self.app.set_faults(fault, every, stall_seconds, times)

    def release_held(self) -> None:
        """Process and answer the requests a `hold` fault keeps waiting."""
        self.app.release_held()

    def close(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def start_sandbox(config: SandboxConfig | None = None) -> RunningSandbox:
    """Start a sandbox in a daemon thread; call ``close()`` on the result when done."""
    server = SandboxHTTPServer(config or SandboxConfig())
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="carecycle-sandbox",
        daemon=True,
    )
    thread.start()
    return RunningSandbox(server, thread)


@contextmanager
def running_sandbox(config: SandboxConfig | None = None) -> Iterator[RunningSandbox]:
    """Run a sandbox (default: the CLI defaults on 127.0.0.1, a free port) for a ``with`` block."""
    sandbox = start_sandbox(config)
    try:
        yield sandbox
    finally:
        sandbox.close()
