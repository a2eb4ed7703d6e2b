"""Faults injected into real ``vqtok`` processes: kill -9 in training and export, a disk that fills up, and
non-finite losses. After each, nothing written looks complete unless it is, and a rerun finishes the job.

(kill -9 during ``vqtok tokenize`` is in tests/test_tokenize_job.py.)
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from faults import REPO, kill_9_when, resize_disk, run_vqtok, small_disk, start_vqtok
from store_files import export_model, write_images

import vqtok
from vqtok.config import TokenizerConfig
from vqtok.store import TokenStore
from vqtok.token_file import load_tokens
from vqtok.training.module import TokenizerTraining
from vqtok.training.options import GanOptions

TINY = REPO / "configs" / "image_tiny.yaml"
# 24 batches of 8 procedural images in epochs of 4 batches (32 images, reshuffled every epoch), with the default
# codebook restarts (random picks) on: a resumed run must repeat an uninterrupted run's curve bit for bit, since
# the order, the augmentations and the restarts' generator are restored exactly. Checkpoints (last.ckpt and the
# latest other) by default every 6 optimizer steps: mid-epoch, after batches 5, 10 (the discriminator joins at
# batch 10, so from then on each batch takes two optimizer steps), 13, 16, ...; every step logged and flushed.
RUN = """
trainer:
  max_epochs: 6
  check_val_every_n_epoch: 3
  limit_val_batches: 1
  log_every_n_steps: 1
  enable_progress_bar: false
  enable_model_summary: false
  logger:
    - class_path: lightning.pytorch.loggers.CSVLogger
      init_args: {{save_dir: runs, name: csv, flush_logs_every_n_steps: 1}}
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{dirpath: {checkpoints}, save_last: true, {every}}}
model:
  image_log_every_n_steps: 0
  gan: {{start_step: 10}}
data:
  init_args:
    train_samples: 32
    num_workers: {workers}
