"""Score a training checkpoint against a shipped tokenizer on the held-out photos, to decide whether to ship it.

    python -m tools.score_checkpoint runs/image_v2/checkpoints/last.ckpt
    python -m tools.score_checkpoint runs/image_v2/checkpoints/last.ckpt --clips --json runs/image_v2/score.json
    python -m tools.score_checkpoint checkpoints/my_export --baseline image      # an export directory works too

A checkpoint is first exported as the shipped models are (``vqtok export ... --dtype float16``), into
``--export-to`` (default: ``<run>/exports/<checkpoint name>-step<N>``). Both models are then scored exactly as the
figures in ``checkpoints/README.md`` were: ``vqtok eval data/heldout/photos`` (centre crops of at most 512x512, at
each photo's own resolution, float32), and with ``--clips`` also the codebook usage over the photos and the frames
of the 30 camera-move clips (``vqtok eval data/heldout/clips data/heldout/photos``). The held-out photos are
written first if missing (``python -m bench.heldout``, which needs ``pip install -e ".[bench]"``).

Prints one line per photo (baseline and candidate PSNR / SSIM, and the difference), the means and the codebook
usage, and whether the candidate beats the baseline on both mean PSNR and mean SSIM. Never used in training:
the held-out photos are scikit-image's and scikit-learn's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

import vqtok
from vqtok.allocator import keep_freed_memory
from vqtok.evaluation import DEFAULT_CROP, Evaluation, evaluate_files
from vqtok.export import export_checkpoint

HELDOUT = Path("data/heldout")


def export_for_scoring(ckpt: Path, export_to: Path | None) -> tuple[Path, int | None]:
    """Export ``ckpt`` in float16 (as the shipped models are); returns the export directory and the step."""
    step = torch.load(ckpt, map_location="cpu", weights_only=True).get("global_step")
    if export_to is None:
        run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
        export_to = run / "exports" / f"{ckpt.stem}-step{step}"
    export_checkpoint(ckpt, export_to, torch.float16)
    return export_to, step


def ensure_heldout(heldout: Path) -> None:
    """Write the held-out photos and clips with ``bench.heldout`` when they are not there yet."""
    if (heldout / "photos").is_dir() and (heldout / "clips").is_dir():
        return
    subprocess.run([sys.executable, "-m", "bench.heldout", str(heldout)], check=True)


def score(model: str, paths: list[Path], crop: int | None) -> Evaluation:
    return evaluate_files(vqtok.load(model), paths, crop=crop)


def per_photo(evaluation: Evaluation) -> dict[str, tuple[float, float]]:
    return {Path(s.path).stem: (s.psnr, s.ssim) for s in evaluation.of_kind("image")}


def compare(baseline: Evaluation, candidate: Evaluation, names: tuple[str, str]) -> tuple[list[str], dict]:
    """The comparison table (lines) and its figures (plain data)."""
    base, cand = per_photo(baseline), per_photo(candidate)
    lines = [f"{'photo':20} {names[0][:18]:>18} {names[1][:18]:>18}   dPSNR   dSSIM"]
    for name in sorted(base):
        (bp, bs), (cp, cs) = base[name], cand[name]
        lines.append(f"{name:20} {bp:8.2f} / {bs:.3f} {cp:8.2f} / {cs:.3f}  {cp - bp:+6.2f}  {cs - bs:+6.3f}")
    b, c = baseline.summary()["images"], candidate.summary()["images"]
    lines.append(
        f"{'mean':20} {b['mean_psnr']:8.2f} / {b['mean_ssim']:.3f} {c['mean_psnr']:8.2f} / {c['mean_ssim']:.3f}  "
        f"{c['mean_psnr'] - b['mean_psnr']:+6.2f}  {c['mean_ssim'] - b['mean_ssim']:+6.3f}"
    )
    better = c["mean_psnr"] > b["mean_psnr"] and c["mean_ssim"] > b["mean_ssim"]
    figures = {
        "baseline": {"model": names[0], "mean_psnr": b["mean_psnr"], "mean_ssim": b["mean_ssim"]},
        "candidate": {"model": names[1], "mean_psnr": c["mean_psnr"], "mean_ssim": c["mean_ssim"]},
        "per_photo": {n: {"baseline": base[n], "candidate": cand.get(n)} for n in sorted(base)},
        "beats_baseline": better,
    }
    return lines, figures


def usage_line(name: str, evaluation: Evaluation) -> str:
    return (
        f"{name}: {evaluation.codes_used} of {evaluation.num_codes} codes ({100 * evaluation.usage:.1f}%) over "
        f"{evaluation.tokens} tokens, perplexity {evaluation.perplexity:.0f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("candidate", type=Path, help="a .ckpt written by vqtok fit, or an export directory")
    parser.add_argument("--baseline", default="image", help="export directory or short name (default image)")
    parser.add_argument("--heldout", type=Path, default=HELDOUT, help="written by python -m bench.heldout")
    parser.add_argument("--export-to", type=Path, default=None, help="where to export a .ckpt")
    parser.add_argument("--crop", type=int, default=DEFAULT_CROP, help="centre crop scored (0: whole photos)")
    parser.add_argument("--clips", action="store_true", help="also the usage over the clips' frames and photos")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    keep_freed_memory()
    ensure_heldout(args.heldout)
    step = None
    candidate = args.candidate
    if candidate.is_file():
        candidate, step = export_for_scoring(candidate, args.export_to)
        print(f"exported {args.candidate} (step {step}) to {candidate}")
    crop = args.crop or None
    photos = [args.heldout / "photos"]
    names = (str(args.baseline), str(candidate))
    baseline_eval, candidate_eval = score(names[0], photos, crop), score(names[1], photos, crop)
    lines, figures = compare(baseline_eval, candidate_eval, names)
    print("\n".join(lines))
    print(usage_line(f"photos, {names[0]}", baseline_eval))
    print(usage_line(f"photos, {names[1]}", candidate_eval))
    figures.update(step=step, checkpoint=str(args.candidate))
    if args.clips:
        both = [args.heldout / "clips", args.heldout / "photos"]
        for key, name in zip(("baseline", "candidate"), names):
            evaluation = score(name, both, crop)
            print(usage_line(f"clips' frames + photos, {name}", evaluation))
            figures[key].update(usage_all=evaluation.usage, tokens_all=evaluation.tokens)
    verdict = "beats" if figures["beats_baseline"] else "does not beat"
    print(f"{names[1]} {verdict} {names[0]} on both mean PSNR and mean SSIM of the held-out photos")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
