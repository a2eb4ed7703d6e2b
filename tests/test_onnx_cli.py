"""`vqtok export-onnx`, then `vqtok encode` / `vqtok decode` with `--backend onnx`, as a user runs them."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vqtok
from vqtok.cli.main import main
from vqtok.token_file import load_tokens

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def vqtok_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vqtok.cli.main", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """`vqtok export-onnx tiny OUT`, run in this process."""
    out = tmp_path_factory.mktemp("export") / "tiny_onnx"
    assert main(["export-onnx", "tiny", str(out), "--no-progress"]) == 0
    return out


# The onnxruntime backend with the training, video and app stacks and the onnx package itself blocked: serving
# needs the base install and onnxruntime only.
SERVE_WITHOUT_EXTRAS = r"""
import importlib.abc, sys

BLOCKED = {"lightning", "pytorch_lightning", "lightning_fabric", "jsonargparse", "tensorboard", "torchmetrics",
           "torchdata", "av", "gradio", "yaml", "onnx", "onnxscript", "tqdm"}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked in this test: {name}")
        return None

sys.meta_path.insert(0, Block())
import torch, vqtok
tok = vqtok.load(sys.argv[1], backend="onnx")
ids = tok.encode(torch.zeros(1, 3, 64, 64))
assert tok.decode(ids).shape == (1, 3, 64, 64)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not loaded, loaded
print("ok", tuple(ids.shape))
"""


def test_serving_needs_neither_the_training_stack_nor_the_onnx_package(tiny_onnx):
    done = subprocess.run([sys.executable, "-c", SERVE_WITHOUT_EXTRAS, str(tiny_onnx)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok (1, 8, 8)"


def test_export_onnx_then_encode_and_decode_with_onnxruntime(tiny_onnx, tmp_path):
    out = tiny_onnx
    assert {p.name for p in out.iterdir()} >= {"encoder.onnx", "decoder.onnx", "config.json", "onnx.json"}

    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (45, 61, 3), dtype=np.uint8)).save(image)
    tokens = tmp_path / "tokens.safetensors"
    args = ["encode", str(image), "--model", str(out), "--out", str(tokens), "--backend", "onnx", "--no-progress"]
    assert main(args) == 0
    meta, items = load_tokens(tokens, fingerprint=vqtok.load("tiny").fingerprints)  # the torch model's fingerprint
    assert meta["model"] == "tiny" and items[0].size == (45, 61)
    torch_ids = vqtok.load("tiny").encode(image)[0]
    assert (items[0].ids == torch_ids).float().mean() >= 0.999

    args = ["decode", str(tokens), "--model", str(out), "--out", str(tmp_path / "dec"), "--backend", "onnx"]
    assert main([*args, "--no-progress"]) == 0
    assert Image.open(tmp_path / "dec" / "photo.png").size == (61, 45)


@pytest.mark.slow
def test_the_installed_command_exports_and_encodes(tmp_path):
    """The same through the `vqtok` entry point in fresh processes (slow: each starts torch)."""
    out = tmp_path / "video_tiny_onnx"
    done = vqtok_cli("export-onnx", "video_tiny", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    frames = torch.randint(0, 256, (1, 3, 6, 32, 48), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    video = tmp_path / "clip.mp4"
    from vqtok.io.video import write_video

    write_video(video, frames[0].permute(1, 2, 3, 0).numpy(), fps=8.0, crf=0)
    tokens = tmp_path / "t.safetensors"
    done = vqtok_cli("encode", str(video), "--model", str(out), "--out", str(tokens), "--backend", "onnx")
    assert done.returncode == 0, done.stderr
    _, items = load_tokens(tokens)
    torch_ids = vqtok.load("video_tiny").encode(video)[0]
    assert (items[0].ids == torch_ids).float().mean() >= 0.999


def test_a_torch_export_given_to_the_onnx_backend_is_refused_with_the_fix(tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.new("RGB", (16, 16)).save(image)
    args = ["encode", str(image), "--model", "tiny", "--out", str(tmp_path / "t.safetensors"), "--backend", "onnx"]
    assert main(args) == 2
    assert "export-onnx" in capsys.readouterr().err


def test_export_onnx_refuses_a_folder_of_other_files(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["export-onnx", "tiny", str(tmp_path), "--no-progress"]) == 2
    assert (tmp_path / "keep.txt").read_text() == "mine"
    assert not Path(tmp_path / "encoder.onnx").exists()
