"""Video files through PyAV: containers and codecs, rotation, variable frame rate, seeking, odd sizes, broken files,
MP4 output that browsers play; and the tokenizer and CLI on video files."""

import os
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from video_files import (
    broken_files,
    flat_frames,
    frame_index,
    grey_frames,
    random_frames,
    write_growing_h264,
    write_test_video,
    write_truncated_mp4,
)

import vqtok
from vqtok.cli.main import main
from vqtok.config import TokenizerConfig
from vqtok.errors import FileFormatError, InputError
from vqtok.export import save_export
from vqtok.io.video import (
    VIDEO_EXTENSIONS,
    is_video_file,
    iter_frames,
    list_videos,
    probe_video,
    read_video,
    sample_clip,
    write_video,
)
from vqtok.model.vqvae import VQVAE


@pytest.mark.parametrize(
    ("name", "codec", "lossless"),
    [
        ("a.mp4", "libx264", False),
        ("a.webm", "libvpx-vp9", False),
        ("a.mkv", "libx264rgb", True),
        ("a.ts", "libx264", False),  # MPEG-TS clocks start at 0.2 s or so: times are from the stream start
    ],
)
def test_containers_and_codecs_read_back(tmp_path, name, codec, lossless):
    frames = random_frames(12, 32, 48)
    path = write_test_video(tmp_path / name, frames, fps=12.0, codec=codec)
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (48, 32, 0) and info.fps == pytest.approx(12.0)
    assert info.duration == pytest.approx(1.0, abs=0.1) and info.num_frames in (12, 13)
    video, fps = read_video(path)
    assert video.shape == (12, 32, 48, 3) and video.dtype == np.uint8 and fps == pytest.approx(12.0)
    if lossless:
        assert np.array_equal(video, frames)
    else:  # lossy, but the same pictures
        assert np.abs(video.astype(int) - frames).mean() < 20
    times = [t for t, _ in iter_frames(path)]
    assert times == pytest.approx([i / 12 for i in range(12)], abs=2e-3)  # presentation order, from 0


@pytest.mark.parametrize(("name", "codec"), [("odd.mkv", "libx264rgb"), ("odd_ffv1.mkv", "ffv1")])
def test_odd_dimensions_read_back_exactly(tmp_path, name, codec):
    frames = random_frames(6, 33, 47)
    path = write_test_video(tmp_path / name, frames, codec=codec)
    video, _ = read_video(path)
    assert np.array_equal(video, frames)
    assert (probe_video(path).width, probe_video(path).height) == (47, 33)


def test_odd_dimensions_in_vp9(tmp_path):
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]
    video, _ = read_video(write_test_video(tmp_path / "odd.webm", flat_frames(colours, 33, 47), codec="libvpx-vp9"))
    assert video.shape == (3, 33, 47, 3)
    for frame, colour in zip(video, colours, strict=True):
        assert np.abs(frame.astype(int) - colour).max() < 8


def corner_frames(num_frames: int = 3) -> np.ndarray:
    """Dark frames (16 x 24) with a white 4 x 4 top-left corner."""
    frames = np.full((num_frames, 16, 24, 3), 30, np.uint8)
    frames[:, :4, :4] = 255
    return frames


def white_corner(frame: np.ndarray) -> str:
    """Which corner of an upright frame is white: "top-left", "top-right", ..."""
    h, w = frame.shape[:2]
    corners = {
        "top-left": frame[:2, :2],
        "top-right": frame[:2, w - 2 :],
        "bottom-left": frame[h - 2 :, :2],
        "bottom-right": frame[h - 2 :, w - 2 :],
    }
    return max(corners, key=lambda k: corners[k].mean())


IPHONE_PORTRAIT = [0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30]  # tkhd matrix (a b u / c d v / x y w) of a portrait clip


