"""The `meltano config` commands the docs show, run as written under real Meltano (4.4.1).

Every line of a ```console block in README.md or docs/*.md that starts with `meltano config`
runs in a scratch copy of the repository's meltano.yml (no plugin install needed). It must
succeed, and each `meltano config set PLUGIN SETTING VALUE` must be what Meltano then hands the
plugin. Meltano 3's `meltano config PLUGIN set ...` is refused by Meltano 4, so the docs must not
use it anywhere, inline code included.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import REPO_ROOT, MeltanoProject, clean_env, find_meltano, unavailable

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
CONSOLE_BLOCK = re.compile(r"```console\n(.*?)```", re.DOTALL)
# `meltano config target-carecycle set ...`: a plugin name where Meltano 4 wants a subcommand.
MELTANO3_CONFIG = re.compile(r"meltano config (?!(?:list|print|reset|set|test|unset)\b)[\w-]+ ")


def documented_config_commands() -> list[tuple[str, list[str]]]:
    """(page, argv after `meltano`) for every `meltano config` line in a console block."""
    found = []
    for page in PAGES:
        for block in CONSOLE_BLOCK.findall(page.read_text(encoding="utf-8")):
            for line in block.splitlines():
                if line.startswith("meltano config "):
                    found.append((page.name, shlex.split(line, comments=True)[1:]))
    return found


@pytest.fixture
def scratch_project(tmp_path: Path) -> MeltanoProject:
    """The repository's meltano.yml in an empty folder: enough for `meltano config`."""
    meltano = find_meltano()
    if meltano is None:
        unavailable("meltano not found (run scripts/ensure-test-deps.sh)")
        raise AssertionError("unreachable")
    root = tmp_path / "project"
    root.mkdir()
    (root / "meltano.yml").write_bytes((REPO_ROOT / "meltano.yml").read_bytes())
    env = clean_env(
        {"XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_STATE_HOME": str(tmp_path / "state")}
    )
    return MeltanoProject(root=root, executable=meltano, env=env)


def test_the_docs_show_meltano_config_commands() -> None:
    commands = documented_config_commands()
    assert any(page == "sync-store.md" and argv[1] == "set" for page, argv in commands), commands


def test_documented_meltano_config_commands_work_under_meltano_4(
    scratch_project: MeltanoProject,
) -> None:
    meltano_yml = (scratch_project.root / "meltano.yml").read_text(encoding="utf-8")
    for page, argv in documented_config_commands():
        done = scratch_project.command(*argv, timeout=120)
        assert done.returncode == 0, f"{page}: meltano {shlex.join(argv)}\n{done.stdout[-2000:]}"
        if argv[1] != "set":
            continue
        plugin, setting, value = argv[2], argv[3], argv[4]
        printed = scratch_project.command(
            "--log-level=warning",
            "config",
            "--unsafe",  # the value itself, not ***** (sync_store is secret)
            "print",
            plugin,
            "--format=json",
            timeout=120,
        )
        assert printed.returncode == 0, printed.stdout[-2000:]
        config = json.loads(printed.stdout[printed.stdout.index("{") :])
        assert config[setting] == value, (page, setting)
    # Secret settings went to .env, as the docs say; meltano.yml is untouched.
    assert (scratch_project.root / "meltano.yml").read_text(encoding="utf-8") == meltano_yml
    assert "TARGET_CARECYCLE_SYNC_STORE=" in (scratch_project.root / ".env").read_text()


def test_meltano_4_refuses_the_meltano_3_config_syntax_and_no_page_uses_it(
    scratch_project: MeltanoProject,
) -> None:
    done = scratch_project.command("config", "target-carecycle", "set", "sync_store", "off")
    assert done.returncode != 0
    assert "No such command 'target-carecycle'" in done.stdout
    for page in PAGES:
        assert not MELTANO3_CONFIG.search(page.read_text(encoding="utf-8")), page.name


def test_meltano_yml_environments_name_real_settings() -> None:
    """The settings meltano.yml's environments configure exist (a misspelt one is ignored)."""
    project = yaml.safe_load((REPO_ROOT / "meltano.yml").read_text(encoding="utf-8"))
    (loader,) = [p for p in project["plugins"]["loaders"] if p["name"] == "target-carecycle"]
    names = {s["name"] for s in loader["settings"]}
    for environment in project["environments"]:
        for plugin in environment["config"]["plugins"].get("loaders", []):
            assert set(plugin.get("config", {})) <= names, environment["name"]
