"""``vqtok encode`` and ``vqtok decode``: image files <-> a token file (public API, image I/O and token files)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import vqtok
from vqtok.io.images import save_image
from vqtok.token_file import TokenItem, load_tokens, save_tokens


def add_commands(sub: argparse._SubParsersAction) -> None:
    enc = sub.add_parser("encode", help="encode image files into one token file (.safetensors)")
    enc.add_argument("images", nargs="+", help="image files")
    enc.add_argument("--model", required=True, help="export directory or short name")
    enc.add_argument("--out", required=True, help="token file to write, e.g. tokens.safetensors")
    enc.add_argument("--device", default="cpu")
    enc.set_defaults(func=encode_command)
    dec = sub.add_parser("decode", help="decode a token file back to PNG images")
    dec.add_argument("tokens", help="a token file written by vqtok encode")
    dec.add_argument("--model", required=True, help="the export that encoded the file")
    dec.add_argument("--out", required=True, help="directory for the PNG images")
    dec.add_argument("--device", default="cpu")
    dec.set_defaults(func=decode_command)


def encode_command(args: argparse.Namespace) -> int:
    tok = vqtok.load(args.model, device=args.device)
    items = []
    for path in args.images:
        x = vqtok.inputs.image_batch(path)  # (1, 3, H, W); raises FileFormatError naming the file
        ids = tok.encode(x)[0].cpu()
        items.append(TokenItem(ids=ids, size=(x.shape[-2], x.shape[-1]), source=Path(path).name))
        print(f"{path}: {x.shape[-2]}x{x.shape[-1]} -> {ids.shape[0]}x{ids.shape[1]} tokens")
    save_tokens(args.out, items, tok.config.name, tok.fingerprint, tok.codebook_size)
    print(f"wrote {len(items)} token grid(s) to {args.out}")
    return 0


def decode_command(args: argparse.Namespace) -> int:
    tok = vqtok.load(args.model, device=args.device)
    _, items = load_tokens(args.tokens, fingerprint=tok.fingerprint)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for i, item in enumerate(items):
        y = tok.decode(item.ids[None], size=item.size)[0]  # (3, H, W) in [-1, 1]
        path = out_dir / _output_name(item.source, i, used)
        save_image(path, ((y.permute(1, 2, 0).cpu().numpy() + 1) / 2).clip(0, 1))
        print(f"wrote {path}")
    return 0


def _output_name(source: str, index: int, used: set[str]) -> str:
    """A PNG name inside the output folder: the source's stem, stripped of anything path-like, made unique."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source.replace("\\", "/")).stem).strip("._") or f"image_{index}"
    name, n = f"{stem}.png", 1
    while name in used:
        name, n = f"{stem}_{n}.png", n + 1
    used.add(name)
    return name
