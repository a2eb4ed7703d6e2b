"""Uploads: where an upload is on the server, error text for people, output names, and downscaling to the
app's limits."""

from __future__ import annotations

import html
import re
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image


def upload_path(payload: dict | None) -> str | None:
    """The server-side path of an upload that reached the event unpreprocessed (``preprocess=False``).

    The image tab takes its upload this way because ``gr.Image`` opens every upload with Pillow before the app's
    code runs, so a corrupt or hostile file would fail inside Gradio with a generic error; here vqtok's own reader
    decodes it (pixel limit checked from the header, EXIF orientation, 16-bit and alpha handled) and its error
    names the problem. Gradio has already checked that the path is a file uploaded to its cache.
    """
    if payload is None:
        return None
    path = payload.get("path") if isinstance(payload, dict) else None
    if not isinstance(path, str) or not path:
        raise gr.Error("The upload did not arrive as a file; upload it again.", print_exception=False)
    return path


def user_error(error: Exception, upload: str | Path | None = None, what: str = "file") -> gr.Error:
    """A ``gr.Error`` for the page: the error's message with the server-side upload path replaced by the file's
    name, HTML-escaped (file names come from the user, and Gradio renders the message as HTML)."""
    message = str(error)
    if upload is not None:
        message = message.replace(repr(str(upload)), repr(Path(upload).name)).replace(str(upload), Path(upload).name)
    return gr.Error(html.escape(f"Could not process this {what}: {message}", quote=False), print_exception=False)


def plain(text: object) -> str:
    """Text from an upload (a file name, a token file's metadata) made inert for a page that renders Markdown
    and HTML: HTML-escaped, and Markdown's link, image, emphasis and code characters backslash-escaped."""
    return re.sub(r"([\\`*_\[\]()!#|])", r"\\\1", html.escape(str(text), quote=False))


def safe_stem(path: str | Path, fallback: str = "upload") -> str:
    """A file-name stem for outputs made from an upload: letters, digits, '.', '_' and '-' only."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem).strip("._")[:80]
    return stem or fallback


def downscale(frame: np.ndarray, max_side: int) -> np.ndarray:
    """uint8 (H, W, 3) -> the same, shrunk (area-averaged, Lanczos) so its longer side is at most ``max_side``."""
    h, w = frame.shape[:2]
    if max(h, w) <= max_side:
        return frame
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL takes (width, height)
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0))
