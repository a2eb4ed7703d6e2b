"""Real Lightning runs through the `vqtok` command: configs parse, fit runs and resumes, export, DDP, overfitting."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import vqtok
from vqtok.cli.main import main
from vqtok.config import TokenizerConfig
from vqtok.training.cli import cli_main
from vqtok.training.data import ProceduralImages, collate_images, render_dead_leaves
from vqtok.training.module import TokenizerTraining
from vqtok.training.options import GanOptions, LossWeights, OptimizerOptions

ROOT = Path(__file__).resolve().parent.parent
# The tokenizer recipes (the prior's config is parsed by tests/test_prior_cli.py).
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml") if not p.name.startswith("prior"))
TINY = str(ROOT / "configs" / "image_tiny.yaml")
QUIET = ["--trainer.enable_model_summary", "false"]


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    rows = []
    for f in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        rows += list(csv.DictReader(f.open()))
    return rows


def quiet_trainer() -> L.Trainer:
    """One CPU epoch with no logging, checkpoints or progress bar."""
    return L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_config_parses_and_builds(config, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cli = cli_main(["--config", str(config), "--trainer.accelerator", "cpu", "--trainer.devices", "1"], run=False)
    assert isinstance(cli.model, TokenizerTraining)
    assert isinstance(cli.model.config, TokenizerConfig)
    assert cli.model.config.downsample in (4, 8, 16)


def test_fit_resume_export(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", TINY, "--trainer.max_epochs", "1", *QUIET]) == 0
    last = tmp_path / "runs/image_tiny/checkpoints/last.ckpt"
    first = torch.load(last, weights_only=True)  # plain data only: loads without unpickling code
    assert first["epoch"] == 0 and int(first["state_dict"]["batches_seen"]) == 20

    assert main(["fit", "--config", TINY, "--ckpt_path", "last", "--trainer.max_epochs", "2", *QUIET]) == 0
    second = torch.load(last, weights_only=True)
    assert second["epoch"] == 1 and int(second["state_dict"]["batches_seen"]) == 40
    assert second["global_step"] > first["global_step"]
    steps = [int(r["step"]) for r in read_metrics(tmp_path / "runs/image_tiny") if r.get("train/loss")]
    assert max(steps) > first["global_step"]  # the resumed run logged past where the first one stopped
    rows = [r for r in read_metrics(tmp_path / "runs/image_tiny") if r.get("train/psnr")]
    for key in (
        "train/l1",
        "train/quant_loss",
        "codebook/usage_batch",
        "codebook/perplexity_batch",
        "codebook/dead_codes",
        "train/g_adv",
        "train/d",
    ):
        assert any(r.get(key) for r in rows), key
    assert list((tmp_path / "runs/image_tiny/csv").glob("version_*/images/*.png"))  # image grids beside CSV logs
    assert list((tmp_path / "runs/image_tiny/tensorboard").rglob("events.out.tfevents.*"))

    # A checkpoint written before the options were grouped holds them flat; Lightning merges a checkpoint's saved
    # hyperparameters over the config on resume, so they must be regrouped, and the old values take effect.
    old = dict(second)
    hparams = {k: v for k, v in old["hyper_parameters"].items() if k not in ("optimizer", "loss", "gan")}
    flat = {"learning_rate": 3e-4, "adam_betas": [0.5, 0.9], "l1_weight": 1.0, "disc_weight": 0.5}
    old["hyper_parameters"] = {**hparams, **flat, "disc_start_step": 20, "disc_channels": 32}
    torch.save(old, tmp_path / "old.ckpt")
    assert main(["fit", "--config", TINY, "--ckpt_path", str(tmp_path / "old.ckpt"), "--trainer.max_epochs", "3"]) == 0
    third = torch.load(last, weights_only=True)
    assert third["epoch"] == 2 and third["hyper_parameters"]["optimizer"]["learning_rate"] == 3e-4
    lrs = {float(r["train/lr"]) for r in read_metrics(tmp_path / "runs/image_tiny") if r.get("train/lr")}
    assert sorted({round(lr, 9) for lr in lrs}) == [3e-4, 4e-4]  # image_tiny.yaml's rate, then the old checkpoint's

    assert main(["export", str(last), str(tmp_path / "export")]) == 0
    tok = vqtok.load(tmp_path / "export")
    module = TokenizerTraining.load_from_checkpoint(last, weights_only=True).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(tok.encode(x), module.model.encode(x).ids)


@pytest.mark.slow
def test_learning_rate_warms_up_decays_and_a_resumed_run_continues_the_curve(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    schedule = [
        "--model.optimizer.warmup_steps",
        "5",
        "--model.optimizer.lr_decay_steps",
        "30",
        "--model.optimizer.min_lr_ratio",
        "0.1",
    ]
    args = ["fit", "--config", TINY, *schedule, "--model.channels_last", "true", *QUIET]
    assert main([*args, "--trainer.max_epochs", "1"]) == 0
    assert main([*args, "--ckpt_path", "last", "--trainer.max_epochs", "2"]) == 0
    base = 4e-4  # configs/image_tiny.yaml

    def expected(b: int) -> float:  # linear warm-up over 5 batches, half cosine to 0.1 * base at batch 30
        if b < 5:
            return base * (b + 1) / 5
        return base * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(1.0, (b - 5) / 25))))

    rows = [
        (int(r["step"]), float(r["train/lr"])) for r in read_metrics(tmp_path / "runs/image_tiny") if r.get("train/lr")
    ]
    assert max(step for step, _ in rows) >= 30  # rows from the resumed run
    for step, lr in rows:
        assert any(np.isclose(lr, expected(b), rtol=1e-5) for b in (step - 1, step)), (step, lr)
    assert np.isclose(rows[-1][1], 0.1 * base, rtol=1e-5)
    module = TokenizerTraining.load_from_checkpoint(tmp_path / "runs/image_tiny/checkpoints/last.ckpt")
    assert module.model.encoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"optimizer": {"min_lr_ratio": 2.0}}, "model.optimizer.min_lr_ratio must be in"),
        ({"optimizer": {"adam_betas": (0.9, 1.0)}}, "model.optimizer.adam_betas must be"),
        ({"optimizer": {"warmup_steps": -1}}, "warmup_steps and lr_decay_steps must be >= 0"),
        ({"optimizer": {"learning_rate": 0.0}}, "model.optimizer.learning_rate must be > 0"),
        ({"optimizer": {"learning_rate": 1e-4, "lr": 1.0}}, "model.optimizer: .*unexpected keyword argument 'lr'"),
        ({"loss": {"l2_weight": -1.0}}, "model.loss weights must be >= 0, got l2_weight=-1.0"),
        ({"gan": {"layers": 0}}, "model.gan needs"),
        ({"gan": 0.5}, "model.gan must be a mapping of GanOptions fields"),
    ],
)
def test_bad_training_options_are_refused_naming_the_yaml_key(bad, message):
    with pytest.raises(vqtok.ConfigError, match=message):
        TokenizerTraining(TokenizerConfig.from_name("tiny"), **bad)


def test_training_options_round_trip_through_a_weights_only_checkpoint(tmp_path):
    """The groups are saved as plain dicts (weights_only loading) and come back as the same options."""
    module = TokenizerTraining(
        TokenizerConfig.from_name("tiny"),
        optimizer=OptimizerOptions(learning_rate=3e-4, adam_betas=(0.9, 0.99)),
        loss=LossWeights(l2_weight=1.0, ssim_weight=0.25),
        gan=GanOptions(weight=0.0),
    )
    trainer = quiet_trainer()
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    loaded = TokenizerTraining.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    assert (loaded.optimizer_options, loaded.loss_weights, loaded.gan) == (
        module.optimizer_options,
        module.loss_weights,
        module.gan,
    )
    assert loaded.optimizer_options.adam_betas == (0.9, 0.99)


def test_export_refuses_a_non_vqtok_checkpoint(tmp_path, capsys):
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    assert main(["export", str(tmp_path / "other.ckpt"), str(tmp_path / "out")]) == 2
    assert "not a vqtok training checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_bf16_mixed_precision_fit(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        "--config",
        TINY,
        "--trainer.precision",
        "bf16-mixed",
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "25",
        *QUIET,
    ]
    assert main(args) == 0
    rows = read_metrics(tmp_path / "runs/image_tiny")
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


def test_two_process_ddp_fit_keeps_codebooks_identical(tmp_path):
    """Real 2-process DDP on CPU (gloo) through the `vqtok` console script, as a user would launch it; with no
    warning from LightningCLI about its ``args`` parameter (vqtok hands over the command line itself)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore,always:LightningCLI"}  # the last filter given wins
    cmd = [
        sys.executable,
        "-m",
        "vqtok.cli.main",
        "fit",
        "--config",
        TINY,
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp_find_unused_parameters_true",
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "24",
        *QUIET,
    ]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "LightningCLI's args parameter" not in r.stderr
    rows = read_metrics(tmp_path / "runs/image_tiny")
    diffs = [float(r["codebook/rank_max_diff"]) for r in rows if r.get("codebook/rank_max_diff")]
    assert diffs == [0.0]
    ckpt = torch.load(tmp_path / "runs/image_tiny/checkpoints/last.ckpt", weights_only=True)
    assert int(ckpt["state_dict"]["batches_seen"]) == 24  # limit_train_batches counts per rank


