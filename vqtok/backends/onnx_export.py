"""``vqtok export-onnx``: an export directory -> ``encoder.onnx`` + ``decoder.onnx`` + ``config.json`` + ``onnx.json``.

Needs torch's ONNX exporter and the ``onnx`` package (the ``onnx`` extra); serving the result needs only
onnxruntime (see :mod:`vqtok.backends.onnx_runtime`). Batch, height, width and, for video, time are dynamic axes.
The directory is assembled under a temporary name and renamed into place, like ``vqtok export``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from vqtok._version import __version__
from vqtok.backends.onnx_graphs import DecoderGraph, EncoderGraph, code_table, export_ready, state_shapes
from vqtok.backends.onnx_runtime import CODES_FILE, DECODER_ONNX, ENCODER_ONNX, FORMAT, MANIFEST
from vqtok.errors import ExportError
from vqtok.export import CONFIG_FILE, export_fingerprints, load_export, resolve_export
from vqtok.io.atomic import default_dir_mode, replace_dir
from vqtok.io.tensors import save_safetensors
from vqtok.model.vqvae import VQVAE

OPSET = 17


def export_onnx(
    export: str | os.PathLike, out_dir: str | os.PathLike, progress: Callable[[int], None] | None = None
) -> Path:
    """Write the ONNX graphs of an export (a directory or a short name such as "video") to ``out_dir``.

    Args:
        export: an export directory written by ``vqtok export``, or a shipped tokenizer's short name.
        out_dir: the directory to write; an earlier ONNX export there is replaced atomically.
        progress: called with 1 after each of the three steps (encoder, decoder, check), e.g. a bar's update.

    Returns:
        ``out_dir``.

    Raises:
        ExportError: ``export`` is not a readable export, ``out_dir`` holds something else, or the graphs
            cannot be written.
    """
    root = resolve_export(export)
    model = load_export(root)
    fingerprints = export_fingerprints(root)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise ExportError(f"{out} exists and is not an ONNX export of vqtok; choose an empty or new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        tmp.chmod(default_dir_mode())
        states = write_graphs(model, tmp, progress)
        manifest = {
            "format": FORMAT,
            "vqtok_version": __version__,
            "opset": OPSET,
            "fingerprints": list(fingerprints),
            "states": states,  # per half: [channels, frames] of each state input, in input order
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        save_safetensors({"table": code_table(model)}, tmp / CODES_FILE, metadata={"format": FORMAT})
        shutil.copyfile(root / CONFIG_FILE, tmp / CONFIG_FILE)
        replace_dir(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise ExportError(f"cannot write the ONNX export {out}: {e.strerror or e}") from e
        raise
    return out


def write_graphs(
    model: VQVAE, out: Path, progress: Callable[[int], None] | None = None
) -> dict[str, list[tuple[int, int]]]:
    """Trace ``model``'s encoder and decoder graphs into ``out``, check them with onnx; the state shapes."""
    import onnx  # the onnx extra: only for writing

    ready, enc_ports, dec_ports = export_ready(model)
    c = model.config
    f = c.downsample
    # Traced at a small size; every axis that may change is dynamic. Video: frame 0 repeated r times + r frames.
    size = 4 * f
    if c.video:
        r = c.temporal_downsample
        x = torch.zeros(1, c.in_channels, 2 * r, size, size)
        ids = torch.zeros(1, 3, size // f, size // f, dtype=torch.long)
    else:
        x = torch.zeros(1, c.in_channels, size, size)
        ids = torch.zeros(1, size // f, size // f, dtype=torch.long)
    x.uniform_(-1, 1, generator=torch.Generator().manual_seed(0))
    shapes = {"encoder": state_shapes(model.encoder), "decoder": state_shapes(model.decoder)}
    graphs: list[tuple[nn.Module, Tensor, str, str, str, str]] = [
        (EncoderGraph(ready, enc_ports), x, "x", "ids", ENCODER_ONNX, "encoder"),
        (DecoderGraph(ready, dec_ports), ids, "ids", "pixels", DECODER_ONNX, "decoder"),
    ]
    for graph, example, input_name, output_name, file, half in graphs:
        _trace(graph, example, input_name, output_name, shapes[half] if c.video else None, out / file)
        if progress is not None:
            progress(1)
    for file in (ENCODER_ONNX, DECODER_ONNX):
        onnx.checker.check_model(str(out / file))
    if progress is not None:
        progress(1)
    return shapes


def _trace(
    graph: nn.Module,
    example: Tensor,
    input_name: str,
    output_name: str,
    states: list[tuple[int, int]] | None,
    path: Path,
) -> None:
    """torch.onnx.export (the TorchScript tracer) with dynamic batch, [time,] height and width."""
    args: tuple[Tensor, ...] = (example,)
    names, outputs = [input_name], [output_name]
    dynamic = {input_name: _axes(example, "in_"), output_name: _axes(example, "out_", output=True)}
    if states is not None:
        args += (torch.tensor(True), *(torch.zeros(1, ch, frames, 1, 1) for ch, frames in states))
        names.append("first")
        for i in range(len(states)):
            names.append(f"state_{i}")
            outputs.append(f"next_state_{i}")
            dynamic[f"state_{i}"] = {0: "state_batch", 3: f"state_{i}_height", 4: f"state_{i}_width"}
            dynamic[f"next_state_{i}"] = {0: "batch", 3: f"next_state_{i}_height", 4: f"next_state_{i}_width"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic and the legacy exporter
        torch.onnx.export(
            graph,
            args,
            str(path),
            input_names=names,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )


def _axes(example: Tensor, prefix: str, output: bool = False) -> dict[int, str]:
    """Names of the dynamic axes of a graph's input ``example`` (ids (B, [t,] h, w) or pixels (B, C, [T,] H, W)),
    or, with ``output``, of what the graph turns it into (pixels for ids, ids for pixels)."""
    ids = (example.dtype == torch.long) != output  # the tensor named is a grid of ids
    grid = example.ndim - 1 if example.dtype == torch.long else example.ndim - 2  # 2 (image) or 3 (video)
    first = 1 if ids else 2  # where the grid's axes start
    names = ["time", "height", "width"][-grid:]
    return {0: "batch", **{first + i: prefix + name for i, name in enumerate(names)}}
