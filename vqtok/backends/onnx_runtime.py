"""The onnxruntime backend: an ONNX export (``vqtok export-onnx``) behind :class:`vqtok.Tokenizer`.

Needs only onnxruntime besides the base install (the ``onnx`` extra); no torch.onnx, no Lightning. Tensors come
in and go out as torch CPU tensors, so the facade (padding, tiles, chunks, token files) is the same for both
backends. Video graphs take their causal streams' state as inputs and return the next state (see
:mod:`vqtok.backends.onnx_graphs`); :class:`OnnxStream` keeps it between calls, one state per spatial tile.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor

from vqtok.backends.base import Half
from vqtok.config import TokenizerConfig
from vqtok.errors import ExportError, InputError
from vqtok.export import CONFIG_FILE, ONNX_MANIFEST

ENCODER_ONNX = "encoder.onnx"
DECODER_ONNX = "decoder.onnx"
MANIFEST = ONNX_MANIFEST
CODES_FILE = "codes.safetensors"  # the (K, D) code table, for Tokenizer.codes
FORMAT = "vqtok-onnx-1"
# onnxruntime's graph optimisation levels by name (what load(onnx_optimization=...) and the benchmark take)
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def is_onnx_export(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory written by ``vqtok export-onnx``."""
    return (Path(path) / MANIFEST).is_file()


class OnnxStream:
    """The state of one video stream through one graph: per spatial tile, the graph's last ``next_state_*``
    outputs (no entry yet: the tile's first call)."""

    def __init__(self) -> None:
        self.states: dict[int, list[np.ndarray]] = {}
        self.current = 0

    def switch(self, tile: int) -> None:
        self.current = tile


class OnnxGraph:
    """One onnxruntime session (encoder or decoder) and its stream inputs."""

    def __init__(self, path: Path, states: list[tuple[int, int]], options: Any) -> None:
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types (Fail, InvalidGraph, NoSuchFile...)
            raise ExportError(f"{path} cannot be loaded by onnxruntime: {str(e).splitlines()[0]}") from None
        self.input_name = self.session.get_inputs()[0].name
        # first-call placeholders (1, C, frames, 1, 1): broadcast and ignored by the graph
        self.empty_states = [np.zeros((1, c, frames, 1, 1), np.float32) for c, frames in states]
        self.stream: OnnxStream | None = None

    def run(self, x: np.ndarray) -> np.ndarray:
        """One call: the graph's first output; inside a stream, continue (and update) the current tile's state."""
        feeds = {self.input_name: x}
        if not self.empty_states:
            return self.session.run(None, feeds)[0]
        previous = None if self.stream is None else self.stream.states.get(self.stream.current)
        feeds["first"] = np.array(previous is None)
        for i, state in enumerate(previous or self.empty_states):
            feeds[f"state_{i}"] = state
        out, *next_states = self.session.run(None, feeds)
        if self.stream is not None:
            self.stream.states[self.stream.current] = next_states
        return out


