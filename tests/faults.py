"""Shared by the fault-injection tests: a callback that poisons training batches, a small RAM disk, and running
and killing real ``vqtok`` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import pytest

REPO = Path(__file__).resolve().parent.parent


class PoisonBatches(L.Callback):
    """Fill the images of the listed training batches (0-based, counted over the whole run) with NaN, so the loss
    of those steps is non-finite. Given on the command line as ``--trainer.callbacks+=faults.PoisonBatches``."""

    def __init__(self, batches: list[int]) -> None:
        self.batches = set(batches)
        self.seen = 0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.seen in self.batches:
            batch["images"].fill_(float("nan"))
        self.seen += 1


class MarkBatch(L.Callback):
    """Create the file ``path`` when training batch ``batch`` (0-based, over the whole run) starts: a signal for a
    test to kill the run at a known point. Given as ``--trainer.callbacks+=faults.MarkBatch``."""

    def __init__(self, batch: int, path: str) -> None:
        self.batch = batch
        self.path = Path(path)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if int(pl_module.batches_seen) == self.batch:
            self.path.touch()


def vqtok_command(*args: str) -> list[str]:
    """``python -m vqtok.cli.main ARGS``: a real process, as a user or a cluster runs it."""
    return [sys.executable, "-m", "vqtok.cli.main", *map(str, args)]


def run_vqtok(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        vqtok_command(*args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def start_vqtok(*args: str, cwd: Path) -> subprocess.Popen:
    """Start ``vqtok ARGS`` in its own process group (so :func:`kill_9` takes its workers too)."""
    return subprocess.Popen(
        vqtok_command(*args),
        cwd=cwd,
        env=_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_9_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300, poll_s: float = 0.002) -> bool:
    """SIGKILL ``proc``'s process group as soon as ``ready()`` is true. Returns whether it was still running then
    (False: it finished, or ``timeout`` passed, first)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return proc.returncode == -signal.SIGKILL
        time.sleep(poll_s)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return False


@contextmanager
def small_disk(parent: Path, size_kb: int) -> Iterator[Path]:
    """A tmpfs of ``size_kb`` KiB mounted under ``parent``: a disk that fills up. Skips the test where mounting is
    not allowed (not root, or no CAP_SYS_ADMIN in a container)."""
    mount_point = parent / f"disk-{uuid.uuid4().hex[:8]}"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def resize_disk(mount_point: Path, size_kb: int) -> None:
    """Grow (or shrink) a :func:`small_disk` in place: its files stay."""
    subprocess.run(["mount", "-o", f"remount,size={size_kb}k", str(mount_point)], check=True)


def _env() -> dict[str, str]:
    """The test's environment, with the checkout and tests/ importable (for ``faults.PoisonBatches``)."""
    path = os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path.rstrip(os.pathsep)}
