"""Load test of the web app: many concurrent ``gradio_client`` clients for a fixed time, a seeded mix of image,
video and token-file requests (some invalid), against the real app served by ``vqtok demo`` in its own process.

    python -m bench.load [--clients 50] [--seconds 60] [--model tiny] [--video-model video_tiny]
                         [--invalid-fraction 0.15] [--seed 0] [--json PATH]

Loopback only: the server binds 127.0.0.1 on a free port, with private temporary folders, and is stopped at the
end (also on Ctrl-C or an error); the run stops by itself (``--seconds``, then in-flight requests finish within
``--timeout``). Every request must be answered with a result that checks out, or cleanly refused: a message from
the app (``gr.Error``), or "Queue is full". Anything else is a failure: a connection error, a generic error (an
uncaught exception in the app), a timeout, a valid request refused, an invalid one answered. A client told that
the queue is full waits about ``--backoff`` seconds before its next request. The server's resident memory (its
process tree, from /proc) is sampled every second; the time after warm-up (the first ``--warmup`` of the run) is
split into two windows, and the second window's peak must exceed the first's by less than min(100 MB, 10%): a
server still reaching its plateau in the first window passes however busy the machine, a leak does not. Prints
requests/s, latency percentiles and outcomes per kind and PASS/FAIL lines; exits 1 when a request failed, the
server crashed or stopped uncleanly, or memory grew. Not a unit test
(tests/test_load.py runs it small): the figures depend on the machine and its load, which are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CHECKOUT = Path(__file__).resolve().parent.parent
ANSWERED, REFUSED, FAILED = "answered", "refused", "failed"
QUEUE_FULL = "Queue is full"
GENERIC_ERROR = "has raised an exception but has not enabled verbose error reporting"  # gradio_client's text
UNKNOWN_MODEL = "no_such_model"
GROWTH_LIMIT_MB, GROWTH_LIMIT_FRACTION = 100.0, 0.10  # "memory flat": growth after warm-up below the smaller
VALID_MIX = {"image_png": 0.25, "image_jpeg": 0.20, "video": 0.25, "decode_image": 0.15, "decode_video": 0.15}
# What the app's refusal of each invalid kind says (tests/test_load.py checks the messages against these).
EXPECTED_REFUSAL = {
    "corrupt_png": "truncated or corrupt",
    "text_as_png": "not an image format",
    "truncated_mp4": "truncated",
    "foreign_tokens": "which this app does not have",
    "garbage_tokens": "not a readable vqtok token file",
    "unknown_image_model": f"unknown model '{UNKNOWN_MODEL}'",
    "unknown_video_model": f"{UNKNOWN_MODEL} is not in the list of choices",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
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


# ---------------------------------------------------------------------------------------------- the server


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
        code = f"from bench.load import sample_rss; sample_rss({pid}, {str(out)!r}, {interval})"
        self.process = subprocess.Popen([sys.executable, "-c", code], cwd=CHECKOUT)
        self.samples: list[tuple[float, float]] = []

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        lines = self.out.read_text().splitlines() if self.out.is_file() else []
        self.samples = [(float(t), float(mb)) for t, mb in (line.split() for line in lines if len(line.split()) == 2)]


# -------------------------------------------------------------------------------------- what clients send


@dataclass(frozen=True)
class Request:
    """One kind of request: an endpoint, the files to send (one picked per request) and how to judge an answer."""

    kind: str
    valid: bool
    endpoint: str  # /tokenize_image, /tokenize_video or /decode_tokens
    files: tuple[Path, ...]
    model: str | None  # the model argument; None for /decode_tokens, which takes the file only
    check: Callable[[Path, Any], str | None] | None = None  # (file sent, answer) -> what is wrong, None if right

    def args(self, path: Path) -> tuple:
        from gradio_client import handle_file

        return (handle_file(str(path)),) if self.model is None else (handle_file(str(path)), self.model)


@dataclass(frozen=True)
class Plan:
    """Every kind of request, and the seeded choice among them."""

    valid: list[Request]
    invalid: list[Request]
    invalid_fraction: float

    def pick(self, rng: random.Random) -> tuple[Request, Path]:
        if self.invalid and rng.random() < self.invalid_fraction:
            request = rng.choice(self.invalid)
        else:
            request = rng.choices(self.valid, weights=[VALID_MIX[r.kind] for r in self.valid])[0]
        return request, rng.choice(request.files)


def served_names(args: argparse.Namespace) -> tuple[str, str]:
    """The names ``vqtok demo`` gives the two models (their directory names, made unique)."""
    from vqtok.export import resolve_export

    image, video = (resolve_export(m).resolve() for m in (args.model, args.video_model))
    if image == video:
        return image.name, image.name
    return image.name, video.name if video.name != image.name else f"{video.name} (2)"


def smooth_image(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (h, w, 3): low-frequency noise plus a gradient, like a photo more than like noise."""
    small = rng.integers(0, 256, (max(2, h // 12), max(2, w // 12), 3), dtype=np.uint8)
    noise = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), np.float32)
    ramp = np.linspace(0, 60, w, dtype=np.float32)[None, :, None]
    return np.clip(noise * 0.8 + ramp, 0, 255).astype(np.uint8)


def make_plan(args: argparse.Namespace, folder: Path) -> Plan:
    """Write the files clients send (seeded), and the requests that send them."""
    import vqtok
    from vqtok.io.video import read_video, write_video
    from vqtok.token_file import TokenItem, save_tokens

    folder.mkdir(parents=True)
    rng = np.random.default_rng(args.seed)
    image_name, video_name = served_names(args)
    image_tok, video_tok = vqtok.load(args.model), vqtok.load(args.video_model)
    sizes: dict[Path, tuple[int, ...]] = {}
    for suffix, shapes in ((".png", [(48, 64), (96, 96), (120, 160)]), (".jpg", [(96, 128), (192, 256)])):
        for h, w in shapes:
            path = folder / f"photo_{h}x{w}{suffix}"
            Image.fromarray(smooth_image(h, w, rng)).save(path, quality=90)
            sizes[path] = (h, w)
    clip = folder / "clip.mp4"
    base = smooth_image(48, 96, rng)
    write_video(clip, np.stack([base[:, 3 * t : 3 * t + 64] for t in range(9)]), fps=12.0)  # a pan, (9, 48, 64, 3)
    frames = read_video(clip)[0]  # what the server will encode, (9, 48, 64, 3)
    sizes[clip] = frames.shape[:3]
    first = folder / "photo_48x64.png"
    image_tokens, video_tokens = folder / "image.tokens.safetensors", folder / "video.tokens.safetensors"
    with Image.open(first) as img:
        ids = image_tok.encode(np.asarray(img.convert("RGB")))[0].cpu()  # (h, w)
    item = TokenItem(ids, (48, 64), first.name)
    save_tokens(image_tokens, [item], image_name, image_tok.fingerprint, image_tok.codebook_size)
    ids = video_tok.encode(frames)[0].cpu()  # (t, h, w)
    item = TokenItem(ids, tuple(frames.shape[:3]), clip.name, fps=12.0)
    save_tokens(video_tokens, [item], video_name, video_tok.fingerprint, video_tok.codebook_size)
    images = [p for p in sizes if p.suffix == ".png"], [p for p in sizes if p.suffix == ".jpg"]
    f, r = video_tok.downsample, video_tok.temporal_downsample
    valid = [
        Request("image_png", True, "/tokenize_image", tuple(images[0]), image_name, image_check(image_tok, sizes)),
        Request("image_jpeg", True, "/tokenize_image", tuple(images[1]), image_name, image_check(image_tok, sizes)),
        Request("video", True, "/tokenize_video", (clip,), video_name, video_check(f, r, sizes)),
        Request("decode_image", True, "/decode_tokens", (image_tokens,), None, decode_check("image")),
        Request("decode_video", True, "/decode_tokens", (video_tokens,), None, decode_check("video")),
    ]
    return Plan(valid, invalid_requests(folder, first, clip, image_name, video_name, rng), args.invalid_fraction)


def invalid_requests(
    folder: Path, image: Path, clip: Path, image_name: str, video_name: str, rng: np.random.Generator
) -> list[Request]:
    """Files and arguments the app must refuse with a message."""
    import torch

    from vqtok.io.video import write_video
    from vqtok.token_file import TokenItem, save_tokens

    png = image.read_bytes()
    (corrupt := folder / "cut.png").write_bytes(png[: len(png) // 2])
    (text := folder / "notes.png").write_text("a text file with a picture's name\n")
    full = folder / "full.mp4"
    write_video(full, rng.integers(0, 256, (24, 64, 64, 3), dtype=np.uint8), fps=12.0)
    (truncated := folder / "cut.mp4").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    foreign = folder / "foreign.tokens.safetensors"  # what a model the server lacks writes: its own fingerprint
    item = TokenItem(ids=torch.zeros(6, 8, dtype=torch.long), size=(48, 64), source="elsewhere.png")
    save_tokens(foreign, [item], "elsewhere", "0123456789abcdef", 512)
    (garbage := folder / "garbage.safetensors").write_bytes(rng.integers(0, 256, 400, dtype=np.uint8).tobytes())
    return [
        Request("corrupt_png", False, "/tokenize_image", (corrupt,), image_name),
        Request("text_as_png", False, "/tokenize_image", (text,), image_name),
        Request("truncated_mp4", False, "/tokenize_video", (truncated,), video_name),
        Request("foreign_tokens", False, "/decode_tokens", (foreign,), None),
        Request("garbage_tokens", False, "/decode_tokens", (garbage,), None),
        Request("unknown_image_model", False, "/tokenize_image", (image,), UNKNOWN_MODEL),
        Request("unknown_video_model", False, "/tokenize_video", (clip,), UNKNOWN_MODEL),
    ]


def image_check(tok: Any, sizes: dict[Path, tuple[int, ...]]) -> Callable[[Path, Any], str | None]:  # noqa: ANN401
    """An answer of /tokenize_image is right when its figures state the input's size and token grid, and its token
    file and a reconstruction of the input's size arrived."""
    f = tok.downsample

    def check(path: Path, answer: Any) -> str | None:  # noqa: ANN401
        h, w = sizes[path]
        figures = answer[6]
        want = {"input_size": [h, w], "token_grid": [math.ceil(h / f), math.ceil(w / f)]}
        got = {k: figures.get(k) for k in want}
        if got != want:
            return f"figures {got}, expected {want}"
        if not Path(answer[7]).is_file():
            return "no token file"
        with Image.open(answer[8]) as reconstruction:
            return None if reconstruction.size == (w, h) else f"reconstruction of size {reconstruction.size}"

    return check


def video_check(f: int, r: int, sizes: dict[Path, tuple[int, ...]]) -> Callable[[Path, Any], str | None]:
    """An answer of /tokenize_video is right when its figures state the clip's size and token grid, and its token
    file and reconstruction arrived."""

    def check(path: Path, answer: Any) -> str | None:  # noqa: ANN401
        t, h, w = sizes[path]
        figures = answer[6]
        grid = [1 + math.ceil((t - 1) / r), math.ceil(h / f), math.ceil(w / f)]
        got = {k: figures.get(k) for k in ("input_size", "token_grid")}
        if got != {"input_size": [t, h, w], "token_grid": grid}:
            return f"figures {got}, expected size {[t, h, w]}, grid {grid}"
        video = answer[1]["video"] if isinstance(answer[1], dict) else answer[1]
        return None if Path(answer[7]).is_file() and Path(video).is_file() else "no token file or reconstruction"

    return check


def decode_check(what: str) -> Callable[[Path, Any], str | None]:
    """An answer of /decode_tokens is right when it decoded the one image (or video) the file holds."""

    def check(path: Path, answer: Any) -> str | None:  # noqa: ANN401
        gallery, video, files, summary = answer
        ok = len(files) == 1 and (len(gallery or []) == 1 if what == "image" else video is not None)
        return None if ok and f"1 {what}(s)" in summary else f"decoded {len(files)} file(s): {summary[:200]!r}"

    return check


# ------------------------------------------------------------------------------------------- the clients


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


# ------------------------------------------------------------------------------------------- the figures


def latency(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50_s": None, "p95_s": None, "max_s": None}
    p50, p95 = np.percentile(values, [50, 95])
    return {"n": len(values), "p50_s": float(p50), "p95_s": float(p95), "max_s": float(max(values))}


def outcome_counts(records: list[Record]) -> dict[str, Any]:
    queue_full = sum(r.reason == QUEUE_FULL for r in records)
    return {
        "sent": len(records),
        ANSWERED: sum(r.outcome == ANSWERED for r in records),
        "refused_queue_full": queue_full,
        "refused_message": sum(r.outcome == REFUSED for r in records) - queue_full,
        FAILED: sum(r.outcome == FAILED for r in records),
        "latency_answered": latency([r.latency_s for r in records if r.outcome == ANSWERED]),
        "latency_refused": latency([r.latency_s for r in records if r.outcome == REFUSED]),
    }


def memory_figures(samples: list[tuple[float, float]], t0: float, warmup_s: float, end_s: float) -> dict[str, Any]:
    """RSS after warm-up, split into two equal windows: memory is flat when the second window's peak exceeds the
    first window's peak by less than min(GROWTH_LIMIT_MB, GROWTH_LIMIT_FRACTION of the first peak).

    A server still climbing to its plateau during the first window (how far it gets depends on how busy the
    machine is) does not count against it; a leak keeps climbing in the second window too, by its rate times the
    window. Also reported: RSS at the end of warm-up, the last value and the least-squares slope after warm-up.
    """
    points = [(t - t0, mb) for t, mb in samples]
    after = [(t, mb) for t, mb in points if warmup_s <= t <= end_s + 1.0]
    figures: dict[str, Any] = {
        "at_start_mb": points[0][1] if points else None,
        "warmup_s": warmup_s,
        "samples": [(round(t, 2), round(mb, 1)) for t, mb in points],
    }
    middle = (warmup_s + end_s) / 2
    first = [mb for t, mb in after if t < middle]
    second = [mb for t, mb in after if t >= middle]
    if len(first) < 2 or len(second) < 2:
        return {**figures, "flat": False, "note": "too few samples after warm-up"}
    ts, mbs = np.array([t for t, _ in after]), np.array([mb for _, mb in after])
    limit = min(GROWTH_LIMIT_MB, GROWTH_LIMIT_FRACTION * max(first))
    growth = max(second) - max(first)
    return {
        **figures,
        "end_of_warmup_mb": after[0][1],
        "max_after_warmup_mb": float(mbs.max()),
        "final_mb": after[-1][1],
        "first_window_peak_mb": max(first),
        "second_window_peak_mb": max(second),
        "window_split_s": middle,
        "growth_mb": growth,
        "slope_mb_per_min": float(np.polyfit(ts, mbs, 1)[0] * 60),
        "limit_mb": limit,
        "flat": growth < limit,
    }


def folder_size(path: Path) -> dict[str, float]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return {"files": len(files), "mb": sum(p.stat().st_size for p in files) / 1e6}


def summarise(records: list[Record], plan: Plan, elapsed: float) -> dict[str, Any]:
    kinds = [r.kind for r in plan.valid + plan.invalid]
    return {
        "elapsed_s": elapsed,
        "requests_per_s": len(records) / elapsed,
        "answered_per_s": sum(r.outcome == ANSWERED for r in records) / elapsed,
        "all": outcome_counts(records),
        "valid": outcome_counts([r for r in records if r.valid]),
        "invalid": outcome_counts([r for r in records if not r.valid]),
        "kinds": {k: outcome_counts([r for r in records if r.kind == k]) for k in kinds},
        "refusal_messages": {
            k: sorted({r.reason for r in records if r.kind == k and r.outcome == REFUSED and r.reason != QUEUE_FULL})
            for k in kinds
            if k in EXPECTED_REFUSAL
        },
        "failures": sorted({f"{r.kind}: {r.reason}" for r in records if r.outcome == FAILED}),
    }


def verdicts(result: dict[str, Any]) -> list[tuple[bool, str]]:
    """The PASS/FAIL lines: (passed, what)."""
    s, mem, server = result["summary"], result["memory"], result["server"]
    valid, invalid = s["valid"], s["invalid"]
    growth = f"{mem['growth_mb']:+.1f} MB" if "growth_mb" in mem else mem.get("note", "")
    limit = f"limit {mem['limit_mb']:.0f} MB" if "limit_mb" in mem else ""
    return [
        (s["all"][FAILED] == 0, f"no request failed ({s['all'][FAILED]} of {s['all']['sent']})"),
        (
            valid[FAILED] == 0 and valid[ANSWERED] > 0,
            f"valid requests answered ({valid[ANSWERED]}) or refused as queue full ({valid['refused_queue_full']}); "
            f"{valid[FAILED]} otherwise",
        ),
        (
            invalid[FAILED] == 0,
            f"invalid requests refused with a message ({invalid['refused_message']}) or as queue full "
            f"({invalid['refused_queue_full']}); {invalid[FAILED]} answered or failed",
        ),
        (not server["crashed"], "server did not crash during the run"),
        (server["alive_after"], "server alive after the run: a final valid request was answered"),
        (
            server["exit_code"] == 0,
            f"server stopped cleanly (exit status {server['exit_code']} after {server['stopped_by']})",
        ),
        (
            mem["flat"],
            f"memory flat after warm-up: peak of the second window {growth} on the first's ({limit}, "
            f"min({GROWTH_LIMIT_MB:.0f} MB, {GROWTH_LIMIT_FRACTION:.0%}))",
        ),
    ]


def fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


def report(result: dict[str, Any]) -> str:
    """The printed summary: settings, a table per kind, memory, the server, PASS/FAIL lines."""
    from bench.common import table

    a, s, mem, server, cpu = (result[k] for k in ("settings", "summary", "memory", "server", "cpu_s"))
    rows = []
    for name, c in [*s["kinds"].items(), ("all valid", s["valid"]), ("all invalid", s["invalid"]), ("all", s["all"])]:
        lat = c["latency_answered"]
        valid = "" if name.startswith("all") else ("valid" if name in VALID_MIX else "invalid")
        counts = [c["sent"], c[ANSWERED], c["refused_queue_full"], c["refused_message"], c[FAILED]]
        rows.append([name, valid, *counts, fmt(lat["p50_s"]), fmt(lat["p95_s"]), fmt(lat["max_s"])])
    headers = ["kind", "", "sent", "answered", "refused: queue full", "refused: message", "failed"]
    headers += ["p50 s", "p95 s", "max s"]
    refused = s["all"]["latency_refused"]
    lines = [
        f"## bench.load: {a['clients']} clients for {a['seconds']:g} s against vqtok demo on {server['url']}",
        "",
        f"models: image tab {a['model']!r}, video tab {a['video_model']!r}; invalid fraction {a['invalid_fraction']}, "
        f"seed {a['seed']}, request timeout {a['timeout']:g} s, pause after 'Queue is full' ~{a['backoff']:g} s",
        f"machine: {result['machine']['cpu']}, {result['machine']['cpus']} CPUs (server and clients share them); "
        f"load average before {result['machine']['load_average']}, after {result['load_average_after']}",
        f"server: up in {server['start_s']:.1f} s; {s['all']['sent']} requests in {s['elapsed_s']:.1f} s "
        f"(clients stop sending at {a['seconds']:g} s, then in-flight requests finish)",
        "",
        f"requests/s: {s['requests_per_s']:.2f} (answered/s: {s['answered_per_s']:.2f})",
        f"CPU during the load: server {cpu['server']:.0f} s, clients (this process) {cpu['clients']:.0f} s, of "
        f"{cpu['available']:.0f} s the machine's cores had",
        f"latency of answered requests (upload to answer, queue wait included): p50 "
        f"{fmt(s['all']['latency_answered']['p50_s'])} s, p95 {fmt(s['all']['latency_answered']['p95_s'])} s, "
        f"max {fmt(s['all']['latency_answered']['max_s'])} s; of refusals: p50 {fmt(refused['p50_s'])} s, "
        f"p95 {fmt(refused['p95_s'])} s",
        "",
        table(headers, rows),
        "",
    ]
    lines += memory_lines(mem)
    lines += [
        f"server after the run: alive and answering: {'yes' if server['alive_after'] else 'no'} "
        f"({server['final_request']}); exit status {server['exit_code']} after {server['stopped_by']}; "
        f"tracebacks in its log: {len(server['tracebacks'])}; uploads and outputs left on disk: "
        f"{server['disk']['files']} files, {server['disk']['mb']:.1f} MB",
        "",
        "refusal messages (first of each kind):",
    ]
    lines += [f"  {k}: {(m[0] if m else '-')[:150]}" for k, m in s["refusal_messages"].items()]
    if s["failures"]:
        lines += ["failures (distinct):", *[f"  {f}" for f in s["failures"][:20]]]
    if server["tracebacks"]:
        last = server["tracebacks"][0].splitlines()[-3:]
        lines += ["first traceback in the server's log, its last lines:", *[f"  {line}" for line in last]]
    lines += ["", *[f"{'PASS' if ok else 'FAIL'}  {what}" for ok, what in verdicts(result)]]
    return "\n".join(lines)


def memory_lines(mem: dict[str, Any]) -> list[str]:
    if "growth_mb" not in mem:
        return [f"server memory (RSS): {mem.get('note')}", ""]
    return [
        f"server memory (RSS): {mem['at_start_mb']:.0f} MB when up; {mem['end_of_warmup_mb']:.0f} MB at the end of "
        f"warm-up ({mem['warmup_s']:.0f} s), max {mem['max_after_warmup_mb']:.0f} MB after it, final "
        f"{mem['final_mb']:.0f} MB; peaks {mem['first_window_peak_mb']:.0f} MB before and "
        f"{mem['second_window_peak_mb']:.0f} MB after {mem['window_split_s']:.0f} s ({mem['growth_mb']:+.1f} MB), "
        f"slope {mem['slope_mb_per_min']:+.1f} MB/min",
        "",
    ]


# ------------------------------------------------------------------------------------------------ the run


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
