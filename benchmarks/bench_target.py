"""How fast, how lean and how close to the rate limit is target-carecycle? (issue #7)

Runs the real ``target-carecycle`` executable (fed a pre-written file of Singer lines on
stdin) against ``carecycle-sandbox`` processes on 127.0.0.1 (nothing else is ever contacted;
proxies are stripped from every child's environment) and compares it with baselines measured
in the same run. Scenarios:

* start-up: process start -> the sandbox sees the first upload request (1-lead input).
* throughput: sandbox ``--latency 0.4 --rate-limit 600``, target ``max_requests_per_minute:
  600``, default ``max_concurrent_requests`` and a sweep over 1, 2, 4, 8: requests/minute
  achieved between the first and the last upload request, as a % of the limit; 429s; leads
  lost (sandbox ``created`` vs leads sent).
* cpu: API-shaped leads to a sandbox without latency or limit, against a bare
  ``requests.Session`` loop posting the same 200-lead batches (best of 2 each, alternating);
  also ``validate_records: true`` and ``dry_run: true`` (no HTTP at all).
* memory: peak RSS of the target with 10x more leads (100k vs 10k), read by a wrapper process
  from ``getrusage(RUSAGE_CHILDREN)`` so each figure covers exactly one target run.

Usage (about 2 minutes on 2 cores; ``--quick``, with 6k/20k/2k leads, under a minute):

    .venv/bin/python benchmarks/bench_target.py [--quick] [--json FILE] [--profile FILE]

``--profile FILE`` also runs the CPU scenario once under cProfile (one profiler per thread,
merged) and prints the top functions. Method, figures and findings: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from target_carecycle import client as target_client
from target_carecycle.sandbox import DEFAULT_API_KEY, UPLOAD_PATH
from target_carecycle.sandbox.samples import api_leads, singer_lines

LIMIT_PER_MINUTE = 600
LATENCY_SECONDS = 0.4
SWEEP = (1, 2, 4, 8)
BATCH = 200
STREAM = "leads"
BIN = Path(sys.executable).parent

# Runs one command and reports, in the JSON file named by argv[1], its wall time (monotonic
# clock, shared by every process on Linux), exit code, CPU time and peak RSS. RUSAGE_CHILDREN
# of this short-lived wrapper covers exactly one target run.
WRAPPER = """
import json, resource, subprocess, sys, time
start = time.monotonic()
code = subprocess.call(sys.argv[2:])
end = time.monotonic()
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as out:
    json.dump({"start": start, "end": end, "code": code, "maxrss_kib": usage.ru_maxrss,
               "cpu": usage.ru_utime + usage.ru_stime}, out)
"""

# Runs the target in this interpreter with one cProfile.Profile per thread (the upload
# threads encode and post the batches), then writes the merged statistics to argv[1].
PROFILER = """
import cProfile, pstats, sys, threading
from target_carecycle.target import TargetCareCycle
out_path = sys.argv[1]
profiles = []
def start_thread_profile(*_):
    profile = cProfile.Profile()
    profiles.append(profile)
    profile.enable()
    return None
threading.setprofile(start_thread_profile)
main = cProfile.Profile()
sys.argv = ["target-carecycle", *sys.argv[2:]]
main.enable()
try:
    TargetCareCycle.cli()
except SystemExit:
    pass
finally:
    main.disable()
    threading.setprofile(None)
    pstats.Stats(main, *profiles).dump_stats(out_path)
"""


def command(script: str, module: str) -> list[str]:
    """The console script next to this interpreter, or the module form."""
    path = BIN / script
    return [str(path)] if path.exists() else [sys.executable, "-c", module]


SANDBOX_CMD = command("carecycle-sandbox", "from target_carecycle.sandbox.cli import main; main()")
TARGET_CMD = command(
    "target-carecycle", "from target_carecycle.target import TargetCareCycle; TargetCareCycle.cli()"
)


def child_env() -> dict[str, str]:
    """The environment for every child: no proxy, loopback only, no key from outside."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.pop("TARGET_CARECYCLE_API_KEY", None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def local_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # never route loopback requests through a proxy
    return session


