"""The README's Python examples run as written, against the shipped exports."""

import re
from pathlib import Path

import pytest
import torch

import vqtok

ROOT = Path(__file__).resolve().parent.parent


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_a_five_line_api_example():
    blocks = python_blocks()
    assert blocks and len([line for line in blocks[0].splitlines() if line.strip()]) == 5


def test_readme_api_example_runs(monkeypatch):
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(python_blocks()[0], "README.md API example", "exec"), scope)
    tok, x, ids, y = scope["tok"], scope["x"], scope["ids"], scope["y"]
    f = tok.downsample
    assert ids.dtype == torch.long and ids.shape == (x.shape[0], x.shape[2] // f, x.shape[3] // f)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1


def test_readme_video_example_runs(monkeypatch):
    monkeypatch.chdir(ROOT)
    scope: dict = {"torch": torch, "vqtok": vqtok}
    exec(compile(python_blocks()[1], "README.md video example", "exec"), scope)
    assert scope["ids"].shape == (1, 5, 8, 8) and scope["v2"].shape == scope["v"].shape
    assert torch.equal(scope["vid"].encode(scope["v"][:, :, :1]), scope["ids"][:, :1])  # frame 0 alone: same ids


def test_shipped_tiny_export_by_short_name_and_path():
    by_name = vqtok.load("tiny")
    by_path = vqtok.load(ROOT / "checkpoints" / "tiny")
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert torch.equal(by_name.encode(x), by_path.encode(x))
    with pytest.raises(vqtok.ExportError, match="tiny"):  # the message lists the short names there are
        vqtok.load("no-such-tokenizer")
