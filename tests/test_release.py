"""Release-ready: an archive of the repository builds with its real version, CHANGELOG.md and the
tags agree, the release checks refuse what must not be published, and the workflow files are
valid for GitHub (check-jsonschema's vendored schemas, as its pre-commit hooks check them).

The archive tests copy this checkout's files (tracked and new, as they are on disk) into a
fresh git repository in a temporary folder, tag it, `git archive` it, and build the extracted
tree with the locked hatchling and hatch-vcs: nothing is fetched.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "scripts"))
import check_release  # noqa: E402  (scripts/ is not a package)

GIT_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "SETUPTOOLS_SCM"))},
    "GIT_AUTHOR_NAME": "release test",
    "GIT_AUTHOR_EMAIL": "release-test@example.invalid",
    "GIT_COMMITTER_NAME": "release test",
    "GIT_COMMITTER_EMAIL": "release-test@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def copy_checkout(into: Path) -> Path:
    """This checkout's files (tracked and untracked, not ignored) in a new git repository."""
    listed = git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a file deleted on disk but still in the index is left out
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    git(into, "init", "-q", "-b", "main")
    git(into, "add", "-A")
    git(into, "commit", "-q", "-m", "release test")
    return into


@pytest.fixture(scope="module")
def tagged_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of this checkout, committed and tagged v9.8.7."""
    repo = copy_checkout(tmp_path_factory.mktemp("repo"))
    git(repo, "tag", "-a", "v9.8.7", "-m", "v9.8.7")
    return repo


def archive(repo: Path, into: Path, ref: str = "HEAD") -> Path:
    """`git archive ref`, extracted into `into` (no .git there)."""
    tar = into.with_suffix(".tar")
    git(repo, "archive", "--format=tar", f"--output={tar}", ref)
    into.mkdir()
    subprocess.run(["tar", "-xf", str(tar), "-C", str(into)], check=True, timeout=60)
    assert not (into / ".git").exists()
    return into


def build(tree: Path, out: Path, *kinds: str) -> list[Path]:
    """Build `kinds` ("wheel", "sdist") of `tree` with hatchling, in a child process."""
    code = (
        "import sys, hatchling.build as b\n"
        "for kind in sys.argv[2:]:\n"
        "    print(getattr(b, 'build_' + kind)(sys.argv[1]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(out), *kinds],
        cwd=tree,
        env=GIT_ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [out / name for name in done.stdout.split()]


def wheel_version(wheel: Path) -> str:
    """The Version field of the wheel's METADATA (not only its file name)."""
    with zipfile.ZipFile(wheel) as zipped:
        (metadata,) = [n for n in zipped.namelist() if n.endswith(".dist-info/METADATA")]
        text = zipped.read(metadata).decode()
    return next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("Version:"))


def test_archival_file_is_filled_in_by_git_archive() -> None:
    """.gitattributes marks .git_archival.txt export-subst; its fields are setuptools-scm's."""
    attributes = (ROOT / ".gitattributes").read_text(encoding="utf-8").split()
    assert attributes[attributes.index(".git_archival.txt") + 1] == "export-subst"
    fields = yaml.safe_load((ROOT / ".git_archival.txt").read_text(encoding="utf-8"))
    assert set(fields) == {"node", "node-date", "describe-name"}
    assert "describe:tags=true" in fields["describe-name"]


def test_archive_of_a_tagged_commit_builds_as_the_tag(tagged_repo: Path, tmp_path: Path) -> None:
    tree = archive(tagged_repo, tmp_path / "tree")
    assert "v9.8.7" in (tree / ".git_archival.txt").read_text(encoding="utf-8")
    (wheel,) = build(tree, tmp_path / "dist", "wheel")
    assert wheel.name.startswith("target_carecycle-9.8.7-")
    assert wheel_version(wheel) == "9.8.7"


