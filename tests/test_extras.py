"""The extras for what the SDK's capabilities advertise, each used for real through the target.

- `faker`: a stream map that replaces names with `fake.first_name()`, seeded by
  `faker_config.seed`, reaches the sandbox with exactly the names Faker makes for that seed.
- `parquet`: a parquet BATCH file written by the SDK's own batcher (as an SDK tap writes one)
  is read, mapped and uploaded.
- `s3`: BATCH files on an S3-compatible store (moto's server on 127.0.0.1; no real S3 is
  reachable here), written by the SDK's batcher in a tap-like child process and read by the
  target through s3fs, with the endpoint and credentials from the standard AWS variables.

The test venv installs all three (`EXTRAS` in the Makefile, noxfile.py).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from target_runner import run_target, target_config

from target_carecycle.sandbox import RunningSandbox
from target_carecycle.sandbox.samples import LEAD_SCHEMA, phone_for

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = {"type": "object", "properties": LEAD_SCHEMA["properties"]}
S3_SECRET = "Qs3cretAccessKeyQ"  # moto accepts any; no output may carry it


def lead(index: int) -> dict[str, Any]:
    return {
        "externalId": f"extra-{index}",
        "phoneNumber": phone_for(index),
        "postalCode": "60614",
        "firstName": f"Qoriginal{index:03d}x",
    }


def schema_line(stream: str = "leads") -> str:
    return json.dumps(
        {"type": "SCHEMA", "stream": stream, "schema": SCHEMA, "key_properties": ["externalId"]}
    )


def record_line(record: dict[str, Any], stream: str = "leads") -> str:
    return json.dumps({"type": "RECORD", "stream": stream, "record": record})


def batch_line(encoding: dict[str, Any], urls: list[str]) -> str:
    return json.dumps({"type": "BATCH", "stream": "leads", "encoding": encoding, "manifest": urls})


def stored_first_names(sandbox: RunningSandbox) -> dict[str, str]:
    return {c["externalId"]: c["firstName"] for c in sandbox.customers()}


def requirements_for_extra(distribution: str, extra: str) -> list[Requirement]:
    """The requirements `distribution[extra]` adds (not those of the base distribution)."""
    found = []
    for text in importlib.metadata.requires(distribution) or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker and marker.evaluate({"extra": extra}) and not marker.evaluate({"extra": ""}):
            found.append(requirement)
    return found


@pytest.mark.parametrize("extra", ["faker", "parquet", "s3"])
def test_each_extra_is_the_sdks_own_extra_and_is_installed(extra: str) -> None:
    """`target-carecycle[X]` is `singer-sdk[X]` at the package's SDK pin; what it brings is
    installed in the test environment."""
    (declared,) = requirements_for_extra("target-carecycle", extra)
    assert declared.name == "singer-sdk"
    assert declared.extras == {extra}
    (base,) = [
        Requirement(r)
        for r in importlib.metadata.requires("target-carecycle") or []
        if Requirement(r).name == "singer-sdk" and not Requirement(r).marker
    ]
    assert declared.specifier == base.specifier
    brought = requirements_for_extra("singer-sdk", extra)
    assert brought
    for requirement in brought:
        installed = importlib.metadata.version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), requirement


# faker


def faker_names(seed: int, locale: str, count: int) -> list[str]:
    """What the SDK's mapper makes: `Faker.seed(seed)`, then `Faker(locale)`, one call each."""
    code = (
        "import json, sys\n"
        "from faker import Faker\n"
        "Faker.seed(int(sys.argv[1]))\n"
        "fake = Faker(sys.argv[2])\n"
        "print(json.dumps([fake.first_name() for _ in range(int(sys.argv[3]))]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(seed), locale, str(count)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    names: list[str] = json.loads(done.stdout)
    return names


def test_faker_stream_map_with_a_seed_sends_the_seeded_fake_names(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    """The faker extra: `fake` in a stream map, `faker_config.seed` and `locale` honoured."""
    count = 12
    config = target_config(
        sandbox,
        stream_maps={"leads": {"firstName": "fake.first_name()"}},
        faker_config={"seed": 1234, "locale": "en_US"},
    )
    lines = [schema_line(), *(record_line(lead(i)) for i in range(count))]
    run = run_target(tmp_path, config, lines)
    assert run.returncode == 0, run.stderr[-3000:]
    expected = faker_names(1234, "en_US", count)
    stored = stored_first_names(sandbox)
    assert [stored[f"extra-{i}"] for i in range(count)] == expected
    assert not any(name.startswith("Qoriginal") for name in stored.values())
    assert len(set(expected)) > 1  # really generated, not one constant


# parquet


def sdk_batch_files(root: str, fmt: str, records: list[dict[str, Any]]) -> list[str]:
    """Write `records` with the SDK's own batcher (what an SDK tap does), in a child process."""
    code = (
        "import json, sys\n"
        "from singer_sdk.batch import Batcher\n"
        "from singer_sdk.helpers._batch import BatchConfig\n"
        "config = BatchConfig.from_dict(json.loads(sys.argv[1]))\n"
        "records = [json.loads(line) for line in sys.stdin]\n"
        "manifest = [u for batch in Batcher('tap-test', 'leads', config).get_batches(iter(records))"
        " for u in batch]\n"
        "print(json.dumps(manifest))\n"
    )
    compression = "gzip" if fmt == "jsonl" else "none"
    batch_config = {
        "encoding": {"format": fmt, "compression": compression},
        "storage": {"root": root, "prefix": "crm-"},
    }
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(batch_config)],
        input="".join(json.dumps(r) + "\n" for r in records),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    manifest: list[str] = json.loads(done.stdout)
    return manifest


def test_parquet_batch_file_written_by_the_sdk_is_uploaded(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    records = [lead(i) for i in range(30)]
    manifest = sdk_batch_files((tmp_path / "batches").as_uri(), "parquet", records)
    assert manifest and all(url.endswith(".parquet") for url in manifest)
    lines = [schema_line(), batch_line({"format": "parquet", "compression": "none"}, manifest)]
    run = run_target(tmp_path, target_config(sandbox), lines)
    assert run.returncode == 0, run.stderr[-3000:]
    assert stored_first_names(sandbox) == {r["externalId"]: r["firstName"] for r in records}
    assert "leads: received 30, succeeded 30" in run.stderr


# s3


@pytest.fixture
def s3_server() -> Iterator[dict[str, str]]:
    """moto's S3-compatible server on 127.0.0.1, and the environment that points clients at it."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    finally:
        server.stop()


def create_bucket(env: dict[str, str], bucket: str) -> None:
    """A bucket on the test server, made from a child process (botocore stays out of pytest)."""
    code = "import boto3, sys; boto3.client('s3').create_bucket(Bucket=sys.argv[1])"
    subprocess.run(
        [sys.executable, "-c", code, bucket],
        env={**os.environ, **env},
        check=True,
        timeout=60,
        capture_output=True,
    )


@pytest.mark.parametrize("with_batch_config", [False, True], ids=["manifest-url", "batch_config"])
def test_s3_batch_files_round_trip_through_an_s3_compatible_server(
    tmp_path: Path,
    sandbox: RunningSandbox,
    s3_server: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    with_batch_config: bool,
) -> None:
    """The s3 extra: gzipped JSONL batch files at s3:// URLs are read and uploaded, either from
    the manifest's full URLs or through the target's own `batch_config.storage`."""
    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)  # the batcher and the target are child processes
    create_bucket(s3_server, "lead-batches")
    records = [lead(i) for i in range(40)]
    manifest = sdk_batch_files("s3://lead-batches/nightly", "jsonl", records)
    assert manifest and all(url.startswith("s3://lead-batches/nightly/crm-") for url in manifest)
    encoding = {"format": "jsonl", "compression": "gzip"}
    overrides: dict[str, Any] = {}
    if with_batch_config:
        overrides["batch_config"] = {
            "encoding": encoding,
            "storage": {"root": "s3://lead-batches/nightly"},
        }
    lines = [schema_line(), batch_line(encoding, manifest)]
    run = run_target(tmp_path, target_config(sandbox, **overrides), lines, env=s3_server)
    assert run.returncode == 0, run.stderr[-3000:]
    assert stored_first_names(sandbox) == {r["externalId"]: r["firstName"] for r in records}
    assert S3_SECRET not in run.stderr + run.stdout


def test_a_missing_s3_object_is_one_line_naming_the_file(
    tmp_path: Path,
    sandbox: RunningSandbox,
    s3_server: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    create_bucket(s3_server, "lead-batches")
    url = "s3://lead-batches/nightly/crm-gone.json.gz"
    lines = [schema_line(), batch_line({"format": "jsonl", "compression": "gzip"}, [url])]
    run = run_target(tmp_path, target_config(sandbox), lines, env=s3_server)
    assert run.returncode == 1
    assert f"batch file {url}: cannot be opened" in run.stderr
    assert "Traceback" not in run.stderr
    assert sandbox.customers() == []
