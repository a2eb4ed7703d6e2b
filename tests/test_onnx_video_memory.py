"""Video encoding in bounded memory (vqtok.backends.frame_pipeline): the encoder's levels run depth-first over each
chunk, a few frames at a time, and give bit for bit what one pass over the chunk gave before (same ids)."""

import pytest
import torch

import vqtok
from vqtok.backends.frame_pipeline import can_pipeline, encode_levels_in_pieces
from vqtok.config import TokenizerConfig
from vqtok.export import save_export
from vqtok.model.causal import streaming
from vqtok.model.vqvae import VQVAE
from vqtok.temporal import frame_chunks

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
