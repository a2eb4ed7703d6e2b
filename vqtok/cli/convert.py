"""``vqtok convert``: a published tokenizer checkpoint (taming, LlamaGen, diffusers, Open-MAGVIT2) -> a vqtok export."""

from __future__ import annotations

import argparse

import vqtok
from vqtok.convert import SOURCES
from vqtok.export import DTYPES


def add_command(sub: argparse._SubParsersAction) -> None:
    cv = sub.add_parser(
        "convert",
        help="convert a published tokenizer checkpoint (taming, LlamaGen, diffusers, Open-MAGVIT2) into a vqtok export",
        description="Read a checkpoint as its authors publish it (nothing in it runs), infer the architecture from "
        "its tensors and write an ordinary vqtok export (config.json, encoder/decoder safetensors, model card).",
    )
    cv.add_argument(
        "source",
        help="the checkpoint: taming's last.ckpt, LlamaGen's vq_ds16_c2i.pt, a diffusers VQModel folder, or a hub "
        "name hf://OWNER/REPO/FILE (huggingface_hub's cache; HF_HUB_OFFLINE=1 reads the cache only)",
    )
    cv.add_argument(
        "out", nargs="?", default=None, help="export directory to write (hub names: default beside the download)"
    )
    cv.add_argument("--from", dest="from_", required=True, choices=sorted(SOURCES), help="the checkpoint's codebase")
    cv.add_argument("--name", default=None, help="the export's name (default: from the file or folder name)")
    cv.add_argument("--license", default=None, help="the published weights' licence id (default: the code's licence)")
    cv.add_argument(
        "--norm-groups", type=int, default=None, help="GroupNorm groups (default 32; diffusers: its config.json)"
    )
    cv.add_argument(
        "--l2-normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="look codes up by cosine similarity (default: LlamaGen yes, taming and diffusers no)",
    )
    cv.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="storage type of the weights")
    cv.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = vqtok.convert.convert(
        args.source,
        args.out,
        args.from_,
        name=args.name,
        license=args.license,
        norm_groups=args.norm_groups,
        l2_normalize=args.l2_normalize,
        dtype=DTYPES[args.dtype],
    )
    config = vqtok.TokenizerConfig.from_file(out / "config.json")
    print(
        f"converted {args.source} -> {out} ({config.source}; licence {config.license}; f{config.downsample}, "
        f"{config.codebook_size} codes)"
    )
    return 0
