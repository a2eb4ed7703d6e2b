"""``vqtok demo``: serve the Gradio app in ``app/`` (needs the ``app`` extra and a source checkout)."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from vqtok.errors import VqtokError
from vqtok.tokenizer import resolve_export

CHECKOUT = Path(__file__).resolve().parents[2]  # the repository: vqtok/cli/demo.py -> ./


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
    demo.add_argument("--host", default="127.0.0.1", help="interface to bind (default: this machine only)")
    demo.add_argument("--port", type=int, default=7860)
    demo.add_argument("--device", default="cpu")
    demo.add_argument("--max-file-mb", type=int, default=50, help="largest upload accepted")
    demo.add_argument("--max-image-side", type=int, default=1024, help="larger images are downscaled")
    demo.add_argument("--max-video-seconds", type=float, default=10.0, help="longer clips are cut")
    demo.add_argument("--max-video-frames", type=int, default=97, help="clips with more frames are cut")
    demo.add_argument("--max-video-side", type=int, default=256, help="larger frames are downscaled")
    demo.add_argument("--queue-size", type=int, default=16, help="waiting requests beyond this are refused")
    demo.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    app, models, limits_module = _import_app()
    limits = limits_module.Limits(
        max_file_mb=args.max_file_mb,
        max_image_side=args.max_image_side,
        max_video_seconds=args.max_video_seconds,
        max_video_frames=args.max_video_frames,
        max_video_side=args.max_video_side,
        queue_size=args.queue_size,
    )
    if args.models_dir is None:  # the checkout's checkpoints/, when there is one
        folders = [CHECKOUT / "checkpoints"] if (CHECKOUT / "checkpoints").is_dir() else []
    else:
        folders = args.models_dir
        missing = [f for f in folders if not Path(f).is_dir()]
        if missing:
            raise VqtokError(f"--models-dir {missing[0]} is not a directory")
    registry = models.ModelRegistry.discover(args.image_model + args.video_model, folders, device=args.device)
    for model in args.video_model:
        if not registry.get(registry.name_of(resolve_export(model).resolve())).is_video:
            raise VqtokError(f"--video-model {model} is an image tokenizer (its config.json has video: false)")
    print(f"vqtok demo: models {registry.names()} on http://{args.host}:{args.port}", flush=True)
    app.launch(registry, limits, host=args.host, port=args.port)
    return 0


def _import_app():  # noqa: ANN202 - the app.app, app.models and app.limits modules
    if not (CHECKOUT / "app" / "app.py").is_file():
        raise VqtokError(f"the web app lives in the source checkout's app/ folder, which is not at {CHECKOUT}")
    if str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))  # app/ is not an installed package: it is imported from the checkout
    try:
        return tuple(importlib.import_module(f"app.{name}") for name in ("app", "models", "limits"))
    except ImportError as e:
        raise VqtokError(f"vqtok demo needs Gradio: pip install -e '.[app]' ({e})") from None
