"""Long-video benchmark: peak memory and frames/s to encode a video file and decode it back to MP4, for a short
and a long procedural clip, each in its own process. Bounded memory means both peaks are about the same.

    python -m bench.video_memory [--model DIR] [--seconds 5 60] [--fps 24] [--size 720x1280] [--chunk-frames 8]
    python -m bench.video_memory --model checkpoints/video --seconds 0.5667 1.1 --fps 30   # the README's 720p rows

The clips are procedural (moving occluding shapes under a panning, zooming camera) written as H.264 MP4 and
cached under bench/results/clips/. Without --model a randomly initialised ``video_tiny`` tokenizer is used (speed
and memory do not depend on the weights). Prints a markdown table and writes bench/results/video_memory.json.
Not a test; figures depend on the machine and its load (printed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def make_clip(seconds: float, fps: float, height: int, width: int, seed: int = 0) -> Path:
    """Write (once) a procedural clip of the given length and size to MP4 and return its path."""
    from vqtok.io.video import write_video
    from vqtok.synthetic import procedural_video_frames

    path = RESULTS / "clips" / f"procedural_{height}x{width}_{fps:g}fps_{seconds:g}s_seed{seed}.mp4"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        num_frames = round(seconds * fps)
        t = time.perf_counter()
        write_video(path, procedural_video_frames(seed, num_frames, height, width, fps), fps, crf=20, preset="veryfast")
        print(f"wrote {path.name}: {num_frames} frames in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_child(model: str, clip: str, chunk_frames: int, tile_size: int | None) -> dict:
    """In this (fresh) process: encode the clip from its file, decode the ids straight into an MP4."""
    import numpy as np
    import torch

    import vqtok
    from vqtok.allocator import keep_freed_memory
    from vqtok.io.video import write_video

    keep_freed_memory()  # as the vqtok commands do (VQTOK_KEEP_FREED_MEMORY=0 turns it off)
    torch.set_num_threads(os.cpu_count() or 1)
    tok = vqtok.load(model, chunk_frames=chunk_frames, tile_size=tile_size)
    rss_loaded = peak_rss_mb()
    t = time.perf_counter()
    video = tok.encode_video_file(clip)
    encode_s = time.perf_counter() - t
    rss_encode = peak_rss_mb()

    def frames():  # noqa: ANN202 - uint8 (H, W, 3) frames, one piece of the decoded video at a time
        for piece in tok.decode_chunks(video.ids, size=(video.num_frames, video.height, video.width)):
            yield from ((piece[0].permute(1, 2, 3, 0).numpy() + 1) * 127.5 + 0.5).clip(0, 255).astype(np.uint8)

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        written, _, _ = write_video(Path(tmp) / "decoded.mp4", frames(), video.fps, preset="veryfast")
        decode_s = time.perf_counter() - t
    return {
        "frames": video.num_frames,
        "size": [video.height, video.width],
        "ids": list(video.ids.shape),
        "frames_written": written,
        "encode_fps": video.num_frames / encode_s,
        "decode_fps": written / decode_s,
        "rss_after_load_mb": rss_loaded,
        "peak_rss_encode_mb": rss_encode,
        "peak_rss_mb": peak_rss_mb(),
    }


def default_model(tmp: Path) -> str:
    """A randomly initialised video_tiny export (speed and memory do not depend on the weights)."""
    import torch

    from vqtok.config import TokenizerConfig
    from vqtok.export import save_export
    from vqtok.model.vqvae import VQVAE

    torch.manual_seed(0)
    return str(save_export(VQVAE(TokenizerConfig.from_name("video_tiny")), tmp / "video_tiny"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="video tokenizer export (default: random video_tiny)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0, 60.0])
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--size", default="720x1280", help="HxW of the clips")
    parser.add_argument("--chunk-frames", type=int, default=8)
    parser.add_argument("--tile-size", type=int, default=0, help="spatial tiles in pixels; 0 (default): one pass")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.model, args.child, args.chunk_frames, args.tile_size or None)))
        return
    height, width = map(int, args.size.lower().split("x"))
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or default_model(Path(tmp))
        rows = []
        for seconds in args.seconds:
            clip = make_clip(seconds, args.fps, height, width)
            cmd = [sys.executable, "-m", "bench.video_memory", "--child", str(clip), "--model", model]
            cmd += ["--chunk-frames", str(args.chunk_frames), "--tile-size", str(args.tile_size)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"benchmark child failed:\n{out.stderr}")
            rows.append({"seconds": seconds, "fps": args.fps, **json.loads(out.stdout.splitlines()[-1])})
    print(
        f"video round trip, model {args.model or 'video_tiny (random init)'}, chunk_frames {args.chunk_frames}, "
        f"{os.cpu_count()} CPUs, load average {load:.2f} before the run\n"
    )
    print("| clip | frames | ids | encode frames/s | decode+write frames/s | RSS after load | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['seconds']:g} s {r['size'][0]}x{r['size'][1]} @ {r['fps']:g} fps | {r['frames']} | "
            f"{'x'.join(map(str, r['ids'][1:]))} | {r['encode_fps']:.2f} | {r['decode_fps']:.2f} | "
            f"{r['rss_after_load_mb']:.0f} MB | {r['peak_rss_mb']:.0f} MB |"
        )
    RESULTS.mkdir(exist_ok=True)
    result = {"model": args.model or "video_tiny (random init)", "load_average": load, "rows": rows}
    (RESULTS / "video_memory.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
