"""Large causal convs in bands of rows (vqtok.model.row_bands): the very values of one F.conv3d call, for both of
the kernels F.conv3d picks on the CPU; and a stream through a video model gives the same ids and pixels with
bands as without."""

import pytest
import torch
import torch.nn.functional as F

from vqtok.model import causal, row_bands
from vqtok.model.blocks import ResnetBlock
from vqtok.model.causal import CausalConv3d, Downsample3d, FrameGroupNorm, UpsamplingCausalConv3d, streaming
from vqtok.model.row_bands import conv3d_in_row_bands, row_band_kernel, upsampling_conv3d_in_row_bands
from vqtok.model.subpixel import phase_bias, phase_kernels

BF16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


@pytest.fixture
def small_bands(monkeypatch):
    """Bands of a few rows, for any size of input, so small tensors go through many bands."""
    monkeypatch.setattr(row_bands, "BAND_BYTES", 4096)
    monkeypatch.setattr(row_bands, "MIN_WORK_BYTES", 0)


def frames_of(x):
    return lambda i: x[:, :, i]


@pytest.mark.parametrize(
    ("channels", "height", "stride", "padding", "kernel"),
    [
        (16, 520, (1, 1, 1), (1, 1, 1, 1), "onednn"),  # 16 * 3 * 520 > 20480: F.conv3d calls oneDNN
        (16, 520, (1, 2, 2), (0, 1, 0, 1), "onednn"),  # a stride-2 downsampling conv, uneven padding
        (16, 520, (2, 2, 2), (0, 1, 0, 1), "onednn"),  # ... halving time too
        (3, 61, (1, 1, 1), (1, 1, 1, 1), "native"),  # 3 * 3 * 61 <= 20480: F.conv3d's native im2col kernel
    ],
)
@torch.inference_mode()
def test_bands_equal_one_conv3d_call(small_bands, channels, height, stride, padding, kernel):
    torch.manual_seed(0)
    x = torch.randn(1, channels, 3, height, 21)
    weight, bias = torch.randn(8, channels, 3, 3, 3) * 0.1, torch.randn(8)
    assert row_band_kernel(x, weight, 3, stride, padding) == kernel
    expected = F.conv3d(F.pad(x, padding), weight, bias, stride)
    got = conv3d_in_row_bands(frames_of(x), 3, weight, bias, stride, padding, kernel)
    assert torch.equal(got, expected)


@pytest.mark.skipif(not BF16, reason="oneDNN has no bf16 convolution on this CPU")
@torch.inference_mode()
def test_bf16_bands_equal_one_conv3d_call(small_bands):
    torch.manual_seed(0)
    x = torch.randn(1, 8, 3, 40, 24).bfloat16()
    weight, bias = (torch.randn(8, 8, 3, 3, 3) * 0.1).bfloat16(), torch.randn(8).bfloat16()
    assert row_band_kernel(x, weight, 3, (1, 1, 1), (1, 1, 1, 1)) == "onednn"
    expected = F.conv3d(x, weight, bias, padding=(0, 1, 1))
    assert torch.equal(conv3d_in_row_bands(frames_of(x), 3, weight, bias, (1, 1, 1), (1, 1, 1, 1), "onednn"), expected)
    skip = (torch.randn(4, 8, 1, 1, 1) * 0.1).bfloat16()  # a 1x1 conv (a ResNet block's skip), in bf16 only
    assert row_band_kernel(x, skip, 1, (1, 1, 1), (0, 0, 0, 0)) == "onednn"
    assert row_band_kernel(x.float(), skip.float(), 1, (1, 1, 1), (0, 0, 0, 0)) is None
    got = conv3d_in_row_bands(frames_of(x), 3, skip, bias[:4], (1, 1, 1), (0, 0, 0, 0), "onednn")
    assert torch.equal(got, F.conv3d(x, skip, bias[:4]))


@torch.inference_mode()
def test_upsampling_bands_equal_the_phase_conv(small_bands):
    torch.manual_seed(0)
    conv = UpsamplingCausalConv3d(16)
    x = torch.randn(1, 16, 3, 450, 13)  # 16 * 3 * 450 > 20480
    expected = conv._conv(x)  # (1, 16, 1, 900, 26)
    got = upsampling_conv3d_in_row_bands(frames_of(x), 3, phase_kernels(conv.weight), phase_bias(conv.bias))
    assert got.shape == expected.shape == (1, 16, 1, 900, 26)
    assert torch.equal(got, expected)


def test_bands_only_where_they_give_the_same_values():
    x, w = torch.randn(1, 16, 3, 520, 21), torch.randn(8, 16, 3, 3, 3)
    padding = (1, 1, 1, 1)
    with torch.inference_mode():
        assert row_band_kernel(x, w, 3, (1, 1, 1), padding) is None  # 2 MB of input: one call is fine
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(row_bands, "MIN_WORK_BYTES", 0)
            assert row_band_kernel(x, w, 3, (1, 1, 1), padding) == "onednn"
            assert row_band_kernel(x, w[..., :1, :1], 3, (1, 1, 1), (0, 0, 0, 0)) is None  # a float32 1x1 conv
            cl = x.contiguous(memory_format=torch.channels_last_3d)
            assert row_band_kernel(cl, w, 3, (1, 1, 1), padding) is None  # F.conv3d would run it channels-last
            assert row_band_kernel(x.double(), w.double(), 3, (1, 1, 1), padding) is None
            small = torch.randn(1, 3, 3, 61, 21)  # the native kernel: bands for stride-1 convs only
            assert row_band_kernel(small, w[:, :3], 3, (1, 1, 1), padding) == "native"
            assert row_band_kernel(small, w[:, :3], 3, (1, 2, 2), (0, 1, 0, 1)) is None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(row_bands, "MIN_WORK_BYTES", 0)
        assert row_band_kernel(x, w, 3, (1, 1, 1), padding) is None  # training: autograd needs the plain call


