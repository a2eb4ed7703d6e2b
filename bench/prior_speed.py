"""Speed of the priors, side by side in one run (random weights: speed does not depend on them):

- training tokens/s of the AR prior against litgpt's GPT of the same size (width, depth, heads, SwiGLU width,
  RMSNorm, rotary positions, vocabulary) on the same packed sequences, timed in turns;
- AR sampling of a 32x32 grid with the KV cache against recomputing the whole prefix at every position;
- MaskGIT sampling of the same grid at 8 and 16 steps.

    python -m bench.prior_speed [--threads 2] [--dim 256 --depth 6 --heads 4 --codes 16384] [--grid 32]

litgpt is optional and never installed into the project's environment (its requirements would move
huggingface_hub and jsonargparse): put it in a folder of its own and name it with --litgpt-path::

    pip install --no-deps --target .litgpt litgpt==0.5.13 psutil
    python -m bench.prior_speed --litgpt-path .litgpt

The litgpt model attends causally across the whole packed sequence (it has no per-item masks); the AR prior uses
its block-diagonal causal mask, so it does the same arithmetic plus the mask.

On a CUDA device with ``flash-attn`` installed (``pip install vqtok[flash]``), ``--sections flash`` times a bf16
training step of the AR prior with FlashAttention's variable-length kernel against SDPA with the dense block-diagonal
mask, on the same packed sequences (elsewhere it says why it cannot run and skips)::

    python -m bench.prior_speed --sections flash --batch 16 --seq-len 4096
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

import vqtok.prior.model as prior_model
from bench.common import interleaved, machine, table
from vqtok.prior import PriorConfig, build_prior, sample
from vqtok.prior.varlen import flash_varlen_kernel
from vqtok.store.packing import grid_coords


def packed_batch(batch: int, seq_len: int, grid: int, codes: int, classes: int, seed: int = 0) -> dict[str, Any]:
    """Sequences of seq_len packed with whole grid x grid items (as vqtok.store.PackedItems lays them out), random
    ids and classes: the tensors of a PackedItems batch."""
    g = torch.Generator().manual_seed(seed)
    n = grid * grid
    per_seq = seq_len // n
    ids = torch.full((batch, seq_len), codes, dtype=torch.int64)
    doc = torch.full((batch, seq_len), -1, dtype=torch.int64)
    coords = torch.zeros(batch, seq_len, 3, dtype=torch.int64)
    label = torch.full((batch, seq_len), -1, dtype=torch.int64)
    for d in range(per_seq):
        span = slice(d * n, (d + 1) * n)
        ids[:, span] = torch.randint(0, codes, (batch, n), generator=g)
        doc[:, span] = d
        coords[:, span] = grid_coords((grid, grid))
        label[:, span] = torch.randint(0, classes, (batch, 1), generator=g)
    return {"ids": ids, "doc": doc, "coords": coords, "label": label}


def litgpt_model(config: PriorConfig, seq_len: int) -> torch.nn.Module | None:
    """litgpt's GPT at the prior's size, or None when litgpt cannot be imported."""
    try:
        litgpt_config = importlib.import_module("litgpt.config")
        litgpt_model = importlib.import_module("litgpt.model")
    except ImportError:
        return None
    lc = litgpt_config.Config(
        name="prior-matched",
        block_size=seq_len,
        vocab_size=config.num_codes + 1,
        padded_vocab_size=config.num_codes + 1,  # the prior's inputs: codes + padding; its head has num_codes
        n_layer=config.depth,
        n_head=config.heads,
        n_embd=config.dim,
        rotary_percentage=1.0,
        parallel_residual=False,
        bias=False,
        norm_class_name="RMSNorm",
        mlp_class_name="LLaMAMLP",
        intermediate_size=config.hidden_dim,
    )
    return litgpt_model.GPT(lc)


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, step: Any) -> None:  # noqa: ANN401
    loss = step()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def training_rows(config: PriorConfig, batch: dict, repeats: int) -> tuple[list[list[str]], dict]:
    """Tokens/s of a training step (forward, loss, backward, AdamW) of both models on ``batch``."""
    seq_len = batch["ids"].shape[1]
    prior = build_prior(config).train()
    contenders: dict[str, Any] = {}
    opt = torch.optim.AdamW(prior.parameters(), lr=1e-4)
    contenders["vqtok ARPrior (block-diagonal mask)"] = lambda: train_step(prior, opt, lambda: prior.loss(batch))
    params = {"vqtok ARPrior (block-diagonal mask)": sum(p.numel() for p in prior.parameters())}
    gpt = litgpt_model(config, seq_len)
    if gpt is not None:
        gpt.train()
        gpt_opt = torch.optim.AdamW(gpt.parameters(), lr=1e-4)
        inputs = torch.cat([batch["ids"][:, :1], batch["ids"][:, :-1]], dim=1)  # the same next-token task
        real = batch["doc"] >= 0

        def gpt_loss() -> torch.Tensor:
            logits = gpt(inputs)  # (B, L, codes + 1)
            return F.cross_entropy(logits[real], batch["ids"][real])

        contenders["litgpt GPT (causal over the sequence)"] = lambda: train_step(gpt, gpt_opt, gpt_loss)
        params["litgpt GPT (causal over the sequence)"] = sum(p.numel() for p in gpt.parameters())
    seconds = interleaved(contenders, torch.device("cpu"), repeats)
    tokens = int((batch["doc"] >= 0).sum())
    ours = tokens / seconds["vqtok ARPrior (block-diagonal mask)"]
    rows = []
    for name, s in seconds.items():
        rate = tokens / s
        ratio = "-" if name.startswith("vqtok") else f"vqtok is {ours / rate:.2f}x"
        rows.append([name, f"{params[name] / 1e6:.2f} M", f"{s:.2f} s", f"{rate:.0f}", ratio])
    figures = {"tokens_per_step": tokens, "seconds": seconds, "params": params}
    return rows, figures


def seconds_of(fn: Any, repeats: int) -> float:  # noqa: ANN401
    """Median of ``repeats`` timed calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def sampling_rows(config: PriorConfig, grid: int, n: int, repeats: int) -> tuple[list[list[str]], dict]:
    """AR with and without the KV cache, MaskGIT at 8 and 16 steps; n samples of grid x grid with CFG 2."""
    torch.manual_seed(0)
    ar = build_prior(config).eval()
    masked = build_prior(PriorConfig(**{**config.to_dict(), "objective": "maskgit"})).eval()
    labels = [k % config.num_classes for k in range(n)]
    for model in (ar, masked):  # warm-up on a small grid
        sample(model, (4, 4), n, labels, cfg_scale=2.0)
    size = (grid, grid)
    cached = seconds_of(lambda: sample(ar, size, n, labels, cfg_scale=2.0), repeats)
    uncached = seconds_of(lambda: sample(ar, size, n, labels, cfg_scale=2.0, use_cache=False), repeats)
    masked_s = {
        s: seconds_of(lambda s=s: sample(masked, size, n, labels, cfg_scale=2.0, steps=s), repeats) for s in (8, 16)
    }
    rows = [
        ["AR, KV cache", f"{cached:.2f} s", f"{uncached / cached:.1f}x faster than without"],
        ["AR, no cache (the whole prefix at every position)", f"{uncached:.2f} s", "-"],
        *[[f"MaskGIT, {s} steps", f"{t:.2f} s", f"{cached / t:.1f}x faster than AR with cache"]
          for s, t in masked_s.items()],
    ]  # fmt: skip
    return rows, {"ar_cached": cached, "ar_uncached": uncached, "maskgit": masked_s}


