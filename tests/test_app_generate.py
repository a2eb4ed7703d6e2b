"""The app's Generate tab, served for real and called over its API: samples drawn from a prior export, decoded with
the tokenizer the prior names, checked against the public API; the prior registry; readable refusals."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio", reason="the app needs the app extra: pip install -e '.[app]'")

from app_server import export_tiny_models, serve_app  # noqa: E402
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import vqtok  # noqa: E402
from app.generate_tab import UNCONDITIONAL, class_choices  # noqa: E402
from app.limits import Limits  # noqa: E402
from app.priors import PriorRegistry  # noqa: E402
from vqtok.inputs import to_uint8  # noqa: E402
from vqtok.prior import PriorConfig, PriorInfo, build_prior, save_prior  # noqa: E402
from vqtok.token_file import load_tokens  # noqa: E402

LIMITS = Limits(max_generate=4, queue_size=4)


def write_prior(folder: Path, fingerprint: str, classes: list[str], seed: int = 0) -> Path:
    """An untrained prior export over tiny's 512 codes (what the tab does needs no training), 4x4 grids."""
    torch.manual_seed(seed)
    model = build_prior(PriorConfig(num_codes=512, num_classes=len(classes), dim=32, depth=1, heads=4))
    return save_prior(model, PriorInfo("tiny", fingerprint, classes, [4, 4]), folder)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    models = export_tiny_models(tmp_path_factory.mktemp("models"))
    priors = tmp_path_factory.mktemp("priors")
    write_prior(priors / "shapes", vqtok.load(models / "tiny").fingerprint, ["disc", "square"])
    write_prior(priors / "orphan", "0123456789abcdef", [])  # a tokenizer the app does not have
    (priors / "broken").mkdir()
    (priors / "broken" / "config.json").write_text("{}")  # skipped with a warning
    with serve_app(models, LIMITS, tmp_path_factory.mktemp("gradio"), priors_dir=priors) as url:
        yield url, models, priors


def read_png(path: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_generated_samples_are_the_priors_draws_decoded_by_its_tokenizer(served):
    url, models, priors = served
    client = Client(url, verbose=False)
    gallery, tokens, summary = client.predict("shapes", "square", 3, 2.0, 0.9, 16, 7, api_name="/generate")
    assert len(gallery) == 3 and "**square**" in summary and "decoded with **tiny**" in summary
    expected = vqtok.load_prior(priors / "shapes").sample(3, "square", seed=7, cfg_scale=2.0, temperature=0.9, top_k=16)
    tok = vqtok.load(models / "tiny")
    meta, items = load_tokens(tokens, tok.fingerprints)  # the Decode tab and `vqtok decode` read it
    assert meta["model_fingerprint"] == tok.fingerprint
    assert torch.equal(torch.stack([it.ids for it in items]), expected)  # the seed reproduces the draw
    for k, entry in enumerate(gallery):
        decoded = to_uint8(tok.decode(expected[k : k + 1])[0])  # (32, 32, 3)
        np.testing.assert_array_equal(read_png(entry["image"]), decoded)

    gallery, _, summary = client.predict("shapes", UNCONDITIONAL, 1, 5.0, 1.0, 0, 0, api_name="/generate")
    assert len(gallery) == 1 and "unconditional" in summary and "CFG 1.0" in summary  # no class: no guidance


def test_what_the_app_cannot_generate_is_refused_readably(served):
    client = Client(served[0], verbose=False)

    def refusal(*inputs: object) -> str:
        with pytest.raises(AppError) as info:
            client.predict(*inputs, api_name="/generate")
        message = str(info.value)
        assert "Traceback" not in message and "/tmp/" not in message
        return message

    message = refusal("orphan", UNCONDITIONAL, 1, 1.0, 1.0, 0, 0)
    assert "which this app does not have" in message and "0123456789abcdef" in message
    assert "knows no class 'cat'" in refusal("shapes", "cat", 1, 1.0, 1.0, 0, 0)
    assert "greater than maximum value 4" in refusal("shapes", "disc", 5, 1.0, 1.0, 0, 0)  # Limits.max_generate
    assert "less than minimum value 0" in refusal("shapes", "disc", 1, 1.0, 1.0, -3, 0)  # top-k


def test_the_registry_skips_broken_prior_folders_and_lists_classes(served, caplog):
    priors = served[2]
    with caplog.at_level(logging.WARNING):
        registry = PriorRegistry.discover(folders=[priors])
    assert registry.names() == ["orphan", "shapes"] and "skipping prior" in caplog.text
    assert class_choices(registry, "shapes") == [UNCONDITIONAL, "disc", "square"]
    assert class_choices(registry, "orphan") == [UNCONDITIONAL]
    with pytest.raises(vqtok.ExportError):
        PriorRegistry.discover([priors / "broken"])  # a prior named on the command line must load
    assert len(PriorRegistry.discover()) == 0  # no priors: the app has no Generate tab
