"""The public API's boundary under generated input (hypothesis): every value a caller can hand ``encode``,
``decode``, ``codes`` and ``load`` either works, with a result of the documented shape, dtype and range, or is
refused with a :class:`vqtok.VqtokError` that says what is wrong. Never another exception from deeper in torch.

Each test states, independently of vqtok's code, which inputs are valid (the documented contract), and checks
both directions: valid inputs succeed, everything else is refused. The runs are derandomised, so CI sees the
same inputs every time; the counts per category are printed at the end (``pytest -s``).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

import vqtok

SETTINGS = settings(
    max_examples=150, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
)
TRIED: Counter = Counter()  # (category, "ok" | "refused") -> inputs

pytestmark = pytest.mark.slow  # hypothesis over the whole API: the heavy fuzzing runs with -m slow


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    for category in sorted({c for c, _ in TRIED}):
        ok, refused = TRIED[category, "ok"], TRIED[category, "refused"]
        print(f"\nfuzzed {category}: {ok + refused} inputs, {ok} accepted, {refused} refused with a VqtokError")


def outcome(category: str, valid: bool, call, check=None) -> None:  # noqa: ANN001 - callables
    """Run ``call``; a valid input must give a result that passes ``check``, an invalid one a VqtokError."""
    try:
        result = call()
    except vqtok.VqtokError as e:
        assert not valid, f"a valid input was refused: {e}"
        assert str(e) and len(str(e)) < 600, "the message must say what is wrong, in a line or two"
        TRIED[category, "refused"] += 1
        return
    assert valid, "an invalid input was accepted"
    if check is not None:
        check(result)
    TRIED[category, "ok"] += 1


FLOAT_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
OTHER_DTYPES = [torch.int64, torch.int32, torch.int16, torch.uint8, torch.bool, torch.complex64]


@st.composite
def tensors(draw, max_ndim: int = 6, max_side: int = 20) -> torch.Tensor:
    """Tensors of any dtype, rank and (small) size, holding in-range values, [0, 1] or [0, 255] values, NaN/Inf, or
    huge."""
    if draw(st.booleans()):  # about half take the documented layout, so both directions are exercised
        dtype = draw(st.sampled_from(FLOAT_DTYPES * 3 + OTHER_DTYPES + [torch.uint8] * 2))  # uint8: pixels too
        ndim = draw(st.sampled_from([4, 5]))
        frames = [draw(st.integers(1, 9))] if ndim == 5 else []
        shape = [draw(st.integers(1, 3)), 3, *frames, draw(st.integers(1, max_side)), draw(st.integers(1, max_side))]
    else:
        dtype = draw(st.sampled_from(FLOAT_DTYPES + OTHER_DTYPES))
        ndim = draw(st.integers(0, max_ndim))
        shape = []
        for axis in range(ndim):
            channels = ndim in (4, 5) and axis == 1
            shape.append(draw(st.sampled_from([3, 3, 3, 1, 4, 0]) if channels else st.integers(0, max_side)))
    x = torch.rand(shape, dtype=torch.float64) * 2 - 1
    fill = draw(st.sampled_from(["unit"] * 6 + ["bytes", "nan", "inf", "huge", "edge", "edge", "0-1", "0-1"]))
    if fill == "0-1":  # what torchvision's ToTensor gives: valid, with a warning
        x = (x + 1) / 2
    elif fill == "bytes":
        x = (x + 1) * 127.5
    elif fill == "huge":
        x = x * 1e30
    elif fill == "edge":
        x = x.sign()  # exactly -1, 0 or 1
    elif fill in ("nan", "inf") and x.numel():
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = float(fill)
    if dtype.is_complex:
        return x.to(dtype)
    if not dtype.is_floating_point:
        return x.clamp(-(2**15), 2**15).nan_to_num(0).round().to(dtype)
    return x.to(dtype)


def valid_pixels(x: torch.Tensor, ndim: int) -> bool:
    """The documented contract for pixel tensors: float (B, 3, [T,] H, W) finite and in [-1, 1], or uint8
    (B, 3, [T,] H, W) (images also (3, H, W)) of any values; not empty."""
    if x.dtype == torch.uint8:
        return x.numel() > 0 and (
            (x.ndim == ndim and x.shape[1] == 3) or (ndim == 4 and x.ndim == 3 and x.shape[0] == 3)
        )
    return (
        x.is_floating_point()
        and x.ndim == ndim
        and x.shape[1] == 3
        and x.numel() > 0
        and bool(torch.isfinite(x).all())
        and float(x.abs().max()) <= 1.001
    )


def looks_unit_range(x: torch.Tensor) -> bool:
    """The documented warning: a float pixel batch with no value below 0 (and not all 0) is probably [0, 1]."""
    return x.is_floating_point() and float(x.min()) >= 0 and float(x.max()) > 0


def encode_watching_warnings(tok: vqtok.Tokenizer, x: torch.Tensor) -> tuple[torch.Tensor, list]:
    """``tok.encode(x)`` and the warnings it gave, as if it were the first call of the process (the [0, 1] warning
    comes once per process)."""
    vqtok.inputs._warn_unit_range.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = tok.encode(x)
    return ids, caught


def image_ids_shape(x: torch.Tensor) -> tuple[int, int, int]:
    """(B, h, w) of the ids of images (B, 3, H, W), or of one uint8 image (3, H, W)."""
    B, H, W = (1, *x.shape[1:]) if x.ndim == 3 else (x.shape[0], *x.shape[2:])
    return B, math.ceil(H / 8), math.ceil(W / 8)


@SETTINGS
@given(x=tensors())
@example(x=torch.rand(2, 3, 8, 8))  # [0, 1], as torchvision's ToTensor gives: works, and warns
@example(x=torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8))  # as torchvision.io.read_image gives
def test_encode_tensors_of_any_dtype_shape_and_values(image_tok, x):
    def check(result: tuple[torch.Tensor, list]) -> None:
        ids, caught = result
        assert ids.dtype == torch.int64 and ids.shape == image_ids_shape(x)
        assert int(ids.min()) >= 0 and int(ids.max()) < 512
        assert len(caught) == looks_unit_range(x) and all(w.category is UserWarning for w in caught)

    outcome("image tensors", valid_pixels(x, 4), lambda: encode_watching_warnings(image_tok, x), check)


@SETTINGS
@given(x=tensors(max_side=12))
@example(x=torch.rand(1, 3, 5, 8, 8))  # [0, 1]: works, and warns
@example(x=torch.randint(0, 256, (1, 3, 5, 8, 8), dtype=torch.uint8))
def test_video_encode_tensors_of_any_dtype_shape_and_values(video_tok, x):
    def check(result: tuple[torch.Tensor, list]) -> None:
        ids, caught = result
        assert len(caught) == looks_unit_range(x)
        if x.ndim < 5:  # images are 1-frame videos
            assert ids.shape == image_ids_shape(x)
            return
        B, _, T, H, W = x.shape
        assert ids.shape == (B, 1 + math.ceil((T - 1) / 4), math.ceil(H / 8), math.ceil(W / 8))

    valid = valid_pixels(x, 5) or valid_pixels(x, 4)
    outcome("video tensors", valid, lambda: encode_watching_warnings(video_tok, x), check)


@st.composite
def arrays(draw) -> np.ndarray:
    if draw(st.booleans()):  # the documented layouts (H, W, 3) and (B, H, W, 3), in any dtype
        dtype = draw(st.sampled_from([np.uint8] * 4 + [np.float32, np.int16, np.bool_, np.uint16]))
        shape = [draw(st.integers(1, 3))] * draw(st.integers(0, 1)) + [draw(st.integers(1, 20)) for _ in "hw"] + [3]
    else:
        dtype = draw(st.sampled_from([np.uint8, np.uint8, np.uint8, np.float32, np.int16, np.bool_, np.uint16]))
        ndim = draw(st.integers(0, 5))
        sides = [draw(st.integers(0, 20)) for _ in range(ndim)]
        shape = [*sides[:-1], draw(st.sampled_from([3, 3, 1, 4, 0]))] if ndim else []  # (..., channels)
    a = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, 256, shape).astype(dtype)
    layout = draw(st.sampled_from(["contiguous", "reversed", "read-only", "fortran"]))
    if layout == "reversed" and a.ndim:
        a = a[::-1]
    elif layout == "read-only":
        a.setflags(write=False)
    elif layout == "fortran":
        a = np.asfortranarray(a)
    return a


@SETTINGS
@given(a=arrays())
def test_encode_numpy_arrays(image_tok, a):
    valid = a.dtype == np.uint8 and a.ndim in (3, 4) and a.shape[-1] == 3 and a.size > 0

    def check(ids: torch.Tensor) -> None:
        h, w = a.shape[-3:-1]
        assert ids.shape == (1 if a.ndim == 3 else a.shape[0], math.ceil(h / 8), math.ceil(w / 8))

    outcome("image arrays", valid, lambda: image_tok.encode(a), check)


PIL_MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LA", "I", "I;16", "F", "HSV", "LAB", "RGBX", "PA"]


@SETTINGS
@given(mode=st.sampled_from(PIL_MODES), w=st.integers(1, 24), h=st.integers(1, 24), seed=st.integers(0, 2**16))
def test_encode_pil_images_of_every_mode(image_tok, mode, w, h, seed):
    rgb = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))
    img = rgb.convert(mode) if mode not in ("I;16", "PA") else Image.new(mode, (w, h))
    ids = None

    def check(result: torch.Tensor) -> None:
        nonlocal ids
        ids = result
        assert result.shape == (1, math.ceil(h / 8), math.ceil(w / 8))

    outcome("PIL images", True, lambda: image_tok.encode(img), check)


# (object, whether the documented contract accepts it)
ODD_OBJECTS = [
    (None, False),
    (3, False),
    (2.5, False),
    (True, False),
    (b"\x89PNG", False),
    ({"pixels": 1}, False),
    ({1, 2}, False),
    (object(), False),
    (torch.device("cpu"), False),
    (iter([torch.zeros(1, 3, 8, 8)]), False),
    ("no/such/file.png", False),
    ("", False),
    ([], False),
    ([[]], False),
    ([None], False),
    ((np.zeros((8, 8, 3), np.uint8), torch.zeros(1, 3, 8, 8)), True),  # a list of inputs of one size
    ([torch.zeros(1, 3, 8, 8), torch.zeros(2, 3, 8, 8)], True),
    ([np.zeros((8, 8, 3), np.uint8), np.zeros((16, 8, 3), np.uint8)], False),  # sizes differ
    (np.array(["a", "b"]), False),
    (np.zeros((8, 8, 3), dtype=object), False),
    (torch.zeros(1, 3, 8, 8, device="meta"), False),  # holds no values
    (torch.zeros(1, 3, 8, 8).to_sparse(), False),
    (torch.zeros(1, 3, 8, 8, requires_grad=True), True),
    (torch.zeros(3, 8, 8, dtype=torch.uint8), True),  # one uint8 image, as torchvision.io.read_image gives it
    (torch.zeros(8, 8, 3, dtype=torch.uint8), False),  # channels last
    (torch.zeros(3, 8, 8), False),  # a float image needs its batch dimension
    ([torch.zeros(3, 8, 8, dtype=torch.uint8), np.zeros((8, 8, 3), np.uint8)], True),
    (torch.zeros(1).expand(1, 3, 100_000, 100_000), False),  # 3e10 values claimed, 4 bytes held: refused by size
    (torch.zeros(1).expand(1, 3, 64, 64), True),  # a broadcast view of one value is fine
    (torch.zeros(2, 3, 16, 16)[:, :, ::2, ::3], True),  # strided views too
]


@pytest.mark.parametrize(
    ("x", "valid"), ODD_OBJECTS, ids=[f"{type(x).__name__}-{i}" for i, (x, _) in enumerate(ODD_OBJECTS)]
)
def test_encode_odd_objects(image_tok, x, valid):
    outcome("odd objects", valid, lambda: image_tok.encode(x))


@st.composite
def id_grids(draw, ranks: tuple[int, ...] = (3, 4), max_ndim: int = 5) -> torch.Tensor | np.ndarray | list:
    kind = draw(st.sampled_from(["tensor"] * 6 + ["numpy", "list"]))
    if draw(st.booleans()):  # about half take a documented layout: (B, h, w) or (B, t, h, w)
        shape = [draw(st.integers(1, 6)) for _ in range(draw(st.sampled_from(ranks)))]
    else:
        shape = [draw(st.integers(0, 6)) for _ in range(draw(st.integers(0, max_ndim)))]
    values = draw(st.sampled_from(["in range"] * 5 + ["negative", "too large", "huge"]))
    high = {"in range": 512, "negative": 512, "too large": 1024, "huge": 2**40}[values]
    ids = torch.randint(0, high, shape, dtype=torch.int64)
    if values == "negative" and ids.numel():
        ids.view(-1)[0] = -1
    if kind == "list":
        return ids.tolist()
    dtype = draw(st.sampled_from([torch.int64] * 6 + [torch.int32, torch.int16, torch.uint8, torch.float32, torch.bool,
                                  torch.float16]))  # fmt: skip
    ids = ids.to(dtype)
    return ids.numpy() if kind == "numpy" else ids


def valid_ids(ids: object, ndims: tuple[int, ...]) -> bool:
    """The documented contract for ids: an integer tensor or array (not bool), of rank in ``ndims``, not empty,
    every value in [0, 512) once read as int64."""
    if isinstance(ids, np.ndarray):
        if ids.dtype.kind not in "iu":
            return False
        ids = torch.from_numpy(ids.astype(np.int64))
    if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.dtype == torch.bool:
        return False
    return ids.ndim in ndims and ids.numel() > 0 and int(ids.min()) >= 0 and int(ids.max()) < 512


@SETTINGS
@given(
    ids=id_grids(ranks=(3,)), crop=st.one_of(st.none(), st.none(), st.tuples(st.integers(-2, 60), st.integers(-2, 60)))
)
def test_decode_ids_of_any_dtype_shape_and_values(image_tok, ids, crop):
    valid = valid_ids(ids, (3,))
    if valid and crop is not None:
        valid = 0 < crop[0] <= ids.shape[1] * 8 and 0 < crop[1] <= ids.shape[2] * 8

    def check(y: torch.Tensor) -> None:
        B, h, w = ids.shape
        assert y.dtype == torch.float32 and y.shape == (B, 3, *(crop or (h * 8, w * 8)))
        assert float(y.min()) >= -1 and float(y.max()) <= 1

    outcome("image ids", valid, lambda: image_tok.decode(ids, size=crop), check)
    outcome("image ids (codes)", valid_ids(ids, (3,)), lambda: image_tok.codes(ids))


@SETTINGS
@given(ids=id_grids())
def test_video_decode_ids_of_any_dtype_shape_and_values(video_tok, ids):
    def check(y: torch.Tensor) -> None:
        if y.ndim == 4:
            assert y.shape == (ids.shape[0], 3, ids.shape[1] * 8, ids.shape[2] * 8)
        else:
            B, t, h, w = ids.shape
            assert y.shape == (B, 3, 1 + 4 * (t - 1), h * 8, w * 8)

    outcome("video ids", valid_ids(ids, (3, 4)), lambda: video_tok.decode(ids), check)


LOAD_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "device": st.sampled_from(["cpu", "cuda:7", "tpu", "", 3, None, "cpu:0", torch.device("cpu")]),
        "dtype": st.sampled_from([torch.float32, torch.bfloat16, torch.int64, torch.float64, "float32", None]),
        "chunk_frames": st.sampled_from([8, 4, 0, -4, 3, 4.0, "8", None]),
        "tile_size": st.sampled_from([None, 64, 128, 0, 7, 65, -64, 64.0, "64"]),
        "max_pixels": st.sampled_from([None, 1, 4096, 0, -1, True, 1.5, "big"]),
    },
)


def valid_options(options: dict) -> bool:
    """The documented contract of ``vqtok.load``'s options (this machine has no CUDA device)."""
    device = options.get("device", "cpu")
    chunk, tile, pixels = (options.get(k, d) for k, d in (("chunk_frames", 8), ("tile_size", None), ("max_pixels", 1)))
    return (
        (device in ("cpu", "cpu:0") or device == torch.device("cpu"))
        and options.get("dtype", torch.float32) in (torch.float32, torch.bfloat16)
        and type(chunk) is int
        and chunk > 0
        and chunk % 4 == 0  # the video model's temporal factor
        and (tile is None or (type(tile) is int and tile >= 64 and tile % 8 == 0))
        and (pixels is None or (type(pixels) is int and pixels > 0))
    )


