"""The vqtok web app: ``create_demo`` builds it, ``launch`` builds and serves it (what ``vqtok demo`` runs).

Three tabs, each also a named API endpoint for ``gradio_client``: ``/tokenize_image``, ``/tokenize_video`` and
``/decode_tokens``; a fourth, Generate (``/generate``), when prior exports are given. Every model call shares one
concurrency group (one runs at a time), behind a queue of bounded length; uploads are size-limited, and uploads
and outputs are deleted after ``Limits.cache_minutes``.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from vqtok.allocator import share_one_arena

from .decode_tab import build_decode_tab
from .generate_tab import build_generate_tab
from .image_tab import build_image_tab
from .limits import Limits
from .models import ModelRegistry
from .priors import PriorRegistry
from .video_tab import build_video_tab
from .workspace import Workspace

DEFAULT_LIMITS = Limits()
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"

INTRO = """# vqtok
Turn an image or a clip into a grid of discrete tokens and back, and see what survives: the reconstruction, where
the error is, which codes are used, and what the tokens cost in bits."""


def create_demo(
    models: ModelRegistry,
    limits: Limits = DEFAULT_LIMITS,
    workspace: Workspace | None = None,
    priors: PriorRegistry | None = None,
) -> gr.Blocks:
    """Build the app (not started: see :func:`launch`).

    Args:
        models: the tokenizers offered; image tokenizers and video tokenizers both appear in the image tab,
            video tokenizers in the video tab; token files are decoded with the model whose fingerprint they carry.
        limits: upload, size, length and queue limits.
        workspace: where outputs are written before Gradio serves them (a private temporary directory if None).
        priors: prior exports for the Generate tab (``/generate``), shown when there is at least one.
    """
    workspace = workspace or Workspace(max_age_s=60 * limits.cache_minutes)
    cache_s = 60 * limits.cache_minutes
    with gr.Blocks(title="vqtok", delete_cache=(max(60, cache_s // 4), cache_s)) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Image"):
            build_image_tab(models, limits, workspace, _examples(".png"))
        with gr.Tab("Video"):
            build_video_tab(models, limits, workspace, _examples(".mp4"))
        with gr.Tab("Decode tokens"):
            build_decode_tab(models, limits, workspace)
        if priors:
            with gr.Tab("Generate"):
                build_generate_tab(priors, models, limits, workspace)
    # One model call at a time across all events (concurrency_id="model"); at most queue_size waiting.
    demo.queue(max_size=limits.queue_size, default_concurrency_limit=1)
    return demo


def launch(
    models: ModelRegistry,
    limits: Limits = DEFAULT_LIMITS,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    block: bool = True,
    priors: PriorRegistry | None = None,
) -> gr.Blocks:
    """Build the app and serve it on ``host:port`` (this machine only unless told otherwise; never a public share
    link). ``block=False`` returns once the server is up (tests; stop it with ``demo.close()``)."""
    share_one_arena()  # memory stays flat however many worker threads serve requests (see vqtok.allocator)
    demo = create_demo(models, limits, priors=priors)
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        max_file_size=f"{limits.max_file_mb}mb",  # larger uploads are refused with HTTP 413
        show_error=False,  # people see gr.Error messages only, never a stack trace
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return demo


def _examples(suffix: str) -> list[str]:
    return [str(p) for p in sorted(EXAMPLES_DIR.glob(f"*{suffix}"))]
