"""Camera moves over photos (vqtok/training/data/camera_moves.py) and their place in the video data module."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from vqtok.errors import ConfigError
from vqtok.training.data import VideoDataModule
from vqtok.training.data.camera_moves import CameraMotion, CameraMoves, CameraPath, render_clip
from vqtok.training.data.procedural_video import ProceduralVideos
from vqtok.training.data.sampling import SampleKey

STILL = CameraMotion(
    max_pan=0.0, max_zoom=0.0, max_rotation=0.0, shake=0.0, parallax=0.0, brightness_drift=0.0, noise=0.0
)
# A camera that only pans: 0.05 window sides per frame to the right, sharp frames, no drift or noise.
PAN = CameraPath(
    num_frames=5,
    velocity=(0.05, 0.0),
    accel=(0.0, 0.0),
    zoom=0.0,
    tilt=0.0,
    turn=0.0,
    shake=(0.0, 0.1, 0.0, 0.0, 0.1, 0.0),
    shutter=0.0,
    gain=(0.0, 0.0, 0.0),
    noise=0.0,
    flip=False,
)


def texture(seed: int, height: int = 160, width: int = 200) -> np.ndarray:
    """A smooth random colour texture (H, W, 3) uint8: noise upsampled 5x (bicubic), detail at every position."""
    coarse = np.random.default_rng(seed).integers(0, 256, (height // 5, width // 5, 3), dtype=np.uint8)
    return np.array(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))


@pytest.fixture
def photo_dir(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.png", "b.png", "sub/c.png"]):
        Image.fromarray(texture(i, 160 + 20 * i, 200)).save(folder / name)
    return folder


def best_shift(a: torch.Tensor, b: torch.Tensor, reach: int = 6) -> tuple[int, int]:
    """The integer (dx, dy) such that b[y, x] best matches a[y + dy, x + dx] (least mean squared error over the
    overlap): how far the content moved, against the direction of travel. a, b: (3, S, S)."""
    S = a.shape[-1]
    errors = {}
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            ya, xa = slice(max(dy, 0), S + min(dy, 0)), slice(max(dx, 0), S + min(dx, 0))
            yb, xb = slice(max(-dy, 0), S + min(-dy, 0)), slice(max(-dx, 0), S + min(-dx, 0))
            errors[dx, dy] = (a[:, ya, xa] - b[:, yb, xb]).pow(2).mean().item()
    return min(errors, key=errors.__getitem__)


def test_clips_have_the_video_layout_and_range(photo_dir):
    data = CameraMoves.from_folder(photo_dir, num_frames=5, image_size=32)
    assert len(data) == 3
    for key in (SampleKey(0, 1), SampleKey(2, 99), 1):
        clip = data[key]
        assert clip.shape == (3, 5, 32, 32) and clip.dtype == torch.float32 and clip.is_contiguous()
        assert clip.min() >= -1.0 and clip.max() <= 1.0
        assert clip.std() > 0.05  # a photo, not a flat frame
    with pytest.raises(IndexError):
        data[3]


def test_clips_are_a_function_of_the_key(photo_dir):
    data = CameraMoves.from_folder(photo_dir, num_frames=5, image_size=32)
    assert torch.equal(data[SampleKey(1, 7)], data[SampleKey(1, 7)])
    assert torch.equal(data[1], data[1])  # evaluation: the same clip every time
    assert not torch.equal(data[SampleKey(1, 7)], data[SampleKey(1, 8)])  # each draw its own camera
    assert not torch.equal(data[SampleKey(1, 7)], data[SampleKey(2, 7)])
    again = CameraMoves.from_folder(photo_dir, num_frames=5, image_size=32)  # another worker, or a resumed run
    assert torch.equal(data[SampleKey(0, 12345)], again[SampleKey(0, 12345)])


def test_a_pan_shifts_the_content_steadily():
    photo = torch.from_numpy(texture(5, 400, 400)).permute(2, 0, 1).float() / 255.0
    S = 64  # the pan moves 0.05 window sides = 3.2 output pixels per frame, whatever the scale drawn
    clip = render_clip(photo, S, PAN, torch.Generator().manual_seed(0))  # (3, T, S, S) in [0, 1]
    shifts = [best_shift(clip[:, t], clip[:, t + 1]) for t in range(PAN.num_frames - 1)]
    assert shifts == [(3, 0)] * 4  # the camera moves right: the content moves left by 3.2 px per frame
    vertical = render_clip(photo, S, replace(PAN, velocity=(0.0, -0.05)), torch.Generator().manual_seed(0))
    assert [best_shift(vertical[:, t], vertical[:, t + 1]) for t in range(4)] == [(0, -3)] * 4


def test_motion_blur_grows_with_the_shutter():
    photo = torch.from_numpy(texture(6, 400, 400)).permute(2, 0, 1).float() / 255.0
    fast = replace(PAN, velocity=(0.12, 0.0))  # 7.7 px per frame at S = 64

    def detail(path: CameraPath) -> float:
        clip = render_clip(photo, 64, path, torch.Generator().manual_seed(3))
        return (clip[..., 1:] - clip[..., :-1]).abs().mean().item()  # horizontal gradients: the blur's direction

    sharp, blurred = detail(fast), detail(replace(fast, shutter=1.0))
    assert blurred < 0.7 * sharp
    # Without motion the shutter changes nothing.
    still = replace(PAN, velocity=(0.0, 0.0))
    assert detail(replace(still, shutter=1.0)) == pytest.approx(detail(still))


def test_brightness_drift_brightens_frame_by_frame():
    photo = torch.full((3, 100, 100), 0.3)
    path = replace(PAN, velocity=(0.0, 0.0), gain=(0.2, 0.2, 0.2))
    clip = render_clip(photo, 16, path, torch.Generator().manual_seed(0))
    means = clip.mean(dim=(0, 2, 3))  # (T,)
    assert torch.all(means[1:] > means[:-1])
    assert means[-1].item() == pytest.approx(0.3 * math.exp(0.2), rel=1e-3)


def test_a_still_camera_gives_identical_frames(photo_dir):
    data = CameraMoves.from_folder(photo_dir, num_frames=5, image_size=32, motion=STILL)
    for key in (SampleKey(0, 3), SampleKey(2, 4), 1):
        clip = data[key]
        assert all(torch.equal(clip[:, 0], clip[:, t]) for t in range(1, 5))
    moving = CameraMoves.from_folder(photo_dir, num_frames=5, image_size=32)
    clips = [moving[SampleKey(i % 3, i)] for i in range(6)]
    assert sum(not torch.equal(c[:, 0], c[:, -1]) for c in clips) >= 5  # the default camera moves


def test_clear_errors_for_missing_or_empty_photo_folders(tmp_path):
    with pytest.raises(ConfigError, match=r"nowhere.*does not exist.*fetch_training_data"):
        CameraMoves.from_folder(tmp_path / "nowhere", 5, 32)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no photos here")
    with pytest.raises(ConfigError, match=r"empty.*holds no images"):
        CameraMoves.from_folder(tmp_path / "empty", 5, 32)
    with pytest.raises(ConfigError, match="at least one photo"):
        CameraMoves([], 5, 32)
    with pytest.raises(ConfigError, match="parallax"):
        CameraMotion(parallax=1.5)
    with pytest.raises(ConfigError, match="max_pan"):
        CameraMotion(max_pan=-0.1)


def test_an_unreadable_photo_gives_none(photo_dir):
    (photo_dir / "broken.jpg").write_bytes(b"not a jpeg")
    data = CameraMoves.from_folder(photo_dir, 5, 32)
    broken = next(i for i, f in enumerate(data.files) if f.name == "broken.jpg")
    assert data[SampleKey(broken, 1)] is None


def test_video_datamodule_mixes_camera_moves_into_the_clips(photo_dir):
    dm = VideoDataModule(
        photos=str(photo_dir),
        camera_fraction=0.5,
        num_frames=5,
        image_size=32,
        batch_size=2,
        num_workers=0,
        images=None,
        train_samples=8,
        val_samples=2,
        val_fraction=0.34,  # one of the three photos held back
    )
    dm.setup("fit")
    videos = dm.train_set.videos  # type: ignore[union-attr]
    camera, others = videos.camera, videos.others
    assert isinstance(camera, CameraMoves) and isinstance(others, ProceduralVideos) and len(camera) == 2
    # Items 1, 3, 5, 7 are camera moves (photos 0, 1, 0, 1) with the draw's own seed; 0, 2, 4, 6 procedural.
    for i in range(8):
        expected = camera[SampleKey(i // 2 % 2, 50 + i)] if i % 2 else others[i // 2]
        assert torch.equal(videos[SampleKey(i, 50 + i)], expected)
    batch = next(iter(dm.train_dataloader()))
    assert batch["videos"].shape == (2, 3, 5, 32, 32) and batch["num_failed"] == 0
    val = [b["videos"] for b in dm.val_dataloader()]
    assert sum(v.shape[0] for v in val) == 3  # 2 procedural clips, then the held-back photo's fixed camera move
    held_back = CameraMoves([f for f in sorted(photo_dir.rglob("*.png")) if f not in camera.files], 5, 32)
    assert torch.equal(val[-1][-1], held_back[0])


def test_video_datamodule_checks_the_photo_options(tmp_path, photo_dir):
    with pytest.raises(ConfigError, match="data.camera_fraction"):
        VideoDataModule(photos=str(photo_dir), camera_fraction=1.5)
    dm = VideoDataModule(photos=str(tmp_path / "missing"), num_workers=0)  # parses: checked at setup
    with pytest.raises(ConfigError, match=r"data.photos.*missing.*does not exist"):
        dm.setup("fit")
    (tmp_path / "one").mkdir()
    Image.fromarray(texture(0)).save(tmp_path / "one" / "x.png")
    with pytest.raises(ConfigError, match=r"data.photos.*one.*at least 2"):
        VideoDataModule(photos=str(tmp_path / "one"), num_workers=0).setup("fit")
    plain = VideoDataModule(num_frames=5, image_size=32, num_workers=0, train_samples=4, val_samples=2)
    plain.setup("fit")
    assert isinstance(plain.train_set.videos, ProceduralVideos)  # type: ignore[union-attr]  # unchanged default
