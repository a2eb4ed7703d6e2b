"""Section 1: vqtok's ``VectorQuantizer`` next to vector-quantize-pytorch's ``VectorQuantize``, same settings
(EMA codebook, plain l2 distances, fp32), on 65,536 input vectors: seconds per call and peak memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from bench.common import in_child, interleaved, measure_peak, ratio, table
from vqtok.model.quantizers import VectorQuantizer

NUM_VECTORS = 65_536
SETTINGS = [(1024, 8), (1024, 256), (16384, 8), (16384, 256)]  # (codebook size, code dim)


def build(library: str, num_codes: int, code_dim: int, device: str, train: bool) -> Callable[[], None]:
    """One call of ``library``'s quantizer on NUM_VECTORS vectors laid out as it takes them."""
    from bench.peers import vector_quantize

    torch.manual_seed(0)
    z = torch.randn(16, code_dim, 64, 64, device=device)  # (B, D, H, W): 16 * 64 * 64 = 65,536 vectors
    if library == "vqtok":
        q = VectorQuantizer(
            num_codes,
            code_dim,
            l2_normalize=False,
            codebook="ema",
            decay=0.99,
            commitment_weight=0.25,
            dead_code_threshold=0.0,
        ).to(device)
        x = z

        def forward():
            out = q(x)
            return out.z_q, out.loss
    else:
        q = vector_quantize(num_codes, code_dim).to(device)
        x = z.flatten(2).transpose(1, 2).contiguous()  # (B, N, D): its channel-last layout

        def forward():
            z_q, _, loss = q(x)
            return z_q, loss

    q.train(train)
    if train:
        x.requires_grad_(True)

        def call():
            z_q, loss = forward()
            (z_q.square().mean() + loss.sum()).backward()
            x.grad = None
    else:

        def call():
            with torch.inference_mode():
                forward()

    return call


def peak(library: str, num_codes: int, code_dim: int, train: bool) -> dict[str, float]:
    """Child-process side: peak CPU memory of one call."""
    return measure_peak(lambda: build(library, num_codes, code_dim, "cpu", train))


def cuda_peak(library: str, num_codes: int, code_dim: int, train: bool, device: torch.device) -> dict[str, float]:
    call = build(library, num_codes, code_dim, str(device), train)
    call()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    call()
    torch.cuda.synchronize(device)
    return {"peak_above_inputs_mib": (torch.cuda.max_memory_allocated(device) - before) / 2**20}


def compare(num_codes: int, code_dim: int, train: bool, repeats: int, libraries: list[str]) -> dict[str, float]:
    """Child-process side: seconds per call of each library, timed in turns."""
    device = torch.device("cpu")
    return interleaved({lib: build(lib, num_codes, code_dim, "cpu", train) for lib in libraries}, device, repeats)


def run(device: torch.device, repeats: int) -> tuple[str, list[dict[str, Any]]]:
    rows = []
    for num_codes, code_dim in SETTINGS:
        for train in (True, False):
            setting = dict(num_codes=num_codes, code_dim=code_dim, train=train)
            if device.type == "cuda":
                calls = {lib: build(lib, num_codes, code_dim, str(device), train) for lib in ("vqtok", "peer")}
                seconds = interleaved(calls, device, repeats)
                memory = {lib: cuda_peak(lib, device=device, **setting) for lib in ("vqtok", "peer")}
            else:  # each in a fresh process with capped memory: the peer can need more than the machine has
                seconds = in_child("bench.quantizer:compare", repeats=repeats, libraries=["vqtok", "peer"], **setting)
                if "error" in seconds:  # both at once do not fit: one after the other, each alone
                    seconds = {
                        lib: in_child("bench.quantizer:compare", repeats=repeats, libraries=[lib], **setting)
                        for lib in ("vqtok", "peer")
                    }
                    seconds = {lib: s.get(lib, s.get("error")) for lib, s in seconds.items()}
                memory = {
                    lib: in_child("bench.quantizer:peak", keep_freed=False, library=lib, **setting)
                    for lib in ("vqtok", "peer")
                }
            mode = "forward+backward" if train else "inference"
            rows.append({"codes": num_codes, "dim": code_dim, "mode": mode, "seconds": seconds, "memory": memory})
    body = []
    for r in rows:
        s, m = r["seconds"], r["memory"]
        mv, mp = (m[lib].get("peak_above_inputs_mib") for lib in ("vqtok", "peer"))
        body.append(
            [
                r["codes"],
                r["dim"],
                r["mode"],
                _ms(s["vqtok"]),
                _ms(s["peer"]),
                f"**{ratio(s['peer'], s['vqtok'])}**" if _timed(s) else "-",
                _mib(m["vqtok"]),
                _mib(m["peer"]),
                f"**{ratio(mp, mv)}**" if mv is not None and mp is not None else "-",
            ]
        )
    headers = [
        "codes",
        "dim",
        "mode",
        "vqtok ms",
        "VectorQuantize ms",
        "speed-up",
        "vqtok peak MiB",
        "VectorQuantize peak MiB",
        "VectorQuantize / vqtok memory",
    ]
    text = (
        f"### Quantizer: {NUM_VECTORS:,} vectors, fp32, EMA codebook, vs vector-quantize-pytorch VectorQuantize\n\n"
        "Each setting is timed in a fresh process, the two libraries in turns (one after the other when both do "
        "not fit in memory at once). Peak memory is what one call adds above its inputs, measured in a fresh "
        "process per entry. Ratios above 1 favour vqtok.\n\n" + table(headers, body)
    )
    return text, rows


def _timed(seconds: dict[str, Any]) -> bool:
    return all(isinstance(v, float) for v in seconds.values())


def _ms(value: float | str) -> str:
    return f"{1e3 * value:.0f}" if isinstance(value, float) else value


def _mib(m: dict[str, Any]) -> str:
    return m["error"] if "error" in m else f"{m['peak_above_inputs_mib']:.0f}"
