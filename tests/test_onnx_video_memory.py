"""Video encoding in bounded memory (vqtok.backends.frame_pipeline): the encoder's levels run depth-first over each
chunk, a few frames at a time, and give bit for bit what one pass over the chunk gave before (same ids)."""

import pytest
import torch

import vqtok
from vqtok.backends.frame_pipeline import can_pipeline, encode_levels_in_pieces
from vqtok.config import TokenizerConfig
from vqtok.export import save_export
from vqtok.model.causal import CausalConv3d, streaming
from vqtok.model.vqvae import VQVAE
from vqtok.temporal import frame_chunks, latent_chunks

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def one_pass_per_chunk(tok: vqtok.Tokenizer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The path before: Encoder.forward over each whole chunk of the stream -> (features, ids)."""
    model = tok.model
    features, ids = [], []
    with torch.inference_mode(), streaming(model.encoder):
        for chunk in frame_chunks([x], tok.chunk_frames, tok.temporal_downsample):
            z = model.encoder(chunk)
            features.append(z)
            ids.append(model.quantizer(model.quant_conv(z)).ids)
    return torch.cat(features, dim=2), torch.cat(ids, dim=1)


def in_pieces(tok: vqtok.Tokenizer, x: torch.Tensor) -> torch.Tensor:
    model = tok.model
    with torch.inference_mode(), streaming(model.encoder):
        assert can_pipeline(model.encoder)
        chunks = frame_chunks([x], tok.chunk_frames, tok.temporal_downsample)
        return torch.cat([encode_levels_in_pieces(model.encoder, chunk) for chunk in chunks], dim=2)


def pixels(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape))) * 2 - 1


@pytest.mark.parametrize("chunk_frames", [4, 8])
@pytest.mark.parametrize("frames", [1, 6, 17])
def test_pieces_give_the_same_features_and_ids_bit_for_bit(video_tok, chunk_frames, frames):
    tok = vqtok.Tokenizer(video_tok.model, video_tok.device, video_tok.dtype, chunk_frames=chunk_frames)
    x = pixels(2, 3, frames, 24, 40)
    features, ids = one_pass_per_chunk(tok, x)
    assert torch.equal(in_pieces(tok, x), features)  # exact: the same conv calls on the same values
    assert torch.equal(tok.encode(x), ids)  # the facade takes this path for every chunk


def test_same_ids_for_the_shipped_video_tokenizer_and_with_tiles(tmp_path, monkeypatch):
    """The 720p model's layout (wider, no attention), and a stream per tile."""
    tok = vqtok.load("video", chunk_frames=4)
    x = pixels(1, 3, 9, 32, 48)
    assert torch.equal(tok.encode(x), one_pass_per_chunk(tok, x)[1])
    torch.manual_seed(0)
    tiled = vqtok.load(save_export(VQVAE(TokenizerConfig.from_name("video_tiny")).eval(), tmp_path / "m"), tile_size=64)
    x = pixels(1, 3, 7, 72, 80)
    in_pieces_ids = tiled.encode(x)
    monkeypatch.setattr("vqtok.backends.torch_model.can_pipeline", lambda encoder: False)  # the path before
    assert torch.equal(tiled.encode(x), in_pieces_ids)


def one_decoder_pass_per_chunk(tok: vqtok.Tokenizer, ids: torch.Tensor) -> torch.Tensor:
    """The decoding path before: VQVAE.decode_ids over each whole latent chunk of the stream -> pixels."""
    model, r = tok.model, tok.temporal_downsample
    with torch.inference_mode(), streaming(model.decoder):
        parts = latent_chunks(ids.shape[1], tok.chunk_frames // r)
        return torch.cat([model.decode_ids(ids[:, part]) for part in parts], dim=2)


@pytest.mark.parametrize("name", ["video_tiny", "video"])
def test_decoding_in_pieces_gives_the_same_pixels_bit_for_bit(video_tok, name):
    tok = video_tok if name == "video_tiny" else vqtok.load("video", chunk_frames=4)
    ids = torch.randint(0, tok.codebook_size, (2, 5, 3, 4), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode(), streaming(tok.model.decoder):
        assert can_pipeline(tok.model.decoder)
    assert not can_pipeline(tok.model.decoder)  # outside a stream the decoder runs whole
    before = one_decoder_pass_per_chunk(tok, ids)
    assert before.shape[2] == 1 + tok.temporal_downsample * 4
    assert torch.equal(tok.decode(ids), before.clamp(-1, 1))  # the facade streams in pieces


@pytest.mark.parametrize(
    ("stride", "padding"), [((1, 1, 1), None), ((2, 2, 2), (0, 1, 0, 1)), ((1, 2, 2), (0, 1, 0, 1))]
)
def test_inference_one_frame_per_call_and_in_place_cache_match_one_conv(stride, padding):
    """The inference path (one output frame per conv call, uneven padding written once into a padded buffer, the
    stream's cache updated in place) against the training path (one conv over the concatenated frames): the same
    values up to float rounding, chunk after chunk of a stream."""
    torch.manual_seed(0)
    conv = CausalConv3d(6, 5, 3, stride=stride, spatial_padding=padding)
    x = torch.randn(1, 6, 9, 10, 12)  # 1 + 8 frames: a first chunk of 1 + 4 and a second of 4
    outs = {}
    for grad in (True, False):
        with torch.set_grad_enabled(grad), streaming(conv):
            outs[grad] = torch.cat([conv(x[:, :, :5]), conv(x[:, :, 5:])], dim=2).detach()
    assert outs[True].shape == outs[False].shape
    torch.testing.assert_close(outs[False], outs[True], rtol=0, atol=1e-6)