def flash_rows(config: PriorConfig, batch: dict, repeats: int) -> tuple[list[list[object]], dict] | str:
    """Tokens/s of a bf16-autocast training step of the AR prior on CUDA, FlashAttention varlen vs SDPA with the
    dense mask; or the reason it cannot run here (no CUDA device, or flash-attn not installed)."""
    if not torch.cuda.is_available():
        return "no CUDA device: the FlashAttention varlen path only runs on CUDA"
    device = torch.device("cuda")
    probe = torch.zeros(1, device=device, dtype=torch.bfloat16)
    if flash_varlen_kernel(probe, config.head_dim) is None:
        return "flash-attn is not installed (pip install vqtok[flash]), or cannot load on this device"
    batch = {k: v.to(device) for k, v in batch.items()}
    prior = build_prior(config).to(device).train()
    opt = torch.optim.AdamW(prior.parameters(), lr=1e-4)

    def step() -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return prior.loss(batch)

    def dense_step() -> None:  # the same step with the varlen path switched off: SDPA with the dense mask
        with patched_kernel(None):
            train_step(prior, opt, step)

    names = ("FlashAttention varlen", "SDPA, dense block-diagonal mask")
    seconds = interleaved({names[0]: lambda: train_step(prior, opt, step), names[1]: dense_step}, device, repeats)
    tokens = int((batch["doc"] >= 0).sum())
    flash_rate = tokens / seconds[names[0]]
    rows: list[list[object]] = [[n, f"{s * 1e3:.1f} ms", f"{tokens / s:.0f}", "-" if n == names[0] else f"varlen is "
             f"{flash_rate / (tokens / s):.2f}x"] for n, s in seconds.items()]  # fmt: skip
    return rows, {"tokens_per_step": tokens, "seconds": seconds}