class OnnxBackend:
    """An ONNX export as a :class:`~vqtok.backends.base.Backend` (CPU, float32).

    Args:
        root: the export directory (config.json, onnx.json, encoder.onnx, decoder.onnx).
        threads: onnxruntime's intra-op threads (default: torch's thread count, so one setting rules both).
        optimization: onnxruntime's graph optimisation level, one of :data:`OPTIMIZATION_LEVELS`.
    """

    def __init__(self, root: str | os.PathLike, threads: int | None = None, optimization: str = "all") -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ExportError(f"backend='onnx' needs onnxruntime: pip install 'vqtok[onnx]' ({e})") from None
        self.root = root = Path(root)
        manifest = _read_manifest(root)
        self._table: Tensor | None = None
        self.config = TokenizerConfig.from_file(root / CONFIG_FILE)
        self._fingerprints = tuple(manifest["fingerprints"])
        if optimization not in OPTIMIZATION_LEVELS:
            raise InputError(f"onnx optimization must be one of {OPTIMIZATION_LEVELS}, got {optimization!r}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning: on a shared or busy CPU, spinning workers starve the ones working.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # No arena: onnxruntime's would keep the largest call's activations (GBs for a video chunk) for the life of
        # the session; freed memory goes back like torch's.
        options.enable_cpu_mem_arena = False
        level = "ORT_DISABLE_ALL" if optimization == "disable" else f"ORT_ENABLE_{optimization.upper()}"
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        states = manifest["states"]
        self.encoder = OnnxGraph(root / ENCODER_ONNX, [tuple(s) for s in states["encoder"]], options)
        self.decoder = OnnxGraph(root / DECODER_ONNX, [tuple(s) for s in states["decoder"]], options)

    def encode_ids(self, x: Tensor) -> Tensor:
        """(B, C, [T,] H, W) -> ids (B, [t,] h, w) int64."""
        x = x.float()
        if self.config.video and self._first_call(self.encoder):  # frame 0 r times: one latent frame
            x = torch.cat([x[:, :, :1].expand(-1, -1, self.config.temporal_downsample - 1, -1, -1), x], dim=2)
        return torch.from_numpy(self.encoder.run(x.contiguous().numpy()))

    def decode_ids(self, ids: Tensor) -> Tensor:
        """ids (B, [t,] h, w) -> unclamped float32 pixels (B, C, [T,] H, W)."""
        first = self.config.video and self._first_call(self.decoder)
        y = torch.from_numpy(self.decoder.run(ids.long().contiguous().numpy()))
        if first:  # the first call repeats frame 0 r times (see vqtok.backends.onnx_graphs)
            y = y[:, :, self.config.temporal_downsample - 1 :]
        return y

    def codes(self, ids: Tensor) -> Tensor:
        """ids (B, [t,] h, w) -> code vectors (B, D, [t,] h, w), from the decoder graph's code table."""
        table = self._code_table()  # (K, D)
        vectors = table[ids.long()]  # (B, *S, D)
        return vectors.permute(0, vectors.ndim - 1, *range(1, vectors.ndim - 1)).contiguous()

    @contextmanager
    def stream(self, half: Half) -> Iterator[OnnxStream]:
        graph = self.encoder if half == "encoder" else self.decoder
        if graph.stream is not None:
            raise RuntimeError("this model is already streaming a video; finish (or close) that stream first")
        graph.stream = OnnxStream()
        try:
            yield graph.stream
        finally:
            graph.stream = None

    def fingerprints(self) -> tuple[str, ...]:
        return self._fingerprints

    def _first_call(self, graph: OnnxGraph) -> bool:
        return graph.stream is None or graph.stream.current not in graph.stream.states

    def _code_table(self) -> Tensor:
        """The (K, D) float32 table of all codes (the one the decoder graph looks ids up in), read once."""
        if self._table is None:
            self._table = load_file(str(self.root / CODES_FILE))["table"]
        return self._table


def _read_manifest(root: Path) -> dict[str, Any]:
    """onnx.json of an ONNX export, checked; ExportError naming what is wrong."""
    if not root.is_dir():
        raise ExportError(f"{root} is not a directory; expected an ONNX export written by vqtok export-onnx")
    missing = [f for f in (CONFIG_FILE, MANIFEST, ENCODER_ONNX, DECODER_ONNX, CODES_FILE) if not (root / f).is_file()]
    if missing:
        torch_export = (root / "encoder.safetensors").is_file()
        hint = " (it is a torch export: run `vqtok export-onnx` on it first)" if torch_export else ""
        raise ExportError(f"{root} is not an ONNX export: missing {', '.join(missing)}{hint}")
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise ExportError(f"{root / MANIFEST} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportError(f"{root / MANIFEST}: not a {FORMAT} manifest (re-export with this vqtok's export-onnx)")
    return manifest
