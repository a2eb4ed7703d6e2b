"""Recursive listing of the files under a directory that have one of a set of suffixes, and the check that a path
is a file the readers can open."""

from __future__ import annotations

import errno
import os
import stat
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


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not a non-empty regular file, in words for an error message; None when it is one.

    One ``os.stat`` (symlinks followed) tells a symlink loop and a broken symlink from a missing file, and refuses
    a FIFO, socket or device before anything opens it (opening a FIFO blocks until a writer comes).

    Args:
        path: the file a reader is about to open.

    Returns:
        ``None``, or e.g. ``"the file does not exist"``, ``"it is a directory, not a file"``,
        ``"the file is empty (0 bytes)"``.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "it is a symbolic link loop (too many levels of symbolic links)"
        if e.errno == errno.ENOENT and os.path.islink(path):
            return f"it is a broken symbolic link: its target {_link_target(path)!r} does not exist"
        if e.errno == errno.ENOENT:
            return "the file does not exist"
        return e.strerror or str(e)
    if stat.S_ISDIR(st.st_mode):
        return "it is a directory, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file (a FIFO, socket or device)"
    if st.st_size == 0:
        return "the file is empty (0 bytes)"
    return None


def _link_target(path: str | os.PathLike[str]) -> str:
    try:
        return os.readlink(path)
    except OSError:  # replaced since it was seen to be a link
        return "?"
