"""``vqtok prior``: fit and validate (Lightning CLI), export a checkpoint, sample and decode."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from vqtok.errors import ExportError, InputError, VqtokError

LIGHTNING_COMMANDS = ("fit", "validate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqtok prior",
        description="Priors over token stores. Training: vqtok prior {fit,validate} --config FILE (Lightning CLI; "
        "see vqtok prior fit --help and configs/prior_tiny.yaml).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"{name} with the Lightning CLI (needs vqtok[train])")
    exp = sub.add_parser("export", help="a vqtok prior fit checkpoint -> config.json + prior.safetensors")
    exp.add_argument("ckpt", help="e.g. runs/prior_tiny/checkpoints/last.ckpt")
    exp.add_argument("out_dir", help="directory to write")
    smp = sub.add_parser("sample", help="draw id grids from a prior export: PNGs and a token file of the ids")
    smp.add_argument("prior", help="a prior export (vqtok prior export)")
    smp.add_argument("--n", type=int, default=16, help="how many samples (default 16)")
    smp.add_argument("--class", dest="class_name", metavar="NAME", help="the class to sample (default: unconditional)")
    smp.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance scale (1: none)")
    smp.add_argument("--temperature", type=float, default=1.0)
    smp.add_argument("--top-k", type=int)
    smp.add_argument("--top-p", type=float)
    smp.add_argument("--steps", type=int, default=8, help="masked priors: decoding steps")
    smp.add_argument("--seed", type=int, default=0)
    smp.add_argument("--model", help="the tokenizer (default: the one the prior names, checked by fingerprint)")
    smp.add_argument("--out", required=True, help="directory for the PNGs and tokens.safetensors (a token file)")
    shp = sub.add_parser("shapes", help="render a labelled procedural image set (disc, square, triangle, stripes)")
    shp.add_argument("out", help="folder to write: OUT/CLASS/NNNNN.png (tokenize it with --labels folder)")
    shp.add_argument("--n", type=int, default=1500, help="images per class (default %(default)s, as in the demo)")
    shp.add_argument("--size", type=int, default=64, help="side in pixels (default 64)")
    shp.add_argument("--seed", type=int, default=0)
    return parser


def run_prior(argv: list[str], run_lightning: Callable[[list[str], str], int]) -> int:
    if argv[:1] and argv[0] in LIGHTNING_COMMANDS:
        return run_lightning(argv, "vqtok.prior_training.cli")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "export":
            try:
                from vqtok.prior_training.export import export_prior_checkpoint
            except ImportError as e:
                raise InputError(
                    f"vqtok prior export needs the training extra: pip install 'vqtok[train]' ({e})"
                ) from None
            out = export_prior_checkpoint(args.ckpt, args.out_dir)
            print(f"exported {args.ckpt} -> {out}")
            return 0
        if args.command == "sample":
            return _sample(args)
        if args.command == "shapes":
            from vqtok.prior_training.shapes import CLASSES, write_shapes

            if args.n < 1 or args.size < 8:
                raise InputError(f"--n must be at least 1 and --size at least 8, got {args.n} and {args.size}")
            paths = write_shapes(args.out, args.n, args.size, args.seed)
            print(f"wrote {len(paths)} images of {', '.join(CLASSES)} to {args.out}")
            return 0
    except (VqtokError, OSError) as e:
        print(f"vqtok prior {args.command}: error: {e}", file=sys.stderr)
        return 2
    build_parser().print_help()
    return 1


def _sample(args: argparse.Namespace) -> int:
    from PIL import Image

    import vqtok
    from vqtok.inputs import to_uint8
    from vqtok.prior import load_prior
    from vqtok.token_file import TokenItem, save_tokens

    prior = load_prior(args.prior)
    tok = vqtok.load(args.model or prior.tokenizer)
    if prior.tokenizer_fingerprint not in tok.fingerprints:
        raise ExportError(
            f"{args.prior} was trained on the ids of {prior.tokenizer!r} ({prior.tokenizer_fingerprint}), not on "
            f"those of {args.model or prior.tokenizer!r} ({tok.fingerprint}); give --model the tokenizer it names"
        )
    ids = prior.sample(
        args.n,
        class_name=args.class_name,
        seed=args.seed,
        cfg_scale=args.cfg,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        steps=args.steps,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    items = []
    with torch.no_grad():
        for k in range(args.n):
            x = tok.decode(ids[k : k + 1])  # (1, 3, H, W) or (1, 3, T, H, W)
            frame = x[0] if x.dim() == 4 else x[0, :, 0]  # a video's first frame
            Image.fromarray(to_uint8(frame)).save(out / f"sample_{k:03d}.png")
            fps = None if x.dim() == 4 else 8.0
            items.append(TokenItem(ids[k].cpu(), tuple(x.shape[2:]), f"sample_{k:03d}", fps))
    save_tokens(out / "tokens.safetensors", items, tok.config.name, tok.fingerprint, tok.codebook_size)
    print(f"wrote {args.n} samples to {out}")
    return 0
