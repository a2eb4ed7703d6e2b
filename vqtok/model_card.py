"""The model card (``README.md``) written into every export, with Hugging Face metadata, so an export folder can
be uploaded as it is (``hf upload OWNER/REPO EXPORT_DIR``) and loaded back with ``vqtok.load("hf://OWNER/REPO")``."""

from __future__ import annotations

import json
import re

from vqtok._version import __version__
from vqtok.config import TokenizerConfig

CARD_FILE = "README.md"
_HUB_REPO = re.compile(r"hf://([\w.-]+/[\w.-]+)")


def model_card(config: TokenizerConfig, fingerprint: str) -> str:
    """Markdown with a YAML front matter (library_name, license, tags, base_model for converted hub models)."""
    meta = [
        "library_name: vqtok",
        f"license: {_yaml(config.license or 'other')}",
        "tags:",
        *(f"- {t}" for t in ("vqtok", "image-tokenizer", "vq-vae", config.quantizer)),
    ]
    base = _HUB_REPO.search(config.source)
    if base:
        meta.append(f"base_model: {_yaml(base.group(1))}")
    kind = "video" if config.video else "image"
    grid = (
        f"{config.temporal_downsample}x{config.downsample}x{config.downsample}"
        if config.video
        else f"f{config.downsample}"
    )
    lines = [
        "---",
        *meta,
        "---",
        "",
        f"# {config.name}",
        "",
        f"A vqtok {kind} tokenizer ({grid}, {config.codebook_size} codes, {config.quantizer.upper()}): "
        f"pixels in [-1, 1] <-> grids of token ids.",
        "",
    ]
    if config.source:
        lines += [f"Converted from {config.source} (licence: {config.license or 'not stated'}).", ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| fingerprint (token files carry it) | `{fingerprint}` |",
        f"| architecture | `{json.dumps(config.architecture(), sort_keys=True)}` |",
        f"| written by | vqtok {__version__} |",
        "",
        "## Use",
        "",
        "```python",
        "import vqtok",
        'tok = vqtok.load("hf://OWNER/REPO")  # or the path of this folder',
        "ids = tok.encode(x)  # (B, 3, H, W) in [-1, 1] -> (B, H/f, W/f) int64",
        "y = tok.decode(ids)",
        "```",
        "",
        "Publish this folder as it is: `hf upload OWNER/REPO .` (or `huggingface_hub.upload_folder`).",
        "",
    ]
    return "\n".join(lines)


def _yaml(value: str) -> str:
    """A YAML scalar: plain when safe, else JSON-quoted (JSON strings are valid YAML)."""
    return value if re.fullmatch(r"[\w./+-]+", value) else json.dumps(value)
