"""``python -m bench.load``: the arguments, and the run (serve the app, load it, stop it, report)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import bench.load
from bench.load.clients import ANSWERED, drive, final_check
from bench.load.plan import make_plan
from bench.load.report import folder_size, memory_figures, report, summarise, verdicts
from bench.load.server import MemorySampler, Server, loopback_host, tree_cpu_s


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=bench.load.__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50, help="concurrent gradio_client clients, one thread each")
    p.add_argument("--seconds", type=float, default=60.0, help="how long clients keep sending new requests")
    p.add_argument("--model", default="tiny", help="image-tab tokenizer: shipped name (tiny, image, video) or DIR")
    p.add_argument("--video-model", default="video_tiny", help="video tokenizer: shipped name or export DIR")
    p.add_argument(
        "--models-dir", action="append", metavar="DIR", help="passed to vqtok demo (default: its own, checkpoints/)"
    )
    p.add_argument("--queue-size", type=int, help="the server's queue length (default: the app's, app/limits.py)")
    p.add_argument("--invalid-fraction", type=float, default=0.15, help="share of requests that must be refused")
    p.add_argument("--seed", type=int, default=0, help="seeds every client's mix of requests")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a request may take before it has failed")
    p.add_argument("--backoff", type=float, default=1.0, help="mean pause (s) after a 'Queue is full' refusal")
    p.add_argument("--warmup", type=float, default=0.25, help="fraction of --seconds treated as warm-up")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to serve on (others are refused)")
    p.add_argument("--json", type=Path, help="also write the figures and every request's record here")
    args = p.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or not 0 <= args.invalid_fraction <= 1 or not 0 <= args.warmup < 1:
        p.error("need --clients >= 1, --seconds > 0, 0 <= --invalid-fraction <= 1 and 0 <= --warmup < 1")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Serve the app, load it, stop it; every figure as a dict (see :func:`report`)."""
    from bench.common import machine

    host = loopback_host(args.host)
    before = machine()
    with tempfile.TemporaryDirectory(prefix="vqtok-load-") as tmp:
        folder = Path(tmp)
        with Server(args, host, folder) as server:
            started = time.monotonic()
            plan = make_plan(args, folder / "inputs")  # while the server starts
            server.wait_ready(timeout=max(0.0, 180 - (time.monotonic() - started)))
            start_s = time.monotonic() - started
            sampler = MemorySampler(server.pid, folder / "rss.txt")
            cpu = (tree_cpu_s(server.pid), time.process_time())
            try:
                records, t0, elapsed = drive(server.url, plan, args, folder)
                cpu = (tree_cpu_s(server.pid) - cpu[0], time.process_time() - cpu[1])
                final = final_check(server.url, plan, args, folder)
            finally:
                sampler.stop()
            crashed = server.process.poll() is not None
        disk = {k: folder_size(path) for k, path in server.temp.items()}
        tracebacks = server.tracebacks()
    result = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": before,
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "cpu_s": {"server": cpu[0], "clients": cpu[1], "available": elapsed * (os.cpu_count() or 1)},
        "summary": summarise(records, plan, elapsed),
        "memory": memory_figures(sampler.samples, t0, args.warmup * args.seconds, elapsed),
        "server": {
            "url": server.url,
            "command": server.command,
            "start_s": start_s,
            "crashed": crashed,
            "alive_after": final.outcome == ANSWERED and not crashed,
            "final_request": final.outcome if final.outcome == ANSWERED else f"{final.outcome}: {final.reason}",
            "exit_code": server.exit_code,
            "stopped_by": server.stopped_by or "its own exit",
            "tracebacks": tracebacks,
            "disk": {k: sum(d[k] for d in disk.values()) for k in ("files", "mb")},
        },
        "records": [asdict(r) for r in records],
    }
    result["passed"] = all(ok for ok, _ in verdicts(result))
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the load test, print the report, write ``--json``; 0 when every check passed, else 1."""
    args = parse_args(argv)
    result = run(args)
    print(report(result), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    return 0 if result["passed"] else 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: unwind like Ctrl-C, so the server is stopped


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
