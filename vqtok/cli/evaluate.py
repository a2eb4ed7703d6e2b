"""``vqtok eval``: PSNR, SSIM and codebook usage of a tokenizer over a folder of images and videos."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import vqtok
from vqtok.cli.options import add_max_pixels, with_flag_advice
from vqtok.evaluation import DEFAULT_CROP, Evaluation, evaluate_files
from vqtok.export import DEFAULT_MODEL, DTYPES
from vqtok.io.atomic import atomic_file


def add_command(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="reconstruction PSNR/SSIM and codebook usage over image and video files")
    ev.add_argument("inputs", nargs="+", metavar="PATH", help="image or video files, or folders (recursive)")
    ev.add_argument("--model", default=DEFAULT_MODEL, help=f"export directory or short name (default {DEFAULT_MODEL})")
    ev.add_argument(
        "--crop", type=int, default=DEFAULT_CROP, help="score the centre CROP x CROP pixels (0: whole files)"
    )
    ev.add_argument("--max-frames", type=_positive, default=None, help="score only the first frames of longer videos")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="dtype of the convolutions")
    ev.add_argument("--json", metavar="FILE", help="also write the figures, per file, as JSON")
    add_max_pixels(ev)
    ev.set_defaults(func=eval_command)


def eval_command(args: argparse.Namespace) -> int:
    tok = vqtok.load(args.model, device=args.device, dtype=DTYPES[args.dtype], max_pixels=args.max_pixels)
    result = evaluate_files(tok, args.inputs, crop=args.crop or None, max_frames=args.max_frames)
    result.failed = [(path, with_flag_advice(reason)) for path, reason in result.failed]
    print(report(result))
    if args.json:
        with atomic_file(args.json) as tmp:
            Path(tmp).write_text(json.dumps(result.summary(), indent=2) + "\n")
    return 0 if result.scores else 2


def report(result: Evaluation) -> str:
    """The table ``vqtok eval`` prints: one line per file, then the means and the codebook usage."""
    lines = [f"model {result.model}: {result.num_codes} codes"]
    for s in result.scores:
        shape = "x".join(map(str, s.shape))
        lines.append(f"  {s.kind:5}  {shape:>13}  PSNR {s.psnr:6.2f} dB  SSIM {s.ssim:.4f}  {s.path}")
    summary = result.summary()
    for kind in ("images", "videos"):
        if kind in summary:
            means = summary[kind]
            lines.append(
                f"{kind}: {means['files']} files, mean PSNR {means['mean_psnr']:.2f} dB, "
                f"mean SSIM {means['mean_ssim']:.4f}"
            )
    lines.append(
        f"codebook: {result.codes_used} of {result.num_codes} codes used ({100 * result.usage:.1f}%) over "
        f"{result.tokens} tokens, perplexity {result.perplexity:.0f}"
    )
    for path, reason in result.failed:
        lines.append(f"failed: {path}: {reason}")
    return "\n".join(lines)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