@SETTINGS
@given(options=LOAD_OPTIONS)
def test_load_options(options):
    outcome("load options", valid_options(options), lambda: vqtok.load("video_tiny", **options))


def test_the_pixel_limit_is_on_by_default_and_configurable(image_tok, video_tok):
    assert image_tok.max_pixels == 8192 * 8192
    small = vqtok.load("tiny", max_pixels=16 * 16)
    small.encode(torch.zeros(1, 3, 16, 16))
    with pytest.raises(vqtok.InputError, match="16x17 = 272 pixels is more than the limit of 256"):
        small.encode(torch.zeros(1, 3, 16, 17))
    with pytest.raises(vqtok.InputError, match="limit of 256"):
        small.encode(np.zeros((2, 17, 16, 3), np.uint8))
    with pytest.raises(vqtok.InputError, match="pixel limit"):
        small.decode(torch.zeros(1, 3, 3, dtype=torch.long))  # decodes to 24 x 24
    with pytest.raises(vqtok.InputError, match="limit of 256"):
        vqtok.load("video_tiny", max_pixels=256).encode(torch.zeros(1, 3, 5, 16, 24))
    unlimited = vqtok.load("tiny", max_pixels=None)
    assert unlimited.encode(torch.zeros(1, 3, 8, 8)).shape == (1, 1, 1)
