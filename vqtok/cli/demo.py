"""``vqtok demo``: serve the Gradio app (``app/``, installed as ``vqtok.app``; needs the ``app`` extra)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from types import ModuleType

from vqtok.errors import VqtokError
from vqtok.export import resolve_export

CHECKOUT = Path(__file__).resolve().parents[2]  # the repository: vqtok/cli/demo.py -> ./ (for checkpoints/)

# Command-line names of the app.limits.Limits fields people set most (flag "max-file-mb" -> field max_file_mb);
# a flag left out keeps the default in app/limits.py.
LIMIT_FLAGS: dict[str, tuple[type, str]] = {
    "max-file-mb": (int, "largest upload accepted, in MB"),
    "max-image-side": (int, "larger images are downscaled to this longer side"),
    "max-video-seconds": (float, "longer clips are cut"),
    "max-video-frames": (int, "clips with more frames are cut"),
    "max-video-side": (int, "larger frames are downscaled to this longer side"),
    "queue-size": (int, "waiting requests beyond this are refused"),
}


def add_command(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="serve the web app: tokenize and reconstruct images and videos in a browser")
    demo.add_argument(
        "--image-model",
        action="append",
        default=[],
        metavar="DIR",
        help="an image tokenizer export (repeatable; the first is the default choice)",
    )
    demo.add_argument(
        "--video-model", action="append", default=[], metavar="DIR", help="a video tokenizer export (repeatable)"
    )
    demo.add_argument(
        "--models-dir",
        action="append",
        default=None,
        metavar="DIR",
        help="also offer every export inside DIR (default: the checkout's checkpoints/)",
    )
    demo.add_argument(
        "--prior", action="append", default=[], metavar="DIR", help="a prior export for the Generate tab (repeatable)"
    )
    demo.add_argument(
        "--priors-dir",
        action="append",
        default=None,
        metavar="DIR",
        help="also offer every prior export inside DIR (default: the checkout's checkpoints/priors/)",
    )
    demo.add_argument("--host", default="127.0.0.1", help="interface to bind (default: this machine only)")
    demo.add_argument("--port", type=int, default=7860)
    demo.add_argument("--device", default="cpu")
    for flag, (kind, what) in LIMIT_FLAGS.items():
        demo.add_argument(f"--{flag}", type=kind, default=None, help=f"{what} (default: see app/limits.py)")
    demo.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    app, models, limits_module = _import_app()
    given = {flag.replace("-", "_"): getattr(args, flag.replace("-", "_")) for flag in LIMIT_FLAGS}
    limits = limits_module.Limits(**{field: value for field, value in given.items() if value is not None})
    if args.models_dir is None:  # the checkout's checkpoints/, when there is one
        folders = [CHECKOUT / "checkpoints"] if (CHECKOUT / "checkpoints").is_dir() else []
    else:
        folders = args.models_dir
        missing = [f for f in folders if not Path(f).is_dir()]
        if missing:
            raise VqtokError(f"--models-dir {missing[0]} is not a directory")
    registry = models.ModelRegistry.discover(args.image_model + args.video_model, folders, device=args.device)
    for model in args.video_model:
        if not registry.entries[registry.name_of(resolve_export(model).resolve())].video:
            raise VqtokError(f"--video-model {model} is an image tokenizer (its config.json has video: false)")
    priors = _priors(args)
    print(f"vqtok demo: models {registry.names()} on http://{args.host}:{args.port}", flush=True)
    app.launch(registry, limits, host=args.host, port=args.port, priors=priors)
    return 0


def _priors(args: argparse.Namespace) -> object:
    """The app's PriorRegistry: the --prior exports, then those inside --priors-dir (default: checkpoints/priors/)."""
    registry = importlib.import_module("vqtok.app.priors").PriorRegistry  # the app extra: imported only here
    if args.priors_dir is None:
        folders = [CHECKOUT / "checkpoints" / "priors"] if (CHECKOUT / "checkpoints" / "priors").is_dir() else []
    else:
        folders = args.priors_dir
        missing = [f for f in folders if not Path(f).is_dir()]
        if missing:
            raise VqtokError(f"--priors-dir {missing[0]} is not a directory")
    return registry.discover(args.prior, folders, device=args.device)


def _import_app() -> tuple[ModuleType, ...]:
    """The modules vqtok.app.app, vqtok.app.models and vqtok.app.limits."""
    # app/ is installed as the package vqtok.app (pyproject's package-dir), so no sys.path edit is needed; imported
    # here, not at the top, so the other commands never load Gradio.
    try:
        return tuple(importlib.import_module(f"vqtok.app.{name}") for name in ("app", "models", "limits"))
    except ImportError as e:
        raise VqtokError(f"vqtok demo needs Gradio: pip install -e '.[app]' ({e})") from None
