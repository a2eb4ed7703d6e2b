"""The Gradio app, served for real and called over its API with gradio_client: figures checked against vqtok's
public API, round trips through the decode tab, readable errors, limits and a crowd of concurrent clients."""

from __future__ import annotations

import json
import math
import re
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio", reason="the app needs the app extra: pip install -e '.[app]'")

from app_server import export_tiny_models, serve_app  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from video_files import broken_files, random_frames, write_test_video  # noqa: E402

import vqtok  # noqa: E402
from app.limits import Limits  # noqa: E402
from app.uploads import downscale  # noqa: E402
from vqtok.inputs import to_uint8  # noqa: E402
from vqtok.io.video import probe_video, read_video  # noqa: E402
from vqtok.token_file import TokenItem, load_tokens, save_tokens  # noqa: E402

LIMITS = Limits(
    max_file_mb=1,
    max_image_pixels=600 * 600,
    max_image_side=64,
    max_video_frames=9,
    max_video_side=32,
    max_decode_items=3,
    queue_size=4,
)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return export_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def url(models_dir, tmp_path_factory):
    with serve_app(models_dir, LIMITS, tmp_path_factory.mktemp("gradio")) as url:
        yield url


@pytest.fixture(scope="module")
def client(url) -> Client:
    return Client(url, verbose=False)


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """uint8 (h, w, 3): low-frequency noise, upscaled."""
    small = np.random.default_rng(seed).integers(0, 256, (max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR))


