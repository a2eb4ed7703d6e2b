"""The clients: gradio_client clients, one thread each, sending requests until the deadline, and how each request
ended (answered, refused or failed)."""

from __future__ import annotations

import argparse
import contextlib
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load.plan import Plan, Request

ANSWERED, REFUSED, FAILED = "answered", "refused", "failed"
QUEUE_FULL = "Queue is full"
GENERIC_ERROR = "has raised an exception but has not enabled verbose error reporting"  # gradio_client's text


@dataclass
class Record:
    """One request: what it was, how it ended, how long it took."""

    kind: str
    valid: bool
    outcome: str  # answered, refused or failed
    reason: str  # the refusal's message, or why it failed ("" when answered)
    latency_s: float  # from submit (upload included) to the answer or error
    start_s: float  # seconds after the load began


def sort_error(request: Request, error: BaseException, timeout: float, private: str) -> tuple[str, str]:
    """(outcome, reason) of a request that ended in an exception on the client."""
    from gradio_client.exceptions import AppError, ValidationError

    message = str(error).strip()
    if QUEUE_FULL in message:
        return REFUSED, QUEUE_FULL
    if isinstance(error, TimeoutError):
        return FAILED, f"no answer within {timeout:g} s"
    if not isinstance(error, (AppError, ValidationError)):
        return FAILED, f"{type(error).__name__}: {message}"[:300]
    if not message or GENERIC_ERROR in message:
        return FAILED, "a generic error without a message (an uncaught exception in the app)"
    if "Traceback" in message or private in message:
        return FAILED, f"the message shows the server's internals: {message[:300]}"
    if request.valid:
        return FAILED, f"a valid request was refused: {message[:300]}"
    return REFUSED, message


def send(client: Any, request: Request, path: Path, timeout: float, private: str, t0: float) -> Record:  # noqa: ANN401
    """Send one request and sort how it ended."""
    start = time.monotonic()
    job = None
    try:
        job = client.submit(*request.args(path), api_name=request.endpoint)
        answer = job.result(timeout=timeout)
    except Exception as e:  # noqa: BLE001 - every way a request can end is sorted in sort_error
        if isinstance(e, TimeoutError) and job is not None:
            with contextlib.suppress(Exception):  # best effort: the server may be too busy to take the cancellation
                job.cancel()
        outcome, reason = sort_error(request, e, timeout, private)
    else:
        if not request.valid:
            outcome, reason = FAILED, "an invalid request was answered"
        else:
            try:
                problem = request.check(path, answer)
            except (KeyError, IndexError, TypeError, ValueError, OSError) as e:
                problem = f"a malformed answer ({type(e).__name__}: {e})"
            outcome, reason = (FAILED, f"wrong answer: {problem}") if problem else (ANSWERED, "")
    return Record(request.kind, request.valid, outcome, reason, time.monotonic() - start, start - t0)


@dataclass
class Tally:
    """One client's finished requests, and the one it is waiting on (kind, valid, start)."""

    records: list[Record] = field(default_factory=list)
    waiting: tuple[str, bool, float] | None = None


def client_loop(
    client: Any,  # noqa: ANN401 - a gradio_client.Client
    plan: Plan,
    rng: random.Random,
    args: argparse.Namespace,
    times: tuple[float, float],
    stop: threading.Event,
    private: str,
    tally: Tally,
) -> None:
    """Send requests one after another until the deadline; after "Queue is full", pause about ``args.backoff``."""
    t0, deadline = times
    while time.monotonic() < deadline and not stop.is_set():
        request, path = plan.pick(rng)
        tally.waiting = (request.kind, request.valid, time.monotonic())
        record = send(client, request, path, args.timeout, private, t0)
        tally.records.append(record)
        tally.waiting = None
        if record.reason == QUEUE_FULL:
            stop.wait(min(args.backoff * rng.uniform(0.5, 1.5), max(0.0, deadline - time.monotonic())))


def new_client(url: str, downloads: Path, timeout: float) -> Any:  # noqa: ANN401 - a gradio_client.Client
    """A client that downloads answers under ``downloads`` and waits up to ``timeout`` on every HTTP call (httpx's
    default, 5 s, would fail an upload that a busy server takes longer to accept)."""
    from gradio_client import Client

    return Client(
        url, verbose=False, download_files=str(downloads), analytics_enabled=False, httpx_kwargs={"timeout": timeout}
    )


def connect(url: str, n: int, downloads: Path, timeout: float) -> list[Any]:
    """``n`` clients (made in parallel), each downloading answers under ``downloads/i``."""
    from concurrent.futures import ThreadPoolExecutor

    def make(i: int) -> Any:  # noqa: ANN401
        return new_client(url, downloads / str(i), timeout)

    with ThreadPoolExecutor(max_workers=min(n, 8)) as pool:
        return list(pool.map(make, range(n)))


def drive(url: str, plan: Plan, args: argparse.Namespace, folder: Path) -> tuple[list[Record], float, float]:
    """Run the clients; (every record, the load's start on the monotonic clock, its length until the last
    answer). A client still waiting ``--timeout`` + 30 s after the deadline is left behind, its request failed."""
    clients = connect(url, args.clients, folder / "downloads", args.timeout)
    stop = threading.Event()
    t0 = time.monotonic()
    times = (t0, t0 + args.seconds)
    tallies = [Tally() for _ in clients]
    threads = [
        threading.Thread(
            target=client_loop,
            args=(c, plan, random.Random(f"{args.seed}-{i}"), args, times, stop, str(folder), tallies[i]),
            daemon=True,
        )
        for i, c in enumerate(clients)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(0.0, t0 + args.seconds + args.timeout + 30 - time.monotonic()))
    finally:
        stop.set()
    records = [r for tally in tallies for r in list(tally.records)]
    for thread, tally in zip(threads, tallies):
        if thread.is_alive() and tally.waiting is not None:
            kind, valid, start = tally.waiting
            reason = "no answer by the end of the run: the client was left waiting"
            records.append(Record(kind, valid, FAILED, reason, time.monotonic() - start, start - t0))
    elapsed = time.monotonic() - t0
    for c in clients:
        c.close()
    return records, t0, elapsed


def final_check(url: str, plan: Plan, args: argparse.Namespace, folder: Path) -> Record:
    """A fresh client's valid image request after the load: is the server still answering?"""
    client = new_client(url, folder / "downloads" / "final", args.timeout)
    try:
        request = plan.valid[0]
        return send(client, request, request.files[0], args.timeout, str(folder), time.monotonic())
    finally:
        client.close()
