"""The encoder and decoder as graphs ONNX can hold: ids out of the encoder, ids into the decoder, and, for video, the
causal streams' state as explicit inputs and outputs.

The torch model's inference paths loop over frames and keep stream state in its modules; tracing would unroll
those loops at the traced length. :func:`export_ready` rewrites a copy of the model's causal parts as whole-tensor
operations over a dynamic time axis instead, and every causal conv reads its past frames from a ``state_i`` input
and writes the frames the next call needs to ``next_state_i``.

The first call of a stream (``first`` true) has no past: each conv repeats its input's first frame instead of
reading its state (a (1, C, frames, 1, 1) tensor of zeros is enough there; it is broadcast and ignored). Two
differences from the torch stream make one graph serve both kinds of call with state of one shape:

- encoder: the first call takes frame 0 repeated r times (then r*m more frames), where the torch stream takes it
  once. Windows of repeated frames give the same values, so the r copies come out as one latent frame;
- decoder: temporal upsampling never drops a frame, so the first call's output starts with r - 1 extra copies of
  frame 0, which the caller drops (see :class:`vqtok.backends.onnx_runtime.OnnxBackend`).
"""

from __future__ import annotations

import copy
import types

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqtok.model.blocks import Upsample
from vqtok.model.causal import CausalConv3d, FrameGroupNorm, Upsample3d, UpsamplingCausalConv3d
from vqtok.model.quantizers import VectorQuantizer
from vqtok.model.subpixel import phase_bias, phase_kernels
from vqtok.model.vqvae import VQVAE


class StreamPorts:
    """Carries a traced call's stream inputs to the causal convs and collects what they pass on.

    ``convs`` are the convs with past frames (kernel > stride in time), in a fixed order: state i belongs to
    conv i whatever order they run in.
    """

    def __init__(self, convs: list[CausalConv3d]) -> None:
        self.slot = {id(conv): i for i, conv in enumerate(convs)}
        self.first: Tensor | None = None
        self.states: tuple[Tensor, ...] = ()
        self.next_states: list[Tensor | None] = [None] * len(convs)

    def context(self, conv: CausalConv3d, x: Tensor) -> Tensor:
        """The past frames (B, C, time_context, H, W) of conv's input x: its state, or x's first frame repeated."""
        assert self.first is not None, "the graph's forward sets the stream inputs first"
        repeated = x[:, :, :1].expand(-1, -1, conv.time_context, -1, -1)
        return torch.where(self.first, repeated, self.states[self.slot[id(conv)]])

    def pass_on(self, conv: CausalConv3d, frames: Tensor) -> None:
        self.next_states[self.slot[id(conv)]] = frames[:, :, -conv.time_context :]  # (B, C, time_context, H, W)


def stream_convs(module: nn.Module) -> list[CausalConv3d]:
    """The causal convs of ``module`` that carry state between calls of a stream, in module order."""
    return [m for m in module.modules() if isinstance(m, CausalConv3d) and m.time_context > 0]


def state_shapes(module: nn.Module) -> list[tuple[int, int]]:
    """(channels, frames) of each state input of ``module``'s graph, in order."""
    return [(conv.in_channels, conv.time_context) for conv in stream_convs(module)]


def export_ready(model: VQVAE) -> tuple[VQVAE, StreamPorts, StreamPorts]:
    """A float32 copy of ``model`` whose causal parts trace into graphs with a dynamic time axis, with the ports
    of its encoder's and decoder's streams."""
    model = copy.deepcopy(model).float().eval().requires_grad_(False)
    model = model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    ports = StreamPorts(stream_convs(model.encoder)), StreamPorts(stream_convs(model.decoder))
    for half, port in zip((model.encoder, model.decoder), ports, strict=True):
        for m in half.modules():
            # Rebinding forward on instances of the copy: the torch model keeps its own (faster) inference paths.
            if isinstance(m, CausalConv3d):
                m.forward = types.MethodType(_causal_conv_forward(port), m)  # type: ignore[method-assign]
            if isinstance(m, UpsamplingCausalConv3d):
                m._conv = types.MethodType(_upsampling_conv, m)  # type: ignore[method-assign]
                _add_phase_weights(m, m.weight, m.bias)
            elif isinstance(m, Upsample3d):
                m.forward = types.MethodType(_upsample3d_forward, m)  # type: ignore[method-assign]
            elif isinstance(m, FrameGroupNorm):
                m.forward = types.MethodType(_frame_group_norm_forward, m)  # type: ignore[method-assign]
            elif isinstance(m, Upsample):
                m.forward = types.MethodType(_upsample_forward, m)  # type: ignore[method-assign]
                _add_phase_weights(m, m.conv.weight, m.conv.bias)
    return model, *ports