def test_archive_after_the_tag_builds_as_the_next_dev_version(
    tagged_repo: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    git(tmp_path, "clone", "-q", str(tagged_repo), str(repo))
    (repo / "NEXT.md").write_text("one more commit\n", encoding="utf-8")
    git(repo, "add", "NEXT.md")
    git(repo, "commit", "-q", "-m", "after the tag")
    commit = git(repo, "rev-parse", "--short=7", "HEAD").strip()
    (wheel,) = build(archive(repo, tmp_path / "tree"), tmp_path / "dist", "wheel")
    version = wheel_version(wheel)
    assert version.startswith("9.8.8.dev1+g"), version
    assert commit in version


def test_without_export_subst_an_archive_builds_as_0_0_0(tagged_repo: Path, tmp_path: Path) -> None:
    """What .gitattributes fixes: git leaves the placeholders, hatch-vcs falls back."""
    repo = tmp_path / "repo"
    git(tmp_path, "clone", "-q", str(tagged_repo), str(repo))
    git(repo, "rm", "-q", ".gitattributes")
    git(repo, "commit", "-q", "-m", "no export-subst")
    tree = archive(repo, tmp_path / "tree")
    assert "$Format:" in (tree / ".git_archival.txt").read_text(encoding="utf-8")
    (wheel,) = build(tree, tmp_path / "dist", "wheel")
    assert wheel_version(wheel) == "0.0.0"


def test_release_check_passes_a_matching_build_and_refuses_a_missing_changelog_section(
    tagged_repo: Path, tmp_path: Path
) -> None:
    """scripts/check_release.py, as the release workflow runs it, on a real sdist and wheel."""
    dist = tmp_path / "dist"
    build(archive(tagged_repo, tmp_path / "tree"), dist, "sdist", "wheel")
    script = str(ROOT / "scripts" / "check_release.py")
    changelog = tmp_path / "CHANGELOG.md"

    def run(tag: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, script, tag, str(dist), "--changelog", str(changelog), *extra],
            capture_output=True,
            text=True,
            timeout=60,
        )

    changelog.write_text(
        "# Changelog\n\n## [Unreleased]\n\n## [9.8.6] - 2026-01-01\n\n- older\n", encoding="utf-8"
    )
    refused = run("v9.8.7")
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "check_release: CHANGELOG.md has no section '## [9.8.7] - YYYY-MM-DD'"
    ]

    changelog.write_text(
        "# Changelog\n\n## [Unreleased]\n\n## [9.8.7] - 2026-02-02\n\n- the fix\n\n"
        "## [9.8.6] - 2026-01-01\n\n- older\n",
        encoding="utf-8",
    )
    assert run("v9.8.7").returncode == 0
    notes = subprocess.run(
        [sys.executable, script, "v9.8.7", "--notes", "--changelog", str(changelog)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert notes.stdout == "- the fix\n"

    wrong = run("v9.8.6")  # has a section, but is not the newest and not what was built
    assert wrong.returncode == 1
    assert "newest released section is [9.8.7], not [9.8.6]" in wrong.stderr


@pytest.mark.parametrize(
    ("tag", "reason"),
    [
        ("9.8.7", "does not start with 'v'"),
        ("vnext", "is not v followed by a version"),
        ("v1.2.3.dev4", "is not a release version"),
        ("v1.2.3+local", "is not a release version"),
    ],
)
def test_release_check_refuses_a_tag_that_is_not_a_release(tag: str, reason: str) -> None:
    with pytest.raises(check_release.ReleaseError, match=reason):
        check_release.tag_version(tag)


def test_release_check_refuses_a_build_of_another_version(tmp_path: Path) -> None:
    (tmp_path / "target_carecycle-1.0.0.tar.gz").write_bytes(b"")
    (tmp_path / "target_carecycle-1.0.1-py3-none-any.whl").write_bytes(b"")
    with pytest.raises(
        check_release.ReleaseError, match=re.escape("is version 1.0.1, the tag says 1.0.0")
    ):
        check_release.check_dist(tmp_path, Version("1.0.0"))
    (tmp_path / "target_carecycle-1.0.1-py3-none-any.whl").unlink()
    with pytest.raises(check_release.ReleaseError, match="not one sdist and one wheel"):
        check_release.check_dist(tmp_path, Version("1.0.0"))


def tags() -> list[Version]:
    listed = git(ROOT, "tag", "--list", "v*").split()
    versions = []
    for tag in listed:
        try:
            versions.append(check_release.tag_version(tag))
        except check_release.ReleaseError:
            continue
    return sorted(versions)


def test_changelog_sections_are_dated_newest_first_and_match_the_latest_tag() -> None:
    """Unreleased on top, then `## [X.Y.Z] - YYYY-MM-DD` sections, newest first; when the
    repository has release tags, the newest section is the newest tag."""
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    sections = [line for line in changelog.splitlines() if line.startswith("## ")]
    assert sections[0] == "## [Unreleased]"
    released = check_release.released_versions(changelog)
    assert len(released) == len(sections) - 1, "every other section is `## [X.Y.Z] - date`"
    versions = [Version(v) for v in released]
    assert versions == sorted(versions, reverse=True)
    if tags():
        assert versions[0] == tags()[-1], "tag the release in CHANGELOG.md, or add its section"


@pytest.mark.parametrize("name", ["ci.yml", "release.yml"])
def test_workflows_pass_githubs_workflow_schema(name: str) -> None:
    path = ROOT / ".github" / "workflows" / name
    done = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dependabot_config_passes_its_schema() -> None:
    path = ROOT / ".github" / "dependabot.yml"
    done = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.dependabot", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ecosystems = {u["package-ecosystem"] for u in yaml.safe_load(path.read_text())["updates"]}
    assert ecosystems == {"github-actions", "uv"}


def test_release_workflow_publishes_by_trusted_publishing_after_the_checks() -> None:
    """Tag-triggered; build -> publish (environment pypi, id-token) -> GitHub release; the
    publish job holds no other permission and runs only after the build job's checks."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the `on` key as True
    assert triggers == {"push": {"tags": ["v*"]}}
    assert workflow["permissions"] == {}
    jobs = workflow["jobs"]
    build_steps = " ".join(str(step.get("run", "")) for step in jobs["build"]["steps"])
    assert "make dist" in build_steps
    assert "scripts/check_release.py" in build_steps
    publish = jobs["publish"]
    assert publish["needs"] == "build"
    assert publish["environment"]["name"] == "pypi"
    assert publish["permissions"] == {"id-token": "write"}
    assert any(
        step.get("uses", "").startswith("pypa/gh-action-pypi-publish@") for step in publish["steps"]
    )
    assert jobs["github-release"]["needs"] == "publish"
    assert jobs["github-release"]["permissions"] == {"contents": "write"}


def pre_commit_hooks() -> dict[str, dict[str, object]]:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    return {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}


def test_pre_commit_runs_the_checks_the_project_relies_on() -> None:
    hooks = pre_commit_hooks()
    for wanted in [
        "ruff-check",
        "ruff-format",
        "uv-lock",
        "check-github-workflows",
        "check-dependabot",
        "check-meltano",
        "hub-yamllint",
        "hub-definition",
        "check-yaml",
        "end-of-file-fixer",
    ]:
        assert wanted in hooks, wanted


def test_pre_commit_hooks_run_tools_that_exist() -> None:
    """Hooks on the locked environment name a tool the lock installs and files in the repo;
    the others pin a version. (The fast tier's venv has no lint tools: ruff is checked there
    by name only.)"""
    for hook_id, hook in pre_commit_hooks().items():
        entry = str(hook["entry"]).split()
        if hook["language"] == "unsupported":
            assert entry[0].startswith((".venv/bin/", ".venv-uv/bin/")), hook_id
            tool = entry[0].rsplit("/", 1)[1]
            if tool not in {"ruff", "uv"}:  # the lint group and the Makefile's tool venv
                assert (BIN / tool).exists(), hook_id
            for word in entry[1:]:
                if "/" in word and not word.startswith("-"):
                    assert (ROOT / word).exists(), (hook_id, word)
        else:
            assert hook["language"] == "python", hook_id
            pins = hook["additional_dependencies"]
            assert isinstance(pins, list)
            assert all("==" in pin for pin in pins), hook_id


def test_pre_commit_config_is_valid_for_pre_commit() -> None:
    """pre-commit's own schema check of the config."""
    done = subprocess.run(
        [str(BIN / "pre-commit"), "validate-config", str(ROOT / ".pre-commit-config.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
