"""Training benchmark: images/s of a default config next to this machine's measured conv throughput, and codebook
usage after a fixed budget for EMA + restarts vs a plain gradient-learned codebook, on procedural data.

    python -m bench.training [--config configs/image_f8.yaml] [--steps 6] [--usage-steps 400] [--json out.json]

Not a test: it prints a markdown table and writes JSON. Figures depend on the machine and its load (printed).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from bench.common import dense_peak
from vqtok.config import TokenizerConfig
from vqtok.training.data import ProceduralImages, collate_images
from vqtok.training.module import TokenizerTraining
from vqtok.training.options import GanOptions, OptimizerOptions


def train_step_flops(module: TokenizerTraining, x: torch.Tensor) -> int:
    """FLOPs of one generator forward + backward (the part of a step that dominates before the GAN starts)."""
    with FlopCounterMode(display=False) as counter:
        x_rec, q = module.model(x)
        (module.reconstruction_loss(x, x_rec)["rec"] + q.loss).backward()
    module.model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def training_throughput(
    config_path: str, steps: int, batch_size: int, image_size: int, precision: str, accelerator: str = "cpu"
) -> dict:
    """images/s of real TokenizerTraining steps (manual optimisation, both optimizers once the GAN is on)."""
    import lightning as L

    cfg = yaml.safe_load(Path(config_path).read_text())
    tok = TokenizerConfig.from_dict(cfg["model"]["tokenizer"])
    model_args = {k: v for k, v in cfg["model"].items() if k != "tokenizer"}
    model_args.update(image_log_every_n_steps=0)
    model_args["gan"] = {**model_args.get("gan", {}), "start_step": 2}  # time the full GAN step
    module = TokenizerTraining(tok, **model_args)
    data = ProceduralImages(num_samples=batch_size * (steps + 3), image_size=image_size, seed=0)
    loader = DataLoader(data, batch_size=batch_size, collate_fn=collate_images, num_workers=1)
    stamps: list[float] = []

    class Clock(L.Callback):
        def on_train_batch_end(self, *args, **kwargs) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # time the step, not the kernel launches
            stamps.append(time.perf_counter())

    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        max_epochs=1,
        limit_train_batches=steps + 3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[Clock()],
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=loader)
    per_batch = sorted(b - a for a, b in itertools.pairwise(stamps[3:]))  # GAN steps after warm-up
    median = per_batch[len(per_batch) // 2]
    flops = train_step_flops(module, next(iter(loader))["images"].to(module.device))
    return {
        "config": config_path,
        "precision": precision,
        "image_size": image_size,
        "batch_size": batch_size,
        "images_per_s": batch_size / median,
        "generator_flops_per_image": flops / batch_size,
        "achieved_flops": flops / median,
    }


def codebook_usage(codebook: str, l2: bool, restart: float, steps: int, seed: int = 0) -> dict:
    """Train a small f8 tokenizer for a fixed budget; count the codes used on held-out procedural images."""
    import lightning as L

    L.seed_everything(seed, verbose=False)
    tok = TokenizerConfig.from_name(
        "tiny",
        num_codes=1024,
        codebook=codebook,
        l2_normalize=l2,
        dead_code_threshold=restart,
        code_dim=8 if l2 else 64,
    )
    module = TokenizerTraining(
        tok, optimizer=OptimizerOptions(learning_rate=4e-4), gan=GanOptions(weight=0.0), image_log_every_n_steps=0
    )
    train = DataLoader(
        ProceduralImages(16 * steps, 64, seed=seed), batch_size=16, collate_fn=collate_images, num_workers=1
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=train)
    module.eval()
    held_out = torch.stack([ProceduralImages(64, 64, seed=10_000 + seed)[i] for i in range(64)])
    with torch.no_grad():
        x_rec, q = module.model(held_out)
    used = q.ids.unique().numel()
    mse = F.mse_loss(x_rec.clamp(-1, 1), held_out).item()
    return {
        "codebook": codebook,
        "l2_normalize": l2,
        "dead_code_threshold": restart,
        "steps": steps,
        "codes_used": used,
        "usage": used / tok.num_codes,
        "perplexity": float(q.perplexity),
        "psnr_db": 10 * torch.log10(torch.tensor(4.0 / mse)).item(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/image_f8.yaml")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--usage-steps", type=int, default=400)
    p.add_argument("--json", default="bench/results/training.json")
    a = p.parse_args()
    torch.manual_seed(0)
    load = os.getloadavg()
    cpu = torch.device("cpu")
    peak32, peak16 = (dense_peak(cpu, dtype)["conv"] for dtype in (torch.float32, torch.bfloat16))
    runs = [
        training_throughput(a.config, a.steps, a.batch_size, a.image_size, prec) for prec in ("32-true", "bf16-mixed")
    ]
    usage = [codebook_usage("ema", True, 1.0, a.usage_steps), codebook_usage("learned", False, 0.0, a.usage_steps)]

    print(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average before the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"measured dense 3x3 conv (128 ch, 64x64, batch 8, channels-last): fp32 {peak32 / 1e12:.3f} TFLOP/s, "
        f"bf16 {peak16 / 1e12:.3f} TFLOP/s\n"
    )
    print("| config | precision | size | batch | images/s | generator GFLOP/image | achieved TFLOP/s | of conv peak |")
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        peak = peak16 if r["precision"].startswith("bf16") else peak32
        r["fraction_of_conv_peak"] = r["achieved_flops"] / peak
        print(
            f"| {r['config']} | {r['precision']} | {r['image_size']} | {r['batch_size']} | {r['images_per_s']:.2f} |"
            f" {r['generator_flops_per_image'] / 1e9:.1f} | {r['achieved_flops'] / 1e12:.3f} |"
            f" {100 * r['fraction_of_conv_peak']:.0f}% |"
        )
    print(
        f"\nCodebook usage after {a.usage_steps} steps (tiny f8, 1024 codes, 64x64 procedural images, batch 16),"
        " counted on 64 held-out images:\n"
    )
    print("| codebook | lookup | restarts | codes used | usage | perplexity | held-out PSNR |")
    print("|---|---|---|---|---|---|---|")
    for u in usage:
        lookup = "l2-normalised, 8-dim" if u["l2_normalize"] else "plain, 64-dim"
        print(
            f"| {u['codebook']} | {lookup} | {'yes' if u['dead_code_threshold'] > 0 else 'no'} | {u['codes_used']} |"
            f" {100 * u['usage']:.1f}% | {u['perplexity']:.0f} | {u['psnr_db']:.2f} dB |"
        )
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "load_average": load,
                "conv_flops": {"fp32": peak32, "bf16": peak16},
                "training": runs,
                "codebook_usage": usage,
            },
            indent=2,
        )
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
