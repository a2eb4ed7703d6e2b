"""The load test (bench/load/) run small: the real app in its own process on loopback, six real gradio_client
clients for a few seconds of mixed valid and invalid requests; every request answered or cleanly refused."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("gradio", reason="the app needs the app extra: pip install -e '.[app]'")

from app_server import export_tiny_models  # noqa: E402

from bench import load  # noqa: E402


@pytest.mark.slow
def test_six_clients_get_every_request_answered_or_cleanly_refused(tmp_path):
    models = export_tiny_models(tmp_path / "models")  # random weights: the checks compare sizes, not pixels
    out = tmp_path / "load.json"
    argv = ["--clients", "6", "--seconds", "8", "--invalid-fraction", "0.4", "--seed", "3", "--json", str(out)]
    argv += ["--model", str(models / "tiny"), "--video-model", str(models / "video_tiny"), "--models-dir", str(models)]
    start = time.monotonic()
    code = load.main(argv)
    r = json.loads(out.read_text())
    s, server, records = r["summary"], r["server"], r["records"]

    assert s["failures"] == [] and s["all"]["failed"] == 0
    valid = [x for x in records if x["valid"]]
    invalid = [x for x in records if not x["valid"]]
    assert len(valid) >= 5 and len(invalid) >= 3 and len(records) == s["all"]["sent"]
    assert all(x["outcome"] == "answered" for x in valid), [x for x in valid if x["outcome"] != "answered"]
    assert {x["kind"] for x in valid} >= {"image_png", "video"}  # both tokenize endpoints answered
    assert all(x["outcome"] == "refused" for x in invalid)
    for x in invalid:  # each refusal is the app's own message for that file, not just any error
        assert x["reason"] == load.QUEUE_FULL or load.EXPECTED_REFUSAL[x["kind"]] in x["reason"], x
    assert all(x["latency_s"] > 0 for x in records)
    assert s["all"]["latency_answered"]["p95_s"] >= s["all"]["latency_answered"]["p50_s"] > 0

    assert not server["crashed"] and server["alive_after"] and server["exit_code"] == 0
    assert len(r["memory"]["samples"]) >= 8  # sampled every second while it ran
    assert code == (0 if r["passed"] else 1) and (r["passed"] or not r["memory"]["flat"])
    assert time.monotonic() - start < 120  # it stops by itself


def test_only_loopback_is_served():
    for host in ("0.0.0.0", "192.168.1.10", "example.com"):
        with pytest.raises(SystemExit, match="loopback only"):
            load.loopback_host(host)
    assert load.loopback_host("localhost") == "127.0.0.1" and load.loopback_host("::1") == "::1"


def test_memory_flatness_tells_a_late_plateau_from_a_leak():
    warmup, end = 15.0, 60.0

    def run(rss) -> dict:
        return load.memory_figures([(float(t), rss(t)) for t in range(61)], 0.0, warmup, end)

    # A busy machine: the server reaches its plateau 10 s into the measured time, 150 MB above the end of warm-up.
    assert run(lambda t: 800 + 150 * min(max(t - 15, 0), 10) / 10 + 5 * (t % 3))["flat"]
    assert not run(lambda t: 800 + 6.0 * t)["flat"]  # a leak of 360 MB/min: peaks at 37 s and 60 s, +138 MB
    assert not run(lambda t: 800 + (200 if t > 50 else 0))["flat"]  # a late jump that stays
    figures = run(lambda t: 800 + 6.0 * t)
    assert figures["growth_mb"] == figures["second_window_peak_mb"] - figures["first_window_peak_mb"] == 138.0
