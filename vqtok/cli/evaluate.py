"""``vqtok eval``: PSNR, SSIM and codebook usage of a tokenizer over a folder of images and videos."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import vqtok
from vqtok.cli.options import add_max_pixels, with_flag_advice
from vqtok.errors import InputError
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
    ev.add_argument(
        "--hold-keyframes",
        type=_positive,
        default=None,
        metavar="R",
        help="image tokenizers: encode every R-th video frame only, each shown for the R-1 frames after it",
    )
    ev.add_argument(
        "--baselines",
        metavar="IMAGE_MODEL",
        default=None,
        help="video tokenizers: also score IMAGE_MODEL on the same clips on every frame and on keyframes held for "
        "the video model's temporal factor, and print the three side by side with their token counts",
    )
    ev.add_argument("--json", metavar="FILE", help="also write the figures, per file, as JSON")
    add_max_pixels(ev)
    ev.set_defaults(func=eval_command)


def eval_command(args: argparse.Namespace) -> int:
    tok = _load(args, args.model)
    if args.baselines is not None and not tok.is_video:
        raise InputError(f"--baselines compares a video tokenizer with an image one; {args.model!r} is an image model")
    crop = args.crop or None
    result = evaluate_files(tok, args.inputs, crop=crop, max_frames=args.max_frames, hold_keyframes=args.hold_keyframes)
    result.failed = [(path, with_flag_advice(reason)) for path, reason in result.failed]
    print(report(result))
    summary = result.summary()
    if args.baselines is not None:
        image_tok = _load(args, args.baselines)
        if image_tok.is_video:
            raise InputError(f"--baselines takes an image tokenizer; {args.baselines!r} is a video model")
        videos = [s.path for s in result.of_kind("video")]
        if not videos:
            raise InputError("--baselines compares video files, and none of the inputs was scored as a video")
        r = tok.config.temporal_downsample
        rows = [(f"{args.model} (video tokenizer)", result)]
        for label, hold in ((f"{args.baselines}, every frame", None), (f"{args.baselines}, keyframes held {r}", r)):
            rows.append((label, evaluate_files(image_tok, videos, crop, args.max_frames, hold)))
        print(baseline_report(rows))
        summary["baselines"] = {label: evaluation.summary() for label, evaluation in rows[1:]}
    if args.json:
        with atomic_file(args.json) as tmp:
            Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if result.scores else 2


def _load(args: argparse.Namespace, model: str) -> vqtok.Tokenizer:
    return vqtok.load(model, device=args.device, dtype=DTYPES[args.dtype], max_pixels=args.max_pixels)


def baseline_report(rows: list[tuple[str, Evaluation]]) -> str:
    """The side-by-side table of ``--baselines``: each method's ids per clip and mean per-frame PSNR / SSIM over
    the same video files (the first row's)."""
    base_tokens = sum(s.tokens for s in rows[0][1].of_kind("video"))
    lines = [
        "video tokenizer against image-tokenizer baselines on the same clips:",
        f"  {'method':38} {'ids/clip':>9} {'x ids':>6} {'PSNR':>7} {'SSIM':>7}",
    ]
    for label, evaluation in rows:
        clips = evaluation.of_kind("video")
        tokens = sum(s.tokens for s in clips)
        mean_psnr = sum(s.psnr for s in clips) / len(clips)
        mean_ssim = sum(s.ssim for s in clips) / len(clips)
        lines.append(
            f"  {label:38} {tokens / len(clips):9.0f} {tokens / base_tokens:6.2f} {mean_psnr:7.2f} {mean_ssim:7.4f}"
        )
    return "\n".join(lines)


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
