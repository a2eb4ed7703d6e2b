"""The Video tab: a clip in (cut and downscaled to the app's limits), its tokens and reconstruction out, with a
per-frame PSNR plot and the same figures as the image tab."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from vqtok import VqtokError
from vqtok.inputs import to_uint8
from vqtok.token_file import TokenItem, save_tokens

from .drawing import token_grid_image, usage_histogram
from .figures import figures_markdown, quality, token_figures
from .limits import Limits
from .models import ModelRegistry
from .uploads import downscale, safe_stem, user_error
from .workspace import Workspace, as_outputs


@dataclass(frozen=True)
class Clip:
    """The frames the app encodes, and what was left out."""

    frames: np.ndarray  # uint8 (T, H, W, 3)
    fps: float
    notes: list[str]  # what was cut or downscaled, for the page
    whole: bool  # every frame of the file, at its own size (so comparing with the file's size is fair)


@dataclass(frozen=True)
class VideoResult:
    """What the tab shows and offers for download; field order = the event's outputs."""

    input_video: Path  # MP4 of the encoded frames (after cutting/downscaling), for side-by-side viewing
    reconstruction: Path  # MP4
    psnr_plot: pd.DataFrame  # columns frame, psnr_db
    token_grid: Path  # PNG: the first latent frames' tokens
    histogram: Path  # PNG: code usage
    table: str  # Markdown table of the figures
    figures: dict  # the same figures as data, with the per-frame PSNR and SSIM
    tokens_file: Path  # safetensors token file (model, size and fps in its metadata)

    def outputs(self) -> tuple:
        return as_outputs(self)


def read_clip(path: str, limits: Limits, progress: gr.Progress) -> Clip:
    """Decode the first frames of a video file within the limits, downscaling each frame as it arrives."""
    from vqtok.io.video import iter_frames, probe_video

    info = probe_video(path)  # FileFormatError for anything that is not a decodable video
    expected = min(info.num_frames, limits.max_video_frames)
    frames: list[np.ndarray] = []
    cut, end = False, 0.0
    for t, frame in iter_frames(path):  # frame: uint8 (H, W, 3), rotation applied
        if len(frames) == limits.max_video_frames or t >= limits.max_video_seconds:
            cut, end = True, t  # the first frame left out: the clip covers [0, t)
            break
        frame = downscale(frame, limits.max_video_side)
        if frames and frame.shape != frames[0].shape:
            raise gr.Error(f"The frame size changes within the video (at frame {len(frames)}).", print_exception=False)
        frames.append(frame)
        progress((len(frames), expected), desc="Reading frames", unit="frames")
    if not frames:
        raise gr.Error("The video has no frames that can be decoded.", print_exception=False)
    clip = np.stack(frames)  # (T, H, W, 3)
    notes = []
    if cut:
        notes.append(
            f"The clip was cut to its first {len(frames)} frames (the first {end:.2f} s of about "
            f"{info.duration:.2f} s); this app's limits: {limits.max_video_frames} frames, "
            f"{limits.max_video_seconds:g} s."
        )
    if clip.shape[1:3] != (info.height, info.width):
        notes.append(
            f"Frames were downscaled from {info.width}x{info.height} to {clip.shape[2]}x{clip.shape[1]} "
            f"(this app's limit: {limits.max_video_side} px on the longer side)."
        )
    return Clip(frames=clip, fps=info.fps, notes=notes, whole=not notes)


