"""What every benchmark section shares: the machine's description and load, interleaved timing, peak memory
measured in a fresh child process, the machine's dense FLOP/s, and markdown tables."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

RESULTS = Path(__file__).resolve().parent / "results"
MEMORY_FRACTION = 0.75  # of the machine's RAM: the most a child process may allocate


def machine() -> dict[str, Any]:
    """CPU, GPU, threads, versions and the load average now."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as f:
        cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict[str, Callable[[], object]], device: torch.device, repeats: int = 3) -> dict[str, float]:
    """Median seconds per call of each function, timed in turns (A B A B ...) after one warm-up call each, so
    a change in the machine's load hits every contender alike."""
    for fn in fns.values():
        fn()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}


def dense_peak(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> dict[str, float]:
    """Measured dense FLOP/s of a 3x3 conv (128 channels, 64x64, batch 8, channels-last) and a square matmul."""
    n = 4096 if device.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    x = torch.randn(8 * (8 if device.type == "cuda" else 1), 128, 64, 64, device=device, dtype=dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(128, 128, 3, 3, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        t = interleaved({"matmul": lambda: a @ b, "conv": lambda: F.conv2d(x, w, padding=1)}, device, repeats)
    return {"matmul": 2 * n**3 / t["matmul"], "conv": 2 * 128 * 128 * 9 * 64 * 64 * x.shape[0] / t["conv"]}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_peak(setup: Callable[[], Callable[[], object]]) -> dict[str, float]:
    """In this process: run ``setup()``, then the call it returns once; the peak resident memory above what was
    resident before the call (inputs and models excluded), and the whole process's peak, in MiB."""
    call = setup()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current resident size
    before = _status_kib("VmRSS")
    call()
    peak = _status_kib("VmHWM")
    return {"peak_above_inputs_mib": (peak - before) / 1024, "process_peak_mib": peak / 1024}


def in_child(target: str, keep_freed: bool = True, **kwargs: Any) -> Any:
    """Run ``module:function(**kwargs)`` in a fresh Python process (memory figures start clean there) and return
    its JSON result, or ``{"error": ...}`` with the reason when it failed (out of memory, a missing peer...).
    ``keep_freed=False`` leaves glibc's allocator at its defaults there: what peak-memory figures should use, as
    retained free blocks and fragmentation would otherwise count."""
    cmd = [sys.executable, "-m", "bench.common", target, json.dumps(kwargs)]
    env = {**os.environ, "VQTOK_KEEP_FREED_MEMORY": "1" if keep_freed else "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent)
    if out.returncode:
        tail = (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[-1]
        out_of_memory = out.returncode in (-9, 137) or any(
            words in out.stderr for words in ("can't allocate memory", "Cannot allocate memory", "MemoryError")
        )
        reason = f"out of memory (over {MEMORY_FRACTION * _ram() / 1e9:.0f} GB)" if out_of_memory else tail
        return {"error": reason}
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _ram() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def limit_memory() -> None:
    """Cap this process's data memory at MEMORY_FRACTION of the machine's RAM, so a contender that needs more fails
    with an allocation error here instead of bringing the out-of-memory killer down on the whole benchmark."""
    limit = int(MEMORY_FRACTION * _ram())
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


if __name__ == "__main__":  # the child side of in_child
    from vqtok.allocator import keep_freed_memory

    keep_freed_memory()
    limit_memory()
    module_name, function_name = sys.argv[1].split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    print(json.dumps(function(**json.loads(sys.argv[2]))))
