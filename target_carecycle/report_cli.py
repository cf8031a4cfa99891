"""`carecycle-report`: the run history in the sync store as text, JSON, CSV or one HTML page.

    carecycle-report [--config FILE|ENV ...] [--format text|json|html|csv] [--out FILE]
                     [--runs N]

Reads the same config files and TARGET_CARECYCLE_* variables as the target, by the same
rules (`--config` repeatable, `--config ENV` to combine the environment with the files), to
find the store (`sync_store`) and the account (`api_url` and `api_key`: only that account's
runs; without a key, every account's). Opens the store read-only: it never creates or changes
one, and refuses an --out that is the store or any SQLite database. Any problem is one line
on stderr and exit 1: never a traceback, a password or the key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from target_carecycle.history import History, read_history
from target_carecycle.printable import printable
from target_carecycle.report import (
    refused_in_run,
    render_csv,
    render_html,
    render_json,
    render_text,
    repeated_refusals,
)
from target_carecycle.setting_sources import resolve_settings
from target_carecycle.settings import CONFIG_SCHEMA, HistorySettings, unknown_setting_lines
from target_carecycle.store import STORE_OFF, Account, StoreInterrupted, SyncStore, SyncStoreError

PROGRAM = "carecycle-report"
FORMATS = ("text", "json", "html", "csv")
DEFAULT_RUNS = {"text": 10, "json": 30, "html": 30, "csv": 1}
MAX_RUNS = 10_000
ENV_CONFIG = "ENV"  # `--config ENV`: combine the environment with the config files
SQLITE_HEADER = b"SQLite format 3\x00"
STORE_COMPANIONS = ("", "-wal", "-shm", "-journal")


class ReportError(Exception):
    """Why no report can be written (one line, no secret)."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (argparse exits 2 with its usage on a bad one)."""
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description=(
            "Report the runs target-carecycle recorded in its sync store (docs/history.md)."
        ),
    )
    parser.add_argument(
        "--config",
        dest="config_paths",
        action="append",
        default=[],
        help=(
            "the target's config file; repeatable, later files win; ENV combines the "
            "TARGET_CARECYCLE_* variables with the files, as for the target"
        ),
    )
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("--out", help="write the report to this file (mode 0600) instead of stdout")
    parser.add_argument(
        "--runs",
        type=int,
        help="how many of the latest runs (default: 10 for text, 30 for json and html)",
    )
    return parser.parse_args(argv)


def load_settings(paths: Sequence[str] | str | None) -> HistorySettings:
    """The config files (if any) merged with the environment, as the target merges them.

    `paths` are the `--config` values in order: later files override earlier ones (as the
    SDK merges them), and `ENV` asks for the environment to complete the files (so the key
    and the URL may come from different places). Without a file the environment is all
    there is, as with `--config ENV`. A misspelt guarded setting in a file (sync_stor,
    api_kye, ...) stops the report as it stops the target.
    """
    if isinstance(paths, str):
        paths = [paths]
    paths = list(paths or [])
    files = [path for path in paths if path != ENV_CONFIG]
    file_config: dict[str, Any] = {}
    for path in files:
        file_config.update(_read_config_file(path))
    combine = ENV_CONFIG in paths or not files
    resolved = resolve_settings(file_config, CONFIG_SCHEMA, combine=combine)
    misspelt, _ignored = unknown_setting_lines(file_config, CONFIG_SCHEMA)
    errors = [*resolved.errors, *misspelt]
    if errors:
        raise ReportError(errors[0])
    try:
        return HistorySettings.from_config(resolved.config)
    except ValueError as exc:
        raise ReportError(str(exc)) from None


def _read_config_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            loaded = json.load(handle)
    except OSError as exc:
        raise ReportError(
            f"--config {printable(path)}: cannot read it ({exc.strerror or type(exc).__name__})"
        ) from None
    except ValueError:
        raise ReportError(f"--config {printable(path)}: not a JSON object") from None
    if not isinstance(loaded, dict):
        raise ReportError(f"--config {printable(path)}: not a JSON object")
    return loaded


