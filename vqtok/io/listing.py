"""Recursive listing of the files under a directory that have one of a set of suffixes."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from vqtok.errors import FileFormatError


def list_files(root: str | os.PathLike[str], suffixes: Collection[str] | None, kind: str) -> list[Path]:
    """Files under ``root`` whose lower-case suffix is in ``suffixes`` (any suffix if None), recursively, sorted.

    Content is not checked. Hidden files and directories (name starting with ``.``) are skipped. Symlinked
    directories are followed, but each real directory is visited once, so symlink loops terminate.

    Args:
        root: the directory to search.
        suffixes: lower-case suffixes with the dot, e.g. {".png", ".jpg"}; None lists every file.
        kind: what is listed ("images", "videos"), for error messages.

    Raises:
        FileFormatError: ``root`` does not exist or is not a directory.
    """
    root = Path(root)
    if not root.exists():
        raise FileFormatError(f"cannot list {kind} in {str(root)!r}: the directory does not exist")
    if not root.is_dir():
        raise FileFormatError(f"cannot list {kind} in {str(root)!r}: it is not a directory")
    seen = {os.path.realpath(root)}
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        kept = []
        for name in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, name))
            if not name.startswith(".") and real not in seen:
                seen.add(real)
                kept.append(name)
        dirnames[:] = kept  # prune in place: os.walk descends only into these
        found.extend(
            Path(dirpath, name)
            for name in filenames
            if not name.startswith(".") and (suffixes is None or os.path.splitext(name)[1].lower() in suffixes)
        )
    return sorted(found)
