"""Inference backends side by side: torch fp32, torch bf16, onnxruntime fp32 at two graph-optimisation levels, and
onnxruntime with int8 weights (dynamic quantisation), on 256x256 and 512x512 images and a 17x256x256 clip.

    python -m bench.onnx_speed [--image-model image] [--video-model video] [--threads 2] [--repeats 3]

Every contender runs encode + decode (the round trip), timed in turns (median of ``--repeats`` after a warm-up),
all with the same number of threads. Reported per input: seconds, speed as a ratio to torch fp32 (above 1:
faster), the share of ids equal to torch fp32's, and the reconstruction PSNR of the round trip (its change
from torch fp32's; the issue's bar for a quality-preserving default is 0.1 dB). Inputs are procedural (dead
leaves images, a procedural clip). Prints a markdown table and writes bench/results/onnx_speed.json and .md.
Needs the onnx extra (onnxruntime, onnx). Not a test: figures depend on the machine and its load (printed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import vqtok
from bench.common import RESULTS, machine, table
from vqtok.backends.onnx_export import export_onnx
from vqtok.backends.onnx_runtime import DECODER_ONNX, ENCODER_ONNX, OnnxBackend
from vqtok.inputs import image_batch
from vqtok.metrics import psnr
from vqtok.synthetic import procedural_video_frames, render_dead_leaves

PSNR_BAR_DB = 0.1  # the largest PSNR loss a default for inference may cost


def quantize_int8(onnx_dir: Path, out: Path) -> Path:
    """A copy of an ONNX export whose conv and matmul weights are int8 (onnxruntime's dynamic quantisation:
    activations are quantised at run time, per tensor)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    shutil.copytree(onnx_dir, out)
    for name in (ENCODER_ONNX, DECODER_ONNX):
        quantize_dynamic(onnx_dir / name, out / name, weight_type=QuantType.QUInt8, op_types_to_quantize=["Conv"])
    return out


def contenders(model: str, onnx_dir: Path, int8_dir: Path, threads: int) -> dict[str, vqtok.Tokenizer]:
    def ort(root: Path, optimization: str) -> vqtok.Tokenizer:
        backend = OnnxBackend(root, threads=threads, optimization=optimization)
        return vqtok.Tokenizer(backend, torch.device("cpu"), torch.float32, fingerprints=backend.fingerprints())

    return {
        "torch fp32": vqtok.load(model),
        "torch bf16": vqtok.load(model, dtype=torch.bfloat16),
        "onnxruntime fp32, basic opt.": ort(onnx_dir, "basic"),
        "onnxruntime fp32, all opt.": ort(onnx_dir, "all"),
        "onnxruntime int8 weights": ort(int8_dir, "all"),
    }


def images(size: int, batch: int = 1) -> torch.Tensor:
    rng = np.random.default_rng(size)
    return torch.cat([image_batch(render_dead_leaves(rng, size), 3) for _ in range(batch)])  # (B, 3, S, S)


def clip(frames: int, size: int) -> torch.Tensor:
    video = np.stack(list(procedural_video_frames(0, frames, size, size)))  # (T, H, W, 3) uint8
    return torch.from_numpy(video).permute(3, 0, 1, 2)[None].float() / 127.5 - 1  # (1, 3, T, H, W)


def compare(toks: dict[str, vqtok.Tokenizer], x: torch.Tensor, repeats: int) -> list[dict[str, Any]]:
    """Per contender: one round trip for ids and PSNR (which also warms it up), then ``repeats`` timed in turns."""
    ids, quality = {}, {}
    for name, t in toks.items():
        ids[name] = t.encode(x)
        quality[name] = float(psnr(t.decode(ids[name]), x).mean())
    times: dict[str, list[float]] = {name: [] for name in toks}
    for _ in range(repeats):
        for name, t in toks.items():
            start = time.perf_counter()
            t.decode(t.encode(x))
            times[name].append(time.perf_counter() - start)
    reference = "torch fp32"
    rows = []
    for name in toks:
        seconds = float(np.median(times[name]))
        rows.append({"backend": name, "seconds": seconds, "psnr_db": quality[name], "repeats": repeats})
        rows[-1]["same_ids"] = float((ids[name] == ids[reference]).float().mean())
    base = next(r for r in rows if r["backend"] == reference)
    for r in rows:
        r["speedup"] = base["seconds"] / r["seconds"]
        r["psnr_change_db"] = r["psnr_db"] - base["psnr_db"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-model", default="image")
    parser.add_argument("--video-model", default="video")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed round trips per contender (images)")
    parser.add_argument("--clip-repeats", type=int, default=3, help="timed round trips per contender (the clip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start, before = time.time(), machine()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = [(args.image_model, "256x256 image", images(256)), (args.image_model, "512x512 image", images(512))]
        cases.append((args.video_model, "17x256x256 clip", clip(17, 256)))
        for model, label, x in cases:
            onnx_dir = Path(tmp) / f"{model}_onnx"
            if not onnx_dir.exists():
                export_onnx(model, onnx_dir)
                quantize_int8(onnx_dir, Path(tmp) / f"{model}_int8")
            toks = contenders(model, onnx_dir, Path(tmp) / f"{model}_int8", args.threads)
            repeats = args.clip_repeats if x.ndim == 5 else args.repeats
            for row in compare(toks, x, repeats):
                results.append({"input": label, "model": model, **row})
            print(f"{label}: done ({time.time() - start:.0f} s)", flush=True)
    after = machine()
    body = [
        [
            r["input"],
            r["backend"],
            f"{r['seconds']:.2f}",
            f"{r['speedup']:.2f}x",
            f"{100 * r['same_ids']:.2f}%",
            f"{r['psnr_db']:.2f}",
            f"{r['psnr_change_db']:+.3f}" + ("" if abs(r["psnr_change_db"]) <= PSNR_BAR_DB else " (over 0.1)"),
        ]
        for r in results
    ]
    headers = [
        "input",
        "backend",
        "s (encode+decode)",
        "speed vs torch fp32",
        "ids as torch fp32",
        "PSNR dB",
        "PSNR change",
    ]
    report = (
        f"Backends, {args.threads} threads, median of {args.repeats} round trips ({args.clip_repeats} for the clip) "
        "after a warm-up, timed in turns. "
        f"{before['cpu']}, {before['cpus']} CPUs, torch {before['torch']}, onnxruntime "
        f"{__import__('onnxruntime').__version__}; load average {before['load_average']} before, "
        f"{after['load_average']} after; {time.time() - start:.0f} s in all. Models: {args.image_model} (images), "
        f"{args.video_model} (clip).\n\n" + table(headers, body)
    )
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "onnx_speed.md").write_text(report + "\n")
    meta = {"threads": args.threads, "repeats": args.repeats, "machine_before": before, "machine_after": after}
    (RESULTS / "onnx_speed.json").write_text(json.dumps({**meta, "rows": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