def open_history(
    settings: HistorySettings, runs: int, *, refused: bool = True, out: str | None = None
) -> History:
    """Read the account's last `runs` runs from the store the settings name (read-only).

    `out` (--out) is refused first when it is the store's file or one of its companions.
    """
    location = settings.sync_store
    if location is not None and location.strip().lower() == STORE_OFF:
        raise ReportError("sync_store is off: no run history is kept (docs/history.md)")
    api_key = settings.api_key
    account = Account.for_key(settings.api_url, api_key or "")
    try:
        store = SyncStore.open(location, account, writable=False)
    except (SyncStoreError, StoreInterrupted) as exc:
        raise ReportError(str(exc)) from None
    try:
        if out is not None:
            check_out(out, store.sqlite_path)
        if store.immutable:
            print(
                f"{PROGRAM}: note: {store.describe()} is in a folder this user cannot write "
                "to, so it is read as it is on disk (a run writing at this moment may be "
                "missed)",
                file=sys.stderr,
            )
        if not store.exists:
            raise ReportError(
                f"sync_store: {store.describe()} does not exist yet: no run has recorded a "
                "history there (check sync_store, or run the target first)"
            )
        history = read_history(
            store, account=account.account_id if api_key else None, runs=runs, refused=refused
        )
        where = store.describe()
    except SyncStoreError as exc:
        raise ReportError(str(exc)) from None
    finally:
        store.close()
    if not history.runs:
        whose = "for this api_url and api_key " if api_key else ""
        raise ReportError(f"sync_store: {where} holds no recorded run {whose}yet")
    return history


def render(history: History, fmt: str, runs: int) -> str:
    """The report in `fmt`."""
    latest = history.latest
    assert latest is not None
    if fmt == "text":
        return render_text(history.runs, n=runs)
    if fmt == "json":
        return render_json(history.runs)
    refused = refused_in_run(history.refused, latest.run_id) if latest.sync_log else None
    if fmt == "csv":
        if refused is None:
            raise ReportError(
                "csv lists the latest run's refused records, which only the sync log keeps: "
                "set sync_log: true (docs/history.md); the next run records them"
            )
        return render_csv(refused)
    repeated = repeated_refusals(history.runs, history.refused) if latest.sync_log else None
    return render_html(history.runs, refused, repeated)


def check_out(out: str, store_path: str | None) -> None:
    """Refuse an --out that would overwrite the sync store or any other SQLite database.

    The store's file and its -wal, -shm and -journal companions are compared as files when
    both exist (os.path.samefile: hard links, other spellings), else as resolved paths; an
    existing file that starts with SQLite's header is refused whatever its name.
    """
    if store_path is not None:
        for suffix in STORE_COMPANIONS:
            if _same_file(out, store_path + suffix):
                what = f"its {suffix[1:]} file" if suffix else "its own file"
                raise ReportError(
                    f"--out {printable(out)}: that is the sync store ({what}); the report "
                    "never writes to the store: give another file"
                )
    try:
        with open(out, "rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError:
        return  # absent or unreadable: write_out says what it can
    if head == SQLITE_HEADER:
        raise ReportError(
            f"--out {printable(out)}: is a SQLite database; the report does not overwrite one "
            "(give another file)"
        )


def _same_file(one: str, other: str) -> bool:
    try:
        if os.path.exists(one) and os.path.exists(other):
            return os.path.samefile(one, other)
        return Path(one).resolve() == Path(other).resolve()
    except (OSError, RuntimeError, ValueError):
        return False


def write_out(path: str, text: str) -> None:
    """Write the report to `path`, readable by its owner only (it may hold externalIds)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
        os.fchmod(fd, 0o600)  # also a file that was there before, whatever its mode
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    except OSError as exc:
        raise ReportError(
            f"--out {printable(path)}: cannot write it ({exc.strerror or type(exc).__name__})"
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `carecycle-report`: 0 with a report, 1 with one line saying why not."""
    args = parse_args(argv)
    try:
        runs = args.runs if args.runs is not None else DEFAULT_RUNS[args.format]
        if not 1 <= runs <= MAX_RUNS:
            raise ReportError(f"--runs: give a number from 1 to {MAX_RUNS}")
        refused = args.format in ("html", "csv")  # text and json show counts only
        settings = load_settings(args.config_paths)
        history = open_history(settings, runs, refused=refused, out=args.out)
        text = render(history, args.format, runs)
        if args.out:
            write_out(args.out, text)
            print(
                f"{PROGRAM}: {args.format} report of {len(history.runs)} runs written to "
                f"{printable(args.out)}",
                file=sys.stderr,
            )
        else:
            write_stdout(text)
    except ReportError as exc:
        print(f"{PROGRAM}: {printable(str(exc), backslash=False)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a problem no check foresaw: one line, never a traceback
        print(f"{PROGRAM}: unexpected error ({type(exc).__name__})", file=sys.stderr)
        return 1
    return 0


def write_stdout(text: str) -> None:
    """The report on stdout; a reader that went away or a full device is one line, not a crash."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit: point it at nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise ReportError("stdout closed before the whole report was written") from None
    except OSError as exc:
        raise ReportError(
            f"cannot write the report to stdout ({exc.strerror or type(exc).__name__})"
        ) from None


def entry_point() -> None:
    """`[project.scripts]` target."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
