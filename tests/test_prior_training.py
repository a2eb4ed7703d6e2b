"""`vqtok prior fit` beyond one clean run: real 2-process DDP, an exact resume from a mid-epoch checkpoint, held-out
bits per token, and the stores or classes a prior must refuse."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from prior_callbacks import sequence_key
from store_files import REPO, export_model, write_images

from vqtok.cli.main import main
from vqtok.errors import InputError
from vqtok.prior import (
    MaskedPrior,
    PriorConfig,
    PriorInfo,
    bits_per_token,
    build_prior,
    load_prior,
    sample,
    save_prior,
    unigram_bits_per_token,
)
from vqtok.store import PackedItems, TokenStore

CONFIG = REPO / "configs" / "prior_tiny.yaml"

# On top of prior_tiny.yaml: a very small model, a checkpoint after every step, CSV logs only, no progress bar.
RUN = """\
trainer:
  max_steps: {max_steps}
  log_every_n_steps: 1
  enable_progress_bar: false
  enable_model_summary: false
  logger:
    class_path: lightning.pytorch.loggers.CSVLogger
    init_args: {{save_dir: runs, name: csv}}
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{dirpath: runs/checkpoints, save_last: true, every_n_train_steps: 1}}
model: {{dim: 32, depth: 1, heads: 4, label_dropout: 0.5, warmup_steps: 2, objective: {objective}}}
data: {{seq_len: 32, batch_size: 2, val_fraction: {val_fraction}}}
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """16 labelled 32x32 images (4x4 ids each with tiny): 8 sequences of 2 items at seq_len 32."""
    root = tmp_path_factory.mktemp("prior_training")
    write_images(root / "data" / "blobs", 8, [(32, 32)], seed=1)
    write_images(root / "data" / "more", 8, [(32, 32)], seed=2)
    args = ["tokenize", str(root / "data"), "--model", "tiny", "--out", str(root / "store"), "--labels", "folder"]
    assert main([*args, "--no-progress", "--workers", "0"]) == 0
    return root / "store"


def fit_args(folder: Path, store: Path, max_steps: int, objective: str = "ar", val_fraction: float = 0.0) -> list:
    (folder / "run.yaml").write_text(RUN.format(max_steps=max_steps, objective=objective, val_fraction=val_fraction))
    return ["prior", "fit", "--config", str(CONFIG), "--config", str(folder / "run.yaml"), "--data.store", str(store)]