def write_png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def read_png(path: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def tokenize_image(client: Client, path: Path, model: str = "tiny") -> dict:
    out = client.predict(handle_file(str(path)), model, api_name="/tokenize_image")
    keys = ["original", "reconstruction", "heatmap", "grid", "histogram", "table", "figures", "tokens", "png"]
    return dict(zip(keys, out, strict=True))


def psnr_ssim(a: np.ndarray, b: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (..., H, W, 3) pairs -> vqtok.metrics PSNR and SSIM per frame, computed here from the pixels."""
    x, y = (torch.tensor(v).reshape(-1, *v.shape[-3:]).permute(0, 3, 1, 2).float() / 127.5 - 1 for v in (a, b))
    return vqtok.metrics.psnr(y, x), vqtok.metrics.ssim(y, x)


def test_image_tab_returns_correct_figures_tokens_and_reconstruction(client, models_dir, tmp_path):
    pixels = smooth_image(40, 56)
    upload = write_png(tmp_path / "photo.png", pixels)
    r = tokenize_image(client, upload)
    fig = r["figures"]

    tok = vqtok.load(models_dir / "tiny")
    ids = tok.encode(pixels)[0]  # (5, 7)
    expected_recon = to_uint8(tok.decode(ids[None], size=(40, 56))[0])
    bits = 35 * 9  # 5 x 7 tokens of log2(512) bits
    assert fig["input_size"] == [40, 56] and fig["token_grid"] == [5, 7] and fig["num_tokens"] == 35
    assert fig["codebook_size"] == 512 and fig["bits_per_token"] == 9
    assert fig["distinct_codes"] == len(torch.unique(ids))
    assert fig["bits_per_pixel"] == pytest.approx(bits / (40 * 56))
    assert fig["compression_vs_raw_rgb"] == pytest.approx(40 * 56 * 24 / bits)
    assert fig["compression_vs_file"] == pytest.approx(upload.stat().st_size * 8 / bits)
    assert fig["encode_seconds"] > 0 and fig["decode_seconds"] > 0 and fig["notes"] == []

    np.testing.assert_array_equal(read_png(r["original"]), pixels)
    np.testing.assert_array_equal(read_png(r["reconstruction"]), expected_recon)
    np.testing.assert_array_equal(read_png(r["png"]), expected_recon)
    psnr, ssim = psnr_ssim(pixels, expected_recon)
    assert fig["psnr_db"] == pytest.approx(float(psnr[0]), abs=1e-4)
    assert fig["ssim"] == pytest.approx(float(ssim[0]), abs=1e-5)

    meta, items = load_tokens(r["tokens"], fingerprint=tok.fingerprint)
    assert meta["model"] == "tiny" and items[0].size == (40, 56) and items[0].source == "photo.png"
    torch.testing.assert_close(items[0].ids, ids)

    heatmap, grid = read_png(r["heatmap"]), read_png(r["grid"])
    assert heatmap.shape == (40, 56, 3) and grid.shape[0] / grid.shape[1] == pytest.approx(5 / 7, abs=0.02)
    assert "| Bits per pixel | 0.1406 |" in r["table"] and "| PSNR |" in r["table"]


def test_large_image_is_downscaled_and_the_page_says_so(client, tmp_path):
    r = tokenize_image(client, write_png(tmp_path / "big.png", smooth_image(100, 80)))
    fig = r["figures"]
    assert fig["input_size"] == [64, 51] and fig["token_grid"] == [8, 7]
    assert "downscaled from 80x100 to 51x64" in fig["notes"][0]
    assert fig["compression_vs_file"] is None  # a scaled copy: no fair comparison with the file
    assert "downscaled from 80x100" in r["table"] and "n/a" in r["table"]


def test_tokens_from_the_image_tab_decode_to_the_same_reconstruction(client, tmp_path):
    r = tokenize_image(client, write_png(tmp_path / "round.png", smooth_image(48, 40, seed=3)))
    gallery, video, files, summary = client.predict(handle_file(r["tokens"]), api_name="/decode_tokens")
    assert video is None and len(files) == 1 and len(gallery) == 1
    np.testing.assert_array_equal(read_png(files[0]), read_png(r["png"]))
    assert "tiny" in summary and "1 image(s)" in summary


def test_video_round_trip_cut_downscaled_and_decoded_again(client, models_dir, tmp_path):
    frames = random_frames(13, 24, 40, seed=5)  # 13 frames, 40x24: cut to 9, downscaled to 32x19
    upload = write_test_video(tmp_path / "clip.mp4", frames, fps=12.0)
    out = client.predict(handle_file(str(upload)), "video_tiny", api_name="/tokenize_video")
    input_video, recon_video, plot, _grid, _histogram, _table, fig, tokens = out

    assert fig["input_size"] == [9, 19, 32] and fig["token_grid"] == [3, 3, 4] and fig["num_tokens"] == 36
    assert fig["fps"] == pytest.approx(12.0) and fig["compression_vs_file"] is None
    assert any("cut to its first 9 frames" in n for n in fig["notes"])
    assert any("downscaled from 40x24 to 32x19" in n for n in fig["notes"])

    tok = vqtok.load(models_dir / "video_tiny")
    encoded = np.stack([downscale(f, 32) for f in read_video(upload)[0][:9]])  # what the app should have encoded
    ids = tok.encode(encoded)  # (1, 3, 3, 4)
    expected = to_uint8(tok.decode(ids, size=(9, 19, 32))[0])  # (9, 19, 32, 3)
    psnr, ssim = psnr_ssim(encoded, expected)
    np.testing.assert_allclose(fig["psnr_per_frame_db"], psnr.numpy(), atol=1e-3)
    np.testing.assert_allclose(fig["ssim_per_frame"], ssim.numpy(), atol=1e-5)
    assert fig["psnr_db"] == pytest.approx(float(psnr.mean()), abs=1e-3)
    assert [row[1] for row in plot["data"]] == pytest.approx(psnr.tolist(), abs=1e-3)

    for path in (input_video, recon_video["video"] if isinstance(recon_video, dict) else recon_video):
        path = path["video"] if isinstance(path, dict) else path
        info = probe_video(path)
        assert (info.num_frames, info.width, info.height) == (9, 32, 20)  # H.264 needs even sizes: 19 -> 20
        assert info.codec == "h264" and info.fps == pytest.approx(12.0)

    _, items = load_tokens(tokens, fingerprint=tok.fingerprint)
    assert items[0].size == (9, 19, 32) and items[0].fps == pytest.approx(12.0)
    torch.testing.assert_close(items[0].ids, ids[0])

    gallery, video, files, summary = client.predict(handle_file(tokens), api_name="/decode_tokens")
    video = video["video"] if isinstance(video, dict) else video
    assert gallery == [] and len(files) == 1 and probe_video(video).num_frames == 9
    assert "1 video(s)" in summary


def app_error(call) -> str:  # noqa: ANN001 - a zero-argument callable
    with pytest.raises(AppError) as info:
        call()
    message = str(info.value)
    assert "Traceback" not in message and "/tmp/" not in message and "gradio" not in message.lower()
    return message


def test_bad_images_get_messages_a_person_understands(client, tmp_path):
    (tmp_path / "garbage.png").write_bytes(np.random.default_rng(0).integers(0, 256, 500, np.uint8).tobytes())
    (tmp_path / "notes.txt").write_text("not a picture")
    png = write_png(tmp_path / "full.png", smooth_image(64, 64)).read_bytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    write_png(tmp_path / "huge.png", np.zeros((700, 700, 3), np.uint8))  # over max_image_pixels = 600 x 600
    (tmp_path / "empty.png").write_bytes(b"")
    cases = {
        "garbage.png": "not an image format",
        "notes.txt": "not an image format",
        "cut.png": "truncated or corrupt",
        "huge.png": "more than the limit",
        "empty.png": "empty",
    }
    for name, words in cases.items():
        message = app_error(lambda name=name: tokenize_image(client, tmp_path / name))
        assert words in message and name in message, (name, message)


def test_bad_videos_get_messages_a_person_understands(client, tmp_path):
    cases = broken_files(tmp_path / "videos")
    for kind in ("corrupt", "truncated", "empty", "audio_only", "zero_frames", "no_packets"):
        path, words = cases[kind]
        message = app_error(
            lambda p=path: client.predict(handle_file(str(p)), "video_tiny", api_name="/tokenize_video")
        )
        assert words in message and path.name in message, (kind, message)
    clip = write_test_video(tmp_path / "fine.mp4", random_frames(3), fps=10.0)
    for model in ("tiny", "nope"):  # an image tokenizer, or no tokenizer at all, is not a choice here
        message = app_error(lambda m=model: client.predict(handle_file(str(clip)), m, api_name="/tokenize_video"))
        assert f"{model} is not in the list of choices: ['video_tiny']" in message
    (tmp_path / "notes.mp4").write_text("a text file with a video's name")
    message = app_error(
        lambda: client.predict(handle_file(str(tmp_path / "notes.mp4")), "video_tiny", api_name="/tokenize_video")
    )
    assert "notes.mp4" in message and "not a video file" in message


def test_bad_token_files_get_messages_a_person_understands(client, models_dir, tmp_path):
    (tmp_path / "noise.safetensors").write_bytes(np.random.default_rng(1).integers(0, 256, 300, np.uint8).tobytes())
    message = app_error(
        lambda: client.predict(handle_file(str(tmp_path / "noise.safetensors")), api_name="/decode_tokens")
    )
    assert "not a readable vqtok token file" in message and "noise.safetensors" in message

    other = export_tiny_models(tmp_path / "other", seed=1) / "tiny"  # same config, other weights
    other_tok = vqtok.load(other)
    item = TokenItem(ids=other_tok.encode(smooth_image(16, 16))[0], size=(16, 16), source="x.png")
    save_tokens(tmp_path / "other.safetensors", [item], "tiny", other_tok.fingerprint, 512)
    message = app_error(
        lambda: client.predict(handle_file(str(tmp_path / "other.safetensors")), api_name="/decode_tokens")
    )
    assert "which this app does not have" in message and other_tok.fingerprint in message

    tok = vqtok.load(models_dir / "tiny")
    many = [TokenItem(ids=torch.zeros(2, 2, dtype=torch.long), size=(16, 16), source=f"{i}.png") for i in range(4)]
    save_tokens(tmp_path / "many.safetensors", many, "tiny", tok.fingerprint, 512)
    message = app_error(
        lambda: client.predict(handle_file(str(tmp_path / "many.safetensors")), api_name="/decode_tokens")
    )
    assert "holds 4 items" in message and "at most 3" in message

    mismatch = TokenItem(ids=torch.zeros(400, 400, dtype=torch.long), size=(8, 8), source="small.png")
    save_tokens(tmp_path / "mismatch.safetensors", [mismatch], "tiny", tok.fingerprint, 512)
    message = app_error(
        lambda: client.predict(handle_file(str(tmp_path / "mismatch.safetensors")), api_name="/decode_tokens")
    )
    assert "its token grid, 400 x 400, does not match its size 8 x 8 (that takes 1 x 1 tokens" in message

    video = TokenItem(ids=torch.zeros(2, 2, 2, dtype=torch.long), size=(5, 16, 16), source="clip.mp4", fps=10.0)
    save_tokens(tmp_path / "video.safetensors", [video], "tiny", tok.fingerprint, 512)
    message = app_error(
        lambda: client.predict(handle_file(str(tmp_path / "video.safetensors")), api_name="/decode_tokens")
    )
    assert "'clip.mp4' is a video, but the model that made this file is an image tokenizer" in message

    save_tokens(tmp_path / "html.safetensors", [mismatch], "<img src=x onerror=alert(1)>", "f" * 16, 512)
    message = app_error(
        lambda: client.predict(handle_file(str(tmp_path / "html.safetensors")), api_name="/decode_tokens")
    )
    assert "&lt;img src=x onerror=alert(1)&gt;" in message and "<img" not in message  # rendered as text

    huge = TokenItem(ids=torch.zeros(300, 300, dtype=torch.long), size=(2400, 2400), source="huge.png")
    save_tokens(tmp_path / "huge.safetensors", [huge], "tiny", tok.fingerprint, 512)
    message = app_error(
        lambda: client.predict(handle_file(str(tmp_path / "huge.safetensors")), api_name="/decode_tokens")
    )
    assert "more than this app's limit" in message

    meta = {"format": "vqtok-tokens-1", "model": "tiny", "model_fingerprint": tok.fingerprint, "codebook_size": "512"}
    meta["items"] = json.dumps([{"size": [16, 16], "source": "bad.png"}])
    from safetensors.torch import save_file

    save_file({"ids.0": torch.full((2, 2), 9999, dtype=torch.int32)}, str(tmp_path / "ids.safetensors"), metadata=meta)
    message = app_error(
        lambda: client.predict(handle_file(str(tmp_path / "ids.safetensors")), api_name="/decode_tokens")
    )
    assert "9999" in message or "codebook" in message


def test_oversized_upload_is_refused(client, url, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (LIMITS.max_file_mb * 1024 * 1024 + 1))
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # the client reads the server's limit
        tokenize_image(client, big)
    with big.open("rb") as f:  # and the server itself refuses it, whoever sends it
        response = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.png", f)}, timeout=60)
    assert response.status_code == 413


def test_files_not_uploaded_cannot_be_read_through_the_api(url):
    """The image endpoint takes its upload undecoded (preprocess=False); Gradio must still refuse paths that are
    not uploads, or any image on the server could be read back through the reconstruction."""
    secret = Path(__file__).resolve().parent.parent / "app" / "examples" / "dead_leaves_7.png"

    def call(path: str) -> str:
        payload = {"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, "tiny"]}
        event = httpx.post(f"{url}gradio_api/call/tokenize_image", json=payload, timeout=30).json()["event_id"]
        return httpx.get(f"{url}gradio_api/call/tokenize_image/{event}", timeout=60).text

    with secret.open("rb") as f:  # the same file, uploaded: answered
        uploaded = httpx.post(f"{url}gradio_api/upload", files={"files": ("leaves.png", f)}, timeout=30).json()[0]
    assert "event: complete" in call(uploaded)
    stream = call(str(secret))  # named by its path on the server: refused
    assert "event: error" in stream and "event: complete" not in stream


def test_many_clients_at_once_are_answered_or_cleanly_refused(url, tmp_path):
    upload = write_png(tmp_path / "crowd.png", smooth_image(32, 32))
    outcomes: list[str] = []
    lock = threading.Lock()

    def user() -> None:
        client = Client(url, verbose=False)
        jobs = [client.submit(handle_file(str(upload)), "tiny", api_name="/tokenize_image") for _ in range(5)]
        for job in jobs:
            try:
                figures = job.result(timeout=300)[6]
                outcome = "answered" if figures["token_grid"] == [4, 4] else f"wrong: {figures}"
            except Exception as e:  # noqa: BLE001 - sorted below: only "queue full" is acceptable
                outcome = "queue full" if "Queue is full" in str(e) else f"failed: {type(e).__name__}: {e}"
            with lock:
                outcomes.append(outcome)

    users = [threading.Thread(target=user) for _ in range(8)]
    for t in users:
        t.start()
    for t in users:
        t.join(timeout=600)
    assert len(outcomes) == 40 and set(outcomes) <= {"answered", "queue full"}, outcomes
    assert outcomes.count("answered") >= LIMITS.queue_size
    after = tokenize_image(Client(url, verbose=False), upload)  # the server still answers
    assert after["figures"]["token_grid"] == [4, 4]


def test_bits_per_pixel_formula_matches_the_codebook(client, tmp_path):
    """A video tokenizer in the image tab encodes the image as a 1-frame video: same figures, its own codebook."""
    r = tokenize_image(client, write_png(tmp_path / "v.png", smooth_image(24, 32)), model="video_tiny")
    fig = r["figures"]
    assert fig["model"] == "video_tiny" and fig["token_grid"] == [3, 4]
    assert fig["bits_per_pixel"] == pytest.approx(12 * math.log2(fig["codebook_size"]) / (24 * 32))


def test_readme_client_example_runs_against_the_app(url, monkeypatch, capsys):
    root = Path(__file__).resolve().parent.parent
    block = re.findall(r"```python\n(.*?)```", (root / "README.md").read_text(), flags=re.S)[2]
    assert 'Client("http://127.0.0.1:7860/")' in block
    monkeypatch.chdir(root)
    scope: dict = {}
    assert '"image", api_name="/tokenize_image"' in block  # the shipped default, as `vqtok demo` serves it
    # This server serves random-weight test exports, the image one under the name "tiny".
    block = block.replace("http://127.0.0.1:7860/", url).replace('"image", api_name=', '"tiny", api_name=')
    exec(compile(block, "README.md app client example", "exec"), scope)
    # 256 x 256 gives 32 x 32 tokens with the default limits; this server downscales to 64 px first
    assert scope["figures"]["token_grid"] == [8, 8] and len(scope["files"]) == 1
    assert "\n[8, 8] 0.140625 " in capsys.readouterr().out
