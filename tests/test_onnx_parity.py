"""The onnxruntime backend against the torch model, for every shipped tokenizer: ids on at least 99.9% of positions,
decoded pixels within 1e-3, at several sizes (odd ones padded by the facade), tiled and streamed in chunks."""

from pathlib import Path

import pytest
import torch

import vqtok
from vqtok.backends.onnx_export import export_onnx
from vqtok.errors import ExportError, InputError

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small calls: threads cost more than they give here

ID_AGREEMENT = 0.999  # the share of positions whose ids must match (a near-tie may go either way)
PIXEL_TOLERANCE = 1e-3  # max abs difference of decoded pixels in [-1, 1]

SHIPPED = [
    pytest.param("tiny", id="tiny"),
    pytest.param("video_tiny", id="video_tiny"),
    pytest.param("image", id="image", marks=pytest.mark.slow),
    pytest.param("video", id="video", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    """ONNX exports of the shipped tokenizers, written on first use."""
    root = tmp_path_factory.mktemp("onnx")
    made: dict[str, Path] = {}

    class Exports(dict):
        def __missing__(self, name: str) -> Path:
            made[name] = export_onnx(name, root / name)
            return made[name]

    return Exports()


def both(name: str, exports: dict[str, Path], **options) -> tuple[vqtok.Tokenizer, vqtok.Tokenizer]:
    return vqtok.load(name, **options), vqtok.load(exports[name], backend="onnx", **options)


def assert_parity(torch_tok: vqtok.Tokenizer, onnx_tok: vqtok.Tokenizer, x: torch.Tensor, size: tuple) -> None:
    ids, onnx_ids = torch_tok.encode(x), onnx_tok.encode(x)
    assert onnx_ids.shape == ids.shape and onnx_ids.dtype == torch.int64
    agreement = (ids == onnx_ids).float().mean().item()
    assert agreement >= ID_AGREEMENT, f"ids agree on {agreement:.5f} of positions"
    y, onnx_y = torch_tok.decode(ids, size=size), onnx_tok.decode(ids, size=size)  # the same ids into both
    assert onnx_y.shape == y.shape == x.shape
    assert (y - onnx_y).abs().max().item() <= PIXEL_TOLERANCE


def random_pixels(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape))) * 2 - 1


@pytest.mark.parametrize("name", SHIPPED)
def test_images_match_torch_at_several_sizes(name, exports):
    torch_tok, onnx_tok = both(name, exports)
    assert onnx_tok.fingerprints == torch_tok.fingerprints  # token files move freely between the backends
    for size in [(64, 64), (37, 53), (8, 130)]:  # odd sizes: padded by the facade, cropped back by decode
        assert_parity(torch_tok, onnx_tok, random_pixels(2, 3, *size), size)
    ids = torch_tok.encode(random_pixels(1, 3, 24, 24))
    torch.testing.assert_close(onnx_tok.codes(ids), torch_tok.codes(ids), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", SHIPPED)
def test_tiles_match_torch(name, exports):
    torch_tok, onnx_tok = both(name, exports, tile_size=128)
    x = random_pixels(1, 3, 136, 75)  # two overlapping tiles down, one across
    assert_parity(torch_tok, onnx_tok, x, tuple(x.shape[-2:]))


@pytest.mark.parametrize("name", [p for p in SHIPPED if "video" in p.id])
def test_videos_stream_like_torch(name, exports):
    """Several chunks (the first of 1 + 4 frames, then 4), the state carried between onnxruntime calls."""
    torch_tok, onnx_tok = both(name, exports, chunk_frames=4)
    for shape in [(1, 3, 1, 32, 32), (2, 3, 10, 21, 35)]:  # one frame; 10 frames padded to 13, cropped back
        assert_parity(torch_tok, onnx_tok, random_pixels(*shape), shape[2:])
    torch_tiles, onnx_tiles = both(name, exports, chunk_frames=4, tile_size=64)  # a stream per tile
    shape = (1, 3, 6, 72, 40)
    assert_parity(torch_tiles, onnx_tiles, random_pixels(*shape), shape[2:])


def test_token_files_move_between_backends(exports, tmp_path):
    from vqtok.token_file import TokenItem, load_tokens, save_tokens

    torch_tok, onnx_tok = both("tiny", exports)
    ids = onnx_tok.encode(random_pixels(1, 3, 32, 40))
    path = tmp_path / "t.safetensors"
    save_tokens(path, [TokenItem(ids[0], (32, 40), "x.png")], "tiny", onnx_tok.fingerprint, onnx_tok.codebook_size)
    _, items = load_tokens(path, fingerprint=torch_tok.fingerprints)
    assert torch.equal(items[0].ids, ids[0])
    assert vqtok.export_fingerprints(exports["tiny"]) == torch_tok.fingerprints  # the app matches files by these


def test_auto_backend_picks_onnx_for_an_onnx_export_and_torch_otherwise(exports):
    """backend="auto" (what the app uses): an export-onnx folder runs on onnxruntime, a torch export on torch."""
    from vqtok.backends.onnx_runtime import OnnxBackend

    auto_onnx, auto_torch = vqtok.load(exports["tiny"], backend="auto"), vqtok.load("tiny", backend="auto")
    assert isinstance(auto_onnx.backend, OnnxBackend) and auto_torch.model is not None
    x = random_pixels(1, 3, 24, 24)
    assert torch.equal(auto_onnx.encode(x), auto_torch.encode(x))


def test_clear_errors(exports, tmp_path):
    with pytest.raises(ExportError, match="export-onnx"):  # a torch export is not an ONNX export
        vqtok.load("tiny", backend="onnx")
    with pytest.raises(InputError, match="backend"):
        vqtok.load("tiny", backend="tensorrt")
    with pytest.raises(InputError, match="float32"):
        vqtok.load(exports["tiny"], backend="onnx", dtype=torch.bfloat16)
    with pytest.raises(InputError, match="torch model"):
        _ = vqtok.load(exports["tiny"], backend="onnx").model
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(ExportError, match="not an ONNX export"):
        export_onnx("tiny", tmp_path / "junk")  # never replaces a directory of something else
