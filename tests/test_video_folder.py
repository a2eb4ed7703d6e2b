"""VideoFolder: clips from real video files, segment sampling, crops, broken files skipped and counted."""

import logging

import numpy as np
import pytest
import torch
from video_files import grey_frames, random_frames, write_growing_h264, write_test_video

from vqtok.errors import ConfigError, FileFormatError
from vqtok.training.data.sampling import SampleKey
from vqtok.training.data.video_datamodule import collate_mixed
from vqtok.training.data.video_folder import VideoFolder


def clip_indices(clip: torch.Tensor, step: int = 4) -> list[int]:
    """Which grey_frames a (3, T, S, S) clip in [-1, 1] holds (flat frames stay flat through resizing)."""
    levels = (clip.mean(dim=(0, 2, 3)) + 1) / 2 * 255  # (T,)
    return [round(float(v) / step) for v in levels]


@pytest.fixture
def video_dir(tmp_path):
    """A 4 s video (40 grey frames at 10 fps, lossless) and a 0.6 s one."""
    root = tmp_path / "videos"
    root.mkdir()
    write_test_video(root / "long.mkv", grey_frames(40, 24, 32), fps=10.0)
    write_test_video(root / "short.mp4", random_frames(6, 32, 24, seed=1), fps=10.0, codec="libx264")
    return root


def test_clips_have_the_right_shape_and_range(video_dir):
    for train in (True, False):
        data = VideoFolder(str(video_dir), num_frames=5, image_size=16, segment_seconds=1.0, train=train)
        for i in (0, len(data) - 1):
            clip = data[i]
            assert clip.shape == (3, 5, 16, 16) and clip.dtype == torch.float32
            assert clip.min() >= -1 and clip.max() <= 1
    with pytest.raises(IndexError):
        data[len(data)]


def test_a_long_video_gives_one_clip_per_segment(video_dir):
    data = VideoFolder(str(video_dir), num_frames=3, image_size=8, segment_seconds=1.0, train=False)
    assert len(data) == 4 + 1  # the long video: 4 segments of 1 s; the short one: 1
    assert [clip_indices(data[k]) for k in range(4)] == [[0, 1, 2], [10, 11, 12], [20, 21, 22], [30, 31, 32]]
    assert data[4].shape == (3, 3, 8, 8)  # the short video's clip
    assert len(VideoFolder(str(video_dir), 3, 8, segment_seconds=10.0)) == 2  # both shorter than a segment


def test_training_starts_are_random_within_their_segment(video_dir):
    data = VideoFolder(str(video_dir), num_frames=3, image_size=8, segment_seconds=1.0, train=True)
    firsts = {k: {clip_indices(data[SampleKey(k, seed)])[0] for seed in range(12)} for k in (1, 3)}
    assert firsts[1] <= set(range(10, 21)) and len(firsts[1]) > 3  # anywhere in segment 1 (1.0 s to 2.0 s)
    assert firsts[3] <= set(range(30, 38)) and len(firsts[3]) > 2  # clamped: the clip must end by frame 39


def test_the_sampling_rate_comes_from_fps_or_frame_stride(video_dir):
    kwargs = {"root": str(video_dir), "num_frames": 4, "image_size": 8, "segment_seconds": 1.0, "train": False}
    assert clip_indices(VideoFolder(frame_stride=2, **kwargs)[1]) == [10, 12, 14, 16]
    assert clip_indices(VideoFolder(fps=5.0, **kwargs)[1]) == [10, 12, 14, 16]
    assert clip_indices(VideoFolder(fps=20.0, **kwargs)[1]) == [10, 10, 11, 11]  # faster than the file: repeats


def test_evaluation_is_deterministic_and_training_is_seeded(video_dir):
    evaluation = VideoFolder(str(video_dir), num_frames=5, image_size=16, segment_seconds=1.0, train=False)
    assert torch.equal(evaluation[4], evaluation[4])
    train = VideoFolder(str(video_dir), num_frames=5, image_size=16, segment_seconds=1.0, train=True)
    a = train[SampleKey(4, 1)]
    torch.manual_seed(99)  # the global generator plays no part: the key's seed decides start, crop and flip
    assert torch.equal(a, train[SampleKey(4, 1)])


def test_every_frame_of_a_clip_gets_the_same_crop_and_flip(tmp_path):
    still = np.repeat(random_frames(1, 40, 56), 6, axis=0)  # six copies of one picture, losslessly coded
    write_test_video(tmp_path / "still.mkv", still, fps=10.0)
    data = VideoFolder(str(tmp_path), num_frames=6, image_size=16, train=True)
    for seed in range(4):
        clip = data[SampleKey(0, seed)]
        assert all(torch.equal(clip[:, t], clip[:, 0]) for t in range(6))


def test_a_corrupt_file_is_skipped_at_construction_and_counted(video_dir, caplog):
    (video_dir / "broken.mp4").write_bytes(b"not a video" * 50)
    (video_dir / "empty.webm").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        data = VideoFolder(str(video_dir), num_frames=5, image_size=16, segment_seconds=1.0)
    assert data.num_failed_probe == 2 and len(data.videos) == 2 and len(data) == 5
    assert "broken.mp4" in caplog.text and "empty.webm" in caplog.text and "empty (0 bytes)" in caplog.text


def test_a_file_that_fails_while_decoding_gives_none_and_collate_counts_it(tmp_path, video_dir, caplog):
    grow = write_growing_h264(video_dir / "grow.h264", small=2, large=10)  # probes fine; frame 3 is larger
    data = VideoFolder(str(video_dir), num_frames=5, image_size=16, segment_seconds=1.0, train=False)
    assert data.num_failed_probe == 0 and len(data) == 6
    index = data.starts[[path for path, _ in data.videos].index(grow)]  # its only clip (raw H.264: no duration)
    with caplog.at_level(logging.WARNING):
        assert data[index] is None
    assert "grow.h264" in caplog.text and "frame size changes" in caplog.text
    batch = collate_mixed([{"video": data[i]} for i in range(len(data))])
    assert batch["num_failed"] == 1 and batch["videos"].shape == (5, 3, 5, 16, 16)
    nothing = collate_mixed([{"video": None}, {"video": None}])
    assert nothing["videos"].numel() == 0 and nothing["num_failed"] == 2


def test_a_folder_with_nothing_usable_is_a_config_error(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"junk" * 100)
    with pytest.raises(ConfigError, match=str(tmp_path)):
        VideoFolder(str(tmp_path), num_frames=5, image_size=16)
    with pytest.raises(ConfigError, match="no readable video"):
        VideoFolder(str(tmp_path), 5, 16, files=[])
    with pytest.raises(FileFormatError, match="does not exist"):
        VideoFolder(str(tmp_path / "nope"), num_frames=5, image_size=16)
    with pytest.raises(ConfigError):
        VideoFolder(str(tmp_path), num_frames=0, image_size=16)
