"""Video training data: procedural clips, clips from a folder of real files, and the mixed image+video batches."""

import numpy as np
import pytest
import torch
from video_files import broken_files, random_frames, write_test_video

from vqtok.errors import ConfigError
from vqtok.training.data import ProceduralVideos, VideoDataModule, collate_mixed
from vqtok.training.data.procedural_video import procedural_video_frames, render_procedural_video
from vqtok.training.data.video_folder import VideoFolder


def test_procedural_clips_are_reproducible_and_distinct():
    data = ProceduralVideos(num_samples=4, num_frames=9, image_size=48, seed=3)
    a, b = data[1], data[1]
    assert a.shape == (3, 9, 48, 48) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1 and a.std() > 0.1
    assert not torch.equal(a, data[2])
    assert not torch.equal(a, ProceduralVideos(4, 9, 48, seed=3, stream=1)[1])
    with pytest.raises(IndexError):
        data[4]


def test_procedural_clips_move_smoothly():
    """Consecutive frames differ (there is motion) but far less than frames of unrelated clips."""
    steps, unrelated = [], []
    for i in range(6):
        clip = render_procedural_video(np.random.default_rng(i), 8, 64, fps=10.0).astype(np.float32)
        other = render_procedural_video(np.random.default_rng(100 + i), 1, 64).astype(np.float32)
        steps.append(np.abs(np.diff(clip, axis=0)).mean())
        unrelated.append(np.abs(clip[0] - other[0]).mean())
    assert min(steps) >= 0 and np.mean(steps) > 0.5  # moving on average (a clip may hold still)
    assert np.mean(steps) < 0.5 * np.mean(unrelated)


def test_long_procedural_clips_stream_in_frames():
    frames = list(procedural_video_frames(seed=1, num_frames=20, height=36, width=64, fps=24))
    again = list(procedural_video_frames(seed=1, num_frames=20, height=36, width=64, fps=24))
    assert len(frames) == 20 and frames[0].shape == (36, 64, 3) and frames[0].dtype == np.uint8
    assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))
    with pytest.raises(ConfigError):
        next(procedural_video_frames(seed=1, num_frames=0, height=36, width=64))


@pytest.fixture
def video_dir(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    write_test_video(root / "long.mkv", random_frames(40, 24, 32), fps=10.0)  # 4 s: 4 segments of 1 s
    write_test_video(root / "short.mp4", random_frames(6, 32, 24, seed=1), fps=10.0, codec="libx264")
    (root / "broken.mp4").write_bytes(b"not a video" * 50)
    return root


def test_video_folder_segments_crops_and_skips_broken_files(video_dir):
    data = VideoFolder(str(video_dir), num_frames=5, image_size=16, segment_seconds=1.0, train=True)
    assert data.num_failed_probe == 1  # broken.mp4, logged and skipped
    assert len(data) == 4 + 1  # the long video gives one clip per segment
    clip = data[0]
    assert clip.shape == (3, 5, 16, 16) and clip.min() >= -1 and clip.max() <= 1
    evaluation = VideoFolder(str(video_dir), num_frames=5, image_size=16, segment_seconds=1.0, train=False)
    assert torch.equal(evaluation[2], evaluation[2])  # deterministic
    assert evaluation[4].shape == (3, 5, 16, 16)  # the short video: its last frame held past the end


def test_every_kind_of_broken_file_is_skipped_and_counted(video_dir):
    broken = broken_files(video_dir / "broken")  # corrupt, truncated, empty, audio-only, zero frames (+2 paths)
    files = sorted(video_dir.glob("*.m*")) + [path for path, _ in broken.values()]
    data = VideoFolder(str(video_dir), num_frames=5, image_size=16, segment_seconds=1.0, files=files)
    probed = [path.name for path, _ in data.videos]
    assert data.num_failed_probe == len(broken) + 1, f"probed fine: {probed}"  # and broken.mp4 of the fixture
    assert len(data.videos) == 2


def test_a_file_that_fails_while_training_is_skipped_and_counted(video_dir):
    data = VideoFolder(str(video_dir), num_frames=5, image_size=16, segment_seconds=1.0)
    (video_dir / "short.mp4").unlink()  # gone after probing: reading it now fails
    items = [{"video": data[i]} for i in range(len(data))]
    batch = collate_mixed(items)
    assert batch["num_failed"] == 1 and batch["videos"].shape == (4, 3, 5, 16, 16)
    assert collate_mixed([{"video": None}])["videos"].numel() == 0


def test_video_datamodule_mixes_images_into_every_batch(video_dir):
    dm = VideoDataModule(root=str(video_dir), num_frames=5, image_size=16, batch_size=2, num_workers=0,
                         segment_seconds=1.0, val_fraction=0.3)  # fmt: skip
    batch = next(iter(dm.train_dataloader()))
    assert batch["videos"].shape == (2, 3, 5, 16, 16) and batch["images"].shape == (2, 3, 16, 16)
    procedural = VideoDataModule(num_frames=5, image_size=16, batch_size=2, num_workers=0, images=None)
    assert set(next(iter(procedural.val_dataloader()))) == {"videos", "num_failed"}
    with pytest.raises(ConfigError, match="data.root.*does not exist"):
        VideoDataModule(root=str(video_dir / "nope")).setup("fit")  # checked at setup: a recipe parses before a fetch
    with pytest.raises(ConfigError, match="data.images"):
        VideoDataModule(images="/no/such/dir")
