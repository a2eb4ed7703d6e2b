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

The parts: server.py (``vqtok demo`` in its own process, and its memory and CPU from /proc), plan.py (the files and
requests clients send, and how each answer is checked), clients.py (the clients and how each request ended),
report.py (the figures, the PASS/FAIL verdicts and the printed report), __main__.py (arguments and the run).
"""

from __future__ import annotations

from bench.load.clients import QUEUE_FULL
from bench.load.plan import EXPECTED_REFUSAL
from bench.load.report import memory_figures
from bench.load.server import loopback_host

__all__ = ["EXPECTED_REFUSAL", "QUEUE_FULL", "loopback_host", "main", "memory_figures"]


def main(argv: list[str] | None = None) -> int:
    """Run the load test (see :func:`bench.load.__main__.main`); 0 when every check passed, else 1.

    Imported on call, not here: ``python -m bench.load`` runs ``__main__`` itself, and importing it from the package
    first would load it twice (runpy warns)."""
    from bench.load.__main__ import main as run_main

    return run_main(argv)
