"""The ``vqtok`` command: training subcommands go to the Lightning CLI, the rest are defined here."""

from __future__ import annotations

import argparse
import importlib
import logging
import pickle
import subprocess
import sys
from pathlib import Path

from vqtok.allocator import keep_freed_memory, share_one_arena
from vqtok.cli import convert, demo, evaluate, onnx, store, tokens
from vqtok.cli.options import with_flag_advice
from vqtok.errors import VqtokError
from vqtok.export import DTYPES

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqtok",
        description="VQ-VAE image and video tokenizers. Training: vqtok {fit,validate,test,predict} --config FILE "
        "(Lightning CLI; see vqtok fit --help).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"{name} with the Lightning CLI (needs vqtok[train]); see vqtok {name} --help")
    sub.add_parser(
        "prior",
        help="priors over token stores: vqtok prior {fit,validate,export,sample,shapes} (see vqtok prior --help)",
    )
    sub.add_parser("bench", help="the benchmark suite in bench/ of a source checkout (see vqtok bench --help)")
    exp = sub.add_parser("export", help="export a training checkpoint to config.json + safetensors")
    exp.add_argument("ckpt", help="a .ckpt written by vqtok fit (e.g. runs/NAME/checkpoints/last.ckpt)")
    exp.add_argument("out_dir", help="directory to write (replaced atomically if it is an earlier export)")
    exp.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="float32",
        help="storage type of the encoder and decoder weights (float16 halves the files; the codebook stays float32)",
    )
    onnx.add_command(sub)
    tokens.add_commands(sub)
    store.add_commands(sub)
    evaluate.add_command(sub)
    convert.add_command(sub)
    demo.add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    _configure_logging()
    if argv[:1] == ["demo"]:
        share_one_arena()  # a server keeps its memory flat: before any thread starts (see vqtok.allocator)
    elif argv[:1] not in (["encode"], ["decode"]):  # those two decide once they know whether they stream videos
        keep_freed_memory()  # large activations are reused instead of page-faulted in afresh for every batch
    if argv and argv[0] in LIGHTNING_COMMANDS:
        return _run_lightning(argv)
    if argv and argv[0] == "bench":
        return _run_bench(argv[1:])
    if argv and argv[0] == "prior":
        from vqtok.cli.prior import run_prior

        return run_prior(argv[1:], _run_lightning)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "export":
            from vqtok.export import export_checkpoint

            out = export_checkpoint(args.ckpt, args.out_dir, DTYPES[args.dtype])
            print(f"exported {args.ckpt} -> {out}")
            return 0
        if args.command in ("encode", "decode", "eval", "tokenize", "detokenize", "demo", "convert", "export-onnx"):
            return args.func(args)
    except (VqtokError, OSError) as e:  # OSError: an output path that cannot be written
        message = with_flag_advice(str(e)) if "max_pixels" in args else str(e)  # the flag, not the Python argument
        print(f"vqtok {args.command}: error: {message}", file=sys.stderr)
        return 2
    build_parser().print_help()
    return 1


def _run_bench(argv: list[str]) -> int:
    """``python -m bench ARGS`` in the source checkout this vqtok runs from (the suite is not in the wheel)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "bench" / "__main__.py").is_file():
        print(
            f"vqtok bench: error: the benchmark suite lives in bench/ of a source checkout, not beside {root}; "
            'clone the repository and pip install -e ".[bench]"',
            file=sys.stderr,
        )
        return 2
    return subprocess.run([sys.executable, "-m", "bench", *argv], cwd=root).returncode


def _configure_logging() -> None:
    """vqtok's own messages (warnings about skipped files, etc.) to stderr; Lightning keeps its own handler."""
    logger = logging.getLogger("vqtok")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _run_lightning(argv: list[str], cli: str = "vqtok.training.cli") -> int:
    """Run the Lightning CLI of module ``cli`` (the tokenizer's, or ``vqtok.prior_training.cli``) on argv."""
    try:
        cli_main = importlib.import_module(cli).cli_main
    except ImportError as e:
        print(f"vqtok {argv[0]} needs the training extra: pip install 'vqtok[train]' ({e})", file=sys.stderr)
        return 2
    try:
        cli_main(argv)
    except VqtokError as e:
        print(f"vqtok {argv[0]}: error: {e}", file=sys.stderr)
        return 2
    except pickle.UnpicklingError as e:  # --ckpt_path: checkpoints load weights-only (torch's message says why)
        from vqtok.export import unpickler_reason

        print(
            f"vqtok {argv[0]}: error: the checkpoint holds pickled Python objects besides tensors, which vqtok never "
            f"loads (unpickling can run code); resume from a checkpoint written by vqtok fit ({unpickler_reason(e)})",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
