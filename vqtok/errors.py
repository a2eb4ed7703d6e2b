"""The exceptions vqtok raises at its boundaries.

Every error a user can trigger with bad input is a :class:`VqtokError`. The subclasses also derive from the
builtin exception that describes the problem, so ``except ValueError`` keeps working for callers who do not
know about vqtok:

- :class:`InputError` (``ValueError``): a tensor, array, image or id grid handed to the API is malformed
  (wrong shape, dtype, range, ids outside the codebook, non-finite values).
- :class:`InputTypeError` (``TypeError``): an input of a type the API does not accept.
- :class:`FileFormatError` (``ValueError``): a file that cannot be decoded (corrupt, truncated, unsupported).
- :class:`ExportError` (``ValueError``): a directory that is not a vqtok export, or one whose tensors do not
  match its ``config.json``.
- :class:`ConfigError` (``ValueError``): an invalid tokenizer or training configuration.
- :class:`TrainingError` (``RuntimeError``): a training run cannot go on (too many non-finite losses in a row, a
  checkpoint that cannot be written); the last checkpoint written is intact.
"""


class VqtokError(Exception):
    """Base class of every error vqtok raises on purpose."""


class InputError(VqtokError, ValueError):
    """A value handed to the API has the wrong shape, dtype or range."""


class InputTypeError(VqtokError, TypeError):
    """A value handed to the API is of a type it does not accept."""


class FileFormatError(VqtokError, ValueError):
    """A file could not be read or decoded."""


class ExportError(VqtokError, ValueError):
    """A directory is not a valid vqtok export."""


class ConfigError(VqtokError, ValueError):
    """A configuration is invalid."""


class TrainingError(VqtokError, RuntimeError):
    """A training run stopped: it cannot go on without a change of settings, data or disk space."""
