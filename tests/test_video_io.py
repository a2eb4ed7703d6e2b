"""Video files through PyAV: containers and codecs, rotation, variable frame rate, odd sizes, broken files, MP4
output that browsers play; and the tokenizer and CLI on video files."""

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from video_files import broken_files, flat_frames, random_frames, write_test_video

import vqtok
from vqtok.cli.main import main
from vqtok.config import TokenizerConfig
from vqtok.errors import FileFormatError, InputError
from vqtok.export import save_export
from vqtok.io.video import iter_frames, list_videos, probe_video, read_video, sample_clip, write_video
from vqtok.model.vqvae import VQVAE


@pytest.mark.parametrize(
    "name, codec, lossless",
    [("a.mp4", "libx264", False), ("a.webm", "libvpx-vp9", False), ("a.mkv", "libx264rgb", True)],
)
def test_containers_and_codecs_read_back(tmp_path, name, codec, lossless):
    frames = random_frames(12, 32, 48)
    path = write_test_video(tmp_path / name, frames, fps=12.0, codec=codec, options=None if lossless else {})
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (48, 32, 0) and info.fps == pytest.approx(12.0)
    video, fps = read_video(path)
    assert video.shape == (12, 32, 48, 3) and video.dtype == np.uint8 and fps == pytest.approx(12.0)
    if lossless:
        assert np.array_equal(video, frames)
    else:  # lossy, but the same pictures
        assert np.abs(video.astype(int) - frames).mean() < 20


def test_odd_dimensions_read_back_exactly(tmp_path):
    frames = random_frames(6, 33, 47)
    video, _ = read_video(write_test_video(tmp_path / "odd.mkv", frames))
    assert np.array_equal(video, frames)


@pytest.mark.parametrize("rotation, turns", [(90, 1), (-90, 3), (180, 2)])
def test_rotation_metadata_is_applied(tmp_path, rotation, turns):
    frames = random_frames(4, 16, 24)
    frames[:, :4, :4] = 255  # a white top-left corner
    path = write_test_video(tmp_path / "phone.mp4", frames, rotation=rotation)
    info = probe_video(path)
    assert info.rotation == rotation % 360
    video, _ = read_video(path)
    assert np.array_equal(video, np.rot90(frames, k=turns, axes=(1, 2)))
    assert (info.height, info.width) == video.shape[1:3]


def test_variable_frame_rate_is_sampled_by_timestamps(tmp_path):
    colours = [(20 * i, 0, 0) for i in range(6)]
    path = write_test_video(tmp_path / "vfr.mkv", flat_frames(colours), pts=[0, 40, 120, 130, 300, 310])
    assert [round(t, 3) for t, _ in iter_frames(path)] == [0.0, 0.04, 0.12, 0.13, 0.3, 0.31]
    clip = sample_clip(path, 0.0, 9, fps=20.0)  # at 0, 50, 100, ... 400 ms: the frame on screen at each time
    assert [int(f[0, 0, 0]) // 20 for f in clip] == [0, 1, 1, 3, 3, 3, 4, 5, 5]
    later = sample_clip(path, 0.12, 3, fps=100.0)  # 120, 130, 140 ms
    assert [int(f[0, 0, 0]) // 20 for f in later] == [2, 3, 3]


def test_broken_files_give_clear_errors_from_io_and_api(tmp_path):
    torch.manual_seed(0)
    tok = vqtok.load(save_export(VQVAE(TokenizerConfig.from_name("video_tiny")), tmp_path / "export"))
    cases = broken_files(tmp_path / "files")
    for kind, (path, words) in cases.items():
        for read in (probe_video, lambda p: list(iter_frames(p)), tok.encode_video_file):
            with pytest.raises(FileFormatError, match=words) as e:
                read(path)
            assert kind == "directory" or path.name in str(e.value)
    with pytest.raises(FileFormatError, match="exceed the limit"):
        probe_video(write_test_video(tmp_path / "big.mp4", random_frames(2, 64, 64)), max_frame_pixels=1000)


def test_written_mp4_plays_in_browsers_and_reads_back(tmp_path):
    frames = random_frames(15, 33, 47)  # odd size: padded to 34 x 48
    path = tmp_path / "out.mp4"
    assert write_video(path, iter(frames), fps=15.0) == (15, 34, 48)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == 15 and decoded[0].shape == (34, 48, 3)
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: playable while downloading
    assert np.abs(decoded[3][:33, :47].astype(int) - frames[3]).mean() < 12
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary file left


def test_a_failed_write_leaves_no_file(tmp_path):
    frames = [*random_frames(3, 16, 16), np.zeros((8, 8, 3), np.uint8)]  # the size changes mid-stream
    with pytest.raises(InputError, match="one size"):
        write_video(tmp_path / "bad.mp4", frames, fps=10)
    with pytest.raises(InputError, match="uint8"):
        write_video(tmp_path / "bad.mp4", [np.zeros((8, 8, 3), np.float32)], fps=10)
    with pytest.raises(InputError, match="no frames"):
        write_video(tmp_path / "bad.mp4", [], fps=10)
    assert list(tmp_path.iterdir()) == []


def test_list_videos_skips_hidden_and_other_files(tmp_path):
    for name in ("a.mp4", "sub/b.MKV", ".hidden/c.mp4", "notes.txt", "d.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert list_videos(tmp_path) == [tmp_path / "a.mp4", tmp_path / "sub/b.MKV"]


@pytest.fixture(scope="module")
def video_export(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_export(VQVAE(TokenizerConfig.from_name("video_tiny")), tmp_path_factory.mktemp("v") / "video_tiny")


def test_encoding_a_file_equals_encoding_its_frames(video_export, tmp_path):
    frames = random_frames(11, 24, 40)
    path = write_test_video(tmp_path / "clip.mkv", frames)  # lossless
    tok = vqtok.load(video_export, chunk_frames=4)
    encoded = tok.encode_video_file(path)
    assert (encoded.num_frames, encoded.height, encoded.width, encoded.fps) == (11, 24, 40, 10.0)
    assert torch.equal(encoded.ids, tok.encode(frames))
    assert torch.equal(tok.encode(str(path)), encoded.ids)
    assert tok.decode(encoded.ids, size=(11, 24, 40)).shape == (1, 3, 11, 24, 40)


def test_cli_encodes_and_decodes_videos_and_images(video_export, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_test_video(tmp_path / "clip.mp4", random_frames(7, 24, 40), codec="libx264", fps=7.5)
    from vqtok.io.images import save_image

    save_image(tmp_path / "still.png", random_frames(1, 24, 40)[0])
    model = str(video_export)
    assert main(["encode", "clip.mp4", "still.png", "--model", model, "--out", "tokens.safetensors"]) == 0
    assert main(["decode", "tokens.safetensors", "--model", model, "--out", "decoded"]) == 0
    assert sorted(p.name for p in (tmp_path / "decoded").iterdir()) == ["clip.mp4", "still.png"]
    info = probe_video(tmp_path / "decoded/clip.mp4")
    assert (info.width, info.height, info.fps) == (40, 24, 7.5)
    assert len(list(iter_frames(tmp_path / "decoded/clip.mp4"))) == 7
    (tmp_path / "bad.mp4").write_bytes(b"junk" * 100)
    assert main(["encode", "bad.mp4", "--model", model, "--out", "t2.safetensors"]) == 2
    assert not (tmp_path / "t2.safetensors").exists()
