"""Convert the field's published tokenizers into vqtok exports: ``vqtok.convert(source, out, from_="taming")``.

Sources (one module each): ``taming`` (taming-transformers VQGAN ``.ckpt``), ``llamagen`` (LlamaGen VQ ``.pt``),
``diffusers`` (a ``VQModel`` folder), ``open-magvit2`` (Open-MAGVIT2's LFQ ``.ckpt``). The checkpoint's
architecture is read from its tensors (and, for diffusers, its config.json); what they cannot show is an option
(:class:`ConvertOptions`). Nothing in a checkpoint runs: pickles are read by :mod:`vqtok.convert.pickle_reader`.
The result is an ordinary export that :func:`vqtok.load` takes, with the published model's name and licence in its
config.json (``source``, ``license``) and model card.

The package is callable: ``vqtok.convert(...)`` is :func:`convert` (``vqtok.convert.convert`` for type checkers),
and its modules import as usual (``import vqtok.convert.taming``).
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

import torch

from vqtok.convert.options import ConvertOptions
from vqtok.errors import ConfigError, InputError
from vqtok.export import DTYPES, save_export
from vqtok.model.vqvae import VQVAE

# --from name -> module under vqtok.convert with read_model(path, options) -> VQVAE
SOURCES = {"taming": "taming", "llamagen": "llamagen", "diffusers": "diffusers", "open-magvit2": "open_magvit2"}
HUB_PREFIX = "hf://"


def read_model(source: str | os.PathLike, from_: str, options: ConvertOptions | None = None) -> VQVAE:
    """The vqtok model of a published checkpoint (a local path), in float32 and eval mode."""
    if from_ not in SOURCES:
        raise ConfigError(f"unknown source {from_!r}; vqtok converts from {sorted(SOURCES)}")
    path = Path(source)
    if not path.exists():
        raise InputError(f"no checkpoint at {path}")
    module = importlib.import_module(f"vqtok.convert.{SOURCES[from_]}")
    model: VQVAE = module.read_model(path, options or ConvertOptions())
    return model.eval()


def convert(
    source: str | os.PathLike,
    out: str | os.PathLike | None,
    from_: str,
    *,
    name: str | None = None,
    license: str | None = None,
    norm_groups: int | None = None,
    l2_normalize: bool | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Convert a published tokenizer checkpoint into a vqtok export directory and return its path.

    Args:
        source: the checkpoint as its authors publish it (a ``.ckpt``/``.pt`` file, or a diffusers folder), or a hub
            name ``hf://OWNER/REPO/FILE`` resolved through huggingface_hub's cache (see :mod:`vqtok.convert.hub`).
        out: the export directory to write; for a hub name ``None`` caches the export beside the downloaded file.
        from_: the source codebase: "taming", "llamagen", "diffusers" or "open-magvit2".
        name, license, norm_groups, l2_normalize: see :class:`ConvertOptions` (``None``: the published default).
        dtype: storage type of the encoder and decoder weights.
    """
    if dtype not in DTYPES.values():
        raise InputError(f"dtype must be one of {sorted(DTYPES)}, got {dtype}")
    options = ConvertOptions(name=name, license=license, norm_groups=norm_groups, l2_normalize=l2_normalize)
    if str(source).startswith(HUB_PREFIX):
        from vqtok.convert.hub import convert_hub

        return convert_hub(str(source), from_, options, out, dtype)
    if out is None:
        raise InputError("give the export directory to write (out); only hub names have a default place")
    return save_export(read_model(source, from_, options), out, dtype)


class _CallablePackage(types.ModuleType):
    """This package's class: calling it calls :func:`convert`, so ``vqtok.convert`` is both."""

    def __call__(self, *args: object, **kwargs: object) -> Path:
        return convert(*args, **kwargs)  # type: ignore[arg-type]


sys.modules[__name__].__class__ = _CallablePackage
