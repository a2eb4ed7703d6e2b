"""Section 2: vqtok's tokenizer (through the public API) next to diffusers' ``VQModel`` built with the same
architecture: images/s to encode (pixels -> ids), decode (ids -> pixels) and both, and the FLOP/s achieved."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

import vqtok
from bench.common import in_child, interleaved, ratio, table
from bench.peers import matched_description, vq_model

SIZES = [256, 512]
BATCHES = [1, 16]


def peer_calls(peer: torch.nn.Module, x: torch.Tensor, grid: tuple[int, ...]) -> dict[str, Any]:
    """VQModel's three calls on images x: encode to its quantizer's ids, decode ids via its codebook, both."""
    with torch.inference_mode():
        ids = peer.quantize(peer.encode(x).latents)[2][2].reshape(grid)  # (B, h, w)

    def encode():
        with torch.inference_mode():
            return peer.quantize(peer.encode(x).latents)[2][2]

    def decode(i=ids):
        with torch.inference_mode():
            shape = (*i.shape, peer.quantize.vq_embed_dim)  # (B, h, w, D); it returns (B, D, h, w)
            z_q = peer.quantize.get_codebook_entry(i.flatten(), shape)
            return peer.decode(z_q, force_not_quantize=True).sample

    return {"encode": encode, "decode": decode, "encode+decode": lambda: decode(encode().reshape(grid))}


def contenders(tok: vqtok.Tokenizer, peer: torch.nn.Module, x: torch.Tensor) -> dict[str, dict[str, Any]]:
    """For each contender, the three calls on images x (B, 3, S, S) in [-1, 1]: vqtok, VQModel as its
    documentation runs it (NCHW), and VQModel with its weights and input channels-last (as vqtok runs)."""
    ids = tok.encode(x)
    peer_cl = copy.deepcopy(peer).to(memory_format=torch.channels_last)
    return {
        "vqtok": {
            "encode": lambda: tok.encode(x),
            "decode": lambda: tok.decode(ids),
            "encode+decode": lambda: tok.decode(tok.encode(x)),
        },
        "peer": peer_calls(peer, x, tuple(ids.shape)),
        "peer_cl": peer_calls(peer_cl, x.contiguous(memory_format=torch.channels_last), tuple(ids.shape)),
    }


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def conv_seconds(fn) -> float:
    """Seconds spent in convolution kernels during one call (CPU profiler)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    conv_ops = ("aten::mkldnn_convolution", "aten::_convolution_pointwise", "aten::cudnn_convolution")
    return sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in conv_ops) / 1e6


def conv_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return sum(n for op, n in counter.get_flop_counts()["Global"].items() if "convolution" in str(op))


def measure(model: str, size: int, batch: int, repeats: int, device: str) -> list[dict[str, Any]]:
    """Both libraries at one size and batch: images/s of each call, timed in turns, and vqtok's FLOPs."""
    device = torch.device(device)
    tok = vqtok.load(model, device=device)
    peer = vq_model(tok.config).eval().to(device)
    torch.manual_seed(0)
    x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    calls = contenders(tok, peer, x)
    rows = []
    for mode in ("encode", "decode", "encode+decode"):
        seconds = interleaved({lib: calls[lib][mode] for lib in calls}, device, repeats)
        work = flops(calls["vqtok"][mode])
        rows.append(
            {
                "size": size,
                "batch": batch,
                "mode": mode,
                "images_per_s": {lib: batch / s for lib, s in seconds.items()},
                "vqtok_flops_per_image": work / batch,
                "vqtok_achieved_flops": work / seconds["vqtok"],
            }
        )
    return rows


def conv_rate(model: str, size: int, batch: int) -> dict[str, float]:
    """FLOP/s inside vqtok's convolutions during one encode+decode (CPU profiler)."""
    tok = vqtok.load(model)
    x = torch.rand(batch, 3, size, size) * 2 - 1
    call = lambda: tok.decode(tok.encode(x))  # noqa: E731
    call()
    return {"conv_flops_per_s": conv_flops(call) / conv_seconds(call)}


def run(model: str, device: torch.device, repeats: int, peak_conv: float) -> tuple[str, list[dict[str, Any]]]:
    rows = []
    for size in SIZES:
        for batch in BATCHES:
            args = dict(model=model, size=size, batch=batch, repeats=repeats, device=str(device))
            # A fresh process per size: no heap or cache state carried over from the previous one.
            result = measure(**args) if device.type == "cuda" else in_child("bench.tokenizer:measure", **args)
            if isinstance(result, dict):
                raise SystemExit(f"tokenizer benchmark at {size}x{size} batch {batch} failed: {result['error']}")
            rows += result
    rate = in_child("bench.tokenizer:conv_rate", model=model, size=256, batch=16) if device.type == "cpu" else {}
    conv = rate.get("conv_flops_per_s")
    config = vqtok.load(model).config
    body = []
    for r in rows:
        speed = r["images_per_s"]
        body.append(
            [
                r["size"],
                r["batch"],
                r["mode"],
                f"{speed['vqtok']:.2f}",
                f"{speed['peer']:.2f}",
                f"**{ratio(speed['vqtok'], speed['peer'])}**",
                f"{speed['peer_cl']:.2f}",
                ratio(speed["vqtok"], speed["peer_cl"]),
                f"{r['vqtok_flops_per_image'] / 1e9:.1f}",
                f"{r['vqtok_achieved_flops'] / 1e12:.3f}",
                f"{100 * r['vqtok_achieved_flops'] / peak_conv:.0f}%",
            ]
        )
    headers = [
        "size",
        "batch",
        "call",
        "vqtok img/s",
        "VQModel img/s",
        "vqtok / VQModel",
        "VQModel CL img/s",
        "vqtok / VQModel CL",
        "GFLOP/img",
        "vqtok TFLOP/s",
        "of conv peak",
    ]
    conv_line = (
        (
            f"Inside the convolutions (profiled, 256x256 batch 16 encode+decode): {conv / 1e12:.3f} TFLOP/s"
            f" = **{100 * conv / peak_conv:.0f}%** of the measured dense conv peak.\n\n"
        )
        if conv
        else ""
    )
    text = (
        f"### Tokenizer: `{model}` (fp32) vs diffusers VQModel, matched: {matched_description(config)}\n\n"
        "vqtok through `vqtok.load`/`encode`/`decode` (ids out, pixels back); VQModel through `encode` + its "
        "quantizer's ids, and `get_codebook_entry` + `decode`, NCHW as its documentation runs it, and again with "
        "its weights and input channels-last (CL, the layout vqtok runs in). Each size and batch in a fresh "
        "process, the contenders timed in turns. FLOPs counted by torch's "
        "FlopCounterMode on vqtok's call.\n\n" + conv_line + table(headers, body)
    )
    return text, [*rows, {"conv_flops_per_s": conv}]