class Sandbox:
    """``carecycle-sandbox --port 0`` as a separate process (no shared GIL with the target)."""

    def __init__(self, *flags: str) -> None:
        self.flags = flags
        self.proc = subprocess.Popen(
            [*SANDBOX_CMD, "--port", "0", *flags],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.close()
            raise RuntimeError(f"sandbox did not start on 127.0.0.1: {self.url!r}")
        self.session = local_session()

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.session.get(self.url + "/__sandbox/stats", timeout=10).json()
        return stats

    def reset(self) -> None:
        self.session.post(self.url + "/__sandbox/reset", timeout=10).raise_for_status()

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)


@contextmanager
def sandbox(*flags: str) -> Iterator[Sandbox]:
    box = Sandbox(*flags)
    try:
        yield box
    finally:
        box.close()


class ArrivalWatch(threading.Thread):
    """Polls ``upload_requests`` (counted on arrival) and notes when each new count appeared."""

    def __init__(self, box: Sandbox, interval: float) -> None:
        super().__init__(daemon=True)
        self.url = box.url + "/__sandbox/stats"
        self.interval = interval
        self.seen: list[tuple[float, int]] = []
        self._done = threading.Event()

    def run(self) -> None:
        session, last = local_session(), 0
        while not self._done.is_set():
            before = time.monotonic()
            count = session.get(self.url, timeout=10).json()["upload_requests"]
            after = time.monotonic()
            if count != last:
                self.seen.append(((before + after) / 2, count))
                last = count
            self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self.join()

    def first(self) -> float:
        return self.seen[0][0]

    def reached(self, count: int) -> float:
        return next(t for t, n in self.seen if n >= count)


@dataclass
class Run:
    """One target run, as the wrapper saw it."""

    label: str
    leads: int
    start: float
    end: float
    code: int
    maxrss_mib: float
    cpu: float
    state: dict[str, Any] = field(default_factory=dict)
    log: str = ""
    first_request: float | None = None  # monotonic time the sandbox saw the first upload
    last_request: float | None = None

    @property
    def wall(self) -> float:
        return self.end - self.start

    @property
    def succeeded(self) -> int:
        """Leads careCycle accepted (a dry run: would send), from the run summary event.

        A dry run emits no STATE, so the counts come from the one `Run summary: {...}` line.
        """
        for line in reversed(self.log.splitlines()):
            _, found, summary = line.partition("Run summary: ")
            if found:
                counts = json.loads(summary)["streams"].get(STREAM, {})
                return int(counts.get("succeeded", counts.get("would_send", -1)))
        return -1


