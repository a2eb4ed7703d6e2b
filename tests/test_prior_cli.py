"""`vqtok prior fit|export|sample`: the Lightning CLI on a real labelled store, resume, export, decoded samples."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from store_files import REPO, export_model, write_images

import vqtok
from vqtok.cli.main import main
from vqtok.errors import ConfigError, InputError
from vqtok.prior import load_prior
from vqtok.prior_training.cli import cli_main
from vqtok.token_file import load_tokens

CONFIG = REPO / "configs" / "prior_tiny.yaml"
SMALL = ["--model.dim", "32", "--model.depth", "1", "--model.warmup_steps", "2"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prior_cli")
    write_images(root / "data" / "blobs", 10, [(32, 32), (24, 40)], seed=1)
    write_images(root / "data" / "more", 10, [(32, 32)], seed=2)
    args = ["tokenize", str(root / "data"), "--model", "tiny", "--out", str(root / "store"), "--labels", "folder"]
    assert main([*args, "--no-progress", "--workers", "0"]) == 0
    return root / "store"


def test_the_shipped_prior_config_parses_and_takes_the_store_shape(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["--config", str(CONFIG), "--data.store", str(store)]  # run=False: no subcommand
    cli = cli_main(args, run=False)
    assert cli.model.hparams.store == str(store)  # linked from data.store
    config = cli.model.config
    assert (config.num_codes, config.num_classes, config.dim, config.objective) == (512, 2, 128, "ar")
    masked = cli_main([*args, "--model.objective", "maskgit"], run=False)
    assert type(masked.model.prior).__name__ == "MaskedPrior"
    unconditional = cli_main([*args, "--model.conditional", "false"], run=False)
    assert unconditional.model.config.num_classes == 0 and unconditional.model.info.classes == []


def test_stores_a_prior_cannot_train_on_are_refused(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    write_images(data, 2, [(32, 32)])
    unlabelled = tmp_path / "unlabelled"
    assert main(["tokenize", str(data), "--model", "tiny", "--out", str(unlabelled), "--no-progress"]) == 0
    args = ["--config", str(CONFIG), "--data.store", str(unlabelled)]
    assert cli_main(args, run=False).model.config.num_classes == 0  # unconditional by default
    with pytest.raises(ConfigError, match="has no labels: tokenize it with --labels folder"):
        cli_main([*args, "--model.conditional", "true"], run=False)

    empty = tmp_path / "empty"
    shutil.copytree(unlabelled, empty)
    (empty / "manifest.jsonl").write_text("")
    with pytest.raises(InputError, match="has no items"):
        cli_main(["--config", str(CONFIG), "--data.store", str(empty)], run=False)


def test_fit_resume_export_and_sample(store, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the config's runs/prior_tiny/ lands here
    fit = ["prior", "fit", "--config", str(CONFIG), "--data.store", str(store), *SMALL]
    assert main([*fit, "--trainer.max_epochs", "2"]) == 0
    ckpt = tmp_path / "runs/prior_tiny/checkpoints/last.ckpt"
    assert ckpt.is_file()
    logs = tmp_path / "runs/prior_tiny/csv"
    rows = list(csv.DictReader((logs / "version_0/metrics.csv").read_text().splitlines()))
    held_out = [float(r["val/bits_per_token"]) for r in rows if r.get("val/bits_per_token")]
    assert len(held_out) == 2 and all(0 < b < 10 for b in held_out)  # about log2(512) = 9 at the start

    steps = torch.load(ckpt, weights_only=True)["global_step"]
    assert main([*fit, "--trainer.max_epochs", "3", "--ckpt_path", "last"]) == 0  # resume: one more epoch
    assert torch.load(ckpt, weights_only=True)["global_step"] == steps * 3 // 2
    rows = list(csv.DictReader((logs / "version_1/metrics.csv").read_text().splitlines()))  # the resumed run's log
    assert [r["epoch"] for r in rows if r.get("val/bits_per_token")] == ["2"]

    assert main(["prior", "export", str(ckpt), str(tmp_path / "exported")]) == 0
    prior = load_prior(tmp_path / "exported")
    assert prior.classes == ["blobs", "more"] and prior.info.grid == [4, 4]
    assert prior.tokenizer == "tiny" and prior.tokenizer_fingerprint in vqtok.load("tiny").fingerprints
    ids = prior.sample(3, class_name="more", cfg_scale=2.0, seed=0)
    assert ids.shape == (3, 4, 4) and int(ids.max()) < 512
    assert torch.equal(ids, prior.sample(3, class_name="more", cfg_scale=2.0, seed=0))  # seeded
    with pytest.raises(InputError, match="no class 'cats'.*blobs, more"):
        prior.sample(1, class_name="cats")

    out = tmp_path / "samples"
    assert main(["prior", "sample", str(tmp_path / "exported"), "--n", "2", "--class", "blobs", "--cfg", "2",
                 "--top-k", "40", "--out", str(out)]) == 0  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["sample_000.png", "sample_001.png", "tokens.safetensors"]
    assert Image.open(out / "sample_000.png").size == (32, 32)
    meta, items = load_tokens(out / "tokens.safetensors", vqtok.load("tiny").fingerprints)  # vqtok decode reads it
    assert meta["model"] == "tiny" and [tuple(it.ids.shape) for it in items] == [(4, 4), (4, 4)]
    assert main(["decode", str(out / "tokens.safetensors"), "--out", str(tmp_path / "decoded")]) == 0
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "decoded/sample_001.png")), np.asarray(Image.open(out / "sample_001.png"))
    )

    capsys.readouterr()
    other = export_model(tmp_path, "tiny", seed=5)  # same architecture, other weights: other ids
    assert main(["prior", "sample", str(tmp_path / "exported"), "--model", str(other), "--out", str(out)]) == 2
    assert "was trained on the ids of 'tiny'" in capsys.readouterr().err
    assert main(["prior", "sample", str(tmp_path / "exported"), "--class", "cats", "--out", str(out)]) == 2
    assert "no class 'cats'" in capsys.readouterr().err


def test_shapes_are_rendered_per_class_and_reproducibly(tmp_path):
    assert main(["prior", "shapes", str(tmp_path / "a"), "--n", "3", "--size", "32", "--seed", "1"]) == 0
    assert main(["prior", "shapes", str(tmp_path / "b"), "--n", "3", "--size", "32", "--seed", "1"]) == 0
    classes = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert classes == ["disc", "square", "stripes", "triangle"]
    for path in sorted((tmp_path / "a").rglob("*.png")):
        pixels = np.asarray(Image.open(path))
        assert pixels.shape == (32, 32, 3) and np.ptp(pixels.astype(int).mean(-1)) >= 55  # a shape that stands out
        assert np.array_equal(pixels, np.asarray(Image.open(tmp_path / "b" / path.relative_to(tmp_path / "a"))))
    assert main(["prior", "shapes", str(tmp_path / "c"), "--n", "0"]) == 2
