"""`vqtok eval` on real files: its figures against an independent computation through the public API."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vqtok
from vqtok.cli.main import main
from vqtok.inputs import image_batch, to_uint8
from vqtok.io.video import read_video, write_video
from vqtok.training.data import render_dead_leaves
from vqtok.training.data.procedural_video import render_procedural_video


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two uint8 arrays, in dB (peak 255)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    (root / "nested").mkdir()
    Image.fromarray(render_dead_leaves(np.random.default_rng(1), 48)).save(root / "a.png")
    big = np.concatenate([render_dead_leaves(np.random.default_rng(2), 80)] * 2, axis=1)  # 80 x 160
    Image.fromarray(big).save(root / "nested" / "b.png")
    clip = render_procedural_video(np.random.default_rng(3), 9, 32, fps=12.0)  # (9, 32, 32, 3)
    write_video(root / "clip.mp4", clip, fps=12.0, crf=0)
    (root / "broken.png").write_bytes(b"")
    (root / "notes.txt").write_text("not media")
    return root


def test_eval_figures_equal_the_api_computed_independently(folder, tmp_path, capsys):
    out = tmp_path / "figures.json"
    assert main(["eval", str(folder), "--model", "tiny", "--crop", "64", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    figures = json.loads(out.read_text())
    by_name = {Path(f["path"]).name: f for f in figures["files"]}
    assert sorted(by_name) == ["a.png", "b.png", "clip.mp4"]  # notes.txt is not media; broken.png failed
    assert [Path(f["path"]).name for f in figures["failed"]] == ["broken.png"]
    assert "broken.png" in printed and "empty" in figures["failed"][0]["reason"]

    tok = vqtok.load("tiny")
    ids_seen = []
    for name, crop in (("a.png", (slice(None), slice(None))), ("nested/b.png", (slice(8, 72), slice(48, 112)))):
        pixels = np.asarray(Image.open(folder / name).convert("RGB"))[crop]  # the centre 64 x 64 of b.png
        ids = tok.encode(image_batch(np.ascontiguousarray(pixels)))
        ids_seen.append(ids.flatten())
        y = to_uint8(tok.decode(ids, size=pixels.shape[:2])[0])
        scored = by_name[Path(name).name]
        assert scored["shape"] == list(pixels.shape[:2])
        assert scored["psnr"] == pytest.approx(psnr_u8(pixels, y), abs=1e-3)
    frames, _ = read_video(folder / "clip.mp4")  # an image tokenizer scores a clip's frames as images
    ids = tok.encode(image_batch(list(frames)))
    ids_seen.append(ids.flatten())
    y = to_uint8(tok.decode(ids).movedim(0, 1))  # (T, H, W, 3)
    per_frame = [psnr_u8(f, r) for f, r in zip(frames, y, strict=True)]
    assert by_name["clip.mp4"]["kind"] == "video" and by_name["clip.mp4"]["shape"] == [9, 32, 32]
    assert by_name["clip.mp4"]["psnr"] == pytest.approx(np.mean(per_frame), abs=1e-3)

    all_ids = np.concatenate([i.numpy() for i in ids_seen])
    assert figures["tokens"] == len(all_ids) == 6 * 6 + 8 * 8 + 9 * 4 * 4
    assert figures["codes_used"] == len(np.unique(all_ids))
    assert figures["usage"] == pytest.approx(len(np.unique(all_ids)) / 512)
    mean_images = np.mean([by_name["a.png"]["psnr"], by_name["b.png"]["psnr"]])
    assert figures["images"]["mean_psnr"] == pytest.approx(mean_images)
    assert f"mean PSNR {mean_images:.2f} dB" in printed


def test_eval_of_a_clip_with_a_video_tokenizer(folder, capsys):
    assert main(["eval", str(folder / "clip.mp4"), "--model", "video_tiny"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "clip.mp4" in line)
    vid = vqtok.load("video_tiny")
    frames, _ = read_video(folder / "clip.mp4")
    ids = vid.encode(frames)  # (1, 3, 4, 4): 1 + 8/4 latent frames
    y = to_uint8(vid.decode(ids, size=frames.shape[:3])[0])
    expected = np.mean([psnr_u8(f, r) for f, r in zip(frames, y, strict=True)])
    assert f"PSNR {expected:6.2f} dB" in line and "9x32x32" in line


def test_eval_with_nothing_readable_fails_and_says_why(tmp_path, capsys):
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert main(["eval", str(tmp_path), "--model", "tiny"]) == 2
    assert "failed: " in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "missing"), "--model", "tiny"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_eval_reads_a_file_by_content_and_each_file_once(folder, tmp_path, capsys):
    renamed = tmp_path / "frame.dat"  # a PNG under a suffix no reader claims
    renamed.write_bytes((folder / "a.png").read_bytes())
    (tmp_path / "link.png").symlink_to(folder / "a.png")
    args = [str(renamed), str(folder / "a.png"), str(tmp_path / "link.png"), str(tmp_path / ".." / tmp_path.name)]
    assert main(["eval", *args, "--model", "tiny", "--json", str(tmp_path / "f.json")]) == 0
    files = json.loads((tmp_path / "f.json").read_text())["files"]
    assert sorted(Path(f["path"]).name for f in files) == ["a.png", "frame.dat"]  # a.png once, however spelled
    assert files[0]["psnr"] == files[1]["psnr"]


def test_eval_max_pixels_refuses_larger_images_and_frames(folder, capsys):
    files = [str(folder / "a.png"), str(folder / "clip.mp4")]  # 48 x 48 = 2304 and 32 x 32 = 1024 pixels
    assert main(["eval", *files, "--model", "tiny", "--max-pixels", "1000"]) == 2
    failed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 2 and all(line.endswith("pass a larger --max-pixels (0: no limit)") for line in failed)
    assert "2304 pixels" in failed[0] and "1024 pixels" in failed[1]
    assert main(["eval", *files, "--model", "tiny", "--max-pixels", "2000"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[1] for line in out if line.startswith("failed: ")] == [files[0]]
    assert "PSNR" in next(line for line in out if line.endswith("clip.mp4"))
    assert main(["eval", *files, "--model", "tiny", "--max-pixels", "2304", "--crop", "0"]) == 0
    assert "failed: " not in capsys.readouterr().out


SCRIPT_WITHOUT_PYAV = r"""
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "av":
            raise ImportError("blocked in this test: av")
        return None

