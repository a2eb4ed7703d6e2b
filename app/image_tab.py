"""The Image tab: an image in, its tokens and reconstruction out, with the figures that judge them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from vqtok import VqtokError
from vqtok.inputs import to_uint8
from vqtok.io.images import read_image
from vqtok.token_file import TokenItem, save_tokens

from .drawing import error_heatmap, token_grid_image, usage_histogram
from .figures import figures_markdown, quality, token_figures
from .limits import Limits
from .models import ModelRegistry
from .uploads import downscale, safe_stem, upload_path, user_error
from .workspace import Workspace, as_outputs


@dataclass(frozen=True)
class ImageResult:
    """What the tab shows and offers for download; field order = the event's outputs."""

    original: Path  # PNG of the pixels that were encoded (after any downscaling)
    reconstruction: Path  # PNG (the same file as reconstruction_file)
    heatmap: Path  # PNG: |original - reconstruction|
    token_grid: Path  # PNG: one colour per token
    histogram: Path  # PNG: code usage
    table: str  # Markdown table of the figures
    figures: dict  # the same figures as data (for API clients)
    tokens_file: Path  # safetensors token file (model name, fingerprint and size in its metadata)
    reconstruction_file: Path  # PNG

    def outputs(self) -> tuple:
        return as_outputs(self)


def tokenize_image(
    path: str | None, model_name: str, models: ModelRegistry, limits: Limits, workspace: Workspace
) -> ImageResult:
    """Encode an uploaded image, decode it back, and measure what survived."""
    if not path:
        raise gr.Error("Upload an image first.", print_exception=False)
    try:
        tok = models.get(model_name)
        rgb = read_image(path, max_pixels=limits.max_image_pixels)  # float32 (H, W, 3) in [0, 1]
    except VqtokError as e:
        raise user_error(e, path, "image") from None
    uploaded = (rgb * 255 + 0.5).astype(np.uint8)
    original = downscale(uploaded, limits.max_image_side)  # (H, W, 3)
    size = original.shape[:2]
    notes = []
    if original.shape != uploaded.shape:
        notes.append(
            f"The image was downscaled from {uploaded.shape[1]}x{uploaded.shape[0]} to {size[1]}x{size[0]} "
            f"(this app's limit: {limits.max_image_side} px on the longer side)."
        )

    start = time.perf_counter()
    ids = tok.encode(original)  # (1, h, w)
    encoded = time.perf_counter()
    reconstruction = to_uint8(tok.decode(ids, size=size)[0])  # (H, W, 3)
    decoded = time.perf_counter()

    psnr, ssim = quality(original, reconstruction)
    ids_np = ids[0].cpu().numpy()
    scaled = original.shape != uploaded.shape
    figures = {
        "model": model_name,
        **token_figures(ids_np, tok.codebook_size, size, None if scaled else Path(path).stat().st_size),
        "psnr_db": float(psnr[0]),
        "ssim": float(ssim[0]),
        "encode_seconds": encoded - start,
        "decode_seconds": decoded - encoded,
        "notes": notes,
    }
    try:  # writing can fail (a full disk)
        out, stem = workspace.new_dir(), safe_stem(path, "image")
        tokens_file = out / f"{stem}.tokens.safetensors"
        item = TokenItem(ids=ids[0].cpu(), size=tuple(size), source=Path(path).name)
        save_tokens(tokens_file, [item], tok.config.name, tok.fingerprint, tok.codebook_size)
        reconstruction_file = workspace.save_png(out, f"{stem}.reconstruction", reconstruction)
        return ImageResult(
            original=workspace.save_png(out, f"{stem}.input", original),
            reconstruction=reconstruction_file,
            heatmap=workspace.save_png(out, f"{stem}.error", error_heatmap(original, reconstruction)),
            token_grid=workspace.save_png(out, f"{stem}.tokens", token_grid_image(ids_np)),
            histogram=workspace.save_png(out, f"{stem}.code_usage", usage_histogram(ids_np, tok.codebook_size)),
            table=figures_markdown(figures),
            figures=figures,
            tokens_file=tokens_file,
            reconstruction_file=reconstruction_file,
        )
    except VqtokError as e:
        raise user_error(e, path, "image") from None


def build_image_tab(models: ModelRegistry, limits: Limits, workspace: Workspace, examples: list[str]) -> None:
    """Lay out the tab inside the current ``gr.Blocks`` and wire its event (API name ``/tokenize_image``)."""
    names = models.names()
    with gr.Row():
        upload = gr.Image(label="Image", type="filepath", sources=["upload", "clipboard", "webcam"], height=320)
        with gr.Column():
            model = gr.Dropdown(names, value=names[0], label="Tokenizer", interactive=len(names) > 1)
            run = gr.Button("Tokenize and reconstruct", variant="primary")
            if examples:
                gr.Examples(examples, inputs=upload, label="Examples (procedural)")
    with gr.Row():
        original = gr.Image(label="Encoded input", format="png", interactive=False, height=320, elem_id="encoded")
        reconstruction = gr.Image(
            label="Reconstruction", format="png", interactive=False, height=320, elem_id="reconstruction"
        )
        heatmap = gr.Image(
            label="Error |input - reconstruction| (black 0, yellow >= 64/255)",
            format="png",
            interactive=False,
            height=320,
            elem_id="error-heatmap",
        )
    with gr.Row():
        grid = gr.Image(label="Token grid (one colour per code)", format="png", interactive=False, elem_id="token-grid")
        histogram = gr.Image(label="Code usage", format="png", interactive=False, elem_id="code-usage")
    with gr.Row():
        table = gr.Markdown(label="Figures", elem_id="figures")
        with gr.Column():
            tokens_file = gr.File(label="Tokens (.safetensors)", interactive=False)
            reconstruction_file = gr.File(label="Reconstruction (.png)", interactive=False)
    with gr.Accordion("Figures as JSON", open=False):
        figures = gr.JSON(label="Figures")

    def run_tokenize(upload: dict | None, model_name: str) -> tuple:
        return tokenize_image(upload_path(upload), model_name, models, limits, workspace).outputs()

    gr.on(
        [run.click, upload.upload],
        run_tokenize,
        inputs=[upload, model],
        outputs=[original, reconstruction, heatmap, grid, histogram, table, figures, tokens_file, reconstruction_file],
        api_name="tokenize_image",
        concurrency_id="model",
        preprocess=False,  # the upload reaches run_tokenize undecoded: vqtok's reader decodes it (see upload_path)
    )
