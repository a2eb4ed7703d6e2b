"""vqtok: VQ-VAE tokenizers that turn images into grids of discrete token ids and back.

>>> import vqtok
>>> tok = vqtok.load("checkpoints/tiny")
>>> ids = tok.encode(x)   # (B, 3, H, W) in [-1, 1] -> (B, H/f, W/f) int64
>>> y = tok.decode(ids)   # -> (B, 3, H, W) in [-1, 1]
"""

from vqtok import inputs, metrics
from vqtok._version import __version__
from vqtok.config import PRESETS, TokenizerConfig
from vqtok.errors import ConfigError, ExportError, FileFormatError, InputError, InputTypeError, VqtokError
from vqtok.model.quantizer import VectorQuantizer
from vqtok.tokenizer import Tokenizer, load

__all__ = [
    "PRESETS",
    "ConfigError",
    "ExportError",
    "FileFormatError",
    "InputError",
    "InputTypeError",
    "Tokenizer",
    "TokenizerConfig",
    "VectorQuantizer",
    "VqtokError",
    "__version__",
    "inputs",
    "metrics",
    "load",
]
