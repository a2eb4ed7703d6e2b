"""Keep freed memory in the process for reuse, instead of handing it back to the OS after every tensor.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves blocks above its mmap threshold (at most
32 MiB by default) with fresh ``mmap`` pages and unmaps them on free, and trims the heap top above its trim
threshold; so every large activation of a convolutional model costs page faults and zeroing in the kernel, which
on a small CPU can take more time than the convolutions (the README's performance section has the figures).
Raising both thresholds lets freed activations be reused by the next batch.

This changes a process-wide setting, so vqtok never does it on import: the ``vqtok`` command and the web app call
:func:`keep_freed_memory` at start-up, and library users may call it themselves. The process's resident memory
then stays at its high-water mark. ``VQTOK_KEEP_FREED_MEMORY=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

logger = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

_MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the reusable heap
_TRIM_THRESHOLD = 1 << 40  # never give the heap top back
_TOP_PAD = 1 << 30  # grow the heap 1 GiB (of address space) at a time: fewer, larger extensions


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to reuse freed large blocks (see the module docstring). Returns whether it took effect:
    False where the C library is not glibc (macOS, Windows, musl) or ``VQTOK_KEEP_FREED_MEMORY=0``."""
    if os.environ.get("VQTOK_KEEP_FREED_MEMORY", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    settings = ((_M_MMAP_THRESHOLD, _MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD), (_M_TOP_PAD, _TOP_PAD))
    ok = all(mallopt(param, value) == 1 for param, value in settings)
    if not ok:
        logger.debug("mallopt refused a setting; freed memory may still be returned to the OS")
    return ok