@pytest.mark.parametrize(
    ("name", "writer_args", "rotation", "corner"),
    [
        ("ccw90.mp4", {"rotation": 90}, 90, "bottom-left"),
        ("cw90.mp4", {"rotation": -90}, 270, "top-right"),
        ("half.mov", {"rotation": 180}, 180, "bottom-right"),
        ("ccw90.mkv", {"rotation": 90}, 90, "bottom-left"),
        ("legacy_tag.mkv", {"metadata": {"rotate": "90"}}, 270, "top-right"),  # old FFmpeg: clockwise degrees
        ("none.mp4", {}, 0, "top-left"),
    ],
)
def test_rotation_metadata_is_applied(tmp_path, name, writer_args, rotation, corner):
    path = write_test_video(tmp_path / name, corner_frames(), **writer_args)
    info = probe_video(path)
    assert info.rotation == rotation
    assert (info.height, info.width) == ((24, 16) if rotation in (90, 270) else (16, 24))
    video, _ = read_video(path)
    assert video.shape == (3, info.height, info.width, 3)
    assert all(white_corner(frame) == corner for frame in video)
    assert white_corner(next(iter_frames(path))[1]) == corner
    assert white_corner(sample_clip(path, 0.1, 2, fps=10.0)[1]) == corner


def test_a_phone_portrait_video_is_turned_clockwise(tmp_path):
    """An iPhone held upright stores landscape frames and a display matrix that turns them 90 degrees clockwise."""
    path = tmp_path / "iphone.mov"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb", rate=10)
        stream.width, stream.height, stream.pix_fmt = 24, 16, "rgb24"
        stream.options = {"crf": "0", "preset": "ultrafast"}
        stream.set_display_matrix(IPHONE_PORTRAIT)
        for packet in [*stream.encode(av.VideoFrame.from_ndarray(corner_frames(1)[0], format="rgb24"))]:
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert probe_video(path).rotation == 270  # ffprobe: "displaymatrix: rotation of -90.00 degrees"
    video, _ = read_video(path)
    assert video.shape == (1, 24, 16, 3) and white_corner(video[0]) == "top-right"