def tokenize_video(
    path: str | None,
    model_name: str | None,
    models: ModelRegistry,
    limits: Limits,
    workspace: Workspace,
    progress: gr.Progress,
) -> VideoResult:
    """Encode an uploaded clip, decode it back, and measure what survived, frame by frame."""
    if not path:
        raise gr.Error("Upload a video first.", print_exception=False)
    if not model_name:
        raise gr.Error("This app has no video tokenizer: start it with --video-model DIR.", print_exception=False)
    try:
        tok = models.get(model_name, video=True)
        clip = read_clip(path, limits, progress)
        T, H, W = clip.frames.shape[:3]
        progress(0.5, desc=f"Encoding {T} frames")
        start = time.perf_counter()
        ids = tok.encode(clip.frames)  # (1, t, h, w)
        encoded = time.perf_counter()
        pieces = []
        for piece in progress.tqdm(tok.decode_chunks(ids, size=(T, H, W)), desc="Decoding"):
            pieces.append(to_uint8(piece[0]))  # (n, H, W, 3)
        reconstruction = np.concatenate(pieces)  # (T, H, W, 3)
        decoded = time.perf_counter()
    except VqtokError as e:
        raise user_error(e, path, "video") from None

    psnr, ssim = quality(clip.frames, reconstruction)  # (T,) each
    ids_np = ids[0].cpu().numpy()
    file_bytes = Path(path).stat().st_size if clip.whole else None
    figures = {
        "model": model_name,
        **token_figures(ids_np, tok.codebook_size, (T, H, W), file_bytes),
        "fps": clip.fps,
        "psnr_db": float(psnr.mean()),
        "ssim": float(ssim.mean()),
        "psnr_per_frame_db": [round(float(v), 4) for v in psnr],
        "ssim_per_frame": [round(float(v), 6) for v in ssim],
        "encode_seconds": encoded - start,
        "decode_seconds": decoded - encoded,
        "notes": clip.notes,
    }
    progress(0.9, desc="Writing MP4s")
    from vqtok.io.video import write_video

    out, stem = workspace.new_dir(), safe_stem(path, "video")
    input_video, reconstruction_video = out / f"{stem}.input.mp4", out / f"{stem}.reconstruction.mp4"
    tokens_file = out / f"{stem}.tokens.safetensors"
    item = TokenItem(ids=ids[0].cpu(), size=(T, H, W), source=Path(path).name, fps=clip.fps)
    try:
        write_video(input_video, clip.frames, fps=clip.fps, preset="veryfast")
        write_video(reconstruction_video, reconstruction, fps=clip.fps, preset="veryfast")
        save_tokens(tokens_file, [item], tok.config.name, tok.fingerprint, tok.codebook_size)
    except VqtokError as e:  # e.g. a disk that is full
        raise user_error(e, path, "video") from None
    return VideoResult(
        input_video=input_video,
        reconstruction=reconstruction_video,
        psnr_plot=pd.DataFrame({"frame": np.arange(T), "psnr_db": psnr}),
        token_grid=workspace.save_png(out, f"{stem}.tokens", token_grid_image(ids_np)),
        histogram=workspace.save_png(out, f"{stem}.code_usage", usage_histogram(ids_np, tok.codebook_size)),
        table=figures_markdown({k: v for k, v in figures.items() if not k.endswith("per_frame")}),
        figures=figures,
        tokens_file=tokens_file,
    )


def build_video_tab(models: ModelRegistry, limits: Limits, workspace: Workspace, examples: list[str]) -> None:
    """Lay out the tab inside the current ``gr.Blocks`` and wire its event (API name ``/tokenize_video``)."""
    names = models.names(video=True)
    gr.Markdown(
        f"Clips longer than {limits.max_video_seconds:g} s or {limits.max_video_frames} frames are cut, and frames "
        f"larger than {limits.max_video_side} px on the longer side are downscaled; the figures say when."
        + ("" if names else " **This app has no video tokenizer** (start it with `--video-model DIR`).")
    )
    with gr.Row():
        upload = gr.Video(label="Video", sources=["upload"], height=320)
        with gr.Column():
            model = gr.Dropdown(names, value=names[0] if names else None, label="Video tokenizer")
            run = gr.Button("Tokenize and reconstruct", variant="primary")
            if examples:
                gr.Examples(examples, inputs=upload, label="Examples (procedural)")
    with gr.Row():
        input_video = gr.Video(label="Encoded input", interactive=False, autoplay=True, loop=True)
        reconstruction = gr.Video(label="Reconstruction", interactive=False, autoplay=True, loop=True)
    with gr.Row():
        plot = gr.LinePlot(x="frame", y="psnr_db", title="PSNR per frame", x_title="frame", y_title="PSNR (dB)")
        grid = gr.Image(
            label="Token grid (the first 8 latent frames, in reading order)", format="png", interactive=False
        )
    with gr.Row():
        histogram = gr.Image(label="Code usage", format="png", interactive=False)
        with gr.Column():
            table = gr.Markdown()
            tokens_file = gr.File(label="Tokens (.safetensors)", interactive=False)
    with gr.Accordion("Figures as JSON", open=False):
        figures = gr.JSON(label="Figures")

    def run_tokenize(path: str | None, model_name: str | None, progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008 - Gradio injects progress
        return tokenize_video(path, model_name, models, limits, workspace, progress).outputs()

    gr.on(
        [run.click, upload.upload],
        run_tokenize,
        inputs=[upload, model],
        outputs=[input_video, reconstruction, plot, grid, histogram, table, figures, tokens_file],
        api_name="tokenize_video",
        concurrency_id="model",
    )
