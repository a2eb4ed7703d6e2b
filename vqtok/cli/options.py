"""Options several commands share: ``--max-pixels``, and the model a token file or store records (``--model``
left out of ``vqtok decode`` and ``vqtok detokenize``)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from vqtok.errors import ExportError
from vqtok.export import export_fingerprints, resolve_export
from vqtok.io.images import DEFAULT_MAX_PIXELS

# The advice of a refused image, frame or id grid to Python callers ("pass a larger max_pixels to vqtok.load (and
# a tile_size, to bound memory)", "... max_pixels to read it", "... max_frame_pixels to read it").
_PYTHON_ADVICE = re.compile(
    r"pass a larger max_(?:frame_)?pixels(?: to vqtok\.load(?: \(and a tile_size, to bound memory\))?| to read it)?"
)


def add_max_pixels(parser: argparse.ArgumentParser) -> None:
    """``--max-pixels N``: the largest image or frame (H * W) read, encoded or decoded; 0 lifts the limit."""
    parser.add_argument(
        "--max-pixels",
        type=_max_pixels,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse images and video frames of more than N pixels, H * W (default {DEFAULT_MAX_PIXELS}; 0: no limit)",
    )


def _max_pixels(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of pixels (0: no limit), got {text!r}")
    return value or None


def with_flag_advice(message: str) -> str:
    """A library error's advice to raise ``max_pixels``, told as the command-line flag instead."""
    return _PYTHON_ADVICE.sub("pass a larger --max-pixels (0: no limit)", message)


def recorded_model(name: object, fingerprint: object, where: str, command: str) -> Path:
    """The export that made ``where`` (a token file or store), found from the model name it records (a short name
    or a path, see :func:`vqtok.export.resolve_export`) and checked against the fingerprint it records.

    Prints which export it uses to stderr.

    Raises:
        ExportError: no export of that name is found here, or the one found is another model; the message says
            to pass --model.
    """
    if not isinstance(name, str) or not name or not isinstance(fingerprint, str):
        raise ExportError(f"{where} does not record the model that made it; pass --model with that model's export")
    try:
        path = resolve_export(name)
        found = export_fingerprints(path)  # its fingerprint, and the one of vqtok < 0.2 for an old export
    except (ExportError, OSError, ValueError) as e:  # OSError, ValueError: a recorded name that is no usable path
        raise ExportError(
            f"{where} was made by model {name!r} ({fingerprint}), which is not found here ({e}); pass --model with "
            "the export that made it"
        ) from None
    if fingerprint not in found:
        raise ExportError(
            f"{where} was made by model {name!r} ({fingerprint}), but the export {name!r} found here, {path}, is "
            f"another model ({found[0]}); pass --model with the export that made it"
        )
    print(f"vqtok {command}: using model {name!r} ({path}) recorded in {where}", file=sys.stderr)
    return path