@torch.inference_mode()
def test_a_stream_gives_the_same_output_with_and_without_bands(small_bands):
    """Chunks of a stream through causal convs of every kind (plain, strided, temporal, upsampling)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        CausalConv3d(3, 8, 3),
        Downsample3d(8, True),
        ResnetBlock(8, 8, 4, video=True),  # convs written over their inputs, with bands
        ResnetBlock(8, 16, 4, video=True),  # a 1x1 skip: conv1 writes a new tensor
        CausalConv3d(16, 8, 3),
        UpsamplingCausalConv3d(8),
    ).eval()
    clip = torch.randn(1, 3, 9, 48, 40)
    outputs = []
    for bands in (False, True):
        for m in model.modules():
            if isinstance(m, CausalConv3d):
                m.row_bands = bands
        with streaming(model):
            outputs.append(torch.cat([model(clip[:, :, :5]), model(clip[:, :, 5:])], dim=2))
    assert outputs[0].shape == (1, 8, 5, 48, 40)
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize(
    ("channels", "height", "chunks"),
    [
        (16, 520, (1, 1, 1, 1)),  # oneDNN; frame by frame, as the full-resolution levels of a video stream run
        (16, 520, (3, 1, 2, 1)),  # several frames per call (a new output), then one
        (4, 61, (1, 3)),  # the native kernel
    ],
)
@torch.inference_mode()
def test_a_conv_written_over_its_input_continues_the_same_stream(small_bands, channels, height, chunks):
    torch.manual_seed(0)
    conv = CausalConv3d(channels, channels, 3).eval()
    clip = torch.randn(1, channels, sum(chunks), height, 12)
    starts = [sum(chunks[:i]) for i in range(len(chunks))]
    with streaming(conv):
        expected = [conv(clip[:, :, t : t + n]) for t, n in zip(starts, chunks, strict=True)]
        expected_state = conv.stream_state().clone()
    with streaming(conv):
        for t, n, want in zip(starts, chunks, expected, strict=True):
            x = clip[:, :, t : t + n].clone()
            got = conv.forward_over_input(x)
            assert (got.data_ptr() == x.data_ptr()) == (n == 1)  # one frame is written over, several are not
            assert torch.equal(got, want)
        assert torch.equal(conv.stream_state(), expected_state)  # the next chunk would continue alike
    x = clip[:, :, :1].clone()  # outside a stream: the first frame repeated, as forward pads
    assert torch.equal(conv.forward_over_input(x), conv(clip[:, :, :1]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@torch.inference_mode()
def test_a_norm_written_over_its_input_gives_the_same_values(monkeypatch, dtype):
    monkeypatch.setattr(causal, "NORM_PART_BYTES", 100_000)  # one group of a frame at a time
    torch.manual_seed(0)
    norm = FrameGroupNorm(6, 48, eps=1e-6).to(dtype)
    torch.nn.init.normal_(norm.weight), torch.nn.init.normal_(norm.bias)
    x = (torch.randn(1, 48, 2, 90, 70) * 3 + 1).to(dtype)
    expected = norm(x)
    got = norm.forward_over_input(y := x.clone())
    assert got.data_ptr() == y.data_ptr()
    assert torch.equal(got, expected)


def test_the_frame_pipeline_gives_the_values_of_the_plain_stream(small_bands, monkeypatch):
    """A video model's encoder and decoder streamed depth-first, one frame at a time, in row bands, with convs and
    norms written over their inputs and the upsampling's frames one by one: bit for bit the modules' own stream
    over whole chunks (where a conv over several frames makes a new output)."""
    from vqtok.backends.frame_pipeline import can_pipeline, decode_levels_in_pieces, encode_levels_in_pieces
    from vqtok.config import TokenizerConfig
    from vqtok.model.vqvae import VQVAE

    monkeypatch.setattr(causal, "NORM_PART_BYTES", 1024)  # norms in place, a group at a time, even for small frames
    torch.manual_seed(0)
    model = VQVAE(TokenizerConfig.from_name("video_tiny")).eval()
    clip = torch.rand(1, 3, 13, 48, 40) * 2 - 1
    chunks = (clip[:, :, :5], clip[:, :, 5:9], clip[:, :, 9:])
    with streaming(model.encoder), torch.no_grad():
        expected_z = [model.encoder(c) for c in chunks]
    with streaming(model.encoder), torch.inference_mode():
        assert can_pipeline(model.encoder)
        z = [encode_levels_in_pieces(model.encoder, c) for c in chunks]
    assert all(torch.equal(a, b) for a, b in zip(z, expected_z, strict=True))
    latents = expected_z
    with streaming(model.decoder), torch.no_grad():
        expected_y = [model.decoder(zi) for zi in latents]
    with streaming(model.decoder), torch.inference_mode():
        y = [decode_levels_in_pieces(model.decoder, zi) for zi in latents]
    assert [yi.shape[2] for yi in y] == [5, 4, 4]
    assert all(torch.equal(a, b) for a, b in zip(y, expected_y, strict=True))
