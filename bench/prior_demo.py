"""The prior demo, end to end on a CPU: render a labelled procedural image set, tokenize it with the shipped ``tiny``
tokenizer, train ``configs/prior_tiny.yaml`` on it, then measure what the prior learnt.

    python -m bench.prior_demo [--work runs/prior_demo] [--png docs/prior_demo_samples.png]

Each step is the user's command, run as a subprocess in ``--work`` (so its relative paths land there)::

    vqtok prior shapes data/shapes --n 1500 --size 64
    vqtok tokenize data/shapes --model tiny --out tokens/shapes --labels folder
    vqtok prior fit --config configs/prior_tiny.yaml --data.store tokens/shapes
    vqtok prior export runs/prior_tiny/checkpoints/last.ckpt priors/shapes

Then two figures: held-out bits per token of the prior next to a unigram model of the same split, and the share of
class-conditional samples (64 per class, decoded) that a small CNN trained on other rendered images only (never on
samples or decoded images) labels with the class they were asked for. A grid of samples (one row per class) is
written to ``--png``. Steps whose outputs exist in ``--work`` are reused with ``--reuse``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

import vqtok
from bench.common import machine
from bench.shape_classifier import predict, rendered, train_classifier
from vqtok.inputs import to_uint8
from vqtok.prior import bits_per_token, load_prior, unigram_bits_per_token
from vqtok.prior_training.data import PriorDataModule
from vqtok.prior_training.shapes import CLASSES
from vqtok.store import TokenStore

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "prior_tiny.yaml"


def vqtok_cli(work: Path, *args: str) -> float:
    """Run ``vqtok ARGS`` in ``work``; the seconds it took."""
    print("$ vqtok " + " ".join(args), flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vqtok.cli.main", *args], cwd=work, check=True)
    return time.perf_counter() - start


def build(args: argparse.Namespace) -> dict[str, float]:
    """Render, tokenize, fit and export in ``args.work`` (each step skipped with --reuse when its output exists)."""
    work, times = args.work, {}
    fresh = not args.reuse
    if fresh or not (work / "data/shapes").is_dir():
        times["render"] = vqtok_cli(
            work, "prior", "shapes", "data/shapes", "--n", str(args.n), "--size", str(args.size)
        )
    if fresh or not (work / "tokens/shapes/manifest.jsonl").is_file():
        tokenize = [
            "tokenize",
            "data/shapes",
            "--model",
            args.tokenizer,
            "--out",
            "tokens/shapes",
            "--labels",
            "folder",
        ]
        times["tokenize"] = vqtok_cli(work, *tokenize, "--no-progress")
    if fresh or not (work / "priors/shapes/config.json").is_file():
        fit = ["prior", "fit", "--config", str(CONFIG), "--data.store", "tokens/shapes", *args.fit_args]
        times["fit"] = vqtok_cli(work, *fit)
        times["export"] = vqtok_cli(work, "prior", "export", "runs/prior_tiny/checkpoints/last.ckpt", "priors/shapes")
    return times


def heldout_split(work: Path) -> tuple[list[int], list[int]]:
    """The training and held-out store indices of the fit, from the data options the run saved."""
    saved = sorted((work / "runs/prior_tiny").rglob("config.yaml"), key=lambda p: p.stat().st_mtime)[-1]
    data = yaml.safe_load(saved.read_text())["data"]
    module = PriorDataModule(str(work / data["store"]), data["seq_len"], 1, data["val_fraction"], 0, data["seed"])
    module.setup("fit")
    assert module.train is not None and module.val is not None, "the demo needs a held-out split (val_fraction > 0)"
    return sorted(i for seq in module.train.sequences for i in seq), sorted(
        i for seq in module.val.sequences for i in seq
    )


def sample_all(work: Path, args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, float]:
    """64 (``--samples``) decoded samples per class: float32 (C * n, 3, H, W) in [-1, 1], the requested classes as
    indices into CLASSES (C * n,), and the seconds sampling took."""
    prior = load_prior(work / "priors/shapes")
    tok = vqtok.load(prior.tokenizer)
    assert prior.tokenizer_fingerprint in tok.fingerprints
    start = time.perf_counter()
    options = {"cfg_scale": args.cfg, "temperature": args.temperature, "top_k": args.top_k}
    ids = torch.cat([prior.sample(args.samples, name, seed=args.seed + c, **options) for c, name in enumerate(CLASSES)])
    seconds = time.perf_counter() - start
    with torch.no_grad():
        images = torch.cat([tok.decode(ids[i : i + 64]) for i in range(0, len(ids), 64)])
    return images, torch.arange(len(CLASSES)).repeat_interleave(args.samples), seconds


def write_grid(images: torch.Tensor, per_class: int, columns: int, path: Path) -> None:
    """The first ``columns`` samples of each class, one row per class (in CLASSES order), 2 px apart."""
    _, _, h, w = images.shape
    gap = 2
    grid = np.full((len(CLASSES) * (h + gap) - gap, columns * (w + gap) - gap, 3), 255, np.uint8)
    for c in range(len(CLASSES)):
        for j in range(columns):
            tile = to_uint8(images[c * per_class + j])
            grid[c * (h + gap) : c * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = tile
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).quantize(256).save(path, optimize=True)  # a 256-colour palette: the file stays small


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/prior_demo"), help="folder for data, store, run")
    parser.add_argument("--reuse", action="store_true", help="keep the outputs of steps already done in --work")
    parser.add_argument("--n", type=int, default=1500, help="rendered images per class for the prior (default 1500)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--tokenizer", default="tiny")
    parser.add_argument("--samples", type=int, default=64, help="samples per class (default 64)")
    parser.add_argument("--cfg", type=float, default=4.0, help="classifier-free guidance scale (default 4)")
    parser.add_argument("--temperature", type=float, default=0.8, help="(default 0.8)")
    parser.add_argument("--top-k", type=int, default=32, help="(default 32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", type=Path, help="write a sample grid (8 per class) here")
    parser.add_argument("fit_args", nargs="*", help="more vqtok prior fit options, after --")
    args = parser.parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(min(2, torch.get_num_threads()))

    times = build(args)
    store = TokenStore(args.work / "tokens/shapes")
    train, held_out = heldout_split(args.work)
    prior = load_prior(args.work / "priors/shapes")
    bits = bits_per_token(prior, store, held_out)
    unigram = unigram_bits_per_token(store, train, held_out)

    start = time.perf_counter()
    x, y = rendered(400, args.size, seed=1000)  # never the prior's images (seed 0), never samples
    judge = train_classifier(x, y)
    x_test, y_test = rendered(100, args.size, seed=2000)
    rendered_acc = float((predict(judge, x_test) == y_test).float().mean())
    tok = vqtok.load(prior.tokenizer)
    with torch.no_grad():
        round_trip = torch.cat([tok.decode(tok.encode(x_test[i : i + 64])) for i in range(0, len(x_test), 64)])
    round_trip_acc = float((predict(judge, round_trip) == y_test).float().mean())
    times["classifier"] = time.perf_counter() - start

    images, wanted, times["sample"] = sample_all(args.work, args)
    got = predict(judge, images)
    per_class = {name: float((got[wanted == c] == c).float().mean()) for c, name in enumerate(CLASSES)}
    overall = float((got == wanted).float().mean())
    if args.png:
        write_grid(images, args.samples, 8, args.png)

    results = {
        "heldout_items": len(held_out),
        "bits_per_token": round(bits, 3),
        "unigram_bits_per_token": round(unigram, 3),
        "classifier_on_rendered": round(rendered_acc, 4),
        "classifier_on_round_trips": round(round_trip_acc, 4),
        "samples_per_class": args.samples,
        "sampling": {"cfg": args.cfg, "temperature": args.temperature, "top_k": args.top_k, "seed": args.seed},
        "samples_labelled_as_requested": round(overall, 4),
        "per_class": {k: round(v, 4) for k, v in per_class.items()},
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "machine": machine(),
    }
    (args.work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nheld-out bits per token: {bits:.3f} (prior) vs {unigram:.3f} (unigram), {len(held_out)} held-out items")
    print(f"classifier accuracy: {rendered_acc:.1%} on rendered images, {round_trip_acc:.1%} on their round trips")
    print(f"samples labelled with the requested class: {overall:.1%} of {len(got)} "
          f"({', '.join(f'{k} {v:.0%}' for k, v in per_class.items())})")  # fmt: skip
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))


if __name__ == "__main__":
    main()
