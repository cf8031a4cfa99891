"""Folders the target creates for files only their owner may read (reject, results, store)."""

from __future__ import annotations

import os


def make_private_folders(folder: str) -> None:
    """Create the missing folders on the way to `folder`, each 0700; existing ones stay."""
    missing = []
    while not os.path.isdir(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    for created in reversed(missing):
        try:
            os.mkdir(created, 0o700)
        except FileExistsError:
            continue  # made meanwhile, or a file: opening the path will say so
        os.chmod(created, 0o700)  # whatever the umask


__all__ = ["make_private_folders"]
