"""The video I/O module behind an import check: PyAV is an optional dependency (the ``video`` extra)."""

from __future__ import annotations

import functools
from types import ModuleType

from vqtok.errors import InputError


def video_io() -> ModuleType:
    """vqtok.io.video, or an :class:`InputError` that says how to install PyAV."""
    try:
        from vqtok.io import video
    except ImportError as e:
        raise InputError(f"reading video files needs PyAV: pip install 'vqtok[video]' ({e})") from None
    return video


@functools.cache
def video_suffixes() -> frozenset[str]:
    """The suffixes read as video; none without PyAV (a video file then gets the image reader's error)."""
    try:
        return video_io().VIDEO_EXTENSIONS
    except InputError:
        return frozenset()