class Bench:
    """Holds the temporary files and runs the target through the wrapper."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.inputs: dict[int, Path] = {}
        self.counter = 0

    def input_for(self, count: int) -> Path:
        """A file of Singer lines: SCHEMA, `count` RECORDs, STATE (written once per size)."""
        if count not in self.inputs:
            path = self.workdir / f"input-{count}.jsonl"
            with path.open("w", encoding="utf-8") as out:
                for line in singer_lines(
                    STREAM,
                    api_leads(count, STREAM),
                    key_properties=["externalId"],
                    state={"bookmarks": {STREAM: {"count": count}}},
                ):
                    out.write(line + "\n")
            self.inputs[count] = path
        return self.inputs[count]

    def run_target(
        self,
        label: str,
        box: Sandbox,
        leads: int,
        settings: dict[str, Any],
        *,
        watch_interval: float | None = None,
        profile_to: Path | None = None,
    ) -> Run:
        """Reset the sandbox, run the target on `leads` leads, check nothing was lost."""
        self.counter += 1
        stem = self.workdir / f"run-{self.counter}"
        # A fresh sync store per run: every run sends all its leads (the first run's cost).
        sync_store = str(stem.with_suffix(".sync.sqlite"))
        config = {"api_url": box.url, "api_key": DEFAULT_API_KEY, "sync_store": sync_store}
        config.update(settings)
        config_path = stem.with_suffix(".config.json")
        config_path.write_text(json.dumps(config))
        report = stem.with_suffix(".rusage.json")
        target = [*TARGET_CMD, "--config", str(config_path)]
        if profile_to is not None:
            target = [sys.executable, "-c", PROFILER, str(profile_to), "--config", str(config_path)]
        box.reset()
        watch = ArrivalWatch(box, watch_interval) if watch_interval else None
        out_path, log_path = stem.with_suffix(".stdout"), stem.with_suffix(".stderr")
        with (
            self.input_for(leads).open("rb") as stdin,
            out_path.open("wb") as stdout,
            log_path.open("wb") as stderr,
        ):
            if watch:
                watch.start()
            code = subprocess.call(
                [sys.executable, "-c", WRAPPER, str(report), *target],
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                env=child_env(),
            )
        if watch:
            watch.stop()
        facts = json.loads(report.read_text()) if code == 0 else {}
        states = [json.loads(x) for x in out_path.read_text().splitlines() if x.strip()]
        run = Run(
            label=label,
            leads=leads,
            start=facts.get("start", 0.0),
            end=facts.get("end", 0.0),
            code=facts.get("code", code),
            maxrss_mib=facts.get("maxrss_kib", 0) / 1024,
            cpu=facts.get("cpu", 0.0),
            state=states[-1] if states else {},
            log=log_path.read_text(errors="replace"),
        )
        if watch and watch.seen:
            run.first_request = watch.first()
            run.last_request = watch.reached(watch.seen[-1][1])
        stats = box.stats()
        created = 0 if settings.get("dry_run") else leads
        if run.code != 0 or run.succeeded != leads or stats["created"] != created:
            tail = "\n".join(run.log.splitlines()[-15:])
            raise SystemExit(
                f"{label}: target exit {run.code}, succeeded {run.succeeded}, sandbox created "
                f"{stats['created']} of {leads} leads\n{tail}"
            )
        return run


def bare_baseline(box: Sandbox, leads: list[dict[str, Any]]) -> tuple[float, float]:
    """Wall and CPU seconds for a plain requests.Session loop posting the same batches."""
    box.reset()
    url = box.url + UPLOAD_PATH
    headers = {"x-api-key": DEFAULT_API_KEY, "Content-Type": "application/json"}
    with local_session() as session:
        started, cpu_started = time.monotonic(), time.process_time()
        for i in range(0, len(leads), BATCH):
            body = json.dumps({"records": leads[i : i + BATCH]}).encode()
            response = session.post(url, data=body, headers=headers, timeout=30)
            if response.status_code != 200:
                raise SystemExit(f"baseline: HTTP {response.status_code}")
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu_started
    if box.stats()["created"] != len(leads):
        raise SystemExit("baseline: the sandbox did not create every lead")
    return elapsed, cpu


# Reporting


@dataclass
class Row:
    figure: str
    value: str
    baseline: str = "-"
    ratio: str = "-"
    goal: str = "-"
    status: str = "info"


def git_revision() -> str:
    """The commit measured, with "+changes" when target_carecycle/ differs from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "target_carecycle"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + (" +changes" if dirty else "")


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "target_commit": git_revision(),
        "cpu": model,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }


