"""The command line never writes outside the output it was given, whatever the inputs are called: output names
made from hostile sources (hypothesis), and real ``vqtok decode``/``tokenize``/``detokenize`` runs on files and
token files whose names try to escape, checked against a snapshot of everything else on disk."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from store_files import export_model

import vqtok
from vqtok.cli.main import main
from vqtok.cli.outputs import output_name
from vqtok.token_file import TokenItem, save_tokens

HOSTILE = [
    "../../escape.png",
    "/etc/passwd",
    "..",
    ".",
    "",
    "~/.bashrc",
    "$HOME/x.png",
    "a/../../../b.png",
    "..\\..\\windows\\system32\\x.png",
    "C:\\Users\\x.png",
    "name\x00.png",
    "new\nline.png",
    "-rf.png",
    "." * 300,
    "x" * 1000 + ".png",
    "é" * 200 + ".png",
    "\udcff\udcfe.png",  # bytes that are not UTF-8, as os.fsdecode gives them
    "/dev/null",
    "/proc/self/mem",
    "CON",
    "\u202egnp.exe",
]

NAME_MAX = 255  # bytes in one file name on Linux file systems


@settings(max_examples=500, derandomize=True, database=None, deadline=None)
@given(
    sources=st.lists(
        st.one_of(st.text(min_size=0, max_size=400), st.sampled_from(HOSTILE), st.sampled_from(["a.png", "a.jpg"])),
        min_size=1,
        max_size=8,
    ),
    suffix=st.sampled_from([".png", ".mp4"]),
)
def test_output_names_are_one_safe_unique_component(sources, suffix):
    used: set[str] = set()
    names = [output_name(source, i, used, suffix) for i, source in enumerate(sources)]
    assert len(set(names)) == len(names)
    for name in names:
        assert Path(name).name == name and name.endswith(suffix)
        assert not {"/", "\\", "\0"} & set(name) and name not in (".", "..") and not name.startswith(".")
        assert len(os.fsencode(name)) <= NAME_MAX, len(os.fsencode(name))
        assert name.isascii() and name.isprintable()


def snapshot(root: Path) -> dict[str, float]:
    """Every path under ``root`` with its modification time."""
    return {str(p): p.lstat().st_mtime for p in root.rglob("*")}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return export_model(tmp_path_factory.mktemp("model"), "tiny")


def test_decode_writes_only_inside_its_output_folder(model, tmp_path):
    tok = vqtok.load(model)
    items = [TokenItem(torch.zeros(2, 2, dtype=torch.long), (16, 16), source) for source in HOSTILE]
    save_tokens(tmp_path / "t.safetensors", items, "tiny", tok.fingerprint, tok.codebook_size)
    out = tmp_path / "deep" / "out"
    before = snapshot(tmp_path)
    assert main(["decode", str(tmp_path / "t.safetensors"), "--model", str(model), "--out", str(out)]) == 0
    created = set(snapshot(tmp_path)) - set(before)
    assert {str(tmp_path / "deep"), str(out)} <= created
    written = sorted(created - {str(tmp_path / "deep"), str(out)})
    assert len(written) == len(HOSTILE) and all(Path(p).parent == out for p in written)
    assert all(snapshot(tmp_path)[p] == t for p, t in before.items())  # nothing else touched


def hostile_file_names() -> list[str]:
    """Names a real file can have on Linux (no '/' or NUL) that look like paths, options or tricks."""
    return ["..png", "...png", "-rf.png", "--out=x.png", "new\nline.png", "é.png", "$(touch pwned).png", "x" * 240]


def test_tokenize_and_detokenize_write_only_inside_their_outputs(model, tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate(hostile_file_names()):
        image = rng.integers(0, 256, (16 + 8 * (i % 2), 24, 3), dtype=np.uint8)
        Image.fromarray(image).save(data / ("sub" if i % 2 else "") / name, format="PNG")
    os.symlink("..", data / "sub" / "up")  # a loop back up the tree: listed once, never followed out
    monkeypatch.chdir(tmp_path)  # a relative command, as users type it
    before = snapshot(tmp_path)
    args = ["tokenize", "data", "--model", str(model), "--out", "store", "--no-progress", "--workers", "0"]
    assert main(args) == 0
    assert main(["detokenize", "store", "--model", str(model), "--out", "decoded"]) == 0
    after = snapshot(tmp_path)
    created = set(after) - set(before)
    assert created and all(Path(p).is_relative_to(tmp_path / "store") or Path(p).is_relative_to(tmp_path / "decoded")
                           for p in created), sorted(created)  # fmt: skip
    assert all(after[p] == t for p, t in before.items())
    assert not (tmp_path / "pwned").exists()
    listed = [name for name in hostile_file_names() if not name.startswith(".")]  # hidden files are skipped
    assert len(list((tmp_path / "decoded").iterdir())) == len(listed)
