"""The one dataclass that describes a tokenizer. It is what ``config.json`` holds in an export."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vqtok.errors import ConfigError

# Training checkpoints (.ckpt) written by vqtok.training store the tokenizer config under this key, as plain data.
CHECKPOINT_CONFIG_KEY = "vqtok_tokenizer_config"
QUANTIZER_KINDS = ("vq", "fsq", "lfq")  # the registry in vqtok.model.quantizers builds each
BACKBONES = ("vqgan", "magvit2")  # encoder/decoder designs: vqtok.model.autoencoder, vqtok.model.magvit2
# Training options that config.json held before vqtok 0.2 (they now live in QuantizerTraining and the training
# module): still accepted when reading old exports and checkpoints, and dropped.
LEGACY_TRAINING_FIELDS = (
    "gradient_checkpointing",
    "codebook",
    "ema_decay",
    "commitment_weight",
    "dead_code_threshold",
    "kmeans_init",
)


@dataclass
class TokenizerConfig:
    """The architecture of a tokenizer: everything that defines its function from pixels to ids and back.

    The spatial downsampling factor is ``2 ** (len(channel_mults) - 1)``. With ``video=True`` the model is a causal
    3D autoencoder over (B, C, T, H, W): frame t is encoded from frames <= t only, so 1 + r*k frames become
    1 + k latent frames (r = ``temporal_downsample``) and a 1-frame video is tokenized like an image.

    ``quantizer`` picks the quantizer (:mod:`vqtok.model.quantizers`): "vq" (a learned codebook of ``num_codes``
    vectors of ``code_dim``), "fsq" (the implicit grid of ``levels``; ``code_dim`` must be ``len(levels)``) or
    "lfq" (the 2^``code_dim`` sign patterns of ``code_dim`` channels). How a quantizer trains (EMA, restarts,
    loss weights) is not architecture: see :class:`QuantizerTraining`. ``name``, ``source`` and ``license`` are
    labels only: they are not part of the fingerprint, so renaming an export keeps its token files valid. Fields
    added after vqtok 0.2 (:data:`LATER_FIELDS`) are left out of ``config.json`` and the fingerprint while they
    hold their defaults, so older exports and their token files stay valid byte for byte.
    """

    name: str = "f8"  # a label carried into exports and logs (not part of the architecture)
    in_channels: int = 3  # RGB
    base_channels: int = 128  # width of the first encoder level
    channel_mults: list[int] = field(default_factory=lambda: [1, 1, 2, 4])  # width per level, one downsample between
    num_res_blocks: int = 2  # ResNet blocks per level
    attention: bool = True  # self-attention (SDPA) in the middle blocks, at the lowest resolution
    z_channels: int = 256  # encoder output / decoder input channels
    norm_groups: int = 32  # GroupNorm groups; every width must be divisible by it
    quantizer: str = "vq"  # "vq", "fsq" or "lfq"
    num_codes: int = 16384  # vq: codebook size K
    code_dim: int = 8  # dimension of a code vector (the lookup space); lfq: bits, 2^code_dim codes
    l2_normalize: bool = True  # vq: compare l2-normalised vectors (cosine similarity) in the lookup
    levels: list[int] = field(default_factory=list)  # fsq: levels per channel, e.g. [8, 8, 8, 5, 5, 5]
    video: bool = False  # causal 3D convolutions over (B, C, T, H, W) instead of 2D ones over (B, C, H, W)
    temporal_downsample: int = 1  # video only: time factor r (a power of 2), taken at the deepest resolution steps
    # Self-attention after every ResNet block of these levels (0 = full resolution; the decoder mirrors them), as in
    # taming's attn_resolutions; images only. Converted checkpoints use it (see vqtok.convert).
    attention_levels: list[int] = field(default_factory=list)
    # "vqgan": the encoder/decoder of vqtok.model.autoencoder (taming's design); "magvit2": Open-MAGVIT2's
    # (vqtok.model.magvit2: adaptive GroupNorm decoder, no attention, no 1x1 convs around the codes: z_channels ==
    # code_dim), images only.
    backbone: str = "vqgan"
    source: str = ""  # label: the published model an export was converted from (not part of the architecture)
    license: str = ""  # label: that model's licence, e.g. "mit" (not part of the architecture)

    def __post_init__(self) -> None:
        if isinstance(self.channel_mults, tuple):
            self.channel_mults = list(self.channel_mults)
        if isinstance(self.levels, tuple):
            self.levels = list(self.levels)
        if isinstance(self.attention_levels, tuple):
            self.attention_levels = list(self.attention_levels)
        self.validate()

    @property
    def codebook_size(self) -> int:
        """Number of codes K: ids lie in [0, K)."""
        if self.quantizer == "fsq":
            return math.prod(self.levels)
        if self.quantizer == "lfq":
            return 2**self.code_dim
        return self.num_codes

    def architecture(self) -> dict[str, Any]:
        """The fields that define the function from pixels to ids and back (all but the labels), as plain data."""
        d = self.to_dict()
        for label in LABEL_FIELDS:
            d.pop(label, None)
        return d

    @property
    def downsample(self) -> int:
        """Spatial downsampling factor f: an HxW image becomes an (H/f)x(W/f) grid of ids."""
        return 2 ** (len(self.channel_mults) - 1)

    @property
    def temporal_levels(self) -> int:
        """How many of the 2x resolution steps also halve time: log2(temporal_downsample)."""
        return self.temporal_downsample.bit_length() - 1

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming every invalid field."""
        problems = _type_problems(self)
        if problems:  # the value checks below assume the right types
            raise ConfigError("invalid tokenizer config: " + "; ".join(problems))
        if self.in_channels < 1:
            problems.append(f"in_channels must be >= 1, got {self.in_channels}")
        if self.base_channels < 1 or self.z_channels < 1:
            problems.append(
                f"base_channels and z_channels must be >= 1, got {self.base_channels} and {self.z_channels}"
            )
        if not self.channel_mults or any(m < 1 for m in self.channel_mults):
            problems.append(f"channel_mults must be a non-empty list of positive ints, got {self.channel_mults}")
        widths = [self.base_channels * m for m in self.channel_mults]
        widths += [self.z_channels] if self.backbone != "magvit2" else []  # magvit2 never normalises z
        if self.norm_groups < 1 or any(w % self.norm_groups for w in widths):
            problems.append(f"every width {widths} must be divisible by norm_groups={self.norm_groups}")
        if self.num_res_blocks < 1:
            problems.append(f"num_res_blocks must be >= 1, got {self.num_res_blocks}")
        if self.code_dim < 1:
            problems.append(f"code_dim must be >= 1, got {self.code_dim}")
        problems += self._quantizer_problems()
        problems += self._temporal_problems()
        problems += self._attention_problems()
        problems += self._backbone_problems()
        if problems:
            raise ConfigError("invalid tokenizer config: " + "; ".join(problems))

    def _quantizer_problems(self) -> list[str]:
        if self.quantizer not in QUANTIZER_KINDS:
            return [f"quantizer must be one of {list(QUANTIZER_KINDS)}, got {self.quantizer!r}"]
        if self.quantizer == "vq" and self.num_codes < 2:
            return [f"num_codes must be >= 2, got {self.num_codes}"]
        if self.quantizer == "fsq":
            if not self.levels or any(level < 2 for level in self.levels):
                return [f"quantizer 'fsq' needs levels, a list of ints >= 2, got {self.levels}"]
            if self.code_dim != len(self.levels):
                return [f"quantizer 'fsq' needs code_dim == len(levels) = {len(self.levels)}, got {self.code_dim}"]
            if math.prod(self.levels) > 2**31:
                return [f"levels {self.levels} give {math.prod(self.levels)} codes, more than 2^31"]
        if self.quantizer == "lfq" and not 1 <= self.code_dim <= 31:
            return [f"quantizer 'lfq' needs code_dim (its bits) in [1, 31], got {self.code_dim}"]
        if self.quantizer != "fsq" and self.levels:
            return [f"levels is for quantizer 'fsq' only, got levels={self.levels} with {self.quantizer!r}"]
        return []

    def _temporal_problems(self) -> list[str]:
        r = self.temporal_downsample
        if r < 1 or r & (r - 1):
            return [f"temporal_downsample must be a power of 2 (1, 2, 4, ...), got {r}"]
        if not self.video and r != 1:
            return [f"temporal_downsample={r} needs video=true (an image tokenizer has no time axis)"]
        if self.temporal_levels > len(self.channel_mults) - 1:
            return [
                f"temporal_downsample={r} needs {self.temporal_levels} resolution steps, but channel_mults "
                f"{self.channel_mults} gives {len(self.channel_mults) - 1}"
            ]
        return []

    def _attention_problems(self) -> list[str]:
        levels = self.attention_levels
        if not levels:
            return []
        if self.video:
            return [f"attention_levels is for image tokenizers only, got {levels} with video=true"]
        if sorted(set(levels)) != levels or not 0 <= levels[0] <= levels[-1] < len(self.channel_mults):
            return [
                f"attention_levels must be increasing level indices in [0, {len(self.channel_mults)}), got {levels}"
            ]
        return []

    def _backbone_problems(self) -> list[str]:
        if self.backbone not in BACKBONES:
            return [f"backbone must be one of {list(BACKBONES)}, got {self.backbone!r}"]
        if self.backbone == "magvit2":
            if self.video or self.attention or self.attention_levels:
                return ["backbone 'magvit2' has no attention and no video form: set attention=false, video=false"]
            if self.code_dim != self.z_channels:
                return [f"backbone 'magvit2' quantizes z directly: code_dim must equal z_channels={self.z_channels}"]
        return []

    def to_dict(self) -> dict[str, Any]:
        """Plain data; the :data:`LATER_FIELDS` are left out while they hold their defaults."""
        d = dataclasses.asdict(self)
        for key, default in LATER_FIELDS.items():
            if d[key] == default:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TokenizerConfig:
        """A config from plain data. The training options that configs before vqtok 0.2 carried
        (:data:`LEGACY_TRAINING_FIELDS`) are accepted and dropped: they never changed the function."""
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k not in LEGACY_TRAINING_FIELDS}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown tokenizer config fields {unknown}; known fields are {sorted(known)}")
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"invalid tokenizer config: {e}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> TokenizerConfig:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON or an int of 4300+ digits
            raise ConfigError(f"cannot read tokenizer config {path}: {e}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path} must hold a JSON object, got {type(d).__name__}")
        return cls.from_dict(d)

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> TokenizerConfig:
        """A named preset (see :data:`PRESETS`), with fields optionally overridden."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        moved = sorted(set(overrides) & set(LEGACY_TRAINING_FIELDS))
        if moved:
            raise ConfigError(
                f"{moved} are training options, not architecture: give them to QuantizerTraining (model."
                "quantizer_training in a YAML) or, for gradient_checkpointing, to VQVAE / model.gradient_checkpointing"
            )
        return cls.from_dict({**PRESETS[name], **overrides})


@dataclass
class QuantizerTraining:
    """How the quantizer trains; not part of the architecture, so not in exports or fingerprints.

    VQ uses ``codebook`` .. ``kmeans_init`` and ``commitment_weight``; LFQ uses ``commitment_weight`` and the
    ``entropy_*`` fields; FSQ uses none.
    """

    codebook: str = "ema"  # vq: "ema" (EMA k-means updates) or "learned" (codebook trained by the codebook loss)
    ema_decay: float = 0.99  # vq: EMA decay of cluster sizes and sums
    commitment_weight: float = 0.25  # vq, lfq: beta in beta * ||z - sg(e)||^2
    dead_code_threshold: float = 0.1  # vq: re-seed codes whose EMA usage falls below this fraction of an even share
    kmeans_init: bool = False  # vq: initialise the codebook by k-means on the first training batch
    entropy_weight: float = 0.1  # lfq: weight of the entropy loss
    entropy_diversity: float = 1.0  # lfq: weight of the codebook entropy against the per-sample entropy
    entropy_temperature: float = 0.01  # lfq: softmax temperature of the code probabilities

    def __post_init__(self) -> None:
        problems = []
        if self.codebook not in ("ema", "learned"):
            problems.append(f"codebook must be 'ema' or 'learned', got {self.codebook!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            problems.append(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        for name in ("commitment_weight", "dead_code_threshold", "entropy_weight", "entropy_diversity"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.entropy_temperature > 0:
            problems.append(f"entropy_temperature must be > 0, got {self.entropy_temperature}")
        if problems:
            raise ConfigError("invalid quantizer training options: " + "; ".join(problems))


def _type_problems(config: TokenizerConfig) -> list[str]:
    """Fields whose value has the wrong type (config.json is user-editable; bool is not accepted as an int)."""
    problems = []
    for f in dataclasses.fields(config):
        value, kind = getattr(config, f.name), _FIELD_KINDS[f.name]
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and (isinstance(value, int) or math.isfinite(value))  # JSON's NaN and Infinity are floats
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is list:
            ok = isinstance(value, list) and all(type(v) is int for v in value)
        else:
            ok = isinstance(value, kind)
        if not ok:
            expected = "a finite number" if kind is float else f"of type {f.type}"
            problems.append(f"{f.name} must be {expected}, got {value!r}")
    return problems


_FIELD_KINDS: dict[str, type] = {
    "name": str,
    "in_channels": int,
    "base_channels": int,
    "channel_mults": list,
    "num_res_blocks": int,
    "attention": bool,
    "z_channels": int,
    "norm_groups": int,
    "quantizer": str,
    "num_codes": int,
    "code_dim": int,
    "l2_normalize": bool,
    "levels": list,
    "video": bool,
    "temporal_downsample": int,
    "attention_levels": list,
    "backbone": str,
    "source": str,
    "license": str,
}
# Fields that describe a model without changing its function: left out of the architecture and the fingerprint.
LABEL_FIELDS = ("name", "source", "license")
# Fields added after vqtok 0.2, with their defaults: config.json and the fingerprint leave them out at the default.
LATER_FIELDS: dict[str, Any] = {"attention_levels": [], "backbone": "vqgan", "source": "", "license": ""}

# Named presets. f8/f16 follow the high-usage published image tokenizers: 16384 codes, 8-dim l2-normalised lookup.
PRESETS: dict[str, dict[str, Any]] = {
    "f4": dict(name="f4", channel_mults=[1, 2, 4], num_codes=8192),
    "f8": dict(name="f8", channel_mults=[1, 1, 2, 4]),
    "f16": dict(name="f16", channel_mults=[1, 1, 2, 2, 4]),
    # A few-second CPU smoke model; not meant to reconstruct well.
    "tiny": dict(
        name="tiny",
        base_channels=32,
        channel_mults=[1, 2, 2, 2],
        num_res_blocks=1,
        z_channels=64,
        norm_groups=8,
        num_codes=512,
    ),
    # Causal video tokenizers: 1 + 4k frames of H x W -> (1 + k) x H/f x W/f ids; a 1-frame video is an image.
    "video_4x8x8": dict(name="video_4x8x8", channel_mults=[1, 1, 2, 4], video=True, temporal_downsample=4),
    "video_4x16x16": dict(name="video_4x16x16", channel_mults=[1, 1, 2, 2, 4], video=True, temporal_downsample=4),
}
# A CPU smoke model with the tiny image preset's layout, so it can be inflated from an image "tiny" export.
PRESETS["video_tiny"] = {**PRESETS["tiny"], "name": "video_tiny", "video": True, "temporal_downsample": 4}
