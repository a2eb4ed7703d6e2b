"""Section 6: whether ``torch.compile`` pays for the tokenizer: compile time and images/s against eager, on the
same weights and input (inductor; on a CPU it needs a C++ compiler)."""

from __future__ import annotations

import time
from typing import Any

import torch

import vqtok
from bench.common import interleaved, table


def run(model: str, device: torch.device, repeats: int, size: int = 256, batch: int = 16) -> tuple[str, dict]:
    tok = vqtok.load(model, device=device, tile_size=None)
    x = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=torch.channels_last)
    m = tok.model
    encoder, decoder = torch.compile(m.encoder), torch.compile(m.decoder)

    def eager():
        with torch.inference_mode():
            return m.decode_ids(m.encode(x).ids)

    def compiled():
        with torch.inference_mode():
            ids = m.quantizer(m.quant_conv(encoder(x))).ids
            return decoder(m.post_quant_conv(m.quantizer.indices_to_codes(ids)))

    result: dict[str, Any] = {}
    start = time.perf_counter()
    try:
        compiled()
    except Exception as e:  # noqa: BLE001 - no C++ compiler, an unsupported op...: report why
        result["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        return f"### torch.compile\n\nNot measured: {result['error']}", result
    result["compile_s"] = time.perf_counter() - start
    seconds = interleaved({"eager": eager, "compiled": compiled}, device, repeats)
    result.update({name: batch / s for name, s in seconds.items()})
    body = [
        ["eager", f"{result['eager']:.2f}", "-"],
        ["torch.compile", f"{result['compiled']:.2f}", f"{result['compile_s']:.0f} s"],
    ]
    text = (
        f"### torch.compile: `{model}` fp32, {size}x{size} batch {batch} encode + decode on {device.type}\n\n"
        + table(["mode", "img/s", "compile time"], body)
    )
    return text, result
