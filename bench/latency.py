"""Latency of one image through a shipped tokenizer: encode + decode of a single 256x256 image, fp32 and bf16.

    python -m bench.latency [--model image] [--size 256] [--threads 2] [--repeats 11]

Not a test: prints a markdown table (median seconds per call, timed in turns after a warm-up) and the machine's
load. The issue's target for the default image tokenizer is under 0.5 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse

import torch

import vqtok
from bench.common import interleaved, machine, table
from vqtok.allocator import keep_freed_memory
from vqtok.training.data import ProceduralImages


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="image", help="export directory or short name")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=11)
    args = p.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    before = machine()
    x = ProceduralImages(num_samples=1, image_size=args.size, seed=0, stream=9)[0][None]  # (1, 3, S, S)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    toks = {name: vqtok.load(args.model, dtype=dtype) for name, dtype in dtypes.items()}

    def round_trip(tok: vqtok.Tokenizer):
        return lambda: tok.decode(tok.encode(x))

    calls = {f"{name} encode+decode": round_trip(tok) for name, tok in toks.items()}
    calls.update({f"{name} encode": (lambda t=tok: t.encode(x)) for name, tok in toks.items()})
    seconds = interleaved(calls, torch.device("cpu"), args.repeats)
    psnr = {name: float(vqtok.metrics.psnr(tok.decode(tok.encode(x)), x)[0]) for name, tok in toks.items()}
    rows = [[name, f"{s * 1000:.0f} ms"] for name, s in seconds.items()]
    print(f"model {args.model}, one {args.size}x{args.size} image, {args.threads} threads, median of {args.repeats}")
    print(table(["call", "time"], rows))
    print(f"PSNR of this procedural image: fp32 {psnr['fp32']:.2f} dB, bf16 {psnr['bf16']:.2f} dB")
    print(f"load average before {before['load_average']}, after {machine()['load_average']}")


if __name__ == "__main__":
    main()
