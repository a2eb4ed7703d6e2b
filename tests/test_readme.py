"""The README's Python example runs as written, against the shipped tiny export."""

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
    assert blocks and len(blocks[0].strip().splitlines()) == 5


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_block_runs(index, monkeypatch):
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(python_blocks()[index], f"README.md python block {index}", "exec"), scope)
    if "ids" in scope and "y" in scope:
        assert scope["ids"].dtype == torch.long and scope["y"].shape == scope["x"].shape


def test_shipped_tiny_export_by_short_name_and_path():
    by_name = vqtok.load("tiny")
    by_path = vqtok.load(ROOT / "checkpoints" / "tiny")
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert torch.equal(by_name.encode(x), by_path.encode(x))
    with pytest.raises(vqtok.ExportError, match="tiny"):  # the message lists the short names there are
        vqtok.load("no-such-tokenizer")