def _causal_conv_forward(ports: StreamPorts):  # noqa: ANN202 - a method for CausalConv3d instances
    def forward(self: CausalConv3d, x: Tensor) -> Tensor:
        """(B, C_in, T, H, W) -> (B, C_out, T', H', W') with the past from the stream's ports."""
        if self.time_context == 0:  # kernel 1 in time: no past
            return self._conv(x)
        frames = torch.cat([ports.context(self, x), x], dim=2)  # (B, C_in, time_context + T, H, W)
        ports.pass_on(self, frames)
        return self._conv(frames)

    return forward


def _upsample3d_forward(self: Upsample3d, x: Tensor) -> Tensor:
    """Nearest 2x in time (every frame twice, none dropped) when ``temporal``, then the upsampling conv."""
    if self.temporal:
        B, C, T, H, W = x.shape
        x = x[:, :, :, None].expand(-1, -1, -1, 2, -1, -1).reshape(B, C, 2 * T, H, W)  # (B, C, 2T, H, W)
    return self.conv(x)


def _frame_group_norm_forward(self: FrameGroupNorm, x: Tensor) -> Tensor:
    """(B, C, T, H, W) -> same shape: GroupNorm of each frame, over all frames at once."""
    B, C, T, H, W = x.shape
    frames = x.transpose(1, 2).reshape(B * T, C, H, W)  # (B*T, C, H, W)
    y = F.group_norm(frames, self.num_groups, self.weight, self.bias, self.eps)
    return y.reshape(B, T, C, H, W).transpose(1, 2)


def _upsampling_conv(self: UpsamplingCausalConv3d, x: Tensor) -> Tensor:
    """(B, C, n + 2, h, w) time-padded -> (B, C, n, 2h, 2w), as UpsamplingCausalConv3d._conv computes it."""
    h, w = x.shape[-2], x.shape[-1]
    y = F.conv3d(x, *_phase_weights(self), padding=(0, 1, 1))  # (B, 4C, n, h+1, w+1)
    return _interleave(y, self.out_channels, h, w)


def _upsample_forward(self: Upsample, x: Tensor) -> Tensor:
    """(B, C, h, w) -> (B, C, 2h, 2w), as Upsample.forward computes it."""
    h, w = x.shape[-2], x.shape[-1]
    y = F.conv2d(x, *_phase_weights(self), padding=1)  # (B, 4C, h+1, w+1)
    return _interleave(y, self.conv.out_channels, h, w)


def _add_phase_weights(module: nn.Module, weight: Tensor, bias: Tensor | None) -> None:
    """The four phase kernels and biases of an upsampling conv as buffers ``phase_kernel`` and ``phase_bias``:
    weights of the graph (initializers), not ops on the 3x3 weight, which quantisers cannot treat as weights."""
    assert bias is not None  # the upsampling convs are built with a bias
    module.register_buffer("phase_kernel", phase_kernels(weight).detach().clone())
    module.register_buffer("phase_bias", phase_bias(bias).detach().clone())


def _phase_weights(module: nn.Module) -> tuple[Tensor, Tensor]:
    kernel, bias = module.get_buffer("phase_kernel"), module.get_buffer("phase_bias")
    return kernel, bias


