"""``carecycle-sandbox``: run the local careCycle lead-upload sandbox until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from target_carecycle.sandbox.server import (
    DEFAULT_API_KEY,
    DEFAULT_RATE_LIMIT,
    DEFAULT_SOURCE_ID,
    FAULT_KINDS,
    SandboxConfig,
    SandboxHTTPServer,
)


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="carecycle-sandbox",
        description="Local stand-in for careCycle's POST /v2/leads/upload (no real calls/texts).",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    add("--port", type=int, default=8765, help="port; 0 picks a free one (default 8765)")
    add("--api-key", action="append", dest="api_keys", metavar="KEY",
        help=f"accepted API key, repeatable (default {DEFAULT_API_KEY})")  # fmt: skip
    add("--read-only-key", action="append", dest="read_only_keys", default=[], metavar="KEY",
        help="key that authenticates but gets 403 on upload, repeatable")  # fmt: skip
    add("--source", action="append", dest="sources", metavar="ID",
        help=f"existing source ID, repeatable (default {DEFAULT_SOURCE_ID})")  # fmt: skip
    add("--rate-limit", type=int, default=DEFAULT_RATE_LIMIT, metavar="N",
        help="requests per minute per key, burst N; 0 turns it off (default 60)")  # fmt: skip
    add("--rate-burst", type=int, metavar="N",
        help="bucket size: requests allowed at once (default: the rate limit)")  # fmt: skip
    add("--latency", type=float, default=0.0, metavar="SECONDS",
        help="mean extra response time, randomised +-50%% (default 0)")  # fmt: skip
    add("--fault-every", type=int, default=0, metavar="N",
        help="inject --fault into every Nth upload request (default 0: never)")  # fmt: skip
    add("--fault", choices=FAULT_KINDS,
        help="500, 503, drop (close unanswered), stall or hold (process late)")  # fmt: skip
    add("--stall-seconds", type=float, default=30.0, metavar="SECONDS",
        help="how long a stall (or hold) fault waits before processing (default 30)")  # fmt: skip
    add("--ledger", metavar="FILE", help="append every stored lead to FILE as a JSON line")
    add("--verbose", action="store_true", help="one stderr line per request (no lead data)")
    return parser


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """Turn parsed arguments into a config (raises ValueError on inconsistent flags)."""
    return SandboxConfig(
        api_keys=tuple(args.api_keys or (DEFAULT_API_KEY,)),
        read_only_keys=tuple(args.read_only_keys),
        sources=tuple(args.sources or (DEFAULT_SOURCE_ID,)),
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        latency=args.latency,
        fault_every=args.fault_every,
        fault=args.fault,
        stall_seconds=args.stall_seconds,
        ledger=args.ledger,
        host=args.host,
        port=args.port,
        verbose=args.verbose,
    )


def _banner(server: SandboxHTTPServer) -> str:
    config = server.app.config
    parts = [f"api keys: {', '.join(config.api_keys)}"]
    if config.read_only_keys:
        parts.append(f"read-only keys: {', '.join(config.read_only_keys)}")
    parts.append(f"sources: {', '.join(config.sources)}")
    return "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox; print its URL (first line), then its keys and sources."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        server = SandboxHTTPServer(config)
    except OSError as exc:
        print(
            f"carecycle-sandbox: cannot listen on {config.host}:{config.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    print(server.url, flush=True)
    print(_banner(server), flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    thread.join()
    return 0
