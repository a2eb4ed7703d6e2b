"""The recipe study of issue 18: short runs at a fixed budget, each scored on the held-out photos.

    python -m tools.recipe_study                      # every run not yet scored, in order (resumable)
    python -m tools.recipe_study data_real loss_ssim  # only these
    python -m tools.recipe_study --list               # the runs and what each changes
    python -m tools.recipe_study --table              # the table of the scored runs (for checkpoints/README.md)

Every run is ``configs/image_v2.yaml`` with a few fields changed (:data:`RUNS`), written to
``runs/study/<name>/config.yaml`` and trained with ``vqtok fit`` for the same number of batches, so each run costs
the same CPU time up to the small cost of the changed part (the quantizer runs change only the bottleneck). Then
``python -m tools.score_checkpoint`` exports ``last.ckpt`` in float16 and scores it on the 15 held-out photos
(scikit-image's and scikit-learn's, never trained on) into ``runs/study/<name>/score.json``. A run interrupted
part-way resumes from its ``last.ckpt``; a scored run is skipped.

The fine-tuning studies (data, loss) start from the shipped v1 image tokenizer, as the v2 fine-tune does; the
quantizer study trains the same architecture from scratch with VQ-16384, FSQ 8-8-8-6-5 (15360 codes) and 14-bit
LFQ (16384 codes), the same ~14 bits per token.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BASE_CONFIG = Path("configs/image_v2.yaml")
STUDY_DIR = Path("runs/study")
V1 = "runs/study/v1_image"  # the v1 image export the fine-tuning runs start from (copied from git history)
FINE_TUNE_BATCHES = 400
SCRATCH_BATCHES = 400


@dataclass(frozen=True)
class Run:
    """One study run: what it changes relative to ``configs/image_v2.yaml``."""

    study: str
    what: str
    model: dict[str, Any] = field(default_factory=dict)  # merged into model: (nested dicts merged)
    data: dict[str, Any] = field(default_factory=dict)  # merged into data.init_args
    batches: int = FINE_TUNE_BATCHES
    from_scratch: bool = False
    callbacks: tuple[dict[str, Any], ...] = ()  # appended to trainer.callbacks


_MIXED = {"real_fraction": 0.75}
_SCRATCH = {"optimizer": {"learning_rate": 2e-4, "warmup_steps": 100}, "init_from": None}

RUNS: dict[str, Run] = {
    "data_procedural": Run("data", "procedural images only", data={"real_fraction": 0.0}),
    "data_real": Run("data", "real photos only (shipped)", data={"real_fraction": 1.0}),
    # The mix was first run as runs/image_v2_lr5e5 (the earlier v2); the loss runs change the mix's recipe.
    "data_mixed": Run("data", "75% real photos, 25% procedural", data=_MIXED),
    # An exponential moving average of the weights (parameters only: the EMA codebook and its statistics stay the
    # live model's), exported instead of the last weights. Decay 0.99: a horizon of ~100 of the 400 batches.
    "ema_weights": Run(
        "optimiser",
        "real photos only + EMA of the weights (decay 0.99) for export",
        data={"real_fraction": 1.0},
        callbacks=(
            {
                "class_path": "lightning.pytorch.callbacks.EMAWeightAveraging",
                "init_args": {"decay": 0.99, "use_buffers": False},
            },
        ),
    ),
    "loss_ssim": Run("loss", "L1 + L2 + 0.5 (1 - SSIM), mixed data", model={"loss": {"ssim_weight": 0.5}}, data=_MIXED),
    "loss_gan": Run(
        "loss",
        "L1 + L2 + PatchGAN (adaptive weight 0.5) from batch 100, mixed data",
        model={"gan": {"weight": 0.5, "start_step": 100}},
        data=_MIXED,
    ),
    "quant_vq": Run(
        "quantizer",
        "VQ-16384, 8-dim l2-normalised codes (EMA)",
        model=_SCRATCH,
        batches=SCRATCH_BATCHES,
        from_scratch=True,
    ),
    "quant_fsq": Run(
        "quantizer",
        "FSQ levels 8-8-8-6-5 (15360 codes)",
        model={
            **_SCRATCH,
            "tokenizer": {
                "quantizer": "fsq",
                "levels": [8, 8, 8, 6, 5],
                "code_dim": 5,
                "num_codes": None,
                "l2_normalize": False,
            },
        },
        batches=SCRATCH_BATCHES,
        from_scratch=True,
    ),
    "quant_lfq": Run(
        "quantizer",
        "LFQ 14 bits (16384 codes), entropy weight 0.1",
        model={
            **_SCRATCH,
            "tokenizer": {"quantizer": "lfq", "code_dim": 14, "num_codes": None, "l2_normalize": False},
            "quantizer_training": {
                "codebook": None,
                "ema_decay": None,
                "dead_code_threshold": None,
                "kmeans_init": None,
                "entropy_weight": 0.1,
            },
        },
        batches=SCRATCH_BATCHES,
        from_scratch=True,
    ),
}


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in; a None value removes the key (so it falls back to its default)."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def run_config(name: str, run: Run) -> dict[str, Any]:
    """The full ``vqtok fit`` config of one run, its outputs under ``runs/study/<name>``."""
    config = yaml.safe_load(BASE_CONFIG.read_text())
    root = str(STUDY_DIR / name)
    trainer = config["trainer"]
    trainer.update(default_root_dir=root, max_steps=run.batches, val_check_interval=run.batches)
    for logger in trainer["logger"]:
        logger["init_args"]["save_dir"] = root
    # Each run changes one thing from the recipe the study began with, which averaged no weights (the long run's
    # EMA of image_v2.yaml came out of the study's own ema_weights run): averaging only where a run adds it.
    trainer["callbacks"] = [c for c in trainer["callbacks"] if not c["class_path"].endswith("WeightAveraging")]
    for callback in trainer["callbacks"]:
        if callback["class_path"].endswith("ModelCheckpoint"):
            callback["init_args"].update(dirpath=f"{root}/checkpoints", every_n_train_steps=200)
    trainer["callbacks"] += [copy.deepcopy(c) for c in run.callbacks]
    model = _merge(config["model"], run.model)
    if not run.from_scratch:
        model["init_from"] = V1
    # the long run's schedule, so a short run sees the same rates as its start
    model["optimizer"]["lr_decay_steps"] = 30000
    model["tokenizer"]["name"] = f"study_{name}"
    config["model"] = model
    config["data"]["init_args"] = _merge(config["data"]["init_args"], run.data)
    return config


def ensure_v1() -> None:
    """The v1 image export (the fine-tuning runs' start), taken from the commit before v2 replaced it."""
    target = Path(V1)
    if (target / "config.json").is_file():
        return
    target.mkdir(parents=True, exist_ok=True)
    rev = subprocess.run(
        ["git", "log", "--format=%H", "-1", "--", "checkpoints/image/encoder.safetensors"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    for name in ("config.json", "encoder.safetensors", "decoder.safetensors"):
        blob = subprocess.run(["git", "show", f"{rev}~1:checkpoints/image/{name}"], check=True, capture_output=True)
        (target / name).write_bytes(blob.stdout)


def train_and_score(name: str, run: Run) -> None:
    root = STUDY_DIR / name
    if (root / "score.json").is_file():
        print(f"{name}: scored already")
        return
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(run_config(name, run), sort_keys=False))
    last = root / "checkpoints" / "last.ckpt"
    command = ["vqtok", "fit", "--config", str(config_path)]
    if last.is_file():
        command += ["--ckpt_path", str(last)]
    print(f"{name}: {' '.join(command)}", flush=True)
    with open(root / "fit.log", "a") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.score_checkpoint",
            str(last),
            "--baseline",
            V1,
            "--export-to",
            str(root / "export"),
            "--json",
            str(root / "score.json"),
        ],
        check=True,
    )


def table() -> list[str]:
    lines = ["| study | run | change | batches | PSNR (dB) | SSIM |", "|---|---|---|---:|---:|---:|"]
    for name, run in RUNS.items():
        score = STUDY_DIR / name / "score.json"
        if score.is_file():
            c = json.loads(score.read_text())["candidate"]
            lines.append(
                f"| {run.study} | {name} | {run.what} | {run.batches} | {c['mean_psnr']:.2f} | {c['mean_ssim']:.3f} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", help=f"runs to do (default: all of {', '.join(RUNS)})")
    parser.add_argument("--list", action="store_true", help="print the runs and exit")
    parser.add_argument("--table", action="store_true", help="print the table of scored runs and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, run in RUNS.items():
            print(f"{name:16} {run.study:9} {run.batches:5} batches  {run.what}")
        return 0
    if args.table:
        print("\n".join(table()))
        return 0
    unknown = [name for name in args.runs if name not in RUNS]
    if unknown:
        parser.error(f"unknown runs {unknown}; known: {', '.join(RUNS)}")
    ensure_v1()
    for name in args.runs or list(RUNS):
        train_and_score(name, RUNS[name])
    print("\n".join(table()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