def say(text: str = "") -> None:
    print(text, flush=True)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_table(rows: list[Row]) -> None:
    headers = ("figure", "value", "baseline", "ratio", "goal", "result")
    cells = [headers, *[(r.figure, r.value, r.baseline, r.ratio, r.goal, r.status) for r in rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    for n, line in enumerate(cells):
        say("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)))
        if n == 0:
            say("  ".join("-" * width for width in widths))


# Scenarios


def throughput(bench: Bench, leads: int, rows: list[Row], figures: dict[str, Any]) -> None:
    say(
        f"\n[throughput] Latency-bound: {leads:,} leads, sandbox --latency {LATENCY_SECONDS} "
        f"--rate-limit {LIMIT_PER_MINUTE}, max_requests_per_minute: {LIMIT_PER_MINUTE}"
    )
    say(
        "    rate = (upload requests - 1) / (last arrival - first arrival); arrivals are timed by\n"
        "    polling the sandbox's upload_requests counter (counted on arrival, before the\n"
        "    latency) every 10 ms. end-to-end = requests / (target wall time - start-up to the\n"
        "    first request): it also pays the last answer's latency and the shutdown."
    )
    flags = ("--latency", str(LATENCY_SECONDS), "--rate-limit", str(LIMIT_PER_MINUTE))
    with sandbox(*flags) as box:
        for concurrency in (None, *SWEEP):
            settings: dict[str, Any] = {"max_requests_per_minute": LIMIT_PER_MINUTE}
            name = "default" if concurrency is None else str(concurrency)
            if concurrency is not None:
                settings["max_concurrent_requests"] = concurrency
            run = bench.run_target(f"concurrency {name}", box, leads, settings, watch_interval=0.01)
            stats = box.stats()
            assert run.first_request is not None and run.last_request is not None
            sent = stats["upload_requests"]
            span = run.last_request - run.first_request
            figure = {
                "requests_per_minute": (sent - 1) / span * 60 if span > 0 else float("nan"),
                "end_to_end_requests_per_minute": sent / (run.end - run.first_request) * 60,
                "requests": sent,
                "429": stats["requests"].get("429", 0),
                "lost": leads - stats["created"],
                "wall_s": run.wall,
                "startup_s": run.first_request - run.start,
                "leads_per_s": leads / run.wall,
            }
            figures[f"throughput_concurrency_{name}"] = figure
            rate, share = (
                figure["requests_per_minute"],
                figure["requests_per_minute"] / LIMIT_PER_MINUTE,
            )
            say(
                f"    max_concurrent_requests={name:>7}: {rate:6.1f} req/min ({share:6.1%}), "
                f"end-to-end {figure['end_to_end_requests_per_minute']:6.1f} req/min, "
                f"{sent} requests, 429s {figure['429']}, lost {figure['lost']}, "
                f"wall {run.wall:5.2f} s, first request after {figure['startup_s']:.2f} s, "
                f"{figure['leads_per_s']:,.0f} leads/s"
            )
            if concurrency is None:
                rows += throughput_rows(figure, leads)
            else:
                rows.append(
                    Row(
                        f"  sweep: max_concurrent_requests={concurrency}",
                        f"{rate:.1f}",
                        f"{LIMIT_PER_MINUTE} limit",
                        f"{share:.1%}",
                        "-",
                        f"info; 429s {figure['429']}, lost {figure['lost']}",
                    )
                )


def throughput_rows(figure: dict[str, Any], leads: int) -> list[Row]:
    rate, too_many, lost = figure["requests_per_minute"], figure["429"], figure["lost"]
    share = rate / LIMIT_PER_MINUTE
    end_to_end = figure["end_to_end_requests_per_minute"]
    return [
        Row(
            "throughput, default concurrency (req/min)",
            f"{rate:.1f}",
            f"{LIMIT_PER_MINUTE} limit",
            f"{share:.1%}",
            ">= 90% (95%)",
            verdict(share >= 0.90) + (" (stretch)" if share >= 0.95 else ""),
        ),
        Row(
            "  end-to-end, incl. last latency + exit",
            f"{end_to_end:.1f}",
            f"{LIMIT_PER_MINUTE} limit",
            f"{end_to_end / LIMIT_PER_MINUTE:.1%}",
        ),
        Row(
            "  leads created / sent",
            f"{leads - lost:,}",
            f"{leads:,}",
            f"{(leads - lost) / leads:.3f}",
            "== 1",
            verdict(lost == 0),
        ),
        Row("  429 answers", str(too_many), goal="0", status=verdict(not too_many)),
        *pacing_ceiling_rows(),
        Row("  leads/s (latency-bound)", f"{figure['leads_per_s']:,.0f}"),
    ]


def pacing_ceiling_rows() -> list[Row]:
    """The most the target allows itself: the budget divided by its PACING_MARGIN, if any."""
    margin = getattr(target_client, "PACING_MARGIN", None)
    if not isinstance(margin, int | float) or margin <= 0:
        return []
    ceiling = LIMIT_PER_MINUTE / margin
    return [
        Row(
            f"  pacing ceiling (limit / PACING_MARGIN {margin:g})",
            f"{ceiling:.1f}",
            f"{LIMIT_PER_MINUTE} limit",
            f"{ceiling / LIMIT_PER_MINUTE:.1%}",
        )
    ]


def startup(bench: Bench, repeats: int, figures: dict[str, Any]) -> tuple[Row, float]:
    """Process start -> first upload request, 1-lead input; return the row and the CPU time."""
    say(f"\n[start-up] 1-lead input, no latency, {repeats} runs, arrivals polled every 5 ms")
    times, cpus = [], []
    with sandbox("--rate-limit", "0") as box:
        for n in range(repeats):
            run = bench.run_target(
                f"start-up {n}", box, 1, {"max_requests_per_minute": 100_000}, watch_interval=0.005
            )
            assert run.first_request is not None
            times.append(run.first_request - run.start)
            cpus.append(run.cpu)
    median, cpu = statistics.median(times), statistics.median(cpus)
    say(
        f"    process start -> first upload request: {', '.join(f'{t:.3f}' for t in times)} s; "
        f"whole 1-lead run: {cpu:.2f} s CPU"
    )
    figures["startup_s"] = {"median": median, "runs": times, "cpu_median": cpu}
    row = Row("start-up to first request (s)", f"{median:.3f}", status=f"info; {cpu:.2f} s CPU")
    return row, cpu


def best(runs: list[Run]) -> Run:
    """The fastest of repeated runs: noise from other processes only ever adds time."""
    return min(runs, key=lambda run: run.wall)


def cpu_and_memory(
    bench: Bench,
    leads: int,
    small: int,
    repeats: int,
    startup_cpu: float,
    rows: list[Row],
    figures: dict[str, Any],
    profile_to: Path | None,
) -> None:
    say(
        f"\n[cpu] {leads:,} API-shaped leads, sandbox --rate-limit 0 (no latency),\n"
        "    target max_requests_per_minute: 100000, Singer lines read from a file on stdin;\n"
        "    baseline: a requests.Session loop that json-encodes and posts the same 200-lead\n"
        "    batches to the same sandbox (reset before every run, so every lead is a create).\n"
        f"    Baseline and target alternate {repeats}x; the fastest of each counts. Wall time\n"
        "    covers the whole target process (start-up included); CPU is its user+sys time."
    )
    bench.input_for(leads)
    bench.input_for(small)
    payload = api_leads(leads, STREAM)
    settings = {"max_requests_per_minute": 100_000}
    bases: list[tuple[float, float]] = []
    targets: list[Run] = []
    with sandbox("--rate-limit", "0") as box:
        for n in range(repeats):
            bases.append(bare_baseline(box, payload))
            say(
                f"    bare requests loop: {bases[-1][0]:6.2f} s, "
                f"{leads / bases[-1][0]:8,.0f} leads/s, client CPU {bases[-1][1]:.2f} s"
            )
            targets.append(bench.run_target(f"cpu {n}", box, leads, settings))
            run = targets[-1]
            say(
                f"    target:             {run.wall:6.2f} s, {leads / run.wall:8,.0f} leads/s, "
                f"CPU {run.cpu:.2f} s ({run.cpu / leads * 1e6:.0f} us/lead), "
                f"peak RSS {run.maxrss_mib:.0f} MiB"
            )
        checked = bench.run_target("validate", box, leads, {**settings, "validate_records": True})
        say(
            f"    validate_records:   {checked.wall:6.2f} s, {leads / checked.wall:8,.0f} leads/s, "
            f"CPU {checked.cpu:.2f} s ({checked.cpu / leads * 1e6:.0f} us/lead)"
        )
        dry = bench.run_target("dry run", box, leads, {**settings, "dry_run": True})
        say(
            f"    dry_run (no HTTP):  {dry.wall:6.2f} s, {leads / dry.wall:8,.0f} leads/s, "
            f"CPU {dry.cpu:.2f} s ({dry.cpu / leads * 1e6:.0f} us/lead): reading, mapping,\n"
            "                        normalising and batching without any upload"
        )
        say(f"\n[memory] peak RSS with {leads:,} leads (the runs above) vs {small:,} leads")
        few = bench.run_target("memory", box, small, settings)
        say(
            f"    {small:,} leads: peak RSS {few.maxrss_mib:.0f} MiB, wall {few.wall:.2f} s, "
            f"{small / few.wall:,.0f} leads/s"
        )
        if profile_to is not None:
            say(f"\n[profile] CPU scenario under cProfile (all threads) -> {profile_to}")
            profiled = bench.run_target("profile", box, leads, settings, profile_to=profile_to)
            say(f"    profiled run: {profiled.wall:.2f} s (profiling overhead included)")
    base, base_cpu = min(bases)
    target = best(targets)
    large_rss = max(run.maxrss_mib for run in targets)
    ratio = target.wall / base
    mem_ratio = large_rss / few.maxrss_mib
    figures["cpu"] = {
        "leads": leads,
        "baseline_s": [b[0] for b in bases],
        "baseline_cpu_s": [b[1] for b in bases],
        "target_s": [run.wall for run in targets],
        "target_cpu_s": [run.cpu for run in targets],
        "validate_s": checked.wall,
        "validate_cpu_s": checked.cpu,
        "dry_run_s": dry.wall,
        "dry_run_cpu_s": dry.cpu,
        "ratio": ratio,
        "validate_ratio": checked.wall / base,
    }
    figures["memory"] = {
        "large_leads": leads,
        "large_mib": large_rss,
        "small_leads": small,
        "small_mib": few.maxrss_mib,
        "ratio": mem_ratio,
    }
    k = f"{leads // 1000}k"
    rows += [
        Row(
            f"CPU: target wall, {k} leads (s)",
            f"{target.wall:.2f}",
            f"{base:.2f} bare loop",
            f"{ratio:.2f}x",
            "<= 2.0x",
            verdict(ratio <= 2.0),
        ),
        Row(
            "  validate_records: true (s)",
            f"{checked.wall:.2f}",
            f"{base:.2f} bare loop",
            f"{checked.wall / base:.2f}x",
            "-",
            f"info; {checked.wall / target.wall:.2f}x target",
        ),
        Row(
            "  dry_run: true, no HTTP (s)",
            f"{dry.wall:.2f}",
            f"{base:.2f} bare loop",
            f"{dry.wall / base:.2f}x",
        ),
        Row(
            "  CPU time, user+sys (s)",
            f"{target.cpu:.2f}",
            f"{base_cpu:.2f} bare loop",
            f"{target.cpu / base_cpu:.2f}x",
            "-",
            f"info; {target.cpu / leads * 1e6:.0f} us/lead",
        ),
        Row(
            "  CPU per lead after start-up (us)",
            f"{(target.cpu - startup_cpu) / leads * 1e6:.1f}",
            f"{base_cpu / leads * 1e6:.1f} bare loop",
            f"{(target.cpu - startup_cpu) / base_cpu:.2f}x",
            "-",
            "info; (CPU - 1-lead run CPU) / leads",
        ),
        Row(
            "  leads/s: target",
            f"{leads / target.wall:,.0f}",
            f"{leads / base:,.0f} bare loop",
            f"{base / target.wall:.2f}",
        ),
        Row("  leads/s: validate_records", f"{leads / checked.wall:,.0f}"),
        Row(
            f"peak RSS, {k} leads (MiB)",
            f"{large_rss:.1f}",
            f"{few.maxrss_mib:.1f} at {small // 1000}k",
            f"{mem_ratio:.2f}x",
            "<= 1.5x",
            verdict(mem_ratio <= 1.5),
        ),
    ]


def print_profile(path: Path, top: int = 25) -> None:
    import pstats

    for order in ("tottime", "cumulative"):
        say(f"\n[profile] top {top} by {order}")
        stats = pstats.Stats(str(path))
        stats.sort_stats(order).print_stats(top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run (under a minute)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--profile", type=Path, help="also cProfile the CPU scenario to FILE")
    args = parser.parse_args()
    throughput_leads = 6_000 if args.quick else 12_000
    cpu_leads = 20_000 if args.quick else 100_000
    small_leads = cpu_leads // 10
    info = machine()
    say(
        f"target-carecycle benchmark{' (--quick)' if args.quick else ''}: {info['cpu']}, "
        f"{info['cores']} cores ({info['usable_cores']} usable), Python {info['python']}, "
        f"load average {info['load_average_1m_at_start']}; target at {info['target_commit']}"
    )
    say("every process talks to 127.0.0.1 only; the sandbox is a separate process")
    rows: list[Row] = []
    figures: dict[str, Any] = {"machine": info, "quick": args.quick}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-target-") as tmp:
        bench = Bench(Path(tmp))
        startup_row, startup_cpu = startup(bench, 3, figures)
        throughput(bench, throughput_leads, rows, figures)
        cpu_and_memory(bench, cpu_leads, small_leads, 2, startup_cpu, rows, figures, args.profile)
        rows.append(startup_row)
    figures["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    figures["total_s"] = time.monotonic() - started
    say(
        f"\nSummary ({figures['total_s']:.0f} s; load average 1m: "
        f"{info['load_average_1m_at_start']} at start, {figures['load_average_1m_at_end']} at end)"
    )
    print_table(rows)
    if args.profile:
        print_profile(args.profile)
    if args.json:
        figures["table"] = [row.__dict__ for row in rows]
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