def test_variable_frame_rate_is_sampled_by_timestamps(tmp_path):
    colours = [(20 * i, 0, 0) for i in range(6)]
    path = write_test_video(tmp_path / "vfr.mkv", flat_frames(colours), pts=[0, 40, 120, 130, 300, 310])
    assert [round(t, 3) for t, _ in iter_frames(path)] == [0.0, 0.04, 0.12, 0.13, 0.3, 0.31]

    def picked(clip: np.ndarray) -> list[int]:
        return [int(f[0, 0, 0]) // 20 for f in clip]

    # at 0, 50, 100, ... 400 ms: the frame on screen at each time; past the end the last one is held
    assert picked(sample_clip(path, 0.0, 9, fps=20.0)) == [0, 1, 1, 3, 3, 3, 4, 5, 5]
    assert picked(sample_clip(path, 0.12, 3, fps=100.0)) == [2, 3, 3]  # 120, 130, 140 ms
    assert picked(sample_clip(path, 0.2, 3, fps=20.0)) == [3, 3, 4]  # 200 ms falls inside frame 3 (130-300 ms)
    assert picked(sample_clip(path, 5.0, 2, fps=20.0)) == [5, 5]  # starting past the end: the last frame


def test_matroska_millisecond_timestamps_do_not_drop_frames(tmp_path):
    """At 30 fps Matroska stores frame 2 (66.67 ms) as 67 ms: sampling at 30 fps must still take every frame."""
    path = write_test_video(tmp_path / "ntsc.mkv", grey_frames(12), fps=30.0)
    assert [frame_index(f) for f in sample_clip(path, 0.0, 12, fps=30.0)] == list(range(12))
    assert [frame_index(f) for f in sample_clip(path, 0.1, 4, fps=15.0)] == [3, 5, 7, 9]  # every other frame


@pytest.mark.parametrize("name", ["seek.mp4", "seek.mkv", "seek.ts", "seek.webm", "seek.h264"])
def test_clips_after_a_seek_are_the_frames_at_those_times(tmp_path, name):
    """Keyframes every 10 frames; MPEG-TS seeks land late (so it decodes from the start), raw H.264 cannot seek."""
    codec, options = (
        ("libvpx-vp9", {"g": "10"}) if name.endswith(".webm") else ("libx264", {"x264-params": "keyint=10"})
    )
    path = write_test_video(tmp_path / name, grey_frames(60), fps=10.0, codec=codec, options=options)
    rate = probe_video(path).fps  # 10, but 25 for raw H.264, which stores no frame rate
    for first in (0, 12.3, 25, 58.5):  # where the clip starts, in frames
        clip = sample_clip(path, first / rate, 4, fps=rate)
        assert [frame_index(f) for f in clip] == [min(59, int(first) + i) for i in range(4)], first
    assert [round(t * rate, 3) for t, _ in iter_frames(path, start=25 / rate)][:2] == [25, 26]
    assert [round(t * rate, 3) for t, _ in iter_frames(path, start=24.7 / rate)][:1] == [25]  # within half a frame
    assert list(iter_frames(path, start=70 / rate)) == []  # past the end


def test_read_video_stops_after_max_frames(tmp_path):
    path = write_test_video(tmp_path / "a.mkv", grey_frames(10))
    video, fps = read_video(path, max_frames=3)
    assert video.shape == (3, 16, 24, 3) and fps == 10.0
    assert [frame_index(f) for f in video] == [0, 1, 2]
    with pytest.raises(InputError):
        read_video(path, max_frames=0)


READERS = {
    "probe_video": probe_video,
    "iter_frames": lambda p: list(iter_frames(p)),
    "read_video": read_video,
    "sample_clip": lambda p: sample_clip(p, 0.0, 3, fps=10.0),
}


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    return broken_files(tmp_path_factory.mktemp("broken"))


@pytest.mark.parametrize("reader", READERS)
def test_every_broken_file_gives_a_clear_error(broken, reader):
    for kind, (path, words) in broken.items():
        with pytest.raises(FileFormatError, match=words) as e:  # noqa: PT012 - a read names the file in its failure
            try:
                READERS[reader](path)
            except FileFormatError:
                raise
            else:
                pytest.fail(f"{kind}: {path.name} ({path.stat().st_size if path.is_file() else '-'} bytes) was read")
        assert str(path) in str(e.value), kind  # the message names the file
        assert isinstance(e.value, ValueError)


def test_a_file_that_fails_part_way_raises_when_it_does(tmp_path):
    path = write_growing_h264(tmp_path / "grow.h264", small=2, large=10)
    assert (probe_video(path).width, probe_video(path).height) == (32, 32)  # the first frame is fine
    frames = iter_frames(path, max_frame_pixels=32 * 32)
    assert next(frames)[1].shape == (32, 32, 3)
    with pytest.raises(FileFormatError, match="grow.h264.*64x64 = 4096 pixels exceed the limit"):
        list(frames)  # a frame grows past the limit after the header was checked
    with pytest.raises(FileFormatError, match="frame size changes within the video"):
        read_video(path)
    assert sample_clip(path, 0.0, 2, fps=25.0).shape == (2, 32, 32, 3)  # a clip before the change is fine


def test_a_truncated_mp4_is_refused_at_probe_by_its_index(tmp_path):
    """An MP4 with its index first (faststart) opens when cut; the index then points past the end of the file."""
    path = write_truncated_mp4(tmp_path / "cut.mp4", faststart=True)
    with pytest.raises(FileFormatError, match="truncated: its index refers to video data up to byte"):
        probe_video(path)


def test_a_truncated_matroska_file_gives_its_complete_frames(tmp_path):
    """Matroska has no index to lose: a cut file decodes up to where it was cut (the prefix is usable)."""
    data = write_test_video(tmp_path / "full.mkv", random_frames(20, 32, 32)).read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
    video, _ = read_video(tmp_path / "cut.mkv")
    assert 1 <= len(video) < 20 and np.array_equal(video, random_frames(20, 32, 32)[: len(video)])


def test_frames_larger_than_the_limit_are_refused_before_decoding(tmp_path):
    path = write_test_video(tmp_path / "big.mp4", random_frames(2, 64, 64))
    for read in (lambda p: probe_video(p, max_frame_pixels=1000), lambda p: list(iter_frames(p, 0, 1000))):
        with pytest.raises(FileFormatError, match="exceed the limit of 1000 pixels"):
            read(path)
    assert read_video(path, max_frame_pixels=None)[0].shape == (2, 64, 64, 3)


def mp4_top_level_boxes(data: bytes) -> list[str]:
    """The types of an MP4 file's top-level boxes, in file order."""
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:  # 64-bit size follows
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        boxes.append(kind.decode("latin-1"))
        offset += size if size else len(data)
    return boxes


def test_written_mp4_plays_in_browsers_and_reads_back(tmp_path):
    frames = random_frames(15, 33, 47)  # odd size: padded to 34 x 48
    path = tmp_path / "out.mp4"
    assert write_video(path, iter(frames), fps=15.0) == (15, 34, 48)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 15
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == 15 and decoded[0].shape == (34, 48, 3)
    boxes = mp4_top_level_boxes(path.read_bytes())
    assert boxes.index("moov") < boxes.index("mdat")  # faststart: playable while downloading
    assert np.abs(decoded[3][:33, :47].astype(int) - frames[3]).mean() < 12
    # the padding repeats the last row and column
    assert np.abs(decoded[3][33].astype(int) - decoded[3][32]).mean() < 8
    assert np.abs(decoded[3][:, 47].astype(int) - decoded[3][:, 46]).mean() < 8
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary file left


def test_written_colours_and_fractional_rates_survive(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 150, 50)]
    path = tmp_path / "ntsc.mp4"
    write_video(path, flat_frames(colours, 32, 32), fps=30000 / 1001, crf=10)
    video, fps = read_video(path)
    assert fps == pytest.approx(30000 / 1001, rel=1e-9)
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate == Fraction(30000, 1001)
    for frame, colour in zip(video, colours, strict=True):  # BT.709 tagged, so no colour shift on the way back
        assert np.abs(frame.reshape(-1, 3).mean(0) - colour).max() < 4


