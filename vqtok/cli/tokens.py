"""``vqtok encode`` and ``vqtok decode``: image and video files <-> a token file (public API, file I/O, token files)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import vqtok
from vqtok.allocator import keep_freed_memory, map_large_blocks
from vqtok.cli.onnx import add_backend
from vqtok.cli.options import add_max_pixels, recorded_model
from vqtok.cli.outputs import write_decoded
from vqtok.export import DTYPES
from vqtok.token_file import TokenItem, load_tokens, save_tokens


def add_commands(sub: argparse._SubParsersAction) -> None:
    enc = sub.add_parser("encode", help="encode image (and, with a video tokenizer, video) files into one token file")
    enc.add_argument("inputs", nargs="+", metavar="FILE", help="image or video files")
    enc.add_argument("--model", required=True, help="export directory or short name")
    enc.add_argument("--out", required=True, help="token file to write, e.g. tokens.safetensors")
    enc.add_argument("--device", default="cpu")
    add_max_pixels(enc)
    add_tiles_and_progress(enc)
    add_backend(enc)
    add_dtype(enc, "changes a few percent of the ids")
    enc.set_defaults(func=encode_command)
    dec = sub.add_parser("decode", help="decode a token file back to PNG images and MP4 videos")
    dec.add_argument("tokens", help="a token file written by vqtok encode")
    dec.add_argument(
        "--model", help="the export that encoded the file (default: the model the file records, if it is found here)"
    )
    dec.add_argument("--out", required=True, help="directory for the images and videos")
    dec.add_argument("--device", default="cpu")
    add_max_pixels(dec)
    add_tiles_and_progress(dec)
    add_backend(dec)
    add_dtype(dec, "pixels within about 2/255 of float32's; at 720p a video decodes in half the memory")
    dec.set_defaults(func=decode_command)


def add_dtype(parser: argparse.ArgumentParser, what_bfloat16_does: str) -> None:
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help=f"the convolutions' dtype (torch backend; the code lookup stays float32): float32 (default) or "
        f"bfloat16, faster on CPUs with bf16 instructions ({what_bfloat16_does})",
    )


def choose_allocator(video: bool) -> None:
    """The commands' allocator setting (see :mod:`vqtok.allocator`): freed memory is kept for reuse (faster),
    except when they stream video files, whose large frames would then leave up to 0.8 GB of freed memory in the
    process at 720p; large blocks are then mapped and returned as they are freed."""
    if video:
        map_large_blocks()
    else:
        keep_freed_memory()


def add_tiles_and_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tile-size",
        type=int,
        default=None,
        metavar="N",
        help="images and video frames with a side above N pixels go through the model in N-pixel tiles: bounded "
        "memory and a progress bar that moves per tile (ids differ slightly from one pass; default: one pass)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (it shows on a terminal only)")


def progress_bar(args: argparse.Namespace, what: str) -> Callable[[int], None] | None:
    """A tqdm bar of pixels through the model, on stderr when it is a terminal; its ``update``, or None."""
    if args.no_progress:
        return None
    from tqdm import tqdm  # installed with the train extra; without it there is no bar

    bar = tqdm(desc=what, unit="px", unit_scale=True, disable=None, leave=False)
    return bar.update


def encode_command(args: argparse.Namespace) -> int:
    tok = vqtok.load(
        args.model,
        device=args.device,
        dtype=DTYPES[args.dtype],
        max_pixels=args.max_pixels,
        tile_size=args.tile_size,
        progress=progress_bar(args, "encode"),
        backend=args.backend,
    )
    choose_allocator(any(tok.is_video_input(path) for path in args.inputs))
    items = [_encode_file(tok, path) for path in args.inputs]
    save_tokens(args.out, items, tok.config.name, tok.fingerprint, tok.codebook_size)
    print(f"wrote {len(items)} token grid(s) to {args.out}")
    return 0


def _encode_file(tok: vqtok.Tokenizer, path: str) -> TokenItem:
    """One file -> its ids; raises FileFormatError naming the file when it cannot be read."""
    name = Path(path).name
    if tok.is_video_input(path):
        video = tok.encode_video_file(path)  # streamed: memory does not grow with the length
        ids = video.ids[0].cpu()  # (t, h, w)
        size = (video.num_frames, video.height, video.width)
        print(f"{path}: {'x'.join(map(str, size))} frames at {video.fps:.3g} fps -> {'x'.join(map(str, ids.shape))}")
        return TokenItem(ids=ids, size=size, source=name, fps=video.fps)
    x = vqtok.inputs.image_batch(path, max_pixels=tok.max_pixels)  # (1, 3, H, W)
    ids = tok.encode(x)[0].cpu()
    print(f"{path}: {x.shape[-2]}x{x.shape[-1]} -> {ids.shape[0]}x{ids.shape[1]} tokens")
    return TokenItem(ids=ids, size=(x.shape[-2], x.shape[-1]), source=name)


def decode_command(args: argparse.Namespace) -> int:
    options = dict(
        device=args.device,
        dtype=DTYPES[args.dtype],
        max_pixels=args.max_pixels,
        tile_size=args.tile_size,
        backend=args.backend,
    )
    if args.model is None:  # the model the file records, found by name and checked by fingerprint
        meta, items = load_tokens(args.tokens)
        model = recorded_model(meta.get("model"), meta.get("model_fingerprint"), args.tokens, "decode")
        tok = vqtok.load(model, **options, progress=progress_bar(args, "decode"))
    else:
        tok = vqtok.load(args.model, **options, progress=progress_bar(args, "decode"))
        _, items = load_tokens(args.tokens, fingerprint=tok.fingerprints)
    choose_allocator(any(item.ids.ndim == 3 for item in items))
    entries = ((i, it.source, it.ids, it.size, it.fps) for i, it in enumerate(items))
    write_decoded(tok, entries, Path(args.out), where=args.tokens)
    return 0
