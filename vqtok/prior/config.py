"""The architecture and objective of a prior over token grids (:class:`PriorConfig`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from vqtok.errors import ConfigError

OBJECTIVES = ("ar", "maskgit")  # next-token prediction (GPT/LlamaGen style), or masked-token prediction (MaskGIT)


@dataclass(frozen=True)
class PriorConfig:
    """A transformer prior over the ids of one tokenizer: autoregressive (``objective="ar"``) or masked
    (``objective="maskgit"``).

    The vocabulary is the tokenizer's ``num_codes`` plus one extra input id (``num_codes``: padding / mask). Class
    conditioning uses ``num_classes`` class embeddings plus one "no class" embedding, which unlabelled items,
    dropped labels (``label_dropout``, for classifier-free guidance) and unconditional sampling use.
    """

    num_codes: int  # the tokenizer's codebook size: targets lie in [0, num_codes)
    num_classes: int = 0  # 0: unconditional
    dim: int = 256  # width of the residual stream
    depth: int = 6  # transformer blocks
    heads: int = 4  # attention heads; dim / heads must be even, and at least 6 (3 rotary axes)
    mlp_ratio: float = 4.0  # SwiGLU hidden width = 2/3 * mlp_ratio * dim (rounded up to a multiple of 8)
    rope_base: float = 10000.0  # base of the rotary frequencies, per axis (t, y, x)
    label_dropout: float = 0.1  # training: probability that an item's class is replaced by "no class"
    dropout: float = 0.0  # on the attention and MLP outputs
    objective: str = "ar"  # see OBJECTIVES
    gradient_checkpointing: bool = False  # recompute each block's activations in the backward pass

    def __post_init__(self) -> None:
        positive = {"num_codes": self.num_codes, "dim": self.dim, "depth": self.depth, "heads": self.heads}
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"prior {name} must be a positive int, got {value!r}")
        if not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ConfigError(f"prior num_classes must be an int >= 0, got {self.num_classes!r}")
        if self.dim % self.heads or (self.dim // self.heads) % 2 or self.dim // self.heads < 6:
            raise ConfigError(
                f"prior dim={self.dim} must split into {self.heads} heads of an even size of at least 6 (rotary "
                "positions turn pairs of channels on 3 axes)"
            )
        if not 0.0 <= self.label_dropout < 1.0 or not 0.0 <= self.dropout < 1.0:
            raise ConfigError("prior label_dropout and dropout must lie in [0, 1)")
        if not (math.isfinite(self.mlp_ratio) and self.mlp_ratio > 0 and self.rope_base > 1):
            raise ConfigError("prior mlp_ratio must be positive and rope_base above 1")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"prior objective must be one of {list(OBJECTIVES)}, got {self.objective!r}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def hidden_dim(self) -> int:
        """The SwiGLU hidden width."""
        return 8 * math.ceil(2 * self.mlp_ratio * self.dim / 3 / 8)

    @property
    def null_class(self) -> int:
        """The index of the "no class" embedding."""
        return self.num_classes

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PriorConfig:
        if not isinstance(d, dict):
            raise ConfigError(f"a prior config is a mapping, not {type(d).__name__}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown prior config fields: {sorted(unknown)}")
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"invalid prior config: {e}") from None
