"""The causal video tokenizer: causality, image parity after inflation, shapes, chunked == whole-clip coding."""

import numpy as np
import pytest
import torch

import vqtok
from vqtok.config import TokenizerConfig
from vqtok.errors import ConfigError, InputError
from vqtok.export import load_export, save_export
from vqtok.model.inflate import check_inflatable, inflate_state_dict
from vqtok.model.vqvae import VQVAE
from vqtok.temporal import latent_length, padded_length


def random_video(T: int, H: int = 32, W: int = 32, B: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, 3, T, H, W, generator=g) * 2 - 1


def smooth_video(T: int, H: int = 32, W: int = 32) -> torch.Tensor:
    """A moving gradient: consecutive frames alike, as in real video."""
    t = torch.arange(T).view(T, 1, 1) / T
    y, x = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    frames = torch.stack([torch.sin(3 * x + 4 * t), torch.cos(2 * y - 3 * t), torch.sin(x * y + t)])  # (3, T, H, W)
    return frames[None].clamp(-1, 1)


@pytest.fixture(scope="module")
def video_model() -> VQVAE:
    torch.manual_seed(0)
    return VQVAE(TokenizerConfig.from_name("video_tiny")).eval()


@pytest.fixture(scope="module")
def inflated(tmp_path_factory):
    """An image tokenizer and the video tokenizer inflated from it, both exported and loaded."""
    torch.manual_seed(1)
    image = VQVAE(TokenizerConfig.from_name("tiny")).eval()
    video = VQVAE(TokenizerConfig.from_name("video_tiny")).eval()
    check_inflatable(image.config, video.config)
    video.load_state_dict(inflate_state_dict(image.state_dict(), video.state_dict()))
    root = tmp_path_factory.mktemp("exports")
    return vqtok.load(save_export(image, root / "image")), vqtok.load(save_export(video, root / "video"))


@pytest.fixture(scope="module")
def video_tok(video_model, tmp_path_factory):
    return vqtok.load(save_export(video_model, tmp_path_factory.mktemp("video") / "v"))


@pytest.mark.slow
def test_changing_frame_k_never_changes_earlier_latents_or_frames(video_model):
    x = random_video(17)
    for k in (0, 4, 5, 9, 16):
        x2 = x.clone()
        x2[:, :, k] = torch.rand_like(x2[:, :, k]) * 2 - 1
        with torch.no_grad():
            z, z2 = video_model.quant_conv(video_model.encoder(x)), video_model.quant_conv(video_model.encoder(x2))
        first_affected = latent_length(k + 1, 4) - 1  # the latent frame whose window holds frame k
        assert torch.equal(z[:, :, :first_affected], z2[:, :, :first_affected]), k
        assert not torch.allclose(z[:, :, first_affected], z2[:, :, first_affected])
        with torch.no_grad():
            y, y2 = video_model.decode(z), video_model.decode(z2)
        first_frame = 4 * first_affected - 3 if first_affected else 0  # latent j >= 1 decodes to frames 4j-3 .. 4j
        assert torch.equal(y[:, :, :first_frame], y2[:, :, :first_frame]), k


def test_one_frame_video_gives_the_image_ids_after_inflation(inflated):
    image_tok, video_tok = inflated
    x = random_video(1, 40, 56, B=2)
    image_ids = image_tok.encode(x[:, :, 0])
    video_ids = video_tok.encode(x)
    assert video_ids.shape == (2, 1, 5, 7)
    assert torch.equal(video_ids[:, 0], image_ids)
    assert torch.equal(video_tok.encode(x[:, :, 0]), image_ids)  # images given to a video tokenizer
    y_image = image_tok.decode(image_ids)
    assert torch.allclose(video_tok.decode(video_ids)[:, :, 0], y_image, atol=1e-4)
    assert torch.allclose(video_tok.decode(image_ids), y_image, atol=1e-4)


def test_inflation_refuses_architectures_that_do_not_fit():
    image = TokenizerConfig.from_name("tiny", base_channels=16)
    with pytest.raises(ConfigError, match="base_channels"):
        check_inflatable(image, TokenizerConfig.from_name("video_tiny"))
    with pytest.raises(ConfigError, match="image tokenizer to a video one"):
        check_inflatable(TokenizerConfig.from_name("video_tiny"), TokenizerConfig.from_name("video_tiny"))


@pytest.mark.parametrize("T", [1, 2, 4, 5, 6, 9, 13, 20])
def test_shapes_for_any_number_of_frames(video_tok, T):
    x = random_video(T, 24, 40)  # neither T nor H fits the factors: padded, then cropped back
    ids = video_tok.encode(x)
    assert ids.shape == (1, latent_length(T, 4), 3, 5) and ids.dtype == torch.long
    y = video_tok.decode(ids)
    assert y.shape == (1, 3, padded_length(T, 4), 24, 40)
    assert video_tok.decode(ids, size=(T, 24, 40)).shape == (1, 3, T, 24, 40)
    assert y.min() >= -1 and y.max() <= 1


