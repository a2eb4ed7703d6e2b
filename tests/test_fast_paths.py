"""The fast paths (channels-last layout, in-place activations, sub-pixel upsampling, time-sliced causal convs,
tiles, the allocator setting) keep the tokens and the pictures: they are checked against the plain formulation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vqtok
from vqtok.allocator import keep_freed_memory
from vqtok.config import TokenizerConfig
from vqtok.inputs import image_batch
from vqtok.metrics import psnr
from vqtok.model.blocks import Upsample
from vqtok.model.causal import CausalConv3d, Downsample3d, FrameGroupNorm, Upsample3d
from vqtok.model.vqvae import VQVAE
from vqtok.tiling import decode_tiled, encode_tiled, tile_starts
from vqtok.training.data.procedural import render_dead_leaves


class PlainUpsample(Upsample):
    """The textbook form: upsample the image, then convolve it."""

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def plain_copy(tok: vqtok.Tokenizer) -> vqtok.Tokenizer:
    """The same weights in contiguous (NCHW) layout with textbook upsampling, run with autograd on (no in-place)."""
    model = vqtok.load("tiny", tile_size=None).model
    model.load_state_dict(tok.model.state_dict())
    model.to(memory_format=torch.contiguous_format)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is Upsample:
                plain = PlainUpsample(child.conv.in_channels)
                plain.load_state_dict(child.state_dict())
                setattr(parent, name, plain)
    return vqtok.Tokenizer(model, tok.device, tok.dtype, tile_size=None)


def test_subpixel_upsampling_equals_upsample_then_conv_with_gradients():
    torch.manual_seed(0)
    fast = Upsample(6).double()
    plain = PlainUpsample(6).double()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(2, 6, 5, 7, dtype=torch.double, requires_grad=True)
    y_fast, y_plain = fast(x), plain(x)
    assert y_fast.shape == (2, 6, 10, 14)
    torch.testing.assert_close(y_fast, y_plain, rtol=0, atol=1e-12)
    grads_fast = torch.autograd.grad(y_fast.square().sum(), [x, fast.conv.weight, fast.conv.bias])
    grads_plain = torch.autograd.grad(y_plain.square().sum(), [x, plain.conv.weight, plain.conv.bias])
    for a, b in zip(grads_fast, grads_plain, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_fast_inference_gives_the_plain_models_ids_and_pixels():
    image = render_dead_leaves(np.random.default_rng(7), 256)  # (256, 256, 3) uint8
    fast = vqtok.load("tiny")
    plain = plain_copy(fast)
    ids = fast.encode(image)
    with torch.enable_grad():  # the plain path: autograd on, so no in-place activation
        plain_ids = plain.model.encode(image_batch(image, 3)).ids
        plain_pixels = plain.model.decode_ids(plain_ids).clamp(-1, 1)
    assert torch.equal(ids, plain_ids)
    pixels = fast.decode(ids)
    assert pixels.is_contiguous()  # NCHW for the caller, whatever layout the model ran in
    torch.testing.assert_close(pixels, plain_pixels.detach(), rtol=0, atol=1e-4)


def test_tiles_cover_the_grid_and_an_untiled_size_is_unchanged():
    assert tile_starts(10, 16, 2) == [0]
    assert tile_starts(40, 16, 2) == [0, 12, 24]  # spread evenly, the last flush with the far edge
    assert tile_starts(21, 8, 2) == [0, 4, 9, 13]
    image = render_dead_leaves(np.random.default_rng(1), 256)
    untiled, tiled = vqtok.load("tiny", tile_size=None), vqtok.load("tiny", tile_size=256)
    assert torch.equal(tiled.encode(image), untiled.encode(image))  # not larger than a tile: one pass


def test_tiled_round_trip_of_a_large_image_keeps_its_quality():
    image = render_dead_leaves(np.random.default_rng(3), 768)
    x = image_batch(image, 3)
    untiled, tiled = vqtok.load("tiny"), vqtok.load("tiny", tile_size=512)  # 768 px: 2 x 2 tiles
    ids_untiled, ids_tiled = untiled.encode(image), tiled.encode(image)
    assert ids_tiled.shape == ids_untiled.shape == (1, 96, 96)
    quality_untiled = psnr(untiled.decode(ids_untiled), x)
    quality_tiled = psnr(tiled.decode(ids_tiled), x)
    assert abs(quality_tiled - quality_untiled) < 0.05  # dB: tiling costs no measurable quality
    # Decoding the same ids in tiles: no seam, the blend stays close to the one-pass picture.
    assert psnr(tiled.decode(ids_untiled), untiled.decode(ids_untiled)) > 32


def test_tiled_helpers_reassemble_a_position_model_exactly():
    """With a model that reads each position's own value, tiles must give back every position exactly once."""
    f, h, w = 4, 21, 15
    assert tile_starts(w, 8, 2) == [0, 4, 7]  # tiles 0 and 2 overlap too: three-deep blending
    positions = (torch.arange(h)[:, None] * w + torch.arange(w)[None, :]).expand(2, h, w)  # (2, h, w)
    x = F.interpolate(positions[:, None].float(), scale_factor=f).expand(2, 3, h * f, w * f)  # each block: its number

    def encode(tile):  # (B, 3, h'f, w'f) -> (B, h', w'): the number written in each block
        return F.avg_pool2d(tile[:, :1], f)[:, 0].round().long()

    def decode(ids):  # (B, h', w') -> (B, 1, h'f, w'f)
        return F.interpolate(ids[:, None].float(), scale_factor=f)

    assert torch.equal(encode_tiled(encode, x, f, 8, 2), positions)
    torch.testing.assert_close(decode_tiled(decode, positions, f, 8, 2), decode(positions), rtol=1e-6, atol=0)


