"""Long-video benchmark: peak memory and seconds per frame to encode a video file (as ``vqtok encode``) and
decode its ids back to MP4 (as ``vqtok decode``), each in its own process, for a short and a long procedural clip.
Bounded memory means both clips peak about the same.

    python -m bench.video_memory [--model DIR] [--seconds 5 60] [--fps 24] [--size 720x1280] [--chunk-frames 8]
        [--decode-dtype {float32,bfloat16}]
    python -m bench.video_memory --model video --seconds 0.5667 1.1 --fps 30 --decode-dtype bfloat16  # README's rows

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


def run_child(stage: str, model: str, clip: str, ids_file: str, options: argparse.Namespace) -> dict:
    """In this (fresh) process, as ``vqtok encode`` / ``vqtok decode`` run: encode the clip from its file into
    ``ids_file`` (stage "encode"), or decode ``ids_file`` straight into an MP4 (stage "decode")."""
    import torch

    import vqtok
    from vqtok.allocator import map_large_blocks

    map_large_blocks()  # as the vqtok commands do when they stream video files
    torch.set_num_threads(os.cpu_count() or 1)
    dtype = getattr(torch, options.decode_dtype if stage == "decode" else "float32")
    tok = vqtok.load(model, chunk_frames=options.chunk_frames, tile_size=options.tile_size or None, dtype=dtype)
    rss_loaded = peak_rss_mb()
    t = time.perf_counter()
    if stage == "encode":
        video = tok.encode_video_file(clip)
        torch.save({"ids": video.ids[0], "size": (video.num_frames, video.height, video.width)}, ids_file)
        frames, size, ids = video.num_frames, [video.height, video.width], list(video.ids.shape[1:])
    else:
        saved = torch.load(ids_file)
        with tempfile.TemporaryDirectory() as tmp:
            tok.decode_video_file(saved["ids"], Path(tmp) / "decoded.mp4", saved["size"], preset="veryfast")
        frames, size, ids = saved["size"][0], list(saved["size"][1:]), list(saved["ids"].shape)
    seconds = time.perf_counter() - t
    return {
        "frames": frames,
        "size": size,
        "ids": ids,
        "fps": frames / seconds,
        "seconds_per_frame": seconds / frames,
        "rss_after_load_mb": rss_loaded,
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
    parser.add_argument(
        "--decode-dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="the decoder's dtype (vqtok decode --dtype); the encoder always runs in float32",
    )
    parser.add_argument("--child", nargs=2, metavar=("STAGE", "CLIP"), help=argparse.SUPPRESS)
    parser.add_argument("--ids-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child[0], args.model, args.child[1], args.ids_file, args)))
        return
    height, width = map(int, args.size.lower().split("x"))
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or default_model(Path(tmp))
        rows = []
        for seconds in args.seconds:
            clip = make_clip(seconds, args.fps, height, width)
            row: dict = {"seconds": seconds, "fps": args.fps}
            for stage in ("encode", "decode"):
                cmd = [sys.executable, "-m", "bench.video_memory", "--child", stage, str(clip), "--model", model]
                cmd += ["--ids-file", str(Path(tmp) / "ids.pt"), "--chunk-frames", str(args.chunk_frames)]
                cmd += ["--tile-size", str(args.tile_size), "--decode-dtype", args.decode_dtype]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"benchmark child failed:\n{out.stderr}")
                row[stage] = json.loads(out.stdout.splitlines()[-1])
            rows.append(row)
    print(
        f"video encode and decode, model {args.model or 'video_tiny (random init)'}, decoder in "
        f"{args.decode_dtype}, chunk_frames {args.chunk_frames}, {os.cpu_count()} CPUs, load average {load:.2f} "
        "before the run\n"
    )
    print("| clip | frames | ids | encode s/frame | encode peak RSS | decode s/frame | decode peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        e, d = r["encode"], r["decode"]
        print(
            f"| {r['seconds']:g} s {e['size'][0]}x{e['size'][1]} @ {r['fps']:g} fps | {e['frames']} | "
            f"{'x'.join(map(str, e['ids']))} | {e['seconds_per_frame']:.2f} | {e['peak_rss_mb']:.0f} MB | "
            f"{d['seconds_per_frame']:.2f} | {d['peak_rss_mb']:.0f} MB |"
        )
    RESULTS.mkdir(exist_ok=True)
    result = {
        "model": args.model or "video_tiny (random init)",
        "decode_dtype": args.decode_dtype,
        "load_average": load,
        "rows": rows,
    }
    (RESULTS / "video_memory.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
