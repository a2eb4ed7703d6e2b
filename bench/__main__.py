"""vqtok's benchmark suite, next to the libraries users would pick instead, in one run on one machine.

    python -m bench [--sections quantizer tokenizer training memory precision compile allocator] [--repeats 5]
    vqtok bench ...            (the same, from a source checkout)

Needs the peers: ``pip install -e ".[bench]"`` (vector-quantize-pytorch, diffusers). Prints a markdown report and
writes it with the raw figures to bench/results/suite.md and suite.json. Not a test: every figure depends on the
machine and its load, which the report states; ratios are measured in turns within the same run. Uses the GPU
when there is one (bf16 for training there), else the CPU with all its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from bench import allocator, compiled, memory, precision, quantizer, tokenizer
from bench.common import RESULTS, dense_peak, machine
from vqtok.allocator import keep_freed_memory

SECTIONS = ("quantizer", "tokenizer", "training", "memory", "precision", "compile", "allocator")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--model", default="tiny", help="image tokenizer (name or export directory) for the model rows")
    p.add_argument("--video-model", help="video tokenizer export for the clip (default: video_tiny, random init)")
    p.add_argument("--video-seconds", type=float, help="clip length (default: 60 on a GPU, 1 on a CPU)")
    p.add_argument("--chunk-frames", type=int, default=8, help="video frames per streamed chunk")
    p.add_argument("--train-configs", nargs="+", default=["configs/image_tiny.yaml", "configs/image_f8.yaml"])
    p.add_argument("--repeats", type=int, default=5, help="timed calls per contender (medians reported)")
    p.add_argument("--out", default=str(RESULTS / "suite"), help="report path without suffix (.md and .json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    keep_freed_memory()  # as the vqtok command does; the peers run in the same process, so they get it too
    torch.set_num_threads(os.cpu_count() or 1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    start = time.time()
    before = machine()
    peaks = {name: dense_peak(device, dtype) for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    parts, data = [], {"machine_before": before, "dense_peak_flops": peaks}
    if "quantizer" in args.sections:
        text, data["quantizer"] = quantizer.run(device, args.repeats)
        parts.append(text)
    if "tokenizer" in args.sections:
        text, data["tokenizer"] = tokenizer.run(args.model, device, args.repeats, peaks["fp32"]["conv"])
        parts.append(text)
    if "training" in args.sections:
        text, data["training"] = training_section(args.train_configs, device, peaks)
        parts.append(text)
    if "memory" in args.sections:
        seconds = args.video_seconds or (60.0 if device.type == "cuda" else 1.0)
        text, data["memory"] = memory.run(args.model, args.video_model, seconds, args.chunk_frames)
        parts.append(text)
    if "precision" in args.sections:
        text, data["precision"] = precision.run(args.model, device, args.repeats)
        parts.append(text)
    if "compile" in args.sections:
        text, data["compile"] = compiled.run(args.model, device, args.repeats)
        parts.append(text)
    if "allocator" in args.sections and device.type == "cpu":
        text, data["allocator"] = allocator.run(args.model, args.repeats)
        parts.append(text)
    data["machine_after"] = after = machine()
    header = (
        f"## vqtok benchmark, {time.strftime('%Y-%m-%d %H:%M', time.localtime(start))}\n\n"
        f"Machine: {before['gpu'] or before['cpu']}, {before['cpus']} CPUs, torch {before['torch']} "
        f"({before['torch_threads']} threads). Load average {before['load_average']} before, "
        f"{after['load_average']} after; {time.time() - start:.0f} s in all.\n"
        f"Measured dense peaks on {device.type}: 3x3 conv fp32 {peaks['fp32']['conv'] / 1e12:.3f}, "
        f"bf16 {peaks['bf16']['conv'] / 1e12:.3f} TFLOP/s; matmul fp32 {peaks['fp32']['matmul'] / 1e12:.3f}, "
        f"bf16 {peaks['bf16']['matmul'] / 1e12:.3f} TFLOP/s. Ratios are vqtok / peer (above 1: vqtok is faster, "
        "or for memory: the peer needs that many times more)."
    )
    report = "\n\n".join([header, *parts]) + "\n"
    print(report)
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".md", "w") as f:
        f.write(report)
    with open(out + ".json", "w") as f:
        json.dump(data, f, indent=2, default=str)
    print(f"wrote {out}.md and {out}.json")


def training_section(configs: list[str], device: torch.device, peaks: dict) -> tuple[str, list[dict]]:
    """Real Lightning training steps (GAN on) of each config; bf16-mixed on a GPU, fp32 and bf16 on a CPU."""
    from bench import training  # Lightning: only for this section
    from bench.common import table

    precisions = ["bf16-mixed"] if device.type == "cuda" else ["32-true", "bf16-mixed"]
    batch, size, steps = (16, 256, 10) if device.type == "cuda" else (4, 256, 4)
    rows = [
        training.training_throughput(config, steps, batch, size, prec, accelerator=device.type)
        for config in configs
        for prec in precisions
    ]
    body = []
    for r in rows:
        peak = peaks["bf16" if r["precision"].startswith("bf16") else "fp32"]["conv"]
        r["fraction_of_conv_peak"] = r["achieved_flops"] / peak
        body.append(
            [
                r["config"],
                r["precision"],
                r["image_size"],
                r["batch_size"],
                f"{r['images_per_s']:.2f}",
                f"{r['generator_flops_per_image'] / 1e9:.1f}",
                f"{r['achieved_flops'] / 1e12:.3f}",
                f"{100 * r['fraction_of_conv_peak']:.0f}%",
            ]
        )
    headers = ["config", "precision", "size", "batch", "images/s", "generator GFLOP/img", "TFLOP/s", "of conv peak"]
    text = (
        f"### Training step on {device.type}: real `TokenizerTraining` steps with the GAN on (Lightning, median "
        "step after warm-up); FLOPs of the generator's forward + backward\n\n" + table(headers, body)
    )
    return text, rows


if __name__ == "__main__":
    main()
