"""The shipped default tokenizers: short names, reconstruction floors on held-out procedural data, size, wheel."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vqtok
from vqtok.export import resolve_export
from vqtok.metrics import psnr
from vqtok.training.data import ProceduralImages
from vqtok.training.data.procedural_video import render_procedural_video

ROOT = Path(__file__).resolve().parent.parent
HELD_OUT_STREAM = 7  # a procedural stream no recipe trains or validates on (training uses 0, validation 1)
# Floors a few dB under what the shipped exports measure here (checkpoints/README.md): a broken export, a wrong
# short name or a loader bug lands far below them.
IMAGE_FLOOR_DB = 21.5  # measured 24.44 dB
VIDEO_FLOOR_DB = 26.5  # measured 29.65 dB


def test_default_image_tokenizer_by_no_name_reconstructs_held_out_images():
    tok = vqtok.load()
    assert resolve_export() == ROOT / "checkpoints" / "image"
    assert (tok.config.name, tok.downsample, tok.codebook_size, tok.is_video) == ("image", 8, 16384, False)
    images = ProceduralImages(num_samples=8, image_size=256, seed=0, stream=HELD_OUT_STREAM)
    x = torch.stack([images[i] for i in range(len(images))])
    ids = tok.encode(x)
    assert ids.shape == (8, 32, 32)
    assert psnr(tok.decode(ids), x).mean() > IMAGE_FLOOR_DB


def test_video_tokenizer_by_short_name_reconstructs_a_held_out_clip():
    tok = vqtok.load("video")
    assert (tok.downsample, tok.temporal_downsample, tok.codebook_size, tok.is_video) == (8, 4, 16384, True)
    rng = np.random.default_rng([0, HELD_OUT_STREAM])
    clip = render_procedural_video(rng, 17, 128, fps=24.0)  # (T, H, W, 3) uint8
    x = torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
    ids = tok.encode(x)
    assert ids.shape == (1, 5, 16, 16)
    assert psnr(tok.decode(ids), x).mean() > VIDEO_FLOOR_DB


def test_checkpoints_folder_fits_the_size_budget():
    total = sum(f.stat().st_size for f in (ROOT / "checkpoints").rglob("*") if f.is_file())
    assert total <= 60 * 2**20, f"checkpoints/ holds {total / 2**20:.1f} MiB"


def test_short_names_resolve_from_an_installed_wheel(tmp_path):
    """Build the wheel, install it alone into a folder and load every shipped tokenizer by short name from there."""
    source, dist, site = tmp_path / "source", tmp_path / "dist", tmp_path / "site"
    shutil.copytree(ROOT / "vqtok", source / "vqtok", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "checkpoints", source / "checkpoints")  # setuptools builds inside the source tree
    shutil.copytree(ROOT / "app", source / "app", ignore=shutil.ignore_patterns("__pycache__"))  # as vqtok.app
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", source, "--no-deps", "--no-build-isolation", "-q", "-w", dist], check=True)
    wheel = next(dist.glob("vqtok-*.whl"))
    subprocess.run([*pip, "install", wheel, "--no-deps", "-q", "--target", site], check=True)
    shipped = sorted(p.name for p in (ROOT / "checkpoints").iterdir() if (p / "config.json").is_file())
    sources = [str(p.relative_to(ROOT)) for p in (ROOT / "vqtok").rglob("*.py")]
    sources = sorted(sources + [str(Path("vqtok", p.relative_to(ROOT))) for p in (ROOT / "app").rglob("*.py")])
    script = (
        "import sys, vqtok, vqtok.export as t\n"
        "assert vqtok.__file__.startswith(sys.argv[1]), vqtok.__file__\n"
        "for name in sys.argv[2].split(','):\n"
        "    assert str(t.resolve_export(name)).startswith(sys.argv[1]), t.resolve_export(name)\n"
        "    vqtok.load(name)\n"
        "print(t.resolve_export(), vqtok.load().config.name)\n"
    )
    # From an empty folder, with only the installed copy on the path: the checkout is out of reach.
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    r = subprocess.run(
        [sys.executable, "-c", script, str(site), ",".join(shipped)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == [str(site / "vqtok" / "_checkpoints" / "image"), "image"]
    installed = sorted(
        str(p.relative_to(site)) for p in (site / "vqtok").rglob("*.py") if "_checkpoints" not in p.parts
    )
    assert installed == sources  # every module of the checkout is in the wheel (pyproject lists the packages)


def test_pyproject_lists_every_package():
    """The wheel's package list is written out (so checkpoints/ and app/ ride along as vqtok._checkpoints and
    vqtok.app)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "vqtok").rglob("__init__.py")}
    assert listed == found | {"vqtok._checkpoints", "vqtok.app"}


def test_a_local_folder_named_like_a_shipped_tokenizer_does_not_hide_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "image").mkdir()  # say, a folder of photos
    (tmp_path / "image" / "cat.png").write_bytes(b"")
    assert resolve_export("image") == ROOT / "checkpoints" / "image"
    (tmp_path / "mine").mkdir()
    with pytest.raises(vqtok.ExportError, match="missing config.json"):  # not a shipped name: the folder is meant
        vqtok.load("mine")


@pytest.mark.parametrize("name", ["image", "video"])
def test_shipped_exports_store_half_precision_weights_and_a_float32_codebook(name):
    from safetensors import safe_open

    with safe_open(ROOT / "checkpoints" / name / "decoder.safetensors", "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes["quantizer.embed"] == "F32"
    assert dtypes["decoder.conv_out.weight"] == "F16"
