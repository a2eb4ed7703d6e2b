"""``vqtok tokenize`` (files -> a token store) and ``vqtok detokenize`` (a store -> images and videos)."""

from __future__ import annotations

import argparse
from pathlib import Path

import vqtok
from vqtok.cli.onnx import add_backend
from vqtok.cli.options import add_max_pixels, recorded_model
from vqtok.cli.outputs import write_decoded
from vqtok.errors import ExportError, InputError
from vqtok.export import DTYPES
from vqtok.store import TokenStore


def add_commands(sub: argparse._SubParsersAction) -> None:
    tok = sub.add_parser(
        "tokenize",
        help="tokenize a data set of images/videos into a sharded, resumable token store (needs vqtok[train])",
        description="Tokenize folders (recursive), file lists (.txt/.lst: one path per line) and glob patterns of "
        "images and videos into STORE/: safetensors shards of ids, manifest.jsonl, errors.jsonl. Rerun the same "
        "command after a crash to finish the rest; runs on several devices or nodes with --devices/--num-nodes or "
        "under torchrun.",
    )
    tok.add_argument("sources", nargs="+", metavar="SRC", help="directory, file, file list or glob pattern")
    tok.add_argument("--model", required=True, help="export directory or short name")
    tok.add_argument("--out", required=True, metavar="STORE", help="store directory (created, or resumed/extended)")
    tok.add_argument("--resize", type=int, metavar="PX", help="resize the shorter side to PX (aspect kept)")
    tok.add_argument("--crop", type=_size, metavar="HxW", help="center crop to HxW (or S for SxS) after --resize")
    tok.add_argument("--max-frames", type=int, metavar="N", help="videos: keep the first N frames")
    tok.add_argument("--batch-size", type=int, default=16, help="inputs per model call (default 16)")
    tok.add_argument("--workers", type=int, default=2, help="decoding processes per device (default 2)")
    tok.add_argument("--shard-items", type=int, default=1024, help="inputs per shard and work unit (default 1024)")
    tok.add_argument("--shard-mb", type=float, default=256.0, help="start a new shard after this many MB of ids")
    tok.add_argument("--retry-failed", action="store_true", help="retry inputs that failed in an earlier run")
    tok.add_argument("--accelerator", default="auto", help="auto, cpu, gpu, ... (Lightning)")
    tok.add_argument("--devices", type=_devices, default="auto", help="devices per node: N or auto (Lightning)")
    tok.add_argument("--num-nodes", type=int, default=1, help="number of nodes (Lightning)")
    tok.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    tok.add_argument("--no-progress", action="store_true", help="no progress bar")
    tok.add_argument(
        "--labels",
        choices=["folder"],
        help="record a class per item: 'folder' takes it from the ImageFolder layout (SRC/CLASS/.../file), so every "
        "SRC must be a folder; store.json lists the class names",
    )
    add_max_pixels(tok)
    add_backend(tok)
    tok.set_defaults(func=tokenize_command)

    det = sub.add_parser("detokenize", help="decode a token store back to PNG images and MP4 videos, to check it")
    det.add_argument("store", help="a store written by vqtok tokenize")
    det.add_argument(
        "--model", help="the export that made the store (default: the model the store records, if it is found here)"
    )
    det.add_argument("--out", required=True, help="directory for the images and videos")
    det.add_argument("--limit", type=int, help="decode only the first N items")
    det.add_argument("--source", action="append", default=[], help="decode only this source (repeatable)")
    det.add_argument("--device", default="cpu")
    add_max_pixels(det)
    add_backend(det)
    det.set_defaults(func=detokenize_command)


def tokenize_command(args: argparse.Namespace) -> int:
    try:
        from vqtok.pretokenize import Resolution, TokenizeOptions, tokenize_to_store
    except ImportError as e:
        if not (e.name or "").startswith(("lightning", "tqdm")):
            raise
        raise InputError(f"vqtok tokenize needs the training extra: pip install 'vqtok[train]' ({e})") from None
    options = TokenizeOptions(
        sources=args.sources,
        model=args.model,
        out=args.out,
        resolution=Resolution(args.resize, args.crop),
        max_frames=args.max_frames,
        batch_size=args.batch_size,
        num_workers=args.workers,
        shard_items=args.shard_items,
        shard_mb=args.shard_mb,
        retry_failed=args.retry_failed,
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        dtype=args.dtype,
        progress=not args.no_progress,
        max_pixels=args.max_pixels,
        labels=args.labels,
        backend=args.backend,
    )
    summary = tokenize_to_store(options)
    if summary is not None:  # global rank 0
        print(summary)
    return 0


def detokenize_command(args: argparse.Namespace) -> int:
    store = TokenStore(args.store)
    model = args.model
    if model is None:  # the model the store records, found by name and checked by fingerprint
        model = recorded_model(store.meta.model, store.meta.model_fingerprint, args.store, "detokenize")
    tok = vqtok.load(model, device=args.device, max_pixels=args.max_pixels, backend=args.backend)
    if store.meta.model_fingerprint not in tok.fingerprints:
        raise ExportError(
            f"{args.store} was made by model {store.meta.model!r} ({store.meta.model_fingerprint}), not by "
            f"{args.model!r} ({tok.fingerprint}); decode it with the model that made it"
        )
    try:
        indices = [store.index_of(s) for s in args.source] if args.source else range(len(store))
    except KeyError as e:
        raise InputError(e.args[0]) from None
    if args.limit is not None:
        indices = list(indices)[: args.limit]
    items = ((i, store[i]) for i in indices)  # read one at a time while decoding
    decoded = ((i, it.source, it.ids, it.input_size, it.fps) for i, it in items)
    write_decoded(tok, decoded, Path(args.out), where=args.store)
    return 0


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW or S (positive pixels), got {text!r}")
    return parts[0], parts[1]


def _devices(text: str) -> int | str:
    return int(text) if text.isdigit() else text
