"""The prior exports the Generate tab offers (``vqtok prior export`` folders), found in prior folders or named on the
command line, loaded at start-up (they are small) and looked up by name."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import vqtok
from vqtok import ConfigError, ExportError, Prior

from .models import export_dirs, unique_name

log = logging.getLogger(__name__)


class PriorRegistry:
    """Named, loaded priors; empty is allowed (the app then has no Generate tab)."""

    def __init__(self, priors: dict[str, Prior]) -> None:
        self.priors = dict(priors)

    @classmethod
    def discover(
        cls, priors: Sequence[str | Path] = (), folders: Sequence[str | Path] = (), device: str = "cpu"
    ) -> PriorRegistry:
        """The exports named in ``priors`` (these must load), then every prior export directly inside ``folders``
        (skipped with a warning when it does not load). Names are the directory names, made unique."""
        loaded: dict[str, Prior] = {}
        seen: set[Path] = set()
        for path in (Path(p).resolve() for p in priors):
            seen.add(path)
            loaded[unique_name(path.name, loaded)] = vqtok.load_prior(path, device=device)
        for folder in folders:
            for path in export_dirs(folder):
                if path in seen:
                    continue
                seen.add(path)
                try:
                    loaded[unique_name(path.name, loaded)] = vqtok.load_prior(path, device=device)
                except (ExportError, ConfigError) as e:
                    log.warning("skipping prior %s: %s", path, e)
        return cls(loaded)

    def names(self) -> list[str]:
        return list(self.priors)

    def get(self, name: str) -> Prior:
        if name not in self.priors:
            raise ExportError(f"unknown prior {name!r}; this app has {', '.join(self.names()) or 'none'}")
        return self.priors[name]

    def __len__(self) -> int:
        return len(self.priors)
