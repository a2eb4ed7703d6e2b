"""Turning the SRC arguments of ``vqtok tokenize`` into a sorted list of input files."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from vqtok.errors import InputError
from vqtok.io.listing import list_files

LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})  # a SRC with one of these suffixes is a list of files
_GLOB_CHARS = frozenset("*?[")


def expand_sources(specs: Iterable[str | os.PathLike[str]], exclude: str | os.PathLike[str] | None = None) -> list[str]:
    """SRC arguments -> the sorted, de-duplicated absolute paths of the files they name.

    Each SRC is one of:

    - a directory: every non-hidden file below it, recursively (files that are not images or videos are kept, so
      the job reports them as failed instead of leaving them out silently);
    - a glob pattern (``*``, ``?``, ``[...]``; ``**`` crosses directories): the files it matches;
    - a file list (.txt, .lst, .list): one path per line, relative paths taken from the list's directory; blank
      lines and lines starting with ``#`` are skipped; listed files that do not exist are kept (and fail);
    - any other file: itself.

    Paths are made absolute (symlinks are not resolved): the absolute path is an item's identity in the store.
    Files inside ``exclude`` (the output store, when it lies inside a source folder) are left out.

    Raises:
        InputError: a SRC that does not exist, or a pattern that matches no file.
    """
    found: set[str] = set()
    for spec in specs:
        found.update(_expand(str(spec)))
    if exclude is not None:
        inside = os.path.join(os.path.abspath(exclude), "")
        found = {p for p in found if not p.startswith(inside)}
    return sorted(found)


def _expand(spec: str) -> list[str]:
    path = Path(spec)
    if path.is_dir():
        return [os.path.abspath(p) for p in list_files(path, None, "files")]
    if path.is_file():
        if path.suffix.lower() in LIST_SUFFIXES:
            return _read_list(path)
        return [os.path.abspath(path)]
    if _GLOB_CHARS & set(spec):
        matches = [os.path.abspath(p) for p in glob.glob(spec, recursive=True) if os.path.isfile(p)]
        if not matches:
            raise InputError(f"source pattern {spec!r} matches no files")
        return matches
    raise InputError(f"source {spec!r} does not exist (give directories, files, file lists or glob patterns)")


def _read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the file list {str(path)!r}: {e}") from None
    base = path.parent
    return [
        os.path.abspath(base / line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")
    ]


def folder_label(source: str, roots: Iterable[str]) -> str | None:
    """The class of ``source`` in the ImageFolder layout: the first folder below the root it lies under
    (``ROOT/CLASS/.../file`` -> ``CLASS``); None when it lies directly in a root or under none of them.

    ``roots`` are absolute paths of the source folders; the deepest root that contains ``source`` counts.
    """
    for root in sorted(roots, key=len, reverse=True):
        inside = os.path.join(root, "")
        if source.startswith(inside):
            parts = source[len(inside) :].split(os.sep)
            return parts[0] if len(parts) >= 2 else None
    return None


def label_roots(specs: Iterable[str | os.PathLike[str]]) -> list[str]:
    """The absolute paths of the source folders, for ``--labels folder``.

    Raises:
        InputError: a SRC that is not a directory (a class can only be read from a folder layout).
    """
    roots = []
    for spec in specs:
        if not Path(spec).is_dir():
            raise InputError(
                f"--labels folder reads each item's class from its folder (ROOT/CLASS/image.png), so every SRC must "
                f"be a folder; {str(spec)!r} is not"
            )
        roots.append(os.path.abspath(spec))
    return roots