def losses(version_dir: Path) -> dict[int, float]:
    """step -> train/loss in a CSV log."""
    with open(version_dir / "metrics.csv", newline="") as f:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")}


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["ar", "maskgit"])
def test_a_run_resumed_mid_epoch_continues_exactly(store, tmp_path, monkeypatch, objective):
    """Label dropout (and MaskGIT's masks) at 0.5, so the random draws matter: a run stopped at step 5 (mid-epoch:
    4 steps per epoch) and resumed from its last checkpoint logs the same losses as a run that never stopped and
    ends with the same weights, bit for bit."""
    whole, parted = tmp_path / "whole", tmp_path / "parted"
    whole.mkdir(), parted.mkdir()
    monkeypatch.chdir(whole)
    assert main(fit_args(whole, store, 12, objective)) == 0
    reference = losses(whole / "runs/csv/version_0")
    assert sorted(reference) == list(range(12))

    monkeypatch.chdir(parted)
    assert main(fit_args(parted, store, 5, objective)) == 0
    first = losses(parted / "runs/csv/version_0")
    assert first == {s: reference[s] for s in range(5)}
    assert torch.load(parted / "runs/checkpoints/last.ckpt", weights_only=True)["global_step"] == 5
    assert main([*fit_args(parted, store, 12, objective), "--ckpt_path", "last"]) == 0
    resumed = losses(parted / "runs/csv/version_1")
    assert resumed == {s: reference[s] for s in range(5, 12)}  # no step lost, repeated or drawn differently
    end = torch.load(parted / "runs/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    for name, tensor in torch.load(whole / "runs/checkpoints/last.ckpt", weights_only=True)["state_dict"].items():
        assert torch.equal(end[name], tensor), name


@pytest.mark.slow
def test_two_process_ddp_fit_splits_the_sequences_and_keeps_the_ranks_identical(store, tmp_path):
    """Real 2-process DDP on CPU (gloo) through the `vqtok` command: each epoch the two ranks train on disjoint
    halves of the packed sequences that together are all of them, and end with identical weights."""
    args = fit_args(tmp_path, store, 4)
    record = tmp_path / "ranks"
    cmd = [
        sys.executable, "-m", "vqtok.cli.main", *args, "--trainer.accelerator", "cpu", "--trainer.devices", "2",
        "--trainer.strategy", "ddp", "--trainer.callbacks+=prior_callbacks.RecordRanks",
        f"--trainer.callbacks.folder={record}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((record / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    packed = PackedItems(TokenStore(store), 32, seed=0)
    everything = sorted(sequence_key(packed[j]["ids"]) for j in range(len(packed)))
    assert len(everything) == 8
    for epoch in ("0", "1"):  # 4 steps of 2 sequences per rank = 2 epochs
        a, b = ranks[0]["epochs"][epoch], ranks[1]["epochs"][epoch]
        assert len(a) == len(b) == 4 and not set(a) & set(b)
        assert sorted(a + b) == everything
    assert ranks[0]["epochs"]["0"] != ranks[0]["epochs"]["1"]  # reshuffled each epoch
    checkpoint = torch.load(tmp_path / "runs/checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 4


@pytest.fixture(scope="module")
def exported(store, tmp_path_factory) -> Path:
    """An untrained prior export over ``store``'s tokenizer and classes (what these tests check needs no training)."""
    reader = TokenStore(store)
    torch.manual_seed(0)
    model = build_prior(PriorConfig(num_codes=512, num_classes=2, dim=32, depth=1, heads=4))
    info = PriorInfo(reader.meta.model, reader.meta.model_fingerprint, reader.classes or [], [4, 4])
    return save_prior(model, info, tmp_path_factory.mktemp("exported") / "prior")


@pytest.fixture(scope="module")
def other_store(store, tmp_path_factory) -> Path:
    """The same images tokenized by another tokenizer of the same architecture (other weights, other ids)."""
    folder = tmp_path_factory.mktemp("other")
    other_model = export_model(folder, "tiny", seed=5)
    data = next(Path(r.source) for r in TokenStore(store).records).parent.parent
    args = ["tokenize", str(data), "--model", str(other_model), "--out", str(folder / "store"), "--labels", "folder"]
    assert main([*args, "--no-progress", "--workers", "0"]) == 0
    return folder / "store"


def test_held_out_bits_per_token_match_the_loss_and_the_unigram_baseline_is_exact(store, exported):
    prior = load_prior(exported)
    reader = TokenStore(store)
    held_out = [0, 5, 9]
    bits = bits_per_token(prior, reader, held_out)
    packed = PackedItems(reader, 16, items=held_out)  # one item per sequence
    batch = torch.utils.data.default_collate([packed[j] for j in range(len(packed))])
    with torch.no_grad():
        assert bits == pytest.approx(float(prior.model.loss(batch)) / math.log(2), rel=1e-5)
    assert 8.5 < bits < 9.5  # untrained: about log2(512) = 9
    train = [i for i in range(len(reader)) if i not in held_out]
    counts = torch.ones(512, dtype=torch.float64)
    for i in train:
        for v in reader.ids(i).flatten().tolist():
            counts[v] += 1
    p = counts / counts.sum()
    expected = -sum(math.log2(p[v]) for i in held_out for v in reader.ids(i).flatten().tolist()) / (3 * 16)
    assert unigram_bits_per_token(reader, train, held_out) == pytest.approx(expected, rel=1e-9)


def test_evaluating_a_prior_on_a_store_of_another_tokenizer_is_refused(exported, other_store):
    with pytest.raises(InputError, match="tokenize the data with the prior's tokenizer"):
        bits_per_token(load_prior(exported), TokenStore(other_store))


@pytest.mark.slow
def test_resuming_on_a_store_of_another_tokenizer_is_refused(store, other_store, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(fit_args(tmp_path, store, 2)) == 0
    capsys.readouterr()
    assert main([*fit_args(tmp_path, other_store, 4), "--ckpt_path", "last"]) == 2
    err = capsys.readouterr().err
    assert "trained on the ids of 'tiny'" in err and "give data.store a store tokenized with the prior's" in err


def test_classes_an_unconditional_prior_or_a_store_does_not_have_are_refused(exported, tmp_path, capsys):
    prior = load_prior(exported)
    assert prior.classes == ["blobs", "more"]
    with pytest.raises(InputError, match="no class 'Blobs'"):  # names are exact
        prior.sample(1, class_name="Blobs")
    with pytest.raises(InputError, match="no class 'more'.*none: the prior is unconditional"):
        type(prior)(prior.model, type(prior.info)("tiny", prior.tokenizer_fingerprint, [], [4, 4])).class_index("more")
    out = tmp_path / "samples"
    assert main(["prior", "sample", str(exported), "--n", "1", "--class", "cats", "--out", str(out)]) == 2
    assert "knows no class 'cats' (its classes: blobs, more)" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written


def test_sampling_reports_progress_per_position_or_step(exported):
    prior = load_prior(exported)
    calls: list[tuple[int, int]] = []
    ids = prior.sample(2, class_name="more", seed=0, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(k, 16) for k in range(1, 17)] and ids.shape == (2, 4, 4)
    masked = MaskedPrior(PriorConfig(**{**prior.model.config.to_dict(), "objective": "maskgit"}))
    calls.clear()
    assert sample(masked, (4, 4), 2, steps=3, progress=lambda d, t: calls.append((d, t))).shape == (2, 4, 4)
    assert calls == [(1, 3), (2, 3), (3, 3)]
