"""Held-out PSNR against training time for one training run: does more training still pay?

    python -m tools.psnr_curve runs/image_v2                    # score any new checkpoint, print the curve so far
    python -m tools.psnr_curve runs/image_v2 --watch 600        # ... and again every 10 minutes, while training runs
    python -m tools.psnr_curve runs/image_v2 --png docs/figures/image_v2_curve.png

Each step checkpoint of ``RUN/checkpoints`` (``last.ckpt`` included: a run that keeps only its newest checkpoint
is caught by scoring it as it goes) is exported in float16 as the shipped models are and scored with
``vqtok eval`` on the held-out photos (``tools.score_checkpoint``'s settings), once: the figures are kept in
``RUN/curve/step<N>.json`` with the checkpoint's wall-clock age since the run started (the run's
``csv/version_0/hparams.yaml``). The run's starting point (``model.init_from`` in its config, e.g. the shipped
``image``) is step 0. Wall-clock hours on a shared machine overstate the compute; the batches are printed too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch
import yaml
from PIL import Image, ImageDraw, ImageFont

from tools.score_checkpoint import HELDOUT, ensure_heldout, score
from vqtok.allocator import keep_freed_memory
from vqtok.evaluation import DEFAULT_CROP
from vqtok.export import export_checkpoint


def run_start(run: Path) -> float:
    """The run's start (seconds since the epoch): when Lightning wrote its hyperparameters."""
    marker = run / "csv" / "version_0" / "hparams.yaml"
    if not marker.is_file():
        sys.exit(f"{marker} not found: is {run} a vqtok fit run directory (default_root_dir)?")
    return marker.stat().st_mtime


def init_from(run: Path) -> str | None:
    """The export the run started from (``model.init_from`` of the config it ran with), if any."""
    config = run / "csv" / "version_0" / "config.yaml"
    if not config.is_file():
        return None
    return (yaml.safe_load(config.read_text()).get("model") or {}).get("init_from")


def mean_scores(model: str | Path, heldout: Path) -> dict[str, float]:
    summary = score(str(model), [heldout / "photos"], DEFAULT_CROP).summary()["images"]
    return {"psnr": summary["mean_psnr"], "ssim": summary["mean_ssim"]}


def score_new_checkpoints(run: Path, heldout: Path) -> None:
    """Score every checkpoint of the run whose step has no figures yet (the start point too)."""
    curve = run / "curve"
    curve.mkdir(exist_ok=True)
    start = run_start(run)
    if not (curve / "step0.json").exists() and (origin := init_from(run)):
        point = {"step": 0, "hours": 0.0, "model": origin, **mean_scores(origin, heldout)}
        (curve / "step0.json").write_text(json.dumps(point) + "\n")
    for ckpt in sorted((run / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime):
        mtime = ckpt.stat().st_mtime
        step = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True).get("global_step")  # no full read
        if step is None or (curve / f"step{step}.json").exists():
            continue
        export = curve / f"export-step{step}"
        export_checkpoint(ckpt, export, torch.float16)
        point = {"step": step, "hours": (mtime - start) / 3600, "model": str(ckpt), **mean_scores(export, heldout)}
        shutil.rmtree(export)
        (curve / f"step{step}.json").write_text(json.dumps(point) + "\n")
        print(f"scored {ckpt.name}: step {step}, {point['psnr']:.2f} dB / {point['ssim']:.3f}", flush=True)


def load_curve(run: Path) -> list[dict]:
    points = [json.loads(p.read_text()) for p in (run / "curve").glob("step*.json")]
    return sorted(points, key=lambda p: p["step"])


def draw(points: list[dict], path: Path, title: str) -> None:
    """A small line chart of PSNR (dB) against wall-clock hours, drawn with Pillow."""
    w, h, margin = 640, 360, 56
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    d.font = ImageFont.load_default(size=13)
    hours = [p["hours"] for p in points]
    psnr = [p["psnr"] for p in points]
    x0, x1 = 0.0, max(max(hours), 1e-3)
    y0, y1 = min(psnr) - 0.1, max(psnr) + 0.1

    def xy(hr: float, db: float) -> tuple[float, float]:
        return margin + (hr - x0) / (x1 - x0) * (w - 2 * margin), h - margin - (db - y0) / (y1 - y0) * (h - 2 * margin)

    d.rectangle([margin, margin, w - margin, h - margin], outline="black")
    for i in range(5):
        db, hr = y0 + (y1 - y0) * i / 4, x0 + (x1 - x0) * i / 4
        d.text((4, xy(0, db)[1] - 6), f"{db:.2f}", fill="black")
        d.text((xy(hr, y0)[0] - 10, h - margin + 6), f"{hr:.1f}", fill="black")
    d.text((w // 2 - 100, h - 22), "wall-clock hours since the run started", fill="black")
    d.text((margin, 16), title, fill="black")
    d.line([xy(a, b) for a, b in zip(hours, psnr)], fill=(31, 119, 180), width=2)
    for a, b in zip(hours, psnr):
        cx, cy = xy(a, b)
        d.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=(31, 119, 180))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the run's directory (trainer.default_root_dir)")
    parser.add_argument("--heldout", type=Path, default=HELDOUT, help="written by python -m bench.heldout")
    parser.add_argument("--watch", type=float, default=0, help="score again every this many seconds (0: once)")
    parser.add_argument("--png", type=Path, default=None, help="also draw the curve")
    args = parser.parse_args(argv)
    keep_freed_memory()
    ensure_heldout(args.heldout)
    while True:
        score_new_checkpoints(args.run, args.heldout)
        points = load_curve(args.run)
        print("| batches | wall-clock hours | held-out PSNR (dB) | SSIM |\n|---:|---:|---:|---:|")
        for p in points:
            print(f"| {p['step']} | {p['hours']:.2f} | {p['psnr']:.2f} | {p['ssim']:.3f} |", flush=True)
        if args.png and points:
            draw(points, args.png, f"{args.run}: held-out PSNR of each checkpoint")
        if not args.watch:
            return 0
        time.sleep(args.watch)


if __name__ == "__main__":
    sys.exit(main())
