"""The exported tokenizers the app offers: found in model folders or named on the command line, loaded on first
use and kept, and looked up by name or by the fingerprint a token file carries."""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import vqtok
from vqtok import ConfigError, ExportError, export_fingerprints, resolve_export

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEntry:
    """One exported tokenizer directory."""

    name: str  # shown in the model menus (the directory name, made unique)
    path: Path  # the export directory (config.json + encoder/decoder safetensors)
    video: bool  # a video tokenizer (it also encodes images, as 1-frame videos)


class ModelRegistry:
    """Named exports, loaded lazily (thread-safe) and cached for the life of the app."""

    def __init__(self, entries: Sequence[ModelEntry], device: str = "cpu") -> None:
        if not entries:
            raise ExportError(
                "the app has no tokenizer: pass --image-model/--video-model, or export one to checkpoints/"
            )
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ConfigError(f"model names must be unique, got {names}")
        self.entries = {e.name: e for e in entries}
        self.device = device
        self._loaded: dict[str, vqtok.Tokenizer] = {}
        self._fingerprints: dict[str, tuple[str, ...]] = {}  # by name, read from the export files
        self._lock = threading.Lock()

    @classmethod
    def discover(
        cls, models: Sequence[str | Path] = (), folders: Sequence[str | Path] = (), device: str = "cpu"
    ) -> ModelRegistry:
        """The exports named in ``models`` (paths or short names; these must load), then every export directory
        directly inside ``folders`` (skipped with a warning when its config.json is unreadable)."""
        entries: list[ModelEntry] = []
        seen: set[Path] = set()
        for model in models:
            path = resolve_export(model).resolve()
            if path not in seen:
                seen.add(path)
                entries.append(_entry(path, unique_name(path.name, {e.name for e in entries})))
        for folder in folders:
            for path in export_dirs(folder):
                if path in seen:
                    continue
                seen.add(path)
                try:
                    entries.append(_entry(path, unique_name(path.name, {e.name for e in entries})))
                except ExportError as e:
                    log.warning("skipping %s: %s", path, e)
        registry = cls(entries, device)
        for model in models:  # what the user named must work: fail at start-up, not on the first request
            registry.get(registry.name_of(resolve_export(model).resolve()))
        return registry

    def names(self, video: bool | None = None) -> list[str]:
        """Model names, image tokenizers first; ``video=True``: only video tokenizers."""
        entries = sorted(self.entries.values(), key=lambda e: e.video)  # stable: keeps the discovery order
        return [e.name for e in entries if video is None or e.video == video]

    def name_of(self, path: Path) -> str:
        return next(e.name for e in self.entries.values() if e.path == path)

    def get(self, name: str, video: bool = False) -> vqtok.Tokenizer:
        """The tokenizer called ``name``, loaded on first use; ``video=True``: it must be a video tokenizer."""
        if name not in self.entries:
            raise ExportError(f"unknown model {name!r}; this app has {', '.join(self.names())}")
        if video and not self.entries[name].video:
            raise ExportError(
                f"{name!r} is an image tokenizer; choose a video tokenizer: {', '.join(self.names(True))}"
            )
        with self._lock:
            if name not in self._loaded:
                path = self.entries[name].path
                # "auto": a folder written by vqtok export-onnx runs through onnxruntime, any other through torch
                self._loaded[name] = vqtok.load(path, device=self.device, backend="auto")
            return self._loaded[name]

    def by_fingerprint(self, fingerprint: str) -> str | None:
        """The name of the model that wrote token files with ``fingerprint`` (one of its fingerprints), or None."""
        for name, entry in self.entries.items():
            try:
                with self._lock:
                    if name in self._loaded:  # the model that will decode: files replaced since do not count
                        self._fingerprints[name] = self._loaded[name].fingerprints
                    elif name not in self._fingerprints:  # read from the files: no model is loaded to compare
                        self._fingerprints[name] = export_fingerprints(entry.path)
                if fingerprint in self._fingerprints[name]:
                    return name
            except ExportError as e:  # a broken export in a model folder must not hide the others
                log.warning("cannot read model %s: %s", name, e)
        return None


def _entry(path: Path, name: str) -> ModelEntry:
    try:
        config = vqtok.TokenizerConfig.from_file(path / "config.json")
    except ConfigError as e:
        raise ExportError(f"{path} is not a readable export: {e}") from None
    return ModelEntry(name=name, path=path, video=config.video)


def export_dirs(folder: str | Path) -> list[Path]:
    """The export folders (those with a config.json) directly inside ``folder``, resolved and sorted."""
    return sorted(p.resolve() for p in Path(folder).iterdir() if (p / "config.json").is_file())


def unique_name(name: str, taken: Collection[str]) -> str:
    """``name``, or ``name (2)``, ``name (3)``, ... whichever is not in ``taken`` yet (two folders of one name)."""
    unique, n = name, 2
    while unique in taken:
        unique, n = f"{name} ({n})", n + 1
    return unique
