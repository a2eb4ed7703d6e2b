"""The public API: export -> load identity, every accepted input type, clear errors on bad input."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import vqtok
from vqtok.config import TokenizerConfig
from vqtok.export import export_fingerprints, load_export, resolve_export, save_export
from vqtok.model.vqvae import VQVAE

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model() -> VQVAE:
    torch.manual_seed(0)
    return VQVAE(TokenizerConfig.from_name("tiny")).eval()


@pytest.fixture(scope="module")
def export_dir(model, tmp_path_factory) -> Path:
    return save_export(model, tmp_path_factory.mktemp("export") / "tiny")


@pytest.fixture(scope="module")
def tok(export_dir):
    return vqtok.load(export_dir)


def random_image(h: int = 32, w: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_export_files_and_halves(export_dir):
    names = sorted(p.name for p in export_dir.iterdir())
    assert names == ["README.md", "config.json", "decoder.safetensors", "encoder.safetensors"]  # README: model card
    enc, dec = load_file(export_dir / "encoder.safetensors"), load_file(export_dir / "decoder.safetensors")
    assert "quantizer.embed" in enc and "quantizer.embed" in dec  # each half carries the codebook
    assert not any(k.startswith("decoder.") for k in enc) and not any(k.startswith("encoder.") for k in dec)
    assert TokenizerConfig.from_file(export_dir / "config.json") == TokenizerConfig.from_name("tiny")


def test_export_then_load_gives_identical_ids_and_outputs(model, tok):
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        q = model.encode(x)
        y_direct = model.decode_ids(q.ids).clamp(-1, 1)
    ids = tok.encode(x)
    assert ids.dtype == torch.long and ids.shape == (2, 4, 6)
    assert torch.equal(ids, q.ids)
    assert torch.equal(tok.decode(ids), y_direct)
    assert torch.allclose(tok.codes(ids), q.z_q, atol=1e-6)  # z_q = z + (e - z): equal up to rounding
    assert tok.codebook_size == 512 and tok.downsample == 8


def test_every_input_type_gives_the_same_ids(tok, tmp_path):
    a = random_image()
    want = tok.encode(torch.from_numpy(a).permute(2, 0, 1)[None].float() / 127.5 - 1)
    Image.fromarray(a).save(tmp_path / "img.png")
    assert torch.equal(tok.encode(a), want)  # uint8 (H, W, 3)
    assert torch.equal(tok.encode(a[None]), want)  # uint8 (B, H, W, 3)
    assert torch.equal(tok.encode(Image.fromarray(a)), want)  # PIL
    assert torch.equal(tok.encode(tmp_path / "img.png"), want)  # path
    assert torch.equal(tok.encode(str(tmp_path / "img.png")), want)  # str path
    both = tok.encode([Image.fromarray(a), a])  # list of mixed items
    assert torch.equal(both, torch.cat([want, want]))


def test_uint8_tensors_are_pixels_in_0_255(tok):
    a = np.stack([random_image(seed=0), random_image(seed=1)])  # (2, H, W, 3) uint8
    want = tok.encode(a)
    x = torch.from_numpy(a).permute(0, 3, 1, 2)  # (2, 3, H, W) uint8, as torchvision.io.read_image stacks them
    assert torch.equal(tok.encode(x), want)
    assert torch.equal(tok.encode(x[1]), want[1:])  # one image (3, H, W)
    assert torch.equal(tok.encode([x[0], x[1:]]), want)
    assert torch.equal(tok.encode(x.float() / 127.5 - 1), want)


def test_float_pixels_in_0_1_warn_once_and_keep_their_ids(tok):
    vqtok.inputs._warn_unit_range.cache_clear()  # once per process: start as a fresh one
    x01 = torch.rand(1, 3, 16, 16)  # [0, 1], what torchvision's ToTensor gives
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tok.encode(torch.rand(1, 3, 16, 16) * 2 - 1)  # [-1, 1]: no warning
        tok.encode(torch.zeros(1, 3, 16, 16))  # mid-grey: no warning
        assert not caught
        ids = tok.encode(x01)
        tok.encode([x01])
        tok.encode(x01.clamp(0.1, 1))
    assert len(caught) == 1 and caught[0].category is UserWarning
    message = str(caught[0].message)
    assert "[-1, 1]" in message and "x * 2 - 1" in message
    assert caught[0].filename == __file__  # it names the caller's line, not vqtok's
    assert torch.equal(ids, tok.model.encode(x01).ids)  # the result is not changed


def test_any_size_is_padded_and_cropped_back(tok):
    x = torch.rand(1, 3, 37, 45) * 2 - 1
    ids = tok.encode(x)
    assert ids.shape == (1, 5, 6)  # ceil(37/8), ceil(45/8)
    assert tok.decode(ids).shape == (1, 3, 40, 48)
    y = tok.decode(ids, size=(37, 45))
    assert y.shape == (1, 3, 37, 45) and y.min() >= -1 and y.max() <= 1


def test_reduced_precision_keeps_fp32_lookup(export_dir, tok):
    tok16 = vqtok.load(export_dir, dtype=torch.bfloat16)
    assert tok16.model.quantizer.embed.dtype == torch.float32
    assert tok16.model.encoder.conv_in.weight.dtype == torch.bfloat16
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    ids16 = tok16.encode(x)
    assert (ids16 == tok.encode(x)).float().mean() > 0.8
    assert tok16.decode(ids16).dtype == torch.float32


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.zeros(3, 32, 32), "x[None]"),
        (torch.zeros(1, 5, 32, 32), "(B, 3, H, W)"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.int16), "floating point in [-1, 1] or uint8 in [0, 255]"),
        (torch.zeros(32, 32, 3, dtype=torch.uint8), "channels go first: x.movedim(-1, -3)"),
        (torch.full((1, 3, 8, 8), 200.0), "[-1, 1]"),
        (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
        (torch.zeros(0, 3, 8, 8), "empty"),
        (np.zeros((8, 8, 3), dtype=np.float32), "uint8"),
        (np.zeros((8, 8), dtype=np.uint8), "(H, W, 3)"),
        ([], "empty list"),
        ([np.zeros((8, 8, 3), np.uint8), np.zeros((16, 8, 3), np.uint8)], "share a size"),
    ],
)
def test_bad_images_get_clear_errors(tok, bad, message):
    with pytest.raises(vqtok.InputError) as e:
        tok.encode(bad)
    assert message in str(e.value)


def test_unsupported_type_is_a_type_error(tok):
    with pytest.raises(vqtok.InputTypeError, match="cannot encode a dict"):
        tok.encode({"x": 1})


def test_corrupt_or_missing_image_file(tok, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(vqtok.FileFormatError, match="bad.png"):
        tok.encode(tmp_path / "bad.png")
    with pytest.raises(vqtok.FileFormatError, match="missing.png"):
        tok.encode(tmp_path / "missing.png")


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (torch.full((1, 4, 4), 512), "[0, 512)"),
        (torch.full((1, 4, 4), -1), "[0, 512)"),
        (torch.zeros(1, 4, 4), "integer dtype"),
        (torch.zeros(4, 4, dtype=torch.long), "(B, h, w)"),
        (torch.zeros(1, 0, 4, dtype=torch.long), "empty"),
    ],
)
def test_bad_ids_get_clear_errors(tok, ids, message):
    with pytest.raises(vqtok.InputError) as e:
        tok.decode(ids)
    assert message in str(e.value)
    with pytest.raises(vqtok.InputError):
        tok.codes(ids)


def test_not_an_export(tmp_path):
    with pytest.raises(vqtok.ExportError, match="not a directory"):
        vqtok.load(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(vqtok.ExportError, match="missing config.json"):
        vqtok.load(tmp_path / "empty")


def _copy_export(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_export_whose_tensors_do_not_match_config(export_dir, tmp_path):
    bad = _copy_export(export_dir, tmp_path / "bad")
    cfg = json.loads((bad / "config.json").read_text())
    cfg["num_codes"] = 1024
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(vqtok.ExportError, match="quantizer.embed: file \\(512, 8\\) vs config \\(1024, 8\\)"):
        vqtok.load(bad)


def test_export_with_missing_or_nonfinite_tensors(export_dir, tmp_path):
    bad = _copy_export(export_dir, tmp_path / "bad")
    dec = load_file(bad / "decoder.safetensors")
    dec.pop("decoder.conv_out.bias")
    dec["decoder.conv_in.weight"][0, 0, 0, 0] = float("inf")
    save_file(dec, bad / "decoder.safetensors")
    with pytest.raises(vqtok.ExportError) as e:
        load_export(bad)
    assert "missing tensors decoder.conv_out.bias" in str(e.value)
    assert "non-finite values in decoder.conv_in.weight" in str(e.value)


def test_export_halves_from_different_models(export_dir, tmp_path):
    bad = _copy_export(export_dir, tmp_path / "bad")
    dec = load_file(bad / "decoder.safetensors")
    dec["quantizer.embed"] = torch.randn_like(dec["quantizer.embed"])
    save_file(dec, bad / "decoder.safetensors")
    with pytest.raises(vqtok.ExportError, match="disagree on \\['quantizer.embed'\\]"):
        vqtok.load(bad)


def test_export_replaces_an_earlier_export_atomically(model, tmp_path):
    out = tmp_path / "exp"
    save_export(model, out)
    save_export(model, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]  # no temp or backup folders left
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(vqtok.ExportError, match="not a vqtok export"):
        save_export(model, tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_shared_api_contract_check_passes(export_dir):
    check = ROOT.parent / "shared" / "checks" / "api_contract.py"
    if not check.exists():
        pytest.skip("shared/checks/api_contract.py is not beside this checkout")
    r = subprocess.run([sys.executable, str(check), str(export_dir)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok:")


def test_bad_decode_size_device_and_numpy_ids(export_dir, tok):
    ids = torch.zeros(1, 2, 2, dtype=torch.long)
    for size in (16, (0, 8), (17, 8), (8.0, 8)):
        with pytest.raises(vqtok.InputError, match="size must be"):
            tok.decode(ids, size=size)
    with pytest.raises(vqtok.InputError, match="device 'gpu' cannot be used"):
        vqtok.load(export_dir, device="gpu")
    with pytest.raises(vqtok.InputError, match="integer dtype"):
        tok.decode(np.array([[["a"]]], dtype=object))
    assert tok.decode(np.zeros((1, 2, 2), dtype=np.int32)).shape == (1, 3, 16, 16)


def test_export_config_with_wrong_types(export_dir, tmp_path):
    bad = _copy_export(export_dir, tmp_path / "bad")
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "num_codes": 512.0}))
    with pytest.raises(vqtok.ExportError, match="num_codes must be of type int"):
        vqtok.load(bad)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(vqtok.ExportError, match="not valid JSON"):
        vqtok.load(bad)


def test_export_onto_a_file_is_refused(model, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(vqtok.ExportError, match="not a directory"):
        save_export(model, tmp_path / "file")


def test_export_has_ordinary_permissions(model, tmp_path):
    out = save_export(model, tmp_path / "perm")
    assert out.stat().st_mode & 0o777 == 0o777 & ~_umask()
    assert (out / "config.json").stat().st_mode & 0o044 == 0o044  # readable by others, like any written file


def _umask() -> int:
    import os

    m = os.umask(0)
    os.umask(m)
    return m


def test_float16_export_halves_the_files_and_keeps_the_codebook_exact(model, export_dir, tmp_path):
    half = save_export(model, tmp_path / "half", dtype=torch.float16)
    enc = load_file(half / "encoder.safetensors")
    assert enc["quantizer.embed"].dtype == torch.float32  # ids and the fingerprint do not depend on the storage
    assert enc["encoder.conv_in.weight"].dtype == torch.float16
    sizes = [sum(f.stat().st_size for f in d.glob("*.safetensors")) for d in (export_dir, half)]
    assert sizes[1] < 0.55 * sizes[0]
    tok16, tok32 = vqtok.load(half), vqtok.load(export_dir)
    assert all(p.dtype == torch.float32 for p in tok16.model.parameters())  # loaded as float32
    assert tok16.fingerprint == tok32.fingerprint
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    ids16, ids32 = tok16.encode(x), tok32.encode(x)
    assert (ids16 == ids32).float().mean() > 0.95
    p16, p32 = vqtok.metrics.psnr(tok16.decode(ids16), x), vqtok.metrics.psnr(tok32.decode(ids32), x)
    assert (p16 - p32).abs().max() < 0.05
    with pytest.raises(vqtok.ExportError, match="dtype"):
        save_export(model, tmp_path / "int", dtype=torch.int8)


def test_export_with_integer_weights_is_refused(export_dir, tmp_path):
    bad = tmp_path / "int_weights"
    bad.mkdir()
    for f in export_dir.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    dec = load_file(bad / "decoder.safetensors")
    dec["decoder.conv_out.weight"] = dec["decoder.conv_out.weight"].to(torch.int32)
    save_file(dec, bad / "decoder.safetensors")
    with pytest.raises(vqtok.ExportError, match="wrong kind.*decoder.conv_out.weight"):
        vqtok.load(bad)


def test_an_exports_fingerprint_is_read_without_building_the_model(export_dir):
    assert export_fingerprints(export_dir) == vqtok.load(export_dir).fingerprints
    for name in ("image", "video"):
        assert export_fingerprints(resolve_export(name)) == vqtok.load(name).fingerprints
