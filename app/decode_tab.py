"""The Decode tab: a token file (from this app or ``vqtok encode``) in, its images and videos out. The model is the
one whose fingerprint the file carries; a file from a model the app does not have, or a malformed file, gets a
message that says so."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

import vqtok
from vqtok import VqtokError
from vqtok.inputs import to_uint8
from vqtok.io.images import save_image
from vqtok.token_file import TokenItem, load_tokens

from .limits import Limits
from .models import ModelRegistry
from .uploads import plain, safe_stem, user_error
from .workspace import Workspace, as_outputs


@dataclass(frozen=True)
class DecodeResult:
    """Field order = the event's outputs."""

    images: list[tuple[Path, str]]  # decoded PNGs with captions
    video: Path | None  # the first decoded video (MP4), to play
    files: list[Path]  # every decoded PNG and MP4, to download
    summary: str  # Markdown: which model, what was decoded

    def outputs(self) -> tuple:
        return as_outputs(self)


def decode_token_file(
    path: str | None, models: ModelRegistry, limits: Limits, workspace: Workspace, progress: gr.Progress
) -> DecodeResult:
    if not path:
        raise gr.Error("Upload a token file (.safetensors) first.", print_exception=False)
    try:
        meta, items = load_tokens(path)
    except VqtokError as e:
        raise user_error(e, path, "token file") from None
    name = models.by_fingerprint(meta.get("model_fingerprint", ""))
    if name is None:
        raise _refuse(
            f"This token file was made by the model {escape(str(meta.get('model')))!r} (fingerprint "
            f"{escape(str(meta.get('model_fingerprint')))}), which this app does not have; its models are "
            f"{', '.join(models.names())}. Decode it with the model that encoded it."
        )
    tok = models.get(name)
    _check_items(items, tok, limits)
    out = workspace.new_dir()
    images, videos = [], []
    try:
        for i, item in enumerate(progress.tqdm(items, desc="Decoding")):
            target = out / f"{i:02d}_{safe_stem(item.source, 'item')}"
            if item.ids.ndim == 3:
                videos.append(_decode_video(tok, item, target.with_suffix(".mp4")))
            else:
                y = to_uint8(tok.decode(item.ids[None], size=item.size)[0])  # (H, W, 3)
                save_image(target.with_suffix(".png"), y)
                images.append((target.with_suffix(".png"), item.source))  # a caption: shown as text
    except VqtokError as e:  # ids outside the codebook, ...
        raise user_error(e, path, "token file") from None
    summary = (
        f"Decoded {len(images)} image(s) and {len(videos)} video(s) with the model **{name}** "
        f"(the file names {plain(meta.get('model'))!r}, fingerprint {plain(meta.get('model_fingerprint'))})."
    )
    return DecodeResult(images, videos[0] if videos else None, [p for p, _ in images] + videos, summary)


def _check_items(items: list[TokenItem], tok: vqtok.Tokenizer, limits: Limits) -> None:
    """Refuse, before decoding anything: too many items; grids that do not match their stated size (the decoder
    works on the whole grid, so a big grid with a small size would still cost its full memory); videos for an
    image tokenizer; sizes beyond the limits."""
    if len(items) > limits.max_decode_items:
        raise _refuse(
            f"This token file holds {len(items)} items; this app decodes at most {limits.max_decode_items} per file. "
            "Use `vqtok decode` for large files."
        )
    for item in items:
        name, size = escape(item.source), " x ".join(map(str, item.size))
        if len(item.size) == 3 and not tok.is_video:
            raise _refuse(f"{name!r} is a video, but the model that made this file is an image tokenizer.")
        grid = tok.token_shape(item.size)
        if tuple(item.ids.shape) != grid:
            shape, expected = " x ".join(map(str, item.ids.shape)), " x ".join(map(str, grid))
            raise _refuse(
                f"{name!r}: its token grid, {shape}, does not match its size {size} (that takes {expected} tokens "
                "with this model): the file is malformed."
            )
        pixels = math.prod(item.size)
        limit = limits.max_decode_video_pixels if len(item.size) == 3 else limits.max_decode_pixels
        if pixels > limit:
            raise _refuse(
                f"{name!r} decodes to {size} = {pixels:,} pixels, more than this app's limit of {limit:,}. "
                "Use `vqtok decode` for large files."
            )


def _refuse(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)


def escape(text: str) -> str:
    """Text from the file, for a gr.Error message (rendered as HTML)."""
    return html.escape(text, quote=False)


def _decode_video(tok: vqtok.Tokenizer, item: TokenItem, path: Path) -> Path:
    """Decode a video item piece by piece straight into an MP4."""
    t, h, w = item.size
    return tok.decode_video_file(item.ids, path, (t, h, w), item.fps, preset="veryfast")


def build_decode_tab(models: ModelRegistry, limits: Limits, workspace: Workspace) -> None:
    """Lay out the tab inside the current ``gr.Blocks`` and wire its event (API name ``/decode_tokens``)."""
    gr.Markdown(
        "Upload a token file written by this app or by `vqtok encode`. It is decoded with the model that made it "
        f"(found by the fingerprint in its metadata), at most {limits.max_decode_items} items per file."
    )
    with gr.Row():
        upload = gr.File(label="Token file", file_types=[".safetensors"], type="filepath")
        summary = gr.Markdown()
    with gr.Row():
        images = gr.Gallery(label="Decoded images", format="png", columns=4, height=360)
        video = gr.Video(label="Decoded video (first)", interactive=False)
    files = gr.File(label="Decoded files", file_count="multiple", interactive=False)

    def run_decode(path: str | None, progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008 - injected by Gradio
        return decode_token_file(path, models, limits, workspace, progress).outputs()

    upload.upload(
        run_decode,
        inputs=upload,
        outputs=[images, video, files, summary],
        api_name="decode_tokens",
        concurrency_id="model",
    )