def test_chunked_coding_equals_whole_clip_coding(video_model, tmp_path):
    export = save_export(video_model, tmp_path / "v")
    x = smooth_video(29)
    whole = vqtok.load(export, chunk_frames=32)  # one chunk
    chunked = vqtok.load(export, chunk_frames=4)  # 5, 4, 4, ... frames
    ids = whole.encode(x)
    assert ids.shape[1] == 8
    ids_chunked = chunked.encode(x)
    assert (ids_chunked == ids).float().mean() >= 0.999  # streamed convolutions may round differently
    y, y_chunked = whole.decode(ids), chunked.decode(ids)
    assert torch.allclose(y, y_chunked, atol=1e-4)
    pieces = list(chunked.decode_chunks(ids, size=(27, 32, 32)))
    assert [p.shape[2] for p in pieces] == [5, 4, 4, 4, 4, 4, 2]
    assert torch.allclose(torch.cat(pieces, dim=2), y[:, :, :27], atol=1e-4)
    stream = chunked.decode_chunks(ids)
    next(stream)
    with pytest.raises(RuntimeError, match="already streaming"):  # two interleaved streams would mix state
        next(chunked.decode_chunks(ids))
    stream.close()
    assert torch.allclose(torch.cat(list(chunked.decode_chunks(ids)), dim=2), y, atol=1e-4)  # usable again


def test_streamed_encoder_latents_match_the_whole_clip(video_model):
    from vqtok.model.causal import streaming

    x = random_video(17)
    with torch.no_grad():
        z = video_model.encoder(x)
        with streaming(video_model.encoder):
            z_stream = torch.cat([video_model.encoder(c) for c in (x[:, :, :5], x[:, :, 5:13], x[:, :, 13:])], dim=2)
    assert z_stream.shape == z.shape == (1, 64, 5, 4, 4)
    assert torch.allclose(z_stream, z, atol=1e-5)


def test_uint8_arrays_and_lists_of_videos(video_tok):
    frames = np.random.default_rng(0).integers(0, 256, (5, 16, 24, 3), dtype=np.uint8)  # (T, H, W, 3)
    ids = video_tok.encode(frames)
    assert ids.shape == (1, 2, 2, 3)
    as_tensor = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    assert torch.equal(video_tok.encode(as_tensor), ids)
    assert torch.equal(video_tok.encode([frames, frames]), ids.expand(2, -1, -1, -1))
    assert video_tok.encode(frames[0]).shape == (1, 2, 3)  # an (H, W, 3) array is an image


def test_bad_video_inputs_get_clear_errors(video_tok, inflated):
    image_tok, _ = inflated
    with pytest.raises(InputError, match="image tokenizer and cannot encode videos"):
        image_tok.encode(random_video(5))
    with pytest.raises(InputError, match="NaN"):
        video_tok.encode(torch.full((1, 3, 5, 16, 16), float("nan")))
    with pytest.raises(InputError, match=r"\[-1, 1\]"):
        video_tok.encode(random_video(5) * 200)
    with pytest.raises(InputError, match="uint8"):
        video_tok.encode(np.zeros((5, 16, 16, 3), dtype=np.float32))
    with pytest.raises(InputError, match="share a size"):
        video_tok.encode([np.zeros((5, 16, 16, 3), np.uint8), np.zeros((9, 16, 16, 3), np.uint8)])
    with pytest.raises(InputError, match=r"\(T, H, W\)"):
        video_tok.decode(torch.zeros(1, 2, 2, 2, dtype=torch.long), size=(16, 16))
    with pytest.raises(InputError, match=r"\(B, h, w\)"):
        image_tok.decode(torch.zeros(1, 2, 2, 2, dtype=torch.long))
    with pytest.raises(InputError, match="chunk_frames"):
        vqtok.Tokenizer(video_tok.model, video_tok.device, video_tok.dtype, chunk_frames=6)


def test_video_export_round_trip(video_model, tmp_path):
    loaded = load_export(save_export(video_model, tmp_path / "v"))
    assert loaded.config == video_model.config and loaded.config.video
    for (k, a), (k2, b) in zip(video_model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(temporal_downsample=3), "power of 2"),
        (dict(video=False, temporal_downsample=4), "needs video=true"),
        (dict(temporal_downsample=16), "resolution steps"),
    ],
)
def test_temporal_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        TokenizerConfig.from_name("video_tiny", **overrides)


def test_video_presets_are_4x8x8_and_4x16x16():
    for name, f in (("video_4x8x8", 8), ("video_4x16x16", 16), ("video_tiny", 8)):
        c = TokenizerConfig.from_name(name)
        assert c.video and c.temporal_downsample == 4 and c.downsample == f


def test_token_shape_is_the_grid_encode_gives_and_decode_video_file_writes_the_decoded_clip(tmp_path):
    """The one statement of the token geometry agrees with encode; decode_video_file writes decode's frames."""
    from vqtok.io.video import read_video

    tok = vqtok.load("video_tiny")
    video = torch.rand(1, 3, 6, 20, 27) * 2 - 1
    ids = tok.encode(video)
    assert tuple(ids.shape[1:]) == tok.token_shape((6, 20, 27)) == (3, 3, 4)  # 1 + ceil(5/4), ceil(20/8), ceil(27/8)
    assert tok.token_shape((20, 27)) == (3, 4)
    tok.check_grid(ids[0], (6, 20, 27))
    with pytest.raises(InputError, match=r"does not fit its size \(9, 20, 27\).* grid of \(3, 3, 4\)"):
        tok.check_grid(ids[0, :2], (9, 20, 27))
    path = tok.decode_video_file(ids[0], tmp_path / "clip.mp4", size=(6, 20, 27), fps=12.0)
    frames, _ = read_video(path)
    expected = vqtok.inputs.to_uint8(tok.decode(ids, size=(6, 20, 27))[0])  # (6, 20, 27, 3)
    assert frames.shape[0] == 6 and frames.shape[1:3] >= (20, 27)  # yuv420p pads odd sizes by one pixel
    assert np.abs(frames[:, :20, :27].astype(int) - expected).mean() < 6  # H.264 at crf 18
    with pytest.raises(InputError, match="one video's ids"):
        tok.decode_video_file(ids, tmp_path / "x.mp4")