def test_a_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    def frames_then_wrong_size():
        yield from random_frames(3, 16, 16)
        yield np.zeros((8, 8, 3), np.uint8)  # the size changes mid-stream

    with pytest.raises(InputError, match="one size"):
        write_video(tmp_path / "bad.mp4", frames_then_wrong_size(), fps=10)
    with pytest.raises(InputError, match="uint8"):
        write_video(tmp_path / "bad.mp4", [np.zeros((8, 8, 3), np.float32)], fps=10)
    with pytest.raises(InputError, match="no frames"):
        write_video(tmp_path / "bad.mp4", [], fps=10)
    with pytest.raises(InputError, match=r"\(T, H, W, 3\)"):
        write_video(tmp_path / "bad.mp4", np.zeros((8, 8, 3), np.uint8), fps=10)
    assert list(tmp_path.iterdir()) == []
    good = tmp_path / "good.mp4"
    write_video(good, random_frames(2, 16, 16), fps=10, preset="ultrafast")
    before = good.read_bytes()
    with pytest.raises(InputError):
        write_video(good, frames_then_wrong_size(), fps=10)
    with pytest.raises(FileFormatError, match="cannot write video"):
        write_video(good, random_frames(2, 16, 16), fps=10, preset="no-such-preset")
    assert good.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["good.mp4"]


def test_list_videos_skips_hidden_and_other_files(tmp_path):
    for name in ("a.mp4", "sub/b.MKV", ".hidden/c.mp4", "sub/.d.mp4", "notes.txt", "e.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")  # a symlink loop terminates
    assert list_videos(tmp_path) == [tmp_path / "a.mp4", tmp_path / "sub/b.MKV"]
    assert is_video_file("x/Y.WEBM") and not is_video_file("y.png") and ".mp4" in VIDEO_EXTENSIONS
    with pytest.raises(FileFormatError, match="does not exist"):
        list_videos(tmp_path / "nope")
    with pytest.raises(FileFormatError, match="not a directory"):
        list_videos(tmp_path / "a.mp4")


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