def test_keep_freed_memory_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("VQTOK_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False


@pytest.mark.parametrize("size", [0, 12, 100])
def test_a_bad_tile_size_is_refused(size):
    with pytest.raises(vqtok.InputError, match="tile_size must be None or a multiple"):
        vqtok.load("tiny", tile_size=size)


def test_vqtok_bench_runs_the_suite_from_the_checkout():
    """``vqtok bench`` hands its arguments to ``python -m bench`` in the checkout (``--help``: no peers needed)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "vqtok.cli.main", "bench", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "python -m bench" in out.stdout
    assert "quantizer,tokenizer,training,memory,precision,compile,allocator" in out.stdout


class PlainUpsample3d(Upsample3d):
    """The textbook form: upsample the clip (time too when temporal), then the causal conv."""

    def __init__(self, channels: int, temporal: bool) -> None:
        super().__init__(channels, temporal)
        self.conv = CausalConv3d(channels, channels, 3)

    def forward(self, x):
        scale = (2.0, 2.0, 2.0) if self.temporal else (1.0, 2.0, 2.0)
        x = F.interpolate(x, scale_factor=scale, mode="nearest")
        return self.conv(x[:, :, 1:] if self.temporal else x)


@pytest.mark.parametrize("temporal", [False, True])
def test_subpixel_video_upsampling_equals_upsample_then_causal_conv(temporal):
    torch.manual_seed(0)
    fast, plain = Upsample3d(5, temporal).double(), PlainUpsample3d(5, temporal).double()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(2, 5, 3, 4, 6, dtype=torch.double, requires_grad=True)
    y_fast, y_plain = fast(x), plain(x)
    assert y_fast.shape == (2, 5, 5 if temporal else 3, 8, 12)
    torch.testing.assert_close(y_fast, y_plain, rtol=0, atol=1e-12)
    grads_fast = torch.autograd.grad(y_fast.square().sum(), [x, fast.conv.weight])
    grads_plain = torch.autograd.grad(y_plain.square().sum(), [x, plain.conv.weight])
    for a, b in zip(grads_fast, grads_plain, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    with torch.no_grad():  # the inference path (time slices, no padded copies)
        torch.testing.assert_close(fast(x), y_plain, rtol=0, atol=1e-12)


def test_video_layers_in_inference_equal_their_training_form():
    """Causal convs in time slices and frame-by-frame norms (inference) against the whole-tensor forms."""
    torch.manual_seed(0)
    x = torch.randn(1, 8, 9, 10, 12, dtype=torch.double)
    layers = [CausalConv3d(8, 6, 3), Downsample3d(8, temporal=True), FrameGroupNorm(4, 8), CausalConv3d(8, 6, 1)]
    for layer in layers:
        layer.double()
        with torch.enable_grad():
            expected = layer(x)
        with torch.no_grad():
            torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-12)


def test_a_tiled_video_streams_each_tile_like_one_pass():
    """With tiles, chunked streaming still equals one call over the clip: every tile keeps its own stream."""
    torch.manual_seed(0)
    model = VQVAE(TokenizerConfig.from_name("video_tiny")).eval().requires_grad_(False)
    clip = torch.rand(1, 3, 17, 72, 136) * 2 - 1  # (B, 3, T, H, W): 2 x 3 tiles of 64 pixels
    short = vqtok.Tokenizer(model, torch.device("cpu"), torch.float32, chunk_frames=4, tile_size=64)
    whole = vqtok.Tokenizer(model, torch.device("cpu"), torch.float32, chunk_frames=16, tile_size=64)
    ids = short.encode(clip)
    assert ids.shape == (1, 5, 9, 17)
    assert torch.equal(ids, whole.encode(clip))
    torch.testing.assert_close(short.decode(ids), whole.decode(ids), rtol=0, atol=1e-5)
    frame = clip[:, :, 0]  # an image is a 1-frame video, tiled the same way
    assert torch.equal(short.encode(frame), short.encode(clip[:, :, :1])[:, 0])
    torch.testing.assert_close(short.decode(ids[:, 0]), short.decode(ids[:, :1])[:, :, 0], rtol=0, atol=1e-5)
