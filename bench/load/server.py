"""The server under load: ``vqtok demo`` in its own process on a loopback address, and its process tree's resident
memory and CPU time from /proc, sampled in a process of its own."""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]


def loopback_host(host: str) -> str:
    """``host`` if it is a loopback address ("localhost" becomes 127.0.0.1); anything else is refused."""
    host = "127.0.0.1" if host == "localhost" else host
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"bench.load serves on loopback only (127.0.0.1, ::1), not {host!r}")
    return host


class Server:
    """``vqtok demo`` in its own process on ``host`` and a free port, with private GRADIO_TEMP_DIR and TMPDIR (the
    app's workspace); a context manager that always stops it (SIGINT, then SIGTERM, then SIGKILL)."""

    def __init__(self, args: argparse.Namespace, host: str, folder: Path) -> None:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
            self.port = s.getsockname()[1]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"
        self.temp = {name: folder / name for name in ("gradio", "tmp")}
        for path in self.temp.values():
            path.mkdir(parents=True)
        self.log = folder / "server.log"
        cmd = [sys.executable, "-m", "vqtok.cli.main", "demo", "--host", host, "--port", str(self.port)]
        cmd += ["--image-model", args.model, "--video-model", args.video_model]
        cmd += [a for d in args.models_dir or [] for a in ("--models-dir", d)]
        cmd += ["--queue-size", str(args.queue_size)] if args.queue_size else []
        self.command = cmd
        self.process: subprocess.Popen | None = None
        self.stopped_by: str | None = None  # the signal that stopped it
        self.exit_code: int | None = None

    def __enter__(self) -> Server:
        env = {
            **os.environ,
            "GRADIO_TEMP_DIR": str(self.temp["gradio"]),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "TMPDIR": str(self.temp["tmp"]),
            "PYTHONUNBUFFERED": "1",
        }
        with self.log.open("wb") as log:  # its own session: a Ctrl-C in the terminal reaches the bench, which stops it
            self.process = subprocess.Popen(
                self.command, cwd=CHECKOUT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Wait until the server answers its API description; the seconds it took."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode} at start-up:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}gradio_api/info", timeout=5) as response:
                    if response.status == 200:
                        return time.monotonic() - start
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"the server did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.exit_code is not None:
            return
        if self.process.poll() is not None:  # it exited before we stopped it: a crash
            self.exit_code = self.process.returncode
            return
        for sig, wait in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            self.process.send_signal(sig)
            try:
                self.exit_code = self.process.wait(wait)
                self.stopped_by = sig.name
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def tracebacks(self) -> list[str]:
        """The tracebacks the server printed (each up to its exception line)."""
        found, current = [], None
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("Traceback (most recent call last)"):
                current = [line]
            elif current is not None:
                current.append(line)
                if line and not line.startswith(" "):
                    found.append("\n".join(current))
                    current = None
        return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants (VmRSS from /proc), in MB."""
    kib = 0
    for p in process_tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        kib += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return kib / 1024


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its descendants."""
    ticks = 0
    for p in process_tree(pid):
        try:
            ticks += sum(int(v) for v in Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[11:13])
        except (OSError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def sample_rss(pid: int, out: str, interval: float = 1.0) -> None:
    """Append "monotonic-time MB" lines to ``out`` every ``interval`` seconds while ``pid`` lives (the body of
    :class:`MemorySampler`'s process)."""
    with open(out, "w", buffering=1) as f:
        while os.path.exists(f"/proc/{pid}"):
            f.write(f"{time.monotonic()} {tree_rss_mb(pid)}\n")
            time.sleep(interval)


class MemorySampler:
    """Samples :func:`tree_rss_mb` of the server every ``interval`` seconds, in a process of its own: with dozens
    of client threads busy in this one, a sampling thread here would wait seconds for the GIL at every file read.
    ``samples`` (after :meth:`stop`) = (monotonic time, MB); the monotonic clock is the same in every process."""

    def __init__(self, pid: int, out: Path, interval: float = 1.0) -> None:
        self.out = out
        code = f"from bench.load.server import sample_rss; sample_rss({pid}, {str(out)!r}, {interval})"
        self.process = subprocess.Popen([sys.executable, "-c", code], cwd=CHECKOUT)
        self.samples: list[tuple[float, float]] = []

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        lines = self.out.read_text().splitlines() if self.out.is_file() else []
        self.samples = [(float(t), float(mb)) for t, mb in (line.split() for line in lines if len(line.split()) == 2)]