sys.meta_path.insert(0, Block())
from vqtok.cli.main import main
sys.exit(main(["eval", sys.argv[1], sys.argv[2], "--model", "tiny"]))
"""


def test_eval_without_pyav_scores_the_images_and_names_the_missing_package(folder):
    command = [sys.executable, "-c", SCRIPT_WITHOUT_PYAV, str(folder), str(folder / "clip.mp4")]
    r = subprocess.run(command, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "images: 2 files" in r.stdout and "videos:" not in r.stdout
    assert "failed: " in r.stdout and "clip.mp4" in r.stdout  # named explicitly: read as an image, and refused


@pytest.fixture(scope="module")
def moving_clip(tmp_path_factory) -> Path:
    """9 frames of 32x32 whose content moves from frame to frame (seed 5; seed 3's clip happens to be static)."""
    clip = render_procedural_video(np.random.default_rng(5), 9, 32, fps=12.0)
    assert np.abs(clip[8].astype(int) - clip[0]).mean() > 5
    path = tmp_path_factory.mktemp("moving") / "moving.mp4"
    write_video(path, clip, fps=12.0, crf=0)
    return path


def test_held_keyframes_baseline_equals_its_definition_through_the_api(moving_clip, tmp_path):
    """`--hold-keyframes 4` over a 9-frame clip: frames 0, 4, 8 encoded as images, each reconstruction shown for
    the frames up to the next keyframe; scored against every frame."""
    out = tmp_path / "held.json"
    clip = moving_clip
    assert main(["eval", str(clip), "--model", "tiny", "--hold-keyframes", "4", "--json", str(out)]) == 0
    scored = json.loads(out.read_text())
    frames, _ = read_video(clip)  # (9, 32, 32, 3) uint8
    tok = vqtok.load("tiny")
    keys = [to_uint8(tok.decode(tok.encode(image_batch(frames[k])), size=(32, 32))[0]) for k in (0, 4, 8)]
    shown = [keys[t // 4] for t in range(9)]
    expected = np.mean([psnr_u8(frames[t], shown[t]) for t in range(9)])
    every_frame = np.mean(
        [psnr_u8(f, to_uint8(tok.decode(tok.encode(image_batch(f)), size=(32, 32))[0])) for f in frames]
    )
    assert expected < every_frame  # the clip moves, so held frames cost PSNR (little: tiny is blurry at 32 px)
    assert scored["files"][0]["psnr"] == pytest.approx(expected, abs=1e-3)
    assert scored["tokens"] == 3 * 4 * 4  # three 4x4 grids of ids, as many as a 4x temporal video tokenizer's


def test_video_baselines_table_names_each_method_with_its_ids(moving_clip, tmp_path, capsys):
    out = tmp_path / "baselines.json"
    clip = moving_clip
    assert main(["eval", str(clip), "--model", "video_tiny", "--baselines", "tiny", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    figures = json.loads(out.read_text())
    every, held = figures["baselines"]["tiny, every frame"], figures["baselines"]["tiny, keyframes held 4"]
    assert figures["tokens"] == held["tokens"] == 3 * 16  # 1 + 8/4 latent frames of 4x4 = 3 keyframes of 4x4
    assert every["tokens"] == 9 * 16
    assert every["videos"]["mean_psnr"] > held["videos"]["mean_psnr"]  # the clip moves: holding frames costs
    for line in ("video_tiny (video tokenizer)", "tiny, every frame", "tiny, keyframes held 4"):
        assert line in printed
    assert main(["eval", str(clip), "--model", "video_tiny", "--baselines", "video_tiny"]) == 2
    assert "--baselines takes an image tokenizer; 'video_tiny' is a video model" in capsys.readouterr().err
    assert main(["eval", str(clip), "--model", "tiny", "--baselines", "tiny"]) == 2
    assert "'tiny' is an image model" in capsys.readouterr().err