"""


EVERY_EPOCH = "every_n_epochs: 1, save_on_train_epoch_end: true"  # checkpoints after batches 4, 8, ..., 24
# (every_n_train_steps: 6 checkpoints after batches 5, 10, 13, ..., 22: the last one is batch 23's, at step 36)


def fit_args(
    folder: Path,
    checkpoints: Path | None = None,
    *extra: str,
    every: str = "every_n_train_steps: 6",
    workers: int = 0,
) -> list[str]:
    """``vqtok fit`` of the tiny config with :data:`RUN` on top, run in ``folder``, checkpointing ``every``."""
    run = RUN.format(checkpoints=checkpoints or folder / "runs" / "checkpoints", every=every, workers=workers)
    (folder / "run.yaml").write_text(run)
    return ["fit", "--config", str(TINY), "--config", str(folder / "run.yaml"), *extra]


def logged(version_dir: Path, key: str = "train/loss") -> dict[int, float]:
    """step -> value of ``key`` in a CSV log (a row cut short by a kill is dropped)."""
    values = {}
    with open(version_dir / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            try:
                values[int(row["step"])] = float(row[key])
            except (KeyError, TypeError, ValueError):
                continue
    return values


@pytest.mark.parametrize(
    ("every", "workers", "resumed_at", "last_at"),
    [
        ("every_n_train_steps: 6", 0, 11, 23),  # mid-epoch 2, in the main process
        pytest.param(EVERY_EPOCH, 2, 12, 24, marks=pytest.mark.slow),  # the end of epoch 2, with 2 DataLoader workers
    ],
    ids=["mid-epoch", "epoch-end-workers"],
)
def test_kill_9_during_training_then_resume_continues_the_loss_curve_exactly(
    tmp_path, every, workers, resumed_at, last_at
):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    done = run_vqtok(*fit_args(whole, every=every, workers=workers), cwd=whole)
    assert done.returncode == 0, done.stderr[-3000:]
    reference = logged(whole / "runs/csv/version_0")
    assert len(reference) == 24  # one loss per batch
    restarts = logged(whole / "runs/csv/version_0", "codebook/dead_codes")
    assert sum(restarts.values()) > 0  # restarts ran, so their random picks are part of what must repeat

    mark = killed / "batch-12-started"
    marker = [
        "--trainer.callbacks+=faults.MarkBatch",
        "--trainer.callbacks.batch=12",
        f"--trainer.callbacks.path={mark}",
    ]
    proc = start_vqtok(*fit_args(killed, None, *marker, every=every, workers=workers), cwd=killed)
    assert kill_9_when(proc, mark.exists), "the run ended before batch 12"
    before = logged(killed / "runs/csv/version_0")
    checkpoint = torch.load(killed / "runs/checkpoints/last.ckpt", weights_only=True)
    assert int(checkpoint["state_dict"]["batches_seen"]) == resumed_at  # the last complete checkpoint
    assert 12 <= len(before) < 24  # killed past the checkpoint, before the end

    resumed = run_vqtok(*fit_args(killed, None, "--ckpt_path", "last", every=every, workers=workers), cwd=killed)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = logged(killed / "runs/csv/version_1")
    first_resumed_step = int(checkpoint["state_dict"]["batches_seen"])  # the CSV's step counts batches
    assert sorted(after) == [s for s in sorted(reference) if s >= first_resumed_step]  # no step lost or repeated
    # The curve goes on as if the run had never stopped: the same batches (order and crops), the same restarts,
    # the same weights and optimizer state, hence the same floats at every step on the same machine.
    assert {s: after[s] for s in after} == {s: reference[s] for s in after}
    for step, loss in before.items():  # the killed run was the same run up to the kill
        assert loss == reference[step], (step, loss, reference[step])
    final = torch.load(killed / "runs/checkpoints/last.ckpt", weights_only=True)
    assert int(final["state_dict"]["batches_seen"]) == last_at
    whole_final = torch.load(whole / "runs/checkpoints/last.ckpt", weights_only=True)
    for name, tensor in whole_final["state_dict"].items():  # and ends with the same weights, bit for bit
        assert torch.equal(final["state_dict"][name], tensor), name


@pytest.mark.slow
def test_non_finite_losses_are_skipped_counted_and_too_many_in_a_row_stop_the_run(tmp_path):
    poison = ["--trainer.callbacks+=faults.PoisonBatches", "--model.max_nonfinite_steps=3"]
    survived = tmp_path / "survived"
    survived.mkdir()
    done = run_vqtok(
        *fit_args(survived, None, *poison, "--trainer.callbacks.batches=[2,3,6]", every=EVERY_EPOCH), cwd=survived
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for batch, in_row in ((2, 1), (3, 2), (6, 1)):
        assert f"non-finite loss at batch {batch}: step skipped ({in_row} in a row)" in done.stderr
    assert sum(logged(survived / "runs/csv/version_0", "train/nonfinite_steps").values()) == 3
    state = torch.load(survived / "runs/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert int(state["batches_seen"]) == 24
    assert all(v.isfinite().all() for v in state.values() if v.is_floating_point())  # nothing poisoned the weights
    assert (
        run_vqtok("export", survived / "runs/checkpoints/last.ckpt", survived / "export", cwd=survived).returncode == 0
    )

    stopped = tmp_path / "stopped"
    stopped.mkdir()
    done = run_vqtok(
        *fit_args(stopped, None, *poison, "--trainer.callbacks.batches=[9,10,11,12]", every=EVERY_EPOCH), cwd=stopped
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "vqtok fit: error: training stopped: 3 non-finite losses in a row (model.max_nonfinite_steps=3); lower "
        "model.optimizer.learning_rate or check the data"
    )
    assert "Traceback" not in done.stderr
    state = torch.load(stopped / "runs/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert int(state["batches_seen"]) == 8  # epoch 1's checkpoint, before the poisoned batches, untouched


@pytest.mark.slow
def test_a_full_disk_stops_training_clearly_and_keeps_the_last_checkpoint(tmp_path):
    # The tiny run's checkpoints are about 19 MB: room for epoch 0's two, not for epoch 1's first.
    with small_disk(tmp_path, 45 * 1024) as disk:
        done = run_vqtok(*fit_args(tmp_path, disk / "checkpoints", every=EVERY_EPOCH), cwd=tmp_path)
        assert done.returncode == 2
        message = done.stderr.strip().splitlines()[-1]
        assert message.startswith(f"vqtok fit: error: training stopped: cannot write checkpoint {disk}/checkpoints")
        assert "No space left on device" in message and "the checkpoints written before are intact" in message
        files = sorted(p.name for p in (disk / "checkpoints").iterdir())
        assert files == ["epoch=0-step=4.ckpt", "last.ckpt"]  # no temporary file left
        state = torch.load(disk / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
        assert int(state["batches_seen"]) == 4

        resize_disk(disk, 100 * 1024)
        resumed = run_vqtok(
            *fit_args(tmp_path, disk / "checkpoints", "--ckpt_path", "last", every=EVERY_EPOCH), cwd=tmp_path
        )
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert int(torch.load(disk / "checkpoints/last.ckpt", weights_only=True)["state_dict"]["batches_seen"]) == 24


def training_checkpoint(preset: str, folder: Path) -> Path:
    """A training checkpoint of a random-weight ``preset``, in the format ``vqtok fit`` writes."""
    torch.manual_seed(0)
    module = TokenizerTraining(TokenizerConfig.from_name(preset), gan=GanOptions(weight=0.0))
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)  # what Lightning calls: adds the tokenizer config `vqtok export` reads
    torch.save(checkpoint, folder / f"{preset}.ckpt")
    return folder / f"{preset}.ckpt"


@pytest.fixture(scope="module")
def big_checkpoint(tmp_path_factory) -> Path:
    """The 59 M-parameter f8 preset: its export takes long enough to be killed in the middle."""
    return training_checkpoint("f8", tmp_path_factory.mktemp("ckpt"))


def test_kill_9_during_export_leaves_the_previous_export_or_none(big_checkpoint, tmp_path):
    out = tmp_path / "export"

    def writing() -> bool:  # the export's staging folder exists and its first weights file is being written
        return any((d / "encoder.safetensors").exists() for d in tmp_path.glob(".export.*.tmp"))

    assert kill_9_when(start_vqtok("export", big_checkpoint, out, cwd=tmp_path), writing)
    assert not out.exists()
    for staged in tmp_path.glob(".export.*.tmp"):  # what a kill leaves is hidden, and never loads as an export
        with pytest.raises(vqtok.ExportError, match="missing config.json"):
            vqtok.load(staged)

    old = export_model(tmp_path, "tiny")
    old.rename(out)
    old_ids = vqtok.load(out).encode(torch.zeros(1, 3, 32, 32))
    assert kill_9_when(start_vqtok("export", big_checkpoint, out, cwd=tmp_path), writing)
    assert torch.equal(vqtok.load(out).encode(torch.zeros(1, 3, 32, 32)), old_ids)  # the earlier export, whole

    done = run_vqtok("export", big_checkpoint, out, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert vqtok.load(out).config.name == "f8"


def fill(disk: Path) -> None:
    """Write until the disk is full."""
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_a_full_disk_gives_clear_errors_and_no_partial_files(tmp_path):
    images = write_images(tmp_path / "data", 6, [(64, 64)])
    model = export_model(tmp_path, "tiny")
    checkpoint = training_checkpoint("tiny", tmp_path)
    with small_disk(tmp_path, 16 * 1024) as disk:
        fill(disk)
        jobs = {
            "export": ["export", checkpoint, disk / "export"],
            "encode": ["encode", *images, "--model", model, "--out", disk / "tokens.safetensors"],
            "tokenize": ["tokenize", tmp_path / "data", "--model", model, "--out", disk / "store", "--no-progress"],
        }
        for name, args in jobs.items():
            done = run_vqtok(*args, cwd=tmp_path)
            assert done.returncode == 2, (name, done.stderr[-3000:])
            assert done.stderr.strip().splitlines()[-1].startswith(f"vqtok {name}: error:"), done.stderr[-3000:]
            assert "No space left on device" in done.stderr, (name, done.stderr[-3000:])
        assert not (disk / "export").exists() and not (disk / "tokens.safetensors").exists()
        assert not list(disk.glob(".*"))  # no temporary file or folder left behind
        assert not (disk / "store" / "manifest.jsonl").exists()

        (disk / "filler").unlink()  # space again: the same commands finish
        for name, args in jobs.items():
            done = run_vqtok(*args, cwd=tmp_path)
            assert done.returncode == 0, (name, done.stderr[-3000:])
        tok = vqtok.load(model)
        store = TokenStore(disk / "store")
        assert len(store) == 6
        for path in images:
            assert torch.equal(store[str(path)].ids, tok.encode(path)[0])
        _, items = load_tokens(disk / "tokens.safetensors", tok.fingerprint)
        assert [it.ids.shape for it in items] == [(8, 8)] * 6
        assert np.isfinite(vqtok.load(disk / "export").model.quantizer.embed.numpy()).all()
