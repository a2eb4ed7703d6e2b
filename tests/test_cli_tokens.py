"""`vqtok encode` / `vqtok decode` on real image files."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import vqtok
from vqtok.cli.main import main
from vqtok.config import TokenizerConfig
from vqtok.export import resolve_export, save_export
from vqtok.model.vqvae import VQVAE
from vqtok.token_file import TokenItem, load_tokens, save_tokens


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_export(VQVAE(TokenizerConfig.from_name("tiny")).eval(), tmp_path_factory.mktemp("m") / "tiny")


def write_images(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = [folder / "a.png", folder / "b.jpg"]
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(paths[0])
    Image.fromarray(rng.integers(0, 256, (24, 64, 3), dtype=np.uint8)).save(paths[1])
    return paths


def test_encode_then_decode_round_trip(export_dir, tmp_path):
    paths = write_images(tmp_path)
    out = tmp_path / "tokens.safetensors"
    assert main(["encode", *map(str, paths), "--model", str(export_dir), "--out", str(out)]) == 0
    with safe_open(str(out), framework="pt") as f:
        assert f.get_tensor("ids.0").dtype == torch.int16  # 512 codes fit in int16
        assert f.metadata()["model"] == "tiny"
    tok = vqtok.load(export_dir)
    _, items = load_tokens(out, fingerprint=tok.fingerprint)
    assert [it.size for it in items] == [(40, 30), (24, 64)]
    assert torch.equal(items[0].ids, tok.encode(paths[0])[0])

    assert main(["decode", str(out), "--model", str(export_dir), "--out", str(tmp_path / "dec")]) == 0
    sizes = {p.name: Image.open(p).size for p in (tmp_path / "dec").iterdir()}
    assert sizes == {"a.png": (30, 40), "b.png": (64, 24)}  # PIL sizes are (W, H)


def test_decode_never_writes_outside_the_output_folder(export_dir, tmp_path):
    tok = vqtok.load(export_dir)
    ids = torch.zeros(2, 2, dtype=torch.long)
    items = [
        TokenItem(ids, (16, 16), "../../escape.png"),
        TokenItem(ids, (16, 16), "/etc/passwd"),
        TokenItem(ids, (16, 16), ".."),
    ]
    save_tokens(tmp_path / "t.safetensors", items, "tiny", tok.fingerprint, tok.codebook_size)
    out = tmp_path / "deep" / "out"
    assert main(["decode", str(tmp_path / "t.safetensors"), "--model", str(export_dir), "--out", str(out)]) == 0
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.png"))
    assert written == sorted(Path("deep/out") / n for n in ["escape.png", "passwd.png", "image_2.png"])


def test_token_file_from_another_model_is_refused(export_dir, tmp_path, capsys):
    other = save_export(VQVAE(TokenizerConfig.from_name("tiny")).eval(), tmp_path / "other")
    paths = write_images(tmp_path)
    out = tmp_path / "tokens.safetensors"
    assert main(["encode", str(paths[0]), "--model", str(other), "--out", str(out)]) == 0
    assert main(["decode", str(out), "--model", str(export_dir), "--out", str(tmp_path / "dec")]) == 2
    assert "decode it with the model that encoded it" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, b"\x08\x00\x00\x00\x00\x00\x00\x00{}"])
def test_malformed_token_file(export_dir, tmp_path, capsys, content):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(content)
    assert main(["decode", str(bad), "--model", str(export_dir), "--out", str(tmp_path / "dec")]) == 2
    assert "bad.safetensors" in capsys.readouterr().err


def test_encode_reports_an_unreadable_image(export_dir, tmp_path, capsys):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    args = ["encode", str(tmp_path / "broken.jpg"), "--model", str(export_dir), "--out", str(tmp_path / "t.st")]
    assert main(args) == 2
    assert "broken.jpg" in capsys.readouterr().err
    assert not (tmp_path / "t.st").exists()


def test_decoded_names_never_collide(export_dir, tmp_path):
    tok = vqtok.load(export_dir)
    ids = torch.zeros(2, 2, dtype=torch.long)
    sources = ["x_1.png", "x.png", "x.png", "dir/x.jpg"]
    items = [TokenItem(ids, (16, 16), s) for s in sources]
    save_tokens(tmp_path / "t.safetensors", items, "tiny", tok.fingerprint, tok.codebook_size)
    assert (
        main(["decode", str(tmp_path / "t.safetensors"), "--model", str(export_dir), "--out", str(tmp_path / "o")]) == 0
    )
    assert len(list((tmp_path / "o").iterdir())) == 4


@pytest.mark.parametrize(
    "items", ['"5"', "[1]", '[{"size": [16], "source": "a"}]', '[{"size": [0, 4], "source": "a"}]']
)
def test_token_file_with_bad_item_metadata(export_dir, tmp_path, capsys, items):
    from safetensors.torch import save_file

    tok = vqtok.load(export_dir)
    meta = {"format": "vqtok-tokens-1", "model": "tiny", "model_fingerprint": tok.fingerprint, "items": items}
    save_file({"ids.0": torch.zeros(2, 2, dtype=torch.int16)}, str(tmp_path / "t.safetensors"), metadata=meta)
    assert (
        main(["decode", str(tmp_path / "t.safetensors"), "--model", str(export_dir), "--out", str(tmp_path / "o")]) == 2
    )
    assert "not a readable vqtok token file" in capsys.readouterr().err


def test_unwritable_outputs_are_clear_errors(export_dir, tmp_path, capsys):
    paths = write_images(tmp_path)
    (tmp_path / "adir").mkdir()
    assert main(["encode", str(paths[0]), "--model", str(export_dir), "--out", str(tmp_path / "adir")]) == 2
    assert "adir" in capsys.readouterr().err
    out = tmp_path / "t.safetensors"
    assert main(["encode", str(paths[0]), "--model", str(export_dir), "--out", str(out)]) == 0
    (tmp_path / "afile").write_text("x")
    assert main(["decode", str(out), "--model", str(export_dir), "--out", str(tmp_path / "afile")]) == 2
    assert "afile" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("ids", "size", "message"),
    [
        (torch.full((2, 2), 600), (16, 16), "ids must lie in [0, 512)"),
        (
            torch.zeros(2, 2),
            (17, 16),
            "its grid of ids (2, 2) does not fit its size (17, 16): 'tiny' gives that size a grid of (3, 2)",
        ),
        (torch.zeros(2, 2), (8, 16), "its grid of ids (2, 2) does not fit its size (8, 16)"),
        (torch.zeros(2, 2, 2), (5, 16, 16), "it holds a video's ids (2, 2, 2), and 'tiny' is an image tokenizer"),
    ],
)
def test_an_item_that_cannot_be_decoded_is_named_with_its_file(export_dir, tmp_path, capsys, ids, size, message):
    tok = vqtok.load(export_dir)
    items = [TokenItem(torch.zeros(2, 2, dtype=torch.long), (16, 16), "fine.png"), TokenItem(ids, size, "bad.png")]
    save_tokens(tmp_path / "t.safetensors", items, "tiny", tok.fingerprint, 1024)
    assert main(["decode", str(tmp_path / "t.safetensors"), "--model", str(export_dir), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vqtok decode: error: {tmp_path / 't.safetensors'}: item 1 ('bad.png') cannot be decoded: ")
    assert message in err


def test_decode_without_model_uses_the_model_the_file_records(tmp_path, capsys, monkeypatch):
    paths = write_images(tmp_path)
    out = tmp_path / "tokens.safetensors"
    assert main(["encode", *map(str, paths), "--model", "tiny", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["decode", str(out), "--out", str(tmp_path / "recorded")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"vqtok decode: using model 'tiny' ({resolve_export('tiny')}) recorded in {out}"]
    assert main(["decode", str(out), "--model", "tiny", "--out", str(tmp_path / "given")]) == 0
    for name in ("a.png", "b.png"):
        assert (tmp_path / "recorded" / name).read_bytes() == (tmp_path / "given" / name).read_bytes()

    # a recorded name that is an export folder in the working directory
    torch.manual_seed(1)
    save_export(VQVAE(dataclasses.replace(TokenizerConfig.from_name("tiny"), name="mine")).eval(), tmp_path / "mine")
    monkeypatch.chdir(tmp_path)
    assert main(["encode", "a.png", "--model", "mine", "--out", "mine.safetensors"]) == 0
    capsys.readouterr()
    assert main(["decode", "mine.safetensors", "--out", "mine_decoded"]) == 0
    assert "vqtok decode: using model 'mine' (mine) recorded in mine.safetensors" in capsys.readouterr().err
    assert (tmp_path / "mine_decoded" / "a.png").is_file()


def test_decode_without_model_refuses_a_recorded_model_that_is_missing_or_another(export_dir, tmp_path, capsys):
    paths = write_images(tmp_path)
    out = tmp_path / "tokens.safetensors"
    # export_dir is a random-weight model named 'tiny': the shipped 'tiny' is another model
    assert main(["encode", str(paths[0]), "--model", str(export_dir), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["decode", str(out), "--out", str(tmp_path / "dec")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"vqtok decode: error: {out} was made by model 'tiny' (")
    assert f"the export 'tiny' found here, {resolve_export('tiny')}, is another model" in err[0]
    assert err[0].endswith("pass --model with the export that made it")

    tok = vqtok.load(export_dir)
    gone = tmp_path / "gone.safetensors"
    items = [TokenItem(torch.zeros(2, 2, dtype=torch.long), (16, 16), "x.png")]
    save_tokens(gone, items, "no_such_model", tok.fingerprint, tok.codebook_size)
    assert main(["decode", str(gone), "--out", str(tmp_path / "dec")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"vqtok decode: error: {gone} was made by model 'no_such_model' (")
    assert "which is not found here" in err[0] and err[0].endswith("pass --model with the export that made it")
    assert not (tmp_path / "dec").exists()
    assert main(["decode", str(gone), "--model", str(export_dir), "--out", str(tmp_path / "dec")]) == 0


def test_max_pixels_flag_of_encode_and_decode(tmp_path, capsys):
    paths = write_images(tmp_path)  # a.png: 40 x 30 = 1200 pixels
    out = tmp_path / "tokens.safetensors"
    assert main(["encode", str(paths[0]), "--model", "tiny", "--out", str(out), "--max-pixels", "1000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vqtok encode: error: ") and "1200 pixels" in err[0]
    assert err[0].endswith("pass a larger --max-pixels (0: no limit)") and not out.exists()
    assert main(["encode", str(paths[0]), "--model", "tiny", "--out", str(out), "--max-pixels", "1200"]) == 0
    assert main(["encode", str(paths[0]), "--model", "tiny", "--out", str(out), "--max-pixels", "0"]) == 0

    # decoding: the 5 x 4 grid decodes to more than 1000 pixels (15 ids per grid)
    assert main(["decode", str(out), "--model", "tiny", "--out", str(tmp_path / "dec"), "--max-pixels", "1000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vqtok decode: error: ") and "--max-pixels" in err[0]
    assert main(["decode", str(out), "--model", "tiny", "--out", str(tmp_path / "dec"), "--max-pixels", "1280"]) == 0

    with pytest.raises(SystemExit):
        main(["encode", str(paths[0]), "--model", "tiny", "--out", str(out), "--max-pixels", "-1"])


def test_tiled_and_chunked_work_reports_progress_per_model_call(tmp_path):
    calls: list[int] = []
    tok = vqtok.load("tiny", tile_size=64, progress=calls.append)
    ids = tok.encode(torch.rand(1, 3, 100, 150) * 2 - 1)  # 2 x 3 tiles of 64 px
    assert len(calls) == 6 and all(n == 64 * 64 for n in calls)
    calls.clear()
    tok.decode(ids)
    assert len(calls) == 6
    video = vqtok.load("video_tiny", chunk_frames=4, progress=calls.append)
    calls.clear()
    video.encode(torch.rand(1, 3, 9, 32, 32) * 2 - 1)  # chunks of 1 + 4, then 4 frames
    assert calls == [5 * 32 * 32, 4 * 32 * 32]


def test_encode_and_decode_take_a_tile_size(export_dir, tmp_path, capsys):
    image = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 120, 3), dtype=np.uint8)).save(image)
    tokens = tmp_path / "tokens.safetensors"
    assert main(["encode", str(image), "--model", "tiny", "--out", str(tokens), "--tile-size", "64"]) == 0
    _, items = load_tokens(tokens)
    assert torch.equal(items[0].ids, vqtok.load("tiny", tile_size=64).encode(image)[0])
    assert main(["decode", str(tokens), "--out", str(tmp_path / "out"), "--tile-size", "64", "--no-progress"]) == 0
    assert Image.open(tmp_path / "out" / next(p.name for p in (tmp_path / "out").iterdir())).size == (120, 80)


def test_video_round_trip_in_float32_and_bfloat16(tmp_path, capsys):
    """`vqtok encode` / `vqtok decode --dtype` on a real MP4: the bf16 decode is the float32 one within a few
    levels (and the same frames), the token file's ids are those of the API."""
    from vqtok.io.video import read_video, write_video
    from vqtok.synthetic import procedural_video_frames

    clip = tmp_path / "clip.mp4"
    write_video(clip, procedural_video_frames(3, 9, 48, 64), fps=12.0, crf=0)
    out = tmp_path / "t.safetensors"
    assert main(["encode", str(clip), "--model", "video_tiny", "--out", str(out), "--no-progress"]) == 0
    _, items = load_tokens(out)
    assert torch.equal(items[0].ids, vqtok.load("video_tiny").encode_video_file(clip).ids[0])
    decoded = {}
    for dtype in ("float32", "bfloat16"):
        folder = tmp_path / dtype
        args = ["decode", str(out), "--model", "video_tiny", "--out", str(folder), "--dtype", dtype, "--no-progress"]
        assert main(args) == 0
        decoded[dtype] = read_video(folder / "clip.mp4")[0].astype(np.float64)  # (T, H, W, 3)
    assert decoded["float32"].shape == decoded["bfloat16"].shape == (9, 48, 64, 3)
    difference = np.abs(decoded["float32"] - decoded["bfloat16"]).mean()
    assert 0 < difference < 2.0  # of 255 (H.264 on both): the flag took effect, and changed little
    capsys.readouterr()
