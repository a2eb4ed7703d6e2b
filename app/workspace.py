"""A private folder for the files the app writes (tokens, PNGs, MP4s); old ones are deleted as new ones are made.
Also how results become an event's outputs."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
import weakref
from pathlib import Path

import numpy as np

from vqtok.io.images import save_image


class Workspace:
    """One folder per request inside a private temporary directory.

    Gradio copies every returned file into its own cache (which ``delete_cache`` cleans), so a request's folder
    is only needed until the response is sent: folders older than ``max_age_s`` are removed whenever a new one is
    made, and the whole directory when the workspace is garbage-collected or the process exits.
    """

    def __init__(self, max_age_s: float = 600.0, parent: str | Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="vqtok-app-", dir=parent))
        self.max_age_s = max_age_s
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.root, True)

    def new_dir(self) -> Path:
        """A fresh, empty folder for one request's outputs."""
        self.purge()
        path = self.root / uuid.uuid4().hex
        path.mkdir()
        return path

    @staticmethod
    def save_png(folder: Path, name: str, pixels: np.ndarray) -> Path:
        """Write uint8 (H, W, 3) pixels to ``folder/name.png`` and return the path.

        Images go to Gradio as files, not arrays: Gradio writes an array into its cache under a hash of its content
        without a temporary file, so two requests with the same output (two users on one example) race, and a
        client can download a half-written file. A file is copied into the cache atomically.
        """
        path = folder / f"{name}.png"
        save_image(path, pixels)
        return path

    def purge(self) -> None:
        """Delete request folders older than ``max_age_s``."""
        cutoff = time.time() - self.max_age_s
        for path in self.root.iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    shutil.rmtree(path, ignore_errors=True)
            except FileNotFoundError:  # another request purged it first
                pass

    def close(self) -> None:
        self._finalizer()


def as_outputs(result: object) -> tuple:
    """A result dataclass -> its field values in order (an event's outputs), paths as strings (what Gradio's file
    components take), also inside lists and tuples."""

    def plain(value: object) -> object:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return type(value)(plain(v) for v in value)
        return value

    return tuple(plain(v) for v in vars(result).values())