def test_a_list_of_video_files_is_encoded_as_one_batch(video_export, tmp_path):
    tok = vqtok.load(video_export, chunk_frames=4)
    frames = [random_frames(9, 24, 40, seed=i) for i in range(2)]
    a = write_test_video(tmp_path / "a.mp4", frames[0])  # lossless
    b = write_test_video(tmp_path / "b.mkv", frames[1])
    ids = tok.encode([a, str(b)])
    assert ids.shape == (2, 3, 3, 5)
    assert torch.equal(ids, tok.encode(np.stack(frames)))  # the ids of their frames
    assert torch.equal(ids, torch.cat([tok.encode_video_file(a).ids, tok.encode_video_file(b).ids]))
    assert torch.equal(tok.encode((frames[0], b)), ids)  # files and in-memory videos mixed
    shorter = write_test_video(tmp_path / "c.mp4", frames[1][:5])
    with pytest.raises(InputError, match=r"share a size, got sizes \(T, H, W\) \[\(5, 24, 40\), \(9, 24, 40\)\]"):
        tok.encode([a, shorter])  # as images of different sizes: the ids would not stack
    with pytest.raises(InputError, match="only videos or only images"):
        tok.encode([a, tmp_path / "still.png"])
    with pytest.raises(FileFormatError, match="does not exist"):
        tok.encode([a, tmp_path / "missing.mp4"])


def test_uint8_video_tensors_are_pixels_in_0_255(video_export):
    tok = vqtok.load(video_export)
    frames = random_frames(5, 16, 24)  # (T, H, W, 3) uint8
    x = torch.from_numpy(frames).permute(3, 0, 1, 2)[None]  # (1, 3, T, H, W) uint8
    assert torch.equal(tok.encode(x), tok.encode(frames))
    assert torch.equal(tok.encode(x), tok.encode(x.float() / 127.5 - 1))


def test_write_video_takes_the_decoders_output(video_export, tmp_path):
    tok = vqtok.load(video_export)
    clip = torch.from_numpy(random_frames(9, 24, 40)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    decoded = tok.decode(tok.encode(clip))  # (1, 3, T, H, W) float32 in [-1, 1]
    assert write_video(tmp_path / "out.mp4", decoded, fps=8) == (9, 24, 40)
    video, fps = read_video(tmp_path / "out.mp4")
    assert video.shape == (9, 24, 40, 3) and fps == 8
    write_video(tmp_path / "uint8.mp4", vqtok.inputs.to_uint8(decoded[0]), fps=8)  # what vqtok decode writes
    assert np.abs(video.astype(int) - read_video(tmp_path / "uint8.mp4")[0]).mean() < 0.5  # the same pixels went in
    assert write_video(tmp_path / "one.mp4", decoded[0].bfloat16(), fps=8) == (9, 24, 40)  # (3, T, H, W)
    assert read_video(tmp_path / "one.mp4")[0].shape == (9, 24, 40, 3)
    for bad, words in [
        (torch.zeros(2, 3, 9, 8, 8), r"float \(3, T, H, W\) or \(1, 3, T, H, W\)"),  # two videos
        (torch.zeros(3, 9, 8, 8, dtype=torch.uint8), "got torch.uint8"),
        (torch.zeros(9, 8, 8, 3), r"shape \(9, 8, 8, 3\)"),
        (torch.full((3, 2, 8, 8), float("nan")), "NaN"),
        (torch.zeros(3, 0, 8, 8), "no frames"),
    ]:
        with pytest.raises(InputError, match=words):
            write_video(tmp_path / "bad.mp4", bad, fps=8)
    assert not (tmp_path / "bad.mp4").exists()


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


def test_the_tokenizer_reports_broken_files_as_the_io_does(video_export, broken):
    tok = vqtok.load(video_export)
    for path, words in broken.values():
        with pytest.raises(FileFormatError, match=words):
            tok.encode_video_file(path)
