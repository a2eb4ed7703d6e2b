"""What runs the model behind :class:`vqtok.Tokenizer`: the torch model (:mod:`vqtok.backends.torch_model`) or an
ONNX export through onnxruntime (:mod:`vqtok.backends.onnx_runtime`, written by :mod:`vqtok.backends.onnx_export`).
Both implement :class:`~vqtok.backends.base.Backend`."""

from vqtok.backends.base import BACKENDS, Backend, TileSwitch

__all__ = ["BACKENDS", "Backend", "TileSwitch"]
