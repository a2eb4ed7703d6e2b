"""The one copy of resize/crop/pad (vqtok.transforms), the id dtype tables, and vqtok.synthetic's light imports."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from vqtok.io.tensors import id_dtype
from vqtok.transforms import center_crop, pad_to_multiple, resize, resize_shorter_side, shorter_side_size


@pytest.mark.parametrize(("height", "width"), [(37, 50), (64, 64), (100, 31)])
def test_resize_is_antialiased_bicubic_clamped_to_the_range(height, width):
    x = torch.rand(2, 3, height, width) * 2 - 1  # (N, C, H, W) in [-1, 1]
    y = F.interpolate(x, size=(20, 30), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)
    assert torch.equal(resize(x, (20, 30), clamp=(-1.0, 1.0)), y)
    unclamped = F.interpolate(x[:1], size=(20, 30), mode="bicubic", antialias=True, align_corners=False)[0]
    assert torch.equal(resize(x[0], (20, 30), clamp=None), unclamped)  # (C, H, W) in, (C, H', W') out
    assert resize(x, (height, width)) is x  # the size it has: untouched, not clamped


def test_shorter_side_keeps_the_aspect_ratio_and_the_minimum():
    assert shorter_side_size(100, 50, 25) == (50, 25)
    assert shorter_side_size(37, 50, 32, minimum=40) == (40, 43)
    x = torch.rand(3, 37, 50)
    assert resize_shorter_side(x, 32, 32).shape == (3, 32, 43)
    assert resize_shorter_side(x, 37) is x


def test_center_crop_rounds_down_and_never_pads():
    x = torch.arange(5 * 6).view(1, 5, 6)
    assert torch.equal(center_crop(x, 2, 3), x[:, 1:3, 1:4])
    assert center_crop(x, 8).shape == (1, 5, 6)  # larger than the input: the input's side


@pytest.mark.parametrize("shape", [(1, 3, 13, 17), (2, 3, 5, 9, 8)])
def test_pad_to_multiple_crops_back_to_the_input(shape):
    x = torch.randn(shape)
    y = pad_to_multiple(x, 8)
    assert y.shape[-2] % 8 == 0 and y.shape[-1] % 8 == 0
    assert torch.equal(y[..., : shape[-2], : shape[-1]], x)
    assert torch.equal(y[..., -1, : shape[-1]], x[..., -1, :])  # the last row is replicated


@pytest.mark.parametrize(
    ("num_codes", "tokens", "store"),
    [
        (256, torch.int16, torch.uint8),
        (257, torch.int16, torch.uint16),
        (2**15, torch.int16, torch.uint16),
        (2**15 + 1, torch.int32, torch.uint16),
        (2**16, torch.int32, torch.uint16),
        (2**16 + 1, torch.int32, torch.int32),
        (2**31 + 1, torch.int64, torch.int32),
    ],
)
def test_id_dtypes_of_token_files_and_stores(num_codes, tokens, store):
    assert id_dtype(num_codes, "tokens") == tokens and id_dtype(num_codes, "store") == store


def test_synthetic_data_imports_without_lightning_or_pyav():
    script = (
        "import sys, vqtok.synthetic; print(sorted(m for m in sys.modules if m.split('.')[0] in {'lightning', 'av'}))"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"
