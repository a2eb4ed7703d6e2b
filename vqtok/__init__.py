"""vqtok: VQ-VAE tokenizers that turn images and videos into grids of discrete token ids and back.

>>> import vqtok
>>> tok = vqtok.load()  # the shipped default image tokenizer (f8, 16384 codes)
>>> ids = tok.encode(x)   # (B, 3, H, W) in [-1, 1] -> (B, H/f, W/f) int64
>>> y = tok.decode(ids)   # -> (B, 3, H, W) in [-1, 1]
>>> vid = vqtok.load("video")  # the shipped video tokenizer (4x8x8)
>>> ids = vid.encode(v)   # (B, 3, T, H, W) in [-1, 1] -> (B, 1 + (T-1)/4, H/8, W/8) int64
>>> store = vqtok.TokenStore("tokens/")  # a data set tokenized by `vqtok tokenize`; store[i].ids
"""

from vqtok import convert, inputs, metrics  # convert is callable: vqtok.convert(...) is vqtok.convert.convert(...)
from vqtok._version import __version__
from vqtok.config import PRESETS, TokenizerConfig
from vqtok.errors import (
    ConfigError,
    ExportError,
    FileFormatError,
    InputError,
    InputTypeError,
    TrainingError,
    VqtokError,
)
from vqtok.export import export_fingerprints, resolve_export
from vqtok.model.quantizers import FiniteScalarQuantizer, LookupFreeQuantizer, VectorQuantizer
from vqtok.prior import Prior, load_prior
from vqtok.store import TokenStore
from vqtok.tokenizer import Tokenizer, load

__all__ = [
    "PRESETS",
    "ConfigError",
    "ExportError",
    "FileFormatError",
    "FiniteScalarQuantizer",
    "InputError",
    "InputTypeError",
    "LookupFreeQuantizer",
    "Prior",  # a trained prior over a tokenizer's ids: sample new grids (see vqtok.prior)
    "TokenStore",
    "Tokenizer",
    "TokenizerConfig",
    "TrainingError",
    "VectorQuantizer",
    "VqtokError",
    "__version__",
    "convert",  # a published tokenizer checkpoint (taming, LlamaGen, diffusers) -> a vqtok export
    # the fingerprints a token file of an export may carry, read without loading the model (match files to exports)
    "export_fingerprints",
    "inputs",
    "load",
    "load_prior",  # a prior export (vqtok prior export) -> Prior
    "metrics",
    "resolve_export",  # where a short name ("image", "video") or a path leads: an export directory
]
