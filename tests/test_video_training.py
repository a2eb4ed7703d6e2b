"""Real Lightning runs of the video tokenizer: the tiny config fits and exports, inflation from an image export,
training on a folder of real video files with a broken one among them."""

import csv
from pathlib import Path

import torch
from video_files import random_frames, write_test_video

import vqtok
from vqtok.cli.main import main
from vqtok.config import TokenizerConfig
from vqtok.export import save_export
from vqtok.model.vqvae import VQVAE
from vqtok.training.module import TokenizerTraining

ROOT = Path(__file__).resolve().parent.parent
VIDEO_TINY = str(ROOT / "configs" / "video_tiny.yaml")
QUIET = ["--trainer.enable_model_summary", "false", "--trainer.max_epochs", "1"]


def metrics(run_dir: Path) -> list[dict[str, str]]:
    return [row for f in sorted(run_dir.glob("csv/version_*/metrics.csv")) for row in csv.DictReader(f.open())]


def test_video_tiny_fits_and_exports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", VIDEO_TINY, *QUIET, "--trainer.log_every_n_steps", "1"]) == 0
    rows = metrics(tmp_path / "runs/video_tiny")
    psnr = [float(r["train/psnr"]) for r in rows if r.get("train/psnr")]
    image_psnr = [float(r["train/image_psnr"]) for r in rows if r.get("train/image_psnr")]
    assert psnr and image_psnr  # clips and the mixed still images both trained
    dead = [
        (float(r["codebook/dead_codes"]), float(r["codebook/image_dead_codes"]))
        for r in rows
        if r.get("codebook/dead_codes")
    ]
    # The step's total counts the clips' part too (before, it was the images' part alone: always equal to it).
    assert all(total >= image for total, image in dead) and any(total > image for total, image in dead)
    assert any(r.get("val/psnr") for r in rows) and any(r.get("val/image_psnr") for r in rows)
    assert main(["export", "runs/video_tiny/checkpoints/last.ckpt", "export"]) == 0
    tok = vqtok.load("export")
    assert tok.is_video and tok.temporal_downsample == 4
    ids = tok.encode(torch.rand(1, 3, 9, 32, 32) * 2 - 1)
    assert ids.shape == (1, 3, 4, 4)


def test_init_from_an_image_export_inflates_it(tmp_path):
    torch.manual_seed(0)
    image_model = VQVAE(TokenizerConfig.from_name("tiny")).eval()
    export = save_export(image_model, tmp_path / "image")
    module = TokenizerTraining(TokenizerConfig.from_name("video_tiny"), init_from=str(export)).eval()
    module.load_init_from()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(module.model.encode(x[:, :, None]).ids[:, 0], image_model.encode(x).ids)


def test_fit_on_a_folder_of_videos_counts_the_broken_one(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        write_test_video(videos / f"clip{i}.mkv", random_frames(30, 40, 48, seed=i), fps=10.0)
    (videos / "broken.mp4").write_bytes(b"\x00" * 4096)
    args = ["--data.root", str(videos), "--data.val_fraction", "0.2", "--data.segment_seconds", "1.0"]
    assert main(["fit", "--config", VIDEO_TINY, *QUIET, *args, "--trainer.limit_train_batches", "3"]) == 0
    assert (tmp_path / "runs/video_tiny/checkpoints/last.ckpt").is_file()
    assert "1 unreadable video file(s) skipped" in caplog.text and "broken.mp4" in caplog.text


def test_a_resumed_run_does_not_need_the_init_from_export_any_more(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    export = save_export(VQVAE(TokenizerConfig.from_name("tiny")).eval(), tmp_path / "image")
    short = ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--data.num_frames", "5"]
    args = ["fit", "--config", VIDEO_TINY, *QUIET, *short, "--model.init_from", str(export)]
    assert main(args) == 0
    export.rename(tmp_path / "moved")  # the export is gone: a resumed run takes its weights from the checkpoint
    assert main([*args, "--trainer.max_epochs", "2", "--ckpt_path", "last"]) == 0
    assert main([*args[:-1], str(tmp_path / "missing"), "--trainer.default_root_dir", "fresh"]) == 2  # read when fresh
    assert (
        int(torch.load("runs/video_tiny/checkpoints/last.ckpt", weights_only=True)["state_dict"]["batches_seen"]) == 4
    )
