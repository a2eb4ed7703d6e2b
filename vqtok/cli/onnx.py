"""``vqtok export-onnx`` (an export -> ONNX graphs for onnxruntime) and the ``--backend`` option of the commands that
run a tokenizer."""

from __future__ import annotations

import argparse

from vqtok.backends.base import BACKENDS


def add_command(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser(
        "export-onnx",
        help="write an export's encoder and decoder as ONNX graphs (run them with --backend onnx; needs vqtok[onnx])",
        description="Write OUT/encoder.onnx (pixels -> ids, the nearest-code search included), OUT/decoder.onnx "
        "(ids -> pixels), config.json, onnx.json and codes.safetensors. Batch, height, width and, for video "
        "tokenizers, time are dynamic; video graphs carry the causal stream's state as inputs and outputs.",
    )
    exp.add_argument("export", help="export directory (written by vqtok export) or short name (image, video, ...)")
    exp.add_argument("out", help="directory to write (replaced atomically if it is an earlier ONNX export)")
    exp.add_argument("--no-progress", action="store_true", help="no progress bar (it shows on a terminal only)")
    exp.set_defaults(func=export_onnx_command)


def add_backend(parser: argparse.ArgumentParser) -> None:
    """``--backend {torch,onnx}``: what runs the model (onnx: --model names a directory of vqtok export-onnx)."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="torch (default) or onnx: run an ONNX export (--model OUT of vqtok export-onnx) through onnxruntime",
    )


def export_onnx_command(args: argparse.Namespace) -> int:
    try:
        from vqtok.backends.onnx_export import export_onnx
    except ImportError as e:  # pragma: no cover - the onnx extra is missing
        print(f"vqtok export-onnx needs the onnx extra: pip install 'vqtok[onnx]' ({e})")
        return 2
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(desc="export-onnx", total=3, unit="step", disable=None, leave=False)
    try:
        out = export_onnx(args.export, args.out, progress=None if bar is None else bar.update)
    finally:
        if bar is not None:
            bar.close()
    print(f"exported {args.export} -> {out} (encoder.onnx, decoder.onnx)")
    return 0