def _interleave(y: Tensor, channels: int, h: Tensor | int, w: Tensor | int) -> Tensor:
    """(B, 4C, *lead, h+1, w+1) phase outputs -> (B, C, *lead, 2h, 2w): output (2i+a, 2j+b) is phase 2a+b at
    (i+a, j+b); by stacking, which traces for any h, w (see :func:`vqtok.model.subpixel.interleave_phases`)."""
    C = channels
    phases = ((0, 0), (0, 1), (1, 0), (1, 1))  # (a, b) of phase k = 2a + b
    p = [y[:, k * C : (k + 1) * C, ..., a : a + h, b : b + w] for k, (a, b) in enumerate(phases)]
    rows = [torch.stack([p[0], p[1]], dim=-1), torch.stack([p[2], p[3]], dim=-1)]  # 2 x (B, C, *lead, h, w, 2)
    out = torch.stack(rows, dim=-3)  # (B, C, *lead, h, 2, w, 2)
    return out.flatten(-4, -3).flatten(-2, -1)  # (B, C, *lead, 2h, 2w)


def nearest_ids(model: VQVAE, z: Tensor) -> Tensor:
    """Encoder output z (B, D, *S) -> ids (B, *S) int64, the quantizer's lookup in fp32 as one graph.

    VQ: argmin over codes of ||e||^2 - 2 z.e (the torch model's :func:`~vqtok.model.quantizers.nearest_codes`,
    without its chunks over N: the graph holds an (N, K) distance block). FSQ, LFQ: their own ``quantize``.
    """
    q = model.quantizer
    z = z.float().permute(0, *range(2, z.ndim), 1)  # (B, *S, D)
    if isinstance(q, VectorQuantizer):
        codebook = q.codebook()  # (K, D), a constant of the graph
        z = q.normalize(z)
        distances = codebook.pow(2).sum(dim=1) - 2 * (z @ codebook.t())  # (B, *S, K)
        return distances.argmin(dim=-1)
    flat = z.reshape(-1, q.code_dim)  # (N, D)
    return q.quantize(flat)[1].reshape(z.shape[:-1])


def code_table(model: VQVAE) -> Tensor:
    """The quantizer's (K, D) fp32 table of all codes (what a graph looks ids up in, whatever the quantizer)."""
    q = model.quantizer
    with torch.no_grad():
        return q.indices_to_codes(torch.arange(q.codebook_size)[None])[0].t().contiguous()  # (K, D)


def codes(table: Tensor, ids: Tensor) -> Tensor:
    """ids (B, *S) -> code vectors (B, D, *S) fp32 from the (K, D) ``table``."""
    vectors = F.embedding(ids, table)  # (B, *S, D)
    return vectors.permute(0, vectors.ndim - 1, *range(1, vectors.ndim - 1))  # (B, D, *S)


class EncoderGraph(nn.Module):
    """Image: x (B, C, H, W) -> ids (B, h, w). Video: (x (B, C, T, H, W), first () bool, *states) ->
    (ids (B, t, h, w), *next_states)."""

    def __init__(self, model: VQVAE, ports: StreamPorts) -> None:
        super().__init__()
        self.model, self.ports = model, ports

    def forward(self, x: Tensor, first: Tensor | None = None, *states: Tensor) -> tuple[Tensor, ...]:
        self.ports.first, self.ports.states = first, states
        ids = nearest_ids(self.model, self.model.quant_conv(self.model.encoder(x)))
        return (ids, *_collected(self.ports))


class DecoderGraph(nn.Module):
    """Image: ids (B, h, w) -> pixels (B, C, H, W) float32, unclamped. Video: (ids (B, t, h, w), first () bool,
    *states) -> (pixels (B, C, T, H, W), *next_states); see the module docstring for the first call's frames."""

    table: Tensor  # (K, D) buffer

    def __init__(self, model: VQVAE, ports: StreamPorts) -> None:
        super().__init__()
        self.model, self.ports = model, ports
        self.register_buffer("table", code_table(model))

    def forward(self, ids: Tensor, first: Tensor | None = None, *states: Tensor) -> tuple[Tensor, ...]:
        self.ports.first, self.ports.states = first, states
        pixels = self.model.decode(codes(self.table, ids)).float()
        return (pixels, *_collected(self.ports))


def _collected(ports: StreamPorts) -> list[Tensor]:
    states = list(ports.next_states)
    assert all(s is not None for s in states), "every stream conv ran"
    ports.next_states = [None] * len(states)
    return states  # type: ignore[return-value]
