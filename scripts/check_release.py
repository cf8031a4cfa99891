"""Checks a release before it is published: the tag, CHANGELOG.md and the built files agree.

    .venv/bin/python scripts/check_release.py v0.2.0 dist/     # what the release workflow runs
    .venv/bin/python scripts/check_release.py v0.2.0 --notes   # print that version's changelog

The tag must be `vX.Y.Z` (a PEP 440 release, optionally a pre-release such as `v0.3.0rc1`),
CHANGELOG.md must have a `## [X.Y.Z] - YYYY-MM-DD` section, the newest released one, and every
sdist and wheel in the folder must be version X.Y.Z. Any mismatch is one line and exit 1, so
the release workflow stops before anything reaches PyPI.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from packaging.utils import parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
CHANGELOG = ROOT / "CHANGELOG.md"
# `## [0.2.0] - 2026-12-01`; `## [Unreleased]` has no date.
RELEASED = re.compile(r"^## \[(?P<version>[^\]]+)\] - (?P<date>\d{4}-\d{2}-\d{2})\s*$")
SECTION = re.compile(r"^## \[")


class ReleaseError(Exception):
    """A reason not to publish, as one line."""


def tag_version(tag: str) -> Version:
    """`v1.2.3` as Version('1.2.3'); anything else is refused."""
    if not tag.startswith("v"):
        raise ReleaseError(f"tag {tag!r} does not start with 'v'")
    try:
        version = Version(tag[1:])
    except InvalidVersion:
        raise ReleaseError(f"tag {tag!r} is not v followed by a version") from None
    if version.local or version.is_devrelease or version.is_postrelease:
        raise ReleaseError(f"tag {tag!r} is not a release version")
    return version


def released_versions(changelog: str) -> list[str]:
    """The versions of CHANGELOG.md's released sections, top first (as written)."""
    return [m["version"] for line in changelog.splitlines() if (m := RELEASED.match(line))]


def changelog_section(changelog: str, version: str) -> str:
    """The text under `## [version] - date`, up to the next section."""
    lines = changelog.splitlines()
    for index, line in enumerate(lines):
        match = RELEASED.match(line)
        if match and match["version"] == version:
            rest = lines[index + 1 :]
            end = next((i for i, text in enumerate(rest) if SECTION.match(text)), len(rest))
            return "\n".join(rest[:end]).strip() + "\n"
    raise ReleaseError(f"CHANGELOG.md has no section '## [{version}] - YYYY-MM-DD'")


def check_changelog(changelog: str, version: Version) -> None:
    """The version has a dated section, and it is the newest released one."""
    versions = released_versions(changelog)
    changelog_section(changelog, str(version))
    if versions[0] != str(version):
        raise ReleaseError(
            f"CHANGELOG.md's newest released section is [{versions[0]}], not [{version}]"
        )


def dist_versions(folder: Path) -> dict[str, Version]:
    """The version of every sdist and wheel in `folder`, by file name."""
    found: dict[str, Version] = {}
    for path in sorted(folder.iterdir()):
        if path.name.endswith(".whl"):
            found[path.name] = parse_wheel_filename(path.name)[1]
        elif path.name.endswith(".tar.gz"):
            found[path.name] = parse_sdist_filename(path.name)[1]
    return found


def check_dist(folder: Path, version: Version) -> None:
    """One sdist and one wheel, both of `version`."""
    versions = dist_versions(folder)
    kinds = sorted("wheel" if name.endswith(".whl") else "sdist" for name in versions)
    if kinds != ["sdist", "wheel"]:
        raise ReleaseError(f"{folder} holds {kinds or 'nothing'}, not one sdist and one wheel")
    for name, built in versions.items():
        if built != version:
            raise ReleaseError(f"{name} is version {built}, the tag says {version}")


def main(argv: list[str] | None = None) -> int:
    """Check the tag against CHANGELOG.md (and a dist folder), or print the release notes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tag", help="the release tag, e.g. v0.2.0")
    parser.add_argument("dist", nargs="?", type=Path, help="folder with the sdist and wheel")
    parser.add_argument("--notes", action="store_true", help="print the version's changelog")
    parser.add_argument("--changelog", type=Path, default=CHANGELOG, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        version = tag_version(args.tag)
        changelog = args.changelog.read_text(encoding="utf-8")
        if args.notes:
            sys.stdout.write(changelog_section(changelog, str(version)))
            return 0
        check_changelog(changelog, version)
        if args.dist is not None:
            check_dist(args.dist, version)
    except ReleaseError as exc:
        print(f"check_release: {exc}", file=sys.stderr)
        return 1
    print(f"check_release: {args.tag} agrees with CHANGELOG.md" + (" and dist" * bool(args.dist)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
