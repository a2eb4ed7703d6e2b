"""Lightning's EMA of the weights with ``use_buffers=False`` (the long runs' setting) keeps the live EMA codebook.

torch's ``AveragedModel`` copies the live buffers into the averaged model after every update, so the checkpoint's
``state_dict`` (what ``vqtok export`` reads) holds averaged parameters beside the current codebook. A real Lightning
fit, checkpoint, resume and export.
"""

from pathlib import Path

import torch

import vqtok
from vqtok.cli.main import main
from vqtok.training.module import TokenizerTraining

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "configs" / "image_tiny.yaml")
EMA = [
    "--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging",
    "--trainer.callbacks.decay=0.9",
    "--trainer.callbacks.use_buffers=false",
    "--trainer.enable_model_summary=false",
    "--model.gan.weight=0.0",
]


def test_checkpoint_holds_averaged_parameters_and_the_live_codebook(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", TINY, "--trainer.max_epochs", "1", *EMA]) == 0
    last = tmp_path / "runs/image_tiny/checkpoints/last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    averaged, live = ckpt["state_dict"], ckpt["current_model_state"]

    # The EMA codebook is the live one, not the copy taken when fit began (whose counts were all zero).
    for name in ("model.quantizer.embed", "model.quantizer.embed_sum", "model.quantizer.cluster_size"):
        assert torch.equal(averaged[name], live[name]), name
    assert live["model.quantizer.cluster_size"].sum() > 0
    # The parameters are averaged: after 20 steps at decay 0.9 they differ from the live ones.
    weight = "model.decoder.conv_out.weight"
    assert not torch.equal(averaged[weight], live[weight])

    # Resuming restores both: the live model trains on, the average goes on averaging.
    assert main(["fit", "--config", TINY, "--ckpt_path", "last", "--trainer.max_epochs", "2", *EMA]) == 0
    resumed = torch.load(last, weights_only=True)
    assert resumed["global_step"] > ckpt["global_step"]
    embed = "model.quantizer.embed"
    assert torch.equal(resumed["state_dict"][embed], resumed["current_model_state"][embed])

    # The export is the averaged model with the live codebook.
    assert main(["export", str(last), str(tmp_path / "export")]) == 0
    tok = vqtok.load(tmp_path / "export")
    module = TokenizerTraining.load_from_checkpoint(last, weights_only=True).eval()
    assert torch.equal(module.model.decoder.conv_out.weight, resumed["state_dict"][weight])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(tok.encode(x), module.model.encode(x).ids)