@contextlib.contextmanager
def patched_kernel(kernel: Any) -> Iterator[None]:  # noqa: ANN401
    """Make the priors pick ``kernel`` (None: SDPA with the dense mask) for the duration."""
    original = prior_model.flash_varlen_kernel
    prior_model.flash_varlen_kernel = lambda x, head_dim: kernel
    try:
        yield
    finally:
        prior_model.flash_varlen_kernel = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--codes", type=int, default=16384, help="vocabulary (the tokenizer's codebook size)")
    parser.add_argument("--seq-len", type=int, default=1024, help="training: positions per packed sequence")
    parser.add_argument("--item-grid", type=int, default=16, help="training: items of item-grid x item-grid ids")
    parser.add_argument("--batch", type=int, default=4, help="training: sequences per step")
    parser.add_argument("--grid", type=int, default=32, help="sampling: grids of grid x grid ids")
    parser.add_argument("--n", type=int, default=1, help="sampling: samples per call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--sections", nargs="+", choices=["training", "sampling", "flash"], default=["training", "sampling", "flash"]
    )
    parser.add_argument("--litgpt-path", help="a folder holding litgpt (pip install --no-deps --target DIR litgpt)")
    args = parser.parse_args()
    if args.litgpt_path:
        sys.path.insert(0, args.litgpt_path)
    torch.set_num_threads(args.threads)
    config = PriorConfig(num_codes=args.codes, num_classes=10, dim=args.dim, depth=args.depth, heads=args.heads)
    params = sum(p.numel() for p in build_prior(config).parameters()) / 1e6
    print(f"machine: {machine()}")
    if "training" in args.sections:
        batch = packed_batch(args.batch, args.seq_len, args.item_grid, args.codes, 10)
        train, _ = training_rows(config, batch, args.repeats)
        print(f"\nTraining step (forward, loss, backward, AdamW), fp32, {args.threads} threads: {args.batch} sequences "
              f"of {args.seq_len} packed with {args.item_grid}x{args.item_grid} items, {args.codes} codes, dim "
              f"{args.dim}, depth {args.depth}\n")  # fmt: skip
        if len(train) == 1:
            print(
                "(litgpt not found: pip install --no-deps --target .litgpt litgpt psutil; then --litgpt-path .litgpt)\n"
            )
        print(table(["model", "parameters", "step", "tokens/s", "ratio"], train))
    if "sampling" in args.sections:
        rows, _ = sampling_rows(config, args.grid, args.n, args.repeats)
        print(
            f"\nSampling {args.n} grid(s) of {args.grid}x{args.grid} ids with CFG 2 (two passes), {args.threads} "
            f"threads, {params:.2f} M parameters (dim {args.dim}, depth {args.depth}, {args.codes} codes)\n"
        )
        print(table(["sampler", "time", "note"], rows))
    if "flash" in args.sections:
        batch = packed_batch(args.batch, args.seq_len, args.item_grid, args.codes, 10)
        flash = flash_rows(config, batch, args.repeats)
        print(f"\nFlashAttention varlen vs SDPA with a dense mask, training step, bf16 autocast on CUDA, {args.batch} "
              f"sequences of {args.seq_len} packed with {args.item_grid}x{args.item_grid} items\n")  # fmt: skip
        if isinstance(flash, str):
            print(f"skipped: {flash}")
        else:
            print(table(["attention", "step", "tokens/s", "ratio"], flash[0]))
    print(f"\nload average after: {machine()['load_average']}")


if __name__ == "__main__":
    main()
