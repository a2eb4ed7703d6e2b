"""The figures of a run: outcomes and latency per kind, the server's memory after warm-up, the PASS/FAIL verdicts
and the printed report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.load.clients import ANSWERED, FAILED, QUEUE_FULL, REFUSED, Record
from bench.load.plan import EXPECTED_REFUSAL, VALID_MIX, Plan

GROWTH_LIMIT_MB, GROWTH_LIMIT_FRACTION = 100.0, 0.10  # "memory flat": growth after warm-up below the smaller


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
