"""Hub names: ``hf://OWNER/REPO[@REVISION][/PATH][?from=SOURCE]`` resolved through huggingface_hub's download and
cache. ``?from=SOURCE`` (or ``convert_from``) names the codebase of a published checkpoint (see
:data:`vqtok.convert.SOURCES`), so that a name alone says how to load it: wherever vqtok takes a model name (the CLI's
``--model``, the app's model list), ``hf://FoundationVision/LlamaGen/vq_ds16_c2i.pt?from=llamagen`` works.

- Without a converter, PATH (default: the repository's root) is a folder holding a vqtok export (what
  ``vqtok export`` writes, model card included), and its three files are fetched.
- With ``convert_from``, PATH is the published checkpoint (a file; for diffusers, the VQModel's folder, e.g.
  ``vqvae``). It is converted once and the export cached beside it in the snapshot folder
  (``<snapshot>/<PATH>.vqtok-<source>``); later loads read that export.

huggingface_hub reads ``HF_HUB_OFFLINE`` and ``HF_HUB_CACHE`` when it is imported; they are read again here at
each call, so a process that sets them later is obeyed too. Offline, a name missing from the cache is an
:class:`~vqtok.errors.ExportError` that says so.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from vqtok.convert.options import ConvertOptions
from vqtok.errors import ExportError, InputError
from vqtok.export import CONFIG_FILE, DECODER_FILE, ENCODER_FILE, save_export

HUB_PREFIX = "hf://"
_DIFFUSERS_FILES = ("config.json", "diffusion_pytorch_model.safetensors")


@dataclass(frozen=True)
class HubName:
    """A parsed ``hf://OWNER/REPO[@REVISION][/PATH]``."""

    repo_id: str
    path: str  # "" for the repository's root
    revision: str | None
    convert_from: str | None  # ?from=SOURCE


def parse(name: str) -> HubName:
    """Split a hub name; raise :class:`InputError` naming the expected form."""
    body, _, query = name.partition("?")
    parts = body[len(HUB_PREFIX) :].strip("/").split("/") if body.startswith(HUB_PREFIX) else []
    key, _, convert_from = query.partition("=")
    if len(parts) < 2 or any(p in ("", ".", "..") for p in parts) or (query and (key != "from" or not convert_from)):
        raise InputError(f"{name!r} is not a hub name; expected hf://OWNER/REPO[@REVISION][/PATH][?from=SOURCE]")
    repo, _, revision = parts[1].partition("@")
    return HubName(f"{parts[0]}/{repo}", "/".join(parts[2:]), revision or None, convert_from or None)


def is_hub_name(name: object) -> bool:
    return isinstance(name, str) and name.startswith(HUB_PREFIX)


def resolve(
    name: str,
    convert_from: str | None = None,
    options: ConvertOptions | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """The local export directory of a hub name (downloaded, or converted and cached, as needed)."""
    hub = parse(name)
    if hub.convert_from and convert_from and hub.convert_from != convert_from:
        raise InputError(f"{name!r} says ?from={hub.convert_from}, but convert_from={convert_from!r} was given")
    convert_from = convert_from or hub.convert_from
    if convert_from is None:
        try:
            files = [
                _download(hub, f"{hub.path}/{f}".lstrip("/"), name) for f in (CONFIG_FILE, ENCODER_FILE, DECODER_FILE)
            ]
        except ExportError as e:
            raise ExportError(f"{e}; for a published checkpoint rather than a vqtok export, add ?from=SOURCE") from None
        return files[0].parent
    options = options or ConvertOptions()
    cached = _cache_dir(hub, _fetch_source(hub, convert_from, name), convert_from, options, dtype)
    if (cached / CONFIG_FILE).is_file():
        return cached
    return _convert_into(hub, convert_from, options, dtype, cached, name)


def convert_hub(
    name: str, convert_from: str, options: ConvertOptions, out: str | os.PathLike | None, dtype: torch.dtype
) -> Path:
    """:func:`vqtok.convert` of a hub name: into ``out``, or (``out=None``) the cache beside the download."""
    if out is None:
        return resolve(name, convert_from, options, dtype)
    return _convert_into(parse(name), convert_from, options, dtype, Path(out), name)


def _convert_into(
    hub: HubName, convert_from: str, options: ConvertOptions, dtype: torch.dtype, out: Path, name: str
) -> Path:
    from vqtok.convert import read_model

    source = _fetch_source(hub, convert_from, name)
    default_name = hub.repo_id.split("/")[1] + (f"-{Path(hub.path).stem}" if hub.path else "")
    published = f"hf://{hub.repo_id}" + (f"/{hub.path}" if hub.path else "") + f" ({convert_from})"
    labels = {"name": options.name or default_name, "source": options.source or published}
    model = read_model(source, convert_from, ConvertOptions(**{**asdict(options), **labels}))
    return save_export(model, out, dtype)


def _fetch_source(hub: HubName, convert_from: str, name: str) -> Path:
    """The published checkpoint in the local cache: a file, or for diffusers the model's folder."""
    if convert_from == "diffusers":
        files = [_download(hub, f"{hub.path}/{f}".lstrip("/"), name) for f in _DIFFUSERS_FILES]
        _download(hub, "README.md", name, required=False)  # the model card's licence, when the repo has one
        return files[0].parent
    if not hub.path:
        raise InputError(f"{name!r} names no file; give the checkpoint's path in the repository: hf://OWNER/REPO/FILE")
    return _download(hub, hub.path, name)


def _cache_dir(hub: HubName, source: Path, convert_from: str, options: ConvertOptions, dtype: torch.dtype) -> Path:
    """Where the converted export of ``source`` is cached: beside it (inside the snapshot for a repository's root
    folder), one folder per converter and options."""
    suffix = f".vqtok-{convert_from}"
    if options != ConvertOptions() or dtype != torch.float32:
        key = json.dumps({**asdict(options), "dtype": str(dtype)}, sort_keys=True)
        suffix += "-" + hashlib.sha256(key.encode()).hexdigest()[:8]
    if not hub.path:
        return source / suffix.lstrip(".")
    return source.with_name(source.name + suffix)


def _download(hub: HubName, filename: str, name: str, required: bool = True) -> Path:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled
    except ImportError:
        raise ExportError(f"{name}: hub names need huggingface_hub (pip install 'vqtok[hub]')") from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    cache = os.environ.get("HF_HUB_CACHE") or None
    try:
        return Path(
            hf_hub_download(hub.repo_id, filename, revision=hub.revision, cache_dir=cache, local_files_only=offline)
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        if not required:
            return Path()
        where = cache or "huggingface_hub's default cache"
        raise ExportError(
            f"{name}: {hub.repo_id}/{filename} is not in the Hugging Face cache ({where}) and downloads are off "
            f"(HF_HUB_OFFLINE or no network): fetch it once with the network on ({type(e).__name__})"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        if not required:
            return Path()
        raise ExportError(f"{name}: cannot fetch {hub.repo_id}/{filename}: {str(e).splitlines()[0]}") from None
