"""The app's parts without a server: drawings, figures, limits, the model registry, the workspace, ``vqtok demo``'s
start-up errors."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

pytest.importorskip("gradio", reason="the app needs the app extra: pip install -e '.[app]'")

from app_server import export_tiny_models  # noqa: E402

import vqtok  # noqa: E402
from app.drawing import HEATMAP_MAX, code_colours, error_heatmap, token_grid_image, usage_histogram  # noqa: E402
from app.figures import figures_markdown, token_figures  # noqa: E402
from app.limits import Limits  # noqa: E402
from app.models import ModelRegistry  # noqa: E402
from app.workspace import Workspace  # noqa: E402
from vqtok.cli.main import main as vqtok_main  # noqa: E402


def test_each_code_has_one_colour_everywhere():
    ids = np.arange(4096)
    colours = code_colours(ids)
    np.testing.assert_array_equal(code_colours(ids[::-1])[::-1], colours)  # depends on the id only
    np.testing.assert_array_equal(code_colours(np.array([[7, 7], [7, 7]])), np.broadcast_to(colours[7], (2, 2, 3)))
    assert len({tuple(c) for c in colours}) > 4000 and colours.min() >= 48  # distinct, never black


def test_token_grid_draws_one_square_cell_per_token():
    ids = np.array([[0, 1, 2], [3, 4, 5]])
    grid = token_grid_image(ids)
    cell = grid.shape[0] // 2
    assert grid.shape == (2 * cell, 3 * cell, 3)
    for (row, col), code in np.ndenumerate(ids):
        block = grid[row * cell : (row + 1) * cell, col * cell : (col + 1) * cell]
        assert (block == code_colours(np.array(code))).all()
    video = token_grid_image(np.arange(6 * 4).reshape(6, 2, 2))  # latent frames in rows of 4, white gaps between
    cell = (video.shape[1] - 3 * 4) // 8
    assert video.shape == (2 * 2 * cell + 4, 4 * 2 * cell + 3 * 4, 3)
    assert (video[:, 2 * cell : 2 * cell + 4] == 255).all() and (video[2 * cell : 2 * cell + 4] == 255).all()
    assert (video[2 * cell + 4, 0] == code_colours(np.array(16))).all()  # frame 4 starts the second row


def test_usage_histogram_bar_heights_follow_the_counts():
    ids = np.array([0] * 8 + [5] * 4 + [9])
    img = usage_histogram(ids, 10, width=216, height=120)
    bars = (img[:, :, 2] > 150) & (img[:, :, 0] < 100)  # the blue bars
    heights = [bars[:, 8 + 20 * k + 5].sum() for k in range(10)]  # the middle of each code's 20-px column
    assert heights[0] > heights[5] > heights[9] > 0 and heights[1] == 0
    assert heights[0] == pytest.approx(2 * heights[5], abs=2)


def test_error_heatmap_scale():
    a = np.zeros((4, 4, 3), np.uint8)
    assert (error_heatmap(a, a) < 8).all()  # no error: black
    worst = error_heatmap(a, np.full_like(a, int(HEATMAP_MAX)))
    assert (worst == worst[0, 0]).all() and worst[0, 0].min() > 150  # at or above the scale's top: pale yellow


def test_token_figures_arithmetic_and_table():
    fig = token_figures(np.array([[1, 2], [2, 3]]), 1024, (16, 16), file_bytes=100)
    assert fig["num_tokens"] == 4 and fig["distinct_codes"] == 3 and fig["bits_per_token"] == 10
    assert fig["bits_per_pixel"] == 40 / 256 and fig["compression_vs_raw_rgb"] == 256 * 24 / 40
    assert fig["compression_vs_file"] == 800 / 40
    table = figures_markdown({**fig, "compression_vs_file": None, "notes": ["The clip was cut."]})
    assert "| Bits per pixel | 0.1562 |" in table and "n/a" in table and table.endswith("- The clip was cut.")


def test_limits_must_be_positive():
    with pytest.raises(vqtok.ConfigError, match="max_video_side=0"):
        Limits(max_video_side=0)


def test_registry_finds_exports_names_them_and_skips_broken_ones(tmp_path, caplog):
    folder = export_tiny_models(tmp_path / "models")
    (folder / "broken").mkdir()
    (folder / "broken" / "config.json").write_text("{not json")
    (folder / "notes").mkdir()  # no config.json: not an export at all
    registry = ModelRegistry.discover([folder / "tiny"], [folder])
    assert registry.names() == ["tiny", "video_tiny"] and registry.names(video=True) == ["video_tiny"]
    assert "broken" in caplog.text
    tok = registry.get("video_tiny")
    assert registry.get("video_tiny") is tok  # loaded once
    assert registry.by_fingerprint(tok.fingerprint) == "video_tiny" and registry.by_fingerprint("0" * 16) is None
    with pytest.raises(vqtok.ExportError, match="unknown model 'nope'"):
        registry.get("nope")
    with pytest.raises(vqtok.ExportError, match="'tiny' is an image tokenizer; choose a video tokenizer: video_tiny"):
        registry.get("tiny", video=True)

    other = export_tiny_models(tmp_path / "other", seed=1)
    both = ModelRegistry.discover([], [folder, other])
    assert both.names() == ["tiny", "tiny (2)", "video_tiny", "video_tiny (2)"]
    with pytest.raises(vqtok.ExportError, match="no tokenizer"):
        ModelRegistry.discover([], [tmp_path / "models" / "notes"])


def test_workspace_deletes_old_request_folders(tmp_path):
    workspace = Workspace(max_age_s=60, parent=tmp_path)
    old = workspace.new_dir()
    (old / "tokens.safetensors").write_bytes(b"x")
    os.utime(old, (time.time() - 120, time.time() - 120))
    recent = workspace.new_dir()
    assert not old.exists() and recent.exists()
    workspace.close()
    assert not workspace.root.exists()


def test_demo_command_refuses_a_model_that_is_not_an_export(tmp_path, capsys):
    assert vqtok_main(["demo", "--image-model", str(tmp_path / "missing"), "--models-dir", str(tmp_path)]) == 2
    assert "no tokenizer export" in capsys.readouterr().err


def test_demo_command_checks_what_it_is_told(tmp_path, capsys):
    folder = export_tiny_models(tmp_path / "models")
    assert vqtok_main(["demo", "--models-dir", str(tmp_path / "nowhere")]) == 2
    assert "--models-dir" in capsys.readouterr().err
    assert vqtok_main(["demo", "--video-model", str(folder / "tiny"), "--models-dir", str(folder)]) == 2
    assert "is an image tokenizer" in capsys.readouterr().err
