"""Keep freed memory in the process for reuse, instead of handing it back to the OS after every tensor.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves blocks above its mmap threshold (at most
32 MiB by default) with fresh ``mmap`` pages and unmaps them on free, and trims the heap top above its trim
threshold; so every large activation of a convolutional model costs page faults and zeroing in the kernel, which
on a small CPU can take more time than the convolutions (the README's performance section has the figures).
Raising both thresholds lets freed activations be reused by the next batch.

This changes a process-wide setting, so vqtok never does it on import: the ``vqtok`` commands (but not
``vqtok demo``) call :func:`keep_freed_memory` at start-up, and library users may call it themselves. The process's
resident memory then stays at its high-water mark. ``VQTOK_KEEP_FREED_MEMORY=0`` turns it off.

A long-running server wants the opposite, memory that stays flat: the web app does not keep freed memory, and
calls :func:`share_one_arena` instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable

logger = logging.getLogger(__name__)

# mallopt parameters (malloc.h); values are C ints
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_SETTINGS = (
    (_M_MMAP_THRESHOLD, 1 << 30, "blocks up to 1 GiB come from the reusable heap"),
    (_M_TRIM_THRESHOLD, 2**31 - 1, "the heap top is given back only above 2 GiB free"),
    (_M_TOP_PAD, 1 << 30, "grow the heap 1 GiB (of address space) at a time: fewer, larger extensions"),
)


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to reuse freed large blocks (see the module docstring). Returns whether every setting
    took effect: False where the C library is not glibc (macOS, Windows, musl), where glibc refused one (each is
    tried on its own and a refusal is logged), or with ``VQTOK_KEEP_FREED_MEMORY=0``."""
    if os.environ.get("VQTOK_KEEP_FREED_MEMORY", "1") == "0":
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    ok = True
    for param, value, meaning in _SETTINGS:
        if mallopt(param, value) != 1:
            logger.warning(
                "glibc refused mallopt(%d, %d) (%s); large tensors may be page-faulted afresh", param, value, meaning
            )
            ok = False
    return ok


STREAM_MMAP_THRESHOLD = 8 << 20  # see map_large_blocks


def map_large_blocks() -> bool:
    """Serve every block of :data:`STREAM_MMAP_THRESHOLD` (8 MiB) or more with its own ``mmap``, returned to the
    OS when freed; smaller blocks come from the heap and are reused.

    For streaming long, large videos (the ``vqtok`` commands call it, instead of :func:`keep_freed_memory`, when
    they encode or decode video files): the process then holds about what is alive. glibc's default threshold
    rises to 32 MiB after the first large free, so the 8-32 MiB tensors of a 720p stream (low-resolution levels,
    chunks) pile up in the heap, and the heap keeps their freed space resident: 0.1-0.2 GB more at 720p. Returns
    whether glibc took the setting.
    """
    mallopt = _mallopt()
    return mallopt is not None and mallopt(_M_MMAP_THRESHOLD, STREAM_MMAP_THRESHOLD) == 1


def share_one_arena() -> bool:
    """Threads started from now on allocate from the malloc arena that exists instead of new ones of their own.

    glibc gives each new thread an arena (up to 8 per core), and a server that runs each request on whichever
    worker thread is free then holds about one request's peak of freed memory per thread: ``python -m bench.load``
    measured the app's memory growing by 2 GB in a minute of 50 clients without this. Returns whether glibc took
    the setting (False where the C library is not glibc).
    """
    mallopt = _mallopt()
    return mallopt is not None and mallopt(_M_ARENA_MAX, 1) == 1


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's mallopt through ctypes, or None where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt
