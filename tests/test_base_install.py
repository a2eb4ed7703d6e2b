"""An export loads and runs with the base dependencies only: the training, video and app stacks are blocked."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import importlib.abc, sys

BLOCKED = {"lightning", "pytorch_lightning", "lightning_fabric", "jsonargparse", "tensorboard", "torchmetrics",
           "av", "gradio", "yaml"}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked in this test: {name}")
        return None

sys.meta_path.insert(0, Block())
import torch, vqtok
tok = vqtok.load(sys.argv[1])
ids = tok.encode(torch.zeros(1, 3, 64, 64))
y = tok.decode(ids)
assert y.shape == (1, 3, 64, 64)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not loaded, loaded
print("ok", tuple(ids.shape))
"""


def test_export_runs_without_training_video_or_app_packages():
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT / "checkpoints" / "tiny")], capture_output=True, text=True, cwd=ROOT
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "ok (1, 8, 8)"