# The tiny architecture with each quantizer at the same 9 bits per token, and the floor each must reach on 8
# procedural 32x32 images after 300 steps (no GAN), about 3 dB under what each measured on this project's 2-core
# machine (AMD EPYC, torch 2.13 CPU, one thread): VQ 32.5 dB, FSQ 30.0 dB, LFQ 32.4 dB.
QUANTIZER_RUNS = {
    "vq": ({}, 29.0),  # VQ-512: l2-normalised 8-dim codes, EMA, restarts
    "fsq": ({"quantizer": "fsq", "levels": [8, 8, 8], "code_dim": 3}, 27.0),  # 512 codes, nothing learned
    "lfq": ({"quantizer": "lfq", "code_dim": 9}, 29.0),  # 2^9 codes, entropy loss
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", QUANTIZER_RUNS)
def test_tiny_model_overfits_a_small_image_set(kind):
    """Stated target per quantizer: 8 procedural 32x32 images reconstructed at the floor in QUANTIZER_RUNS."""
    overrides, floor = QUANTIZER_RUNS[kind]
    assert overfit_psnr(TokenizerConfig.from_name("tiny", **overrides)) >= floor


def overfit_psnr(config: TokenizerConfig, steps: int = 300) -> float:
    """PSNR (dB) of ``config`` on 8 procedural 32x32 images after ``steps`` Adam steps on them (no GAN)."""
    L.seed_everything(0, verbose=False)
    images = [ProceduralImages(8, 32, seed=3)[i] for i in range(8)]
    loader = DataLoader(images * steps, batch_size=8, collate_fn=collate_images)  # the same 8 images every batch
    module = TokenizerTraining(
        config,
        optimizer=OptimizerOptions(learning_rate=1e-3),
        loss=LossWeights(l2_weight=1.0),
        gan=GanOptions(weight=0.0),
        image_log_every_n_steps=0,
    )
    quiet_trainer().fit(module, train_dataloaders=loader)
    x = torch.stack(images)
    module.eval()
    with torch.no_grad():
        x_rec = module(x).clamp(-1, 1)
    return vqtok.metrics.psnr(x_rec, x).mean().item()


def test_a_batch_with_no_readable_image_repeats_the_previous_one():
    module = TokenizerTraining(TokenizerConfig.from_name("tiny"), gan=GanOptions(weight=0.0), image_log_every_n_steps=0)
    good = {"images": torch.rand(4, 3, 32, 32) * 2 - 1, "num_failed": 0}
    empty = {"images": torch.empty(0), "num_failed": 4}  # what collate_images gives when every file failed
    trainer = quiet_trainer()
    trainer.fit(module, train_dataloaders=DataLoader([good, empty, good], batch_size=None))
    assert int(module.batches_seen) == 3  # no step skipped: every DDP rank must take part in every step


def test_perceptual_loss_without_weights_file_names_the_option():
    with pytest.raises(vqtok.ConfigError, match="model.loss.perceptual_weights"):
        TokenizerTraining(TokenizerConfig.from_name("tiny"), loss=LossWeights(perceptual_weight=1.0))


def test_fit_on_a_folder_skips_and_counts_unreadable_files(monkeypatch, tmp_path, caplog):
    from PIL import Image

    folder = tmp_path / "images" / "nested"
    folder.mkdir(parents=True)
    for i in range(12):
        Image.fromarray(render_dead_leaves(np.random.default_rng(i), 48)).save(folder / f"img{i:02d}.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.open(folder / "img00.png").save(tmp_path / "whole.jpg")
    (folder / "truncated.jpg").write_bytes((tmp_path / "whole.jpg").read_bytes()[:300])  # fails only at decode
    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        "--config",
        TINY,
        "--data.root",
        str(tmp_path / "images"),
        "--data.batch_size",
        "4",
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "3",
        *QUIET,
    ]
    with caplog.at_level("WARNING", logger="vqtok"):
        assert main(args) == 0
    failed = [
        float(r["data/failed_images"])
        for r in read_metrics(tmp_path / "runs/image_tiny")
        if r.get("data/failed_images")
    ]
    assert sum(failed) >= 1
    assert "skipping image" in caplog.text and ("corrupt.png" in caplog.text or "truncated.jpg" in caplog.text)


@pytest.mark.parametrize("extra", [[], ["--weights_only", "false"]], ids=["default", "weights_only-false"])
def test_resuming_from_a_pickled_checkpoint_refuses_it_without_running_it(monkeypatch, tmp_path, capsys, extra):
    class Payload:  # what a hostile .ckpt carries: unpickling it would create the marker file
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    torch.save({"state_dict": {}, "payload": Payload()}, tmp_path / "hostile.ckpt")
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", TINY, "--ckpt_path", str(tmp_path / "hostile.ckpt"), *extra, *QUIET]) == 2
    assert "holds pickled Python objects besides tensors, which vqtok never loads" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


def test_resuming_from_a_url_is_refused_without_downloading(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", TINY, "--ckpt_path", "https://example.com/last.ckpt", *QUIET]) == 2
    assert "cannot resume from https://example.com/last.ckpt: vqtok reads checkpoints from local files only" in (
        capsys.readouterr().err
    )
