"""The test matrix: the fast tier on Python 3.10-3.13, each installed from uv.lock.

    make matrix                                   # every version, fast tier
    .venv-uv/bin/nox -s "tests-3.13"              # one version
    .venv-uv/bin/nox -s "tests-3.12" -- tests/test_leads.py -q   # other pytest arguments

The full suite (Meltano pipelines, PostgreSQL) runs on the default version through
`make test`; `.ci/run` does both. nox itself and uv come from the Makefile's tool venv.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
# The slow multi-process tests (store torture, concurrent runs, pacing) exercise no
# version-specific code beyond what the rest covers; they run once, in `make test`.
FAST_TIER = ["-m", "not pipelines and not slow"]

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["tests"]
nox.options.error_on_missing_interpreters = True  # a version that cannot be found is a failure

# Interpreters come from the machine, never downloaded.
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")


def _expose_pyenv_versions() -> None:
    """Make every pyenv-installed 3.10-3.13 answer to `python3.X` (pyenv shims hide them).

    Machines with pyenv install several Pythons but activate one; the shim for another version
    then fails. Listing them all in PYENV_VERSION (the active one first) makes each shim work.
    Without pyenv, or with PYENV_VERSION already set, nothing changes.
    """
    if "PYENV_VERSION" in os.environ or shutil.which("pyenv") is None:
        return
    listed = subprocess.run(
        ["pyenv", "versions", "--bare"], capture_output=True, text=True, check=False
    ).stdout.split()
    wanted = [v for v in listed if re.fullmatch(r"3\.1[0-3]\.\d+", v)]
    active = subprocess.run(
        ["pyenv", "version-name"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if wanted:
        os.environ["PYENV_VERSION"] = ":".join([active, *wanted] if active else wanted)


def _uv() -> str:
    """The uv next to nox (the Makefile installs both into one venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv") or "uv"


_expose_pyenv_versions()


@nox.session(python=PYTHONS)  # type: ignore[untyped-decorator]  # nox is untyped here
def tests(session: nox.Session) -> None:
    """pytest on one Python version: the fast tier unless pytest arguments are given."""
    session.run_install(
        _uv(),
        "sync",
        "--locked",
        # The Makefile's EXTRAS: postgres (sync store), faker, parquet, s3 (tests/test_extras.py).
        *("--extra", "postgres", "--extra", "faker", "--extra", "parquet", "--extra", "s3"),
        "--no-default-groups",
        "--group",
        "test",
        "--python",
        str(session.python),
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
        external=True,
    )
    session.run("pytest", *(session.posargs or [*FAST_TIER, "-q"]))
