"""FSQ and LFQ tokenizers through everything a VQ tokenizer goes through: export, load, the fingerprint, token
files, token stores and the app's model registry; and the config split that keeps fingerprints stable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from store_files import run_tokenize, write_images

import vqtok
from vqtok.cli.main import main
from vqtok.config import TokenizerConfig
from vqtok.export import export_fingerprints, save_export
from vqtok.model.vqvae import VQVAE
from vqtok.store import TokenStore
from vqtok.token_file import load_tokens

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MICRO = dict(base_channels=8, channel_mults=[1, 2], num_res_blocks=1, attention=False, z_channels=8, norm_groups=4)
KINDS = {
    "vq": dict(quantizer="vq", num_codes=64, code_dim=4),
    "fsq": dict(quantizer="fsq", levels=[8, 8, 8, 5, 5, 5], code_dim=6),  # Cosmos' 64000 codes
    "lfq": dict(quantizer="lfq", code_dim=18),  # Open-MAGVIT2's 2^18 codes: ids need int32
}


def export(folder: Path, kind: str, dtype: torch.dtype = torch.float32, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config = TokenizerConfig(name=f"micro_{kind}", **MICRO, **KINDS[kind])
    return save_export(VQVAE(config).eval(), folder / f"{kind}_{seed}_{str(dtype)[6:]}", dtype=dtype)


@pytest.mark.parametrize("kind", KINDS)
def test_an_export_round_trips_and_its_token_files_hold_its_ids(kind, tmp_path):
    path = export(tmp_path, kind)
    tok = vqtok.load(path)
    assert tok.codebook_size == TokenizerConfig(**MICRO, **KINDS[kind]).codebook_size
    x = torch.rand(2, 3, 12, 20) * 2 - 1
    ids = tok.encode(x)
    assert ids.shape == (2, 6, 10) and int(ids.min()) >= 0 and int(ids.max()) < tok.codebook_size
    assert tok.decode(ids, size=(12, 20)).shape == (2, 3, 12, 20)
    torch.testing.assert_close(tok.codes(ids), tok.model.encode(x).z_q, rtol=0, atol=1e-6)  # ids -> codes

    images = write_images(tmp_path / "images", 3, [(12, 20)])
    tokens = tmp_path / "tokens.safetensors"
    assert main(["encode", *map(str, images), "--model", str(path), "--out", str(tokens)]) == 0
    meta, items = load_tokens(tokens, tok.fingerprints)
    assert int(meta["codebook_size"]) == tok.codebook_size  # the id range
    with safe_open(str(tokens), "pt") as f:
        stored = f.get_tensor("ids.0").dtype
    assert stored == (torch.int32 if tok.codebook_size > 2**15 else torch.int16)  # LFQ-18's ids need int32
    for item, image in zip(items, images, strict=True):
        assert torch.equal(item.ids, tok.encode(image)[0])


@pytest.mark.parametrize("kind", ["fsq", "lfq"])
def test_vqtok_tokenize_and_the_app_take_an_fsq_or_lfq_export(kind, tmp_path):
    path = export(tmp_path, kind)
    images = write_images(tmp_path / "data", 4, [(16, 16), (8, 24)])
    done = run_tokenize(str(tmp_path / "data"), "--model", str(path), "--out", str(tmp_path / "store"))
    assert done.returncode == 0, done.stderr[-2000:]
    store, tok = TokenStore(tmp_path / "store"), vqtok.load(path)
    assert store.meta.num_codes == tok.codebook_size and store.meta.model_fingerprint == tok.fingerprint
    for image in images:
        assert torch.equal(store[str(image)].ids, tok.encode(image)[0])

    from app.models import ModelRegistry

    registry = ModelRegistry.discover(folders=[tmp_path])
    assert registry.by_fingerprint(tok.fingerprint) == path.name
    assert registry.get(path.name).codebook_size == tok.codebook_size


@pytest.mark.parametrize("kind", KINDS)
def test_the_fingerprint_ignores_the_name_the_storage_dtype_and_training_options(kind, tmp_path):
    path = export(tmp_path, kind)
    original = vqtok.load(path).fingerprint
    renamed = tmp_path / "renamed"
    shutil.copytree(path, renamed)
    config = json.loads((renamed / "config.json").read_text())
    (renamed / "config.json").write_text(json.dumps({**config, "name": "someone else's name"}))
    assert vqtok.load(renamed).fingerprint == original == export_fingerprints(renamed)[0]
    assert vqtok.load(export(tmp_path, kind, torch.float16)).fingerprint == original  # float16 weights
    assert vqtok.load(path, dtype=torch.bfloat16).fingerprint == original  # bf16 convolutions
    assert vqtok.load(export(tmp_path, kind, seed=1)).fingerprint != original  # another model of the same layout


def test_gradient_checkpointing_and_quantizer_training_options_stay_out_of_the_export(tmp_path):
    config = TokenizerConfig(name="micro", **MICRO, **KINDS["vq"])
    torch.manual_seed(0)
    plain = save_export(VQVAE(config), tmp_path / "plain")
    torch.manual_seed(0)
    from vqtok.config import QuantizerTraining

    other = save_export(
        VQVAE(config, QuantizerTraining(codebook="learned", ema_decay=0.5), gradient_checkpointing=True),
        tmp_path / "other",
    )
    assert (plain / "config.json").read_text() == (other / "config.json").read_text()
    assert "gradient_checkpointing" not in json.loads((plain / "config.json").read_text())
    assert vqtok.load(plain).fingerprint == vqtok.load(other).fingerprint


def test_an_export_and_token_file_from_before_the_config_split_keep_loading():
    # Written by vqtok 0.1 (commit bc5e4b7): config.json with training options, float16 weights, and a token file
    # of legacy_image.png encoded by that version, carrying its fingerprint.
    old = FIXTURES / "legacy_export"
    assert "gradient_checkpointing" in json.loads((old / "config.json").read_text())
    tok = vqtok.load(old)
    assert tok.fingerprints[1] == "9142efbdacd9e97b"  # what vqtok 0.1 printed for this export
    meta, items = load_tokens(FIXTURES / "legacy_tokens.safetensors", tok.fingerprints)
    assert meta["model_fingerprint"] == "9142efbdacd9e97b"
    assert torch.equal(items[0].ids, tok.encode(FIXTURES / "legacy_image.png")[0])  # the same ids as then
    assert items[0].ids.tolist()[0] == [6, 5, 2, 9, 5, 9, 4, 6, 4, 7]  # as vqtok 0.1 encoded them
    assert export_fingerprints(old) == tok.fingerprints
    with pytest.raises(vqtok.FileFormatError, match="not by the model loaded here"):
        load_tokens(FIXTURES / "legacy_tokens.safetensors", vqtok.load("tiny").fingerprints)
