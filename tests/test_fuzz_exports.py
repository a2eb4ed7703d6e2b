"""Fuzzing what users hand vqtok: exports, training checkpoints, token files and token stores.

The corpus is generated deterministically (seeded ``random.Random``; hypothesis with ``derandomize=True`` and no
example database) from real files: the shipped ``checkpoints/tiny`` export, a token file written by
:func:`vqtok.token_file.save_tokens` and a token store written by the unit writer of ``vqtok tokenize``. Each
category corrupts copies of them:

- lying safetensors headers: length prefixes past the file (up to 2**64 - 1), headers that are not JSON or not an
  object, data_offsets out of range / overlapping / reversed, unknown dtypes, shapes whose product disagrees with
  the byte range or overflows, duplicated and renamed keys, bad ``__metadata__``, and random headers (hypothesis);
- truncation of the encoder and decoder at many byte offsets; random bit flips in the header and in the weights;
- config.json with wrong types, missing and extra fields, out-of-range and enormous values (which must be refused
  without allocating the model), and tensors whose shapes disagree with config.json;
- NaN, +Inf and -Inf in an encoder weight, a decoder weight and the codebook;
- pickles whose ``__reduce__`` would create a marker file, handed to every loader: never executed, always refused;
- torch checkpoints that are valid weights-only files but not vqtok checkpoints;
- token files from another model, with ids out of range, of the wrong dtype or rank, lying metadata, missing or
  extra tensors;
- token stores with garbage manifest lines, truncated shards, lying shard headers, shards from another model.

Every input must either load (only where the corruption is harmless, which the tests check) or raise the
:class:`~vqtok.errors.VqtokError` of its kind with a message that names the file; any other exception fails the
test. Each test asserts the size of its corpus, and one summary line per category (inputs tried / loaded OK /
refused) is printed when the module finishes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import pathlib
import pickle
import random
import resource
import shlex
import shutil
import struct
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from torch import Tensor

import vqtok
from vqtok.cli.main import main
from vqtok.cli.outputs import write_decoded
from vqtok.config import CHECKPOINT_CONFIG_KEY, LEGACY_TRAINING_FIELDS, TokenizerConfig
from vqtok.errors import ExportError, FileFormatError, InputError, VqtokError
from vqtok.export import export_checkpoint, load_export, save_export
from vqtok.model.vqvae import VQVAE
from vqtok.pretokenize.plan import merge, open_store, plan_run
from vqtok.pretokenize.unit_writer import UnitWriter
from vqtok.store import StoreMeta, TokenStore
from vqtok.token_file import TokenItem, load_tokens, save_tokens

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "checkpoints" / "tiny"
CONFIG, ENCODER, DECODER = "config.json", "encoder.safetensors", "decoder.safetensors"
# Every dtype string safetensors knows, and strings and values it does not.
DTYPE_NAMES = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "I16", "U16", "F16"]
DTYPE_NAMES += ["BF16", "I32", "U32", "F32", "F64", "I64", "U64", "C64"]
BAD_DTYPES: list[object] = ["F31", "float32", "f32", "", " F32", 32, None, ["F32"]]
# Values no config field should take, whatever its type.
HOSTILE_VALUES: list[object] = [None, True, "32", 1.5, -1, 0, 2**40, 2**64, 10**400, [], {}, math.nan, math.inf]
HUGE_INT = "1" * 5000  # more digits than Python converts from text (ValueError, not a JSONDecodeError)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


# ---------------------------------------------------------------------------------------------------------------
# Tallies and the one way every corpus input is tried


@dataclass
class Tally:
    """How one category's inputs fared."""

    tried: int = 0
    loaded: int = 0
    refused: int = 0


TALLIES: dict[str, Tally] = {}


class VqtokErrorFromCli(VqtokError):
    """A ``vqtok`` command that exited with status 2 and an error message (the message is what it printed)."""


@dataclass
class Outcome:
    loaded: bool
    value: object = None  # the result when loaded, the error when refused

    @property
    def message(self) -> str:
        return str(self.value)


def attempt(
    category: str,
    label: str,
    action: Callable[[], object],
    refusal: type[VqtokError] | tuple[type[VqtokError], ...],
    names: tuple[str, ...],
) -> Outcome:
    """Try one corpus input: it loads, or it is refused with ``refusal`` whose message names one of ``names``.

    Any other exception (an error escaping from deeper in the library) fails the test, naming the input.
    """
    tally = TALLIES.setdefault(category, Tally())
    tally.tried += 1
    try:
        result = action()
    except refusal as e:
        message = str(e)
        assert any(name in message for name in names), f"{category}: {label}: message names none of {names}: {e}"
        assert "frame #" not in message and len(message) < 3000, f"{category}: {label}: unclear message: {e}"
        tally.refused += 1
        return Outcome(False, e)
    except Exception as e:  # noqa: BLE001 - the point of the corpus: nothing else may escape
        raise AssertionError(f"{category}: {label}: {type(e).__name__} escaped instead of a vqtok error: {e}") from e
    tally.loaded += 1
    return Outcome(True, result)


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest):
    """Print one line per category when the module is done (the figures the fuzzing is reported with)."""
    yield
    capture = request.config.pluginmanager.getplugin("capturemanager")
    lines = [
        f"fuzz {category}: {t.tried} inputs tried, {t.loaded} loaded OK, {t.refused} refused with a VqtokError"
        for category, t in TALLIES.items()
    ]
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n" + "\n".join(lines))


def assert_corpus(category: str, at_least: int) -> Tally:
    """The category's corpus did not shrink, and every input was accounted for."""
    tally = TALLIES[category]
    assert tally.tried >= at_least, f"{category}: only {tally.tried} inputs tried, expected at least {at_least}"
    assert tally.loaded + tally.refused == tally.tried
    return tally


# ---------------------------------------------------------------------------------------------------------------
# Fixtures: the real files every corpus starts from


@pytest.fixture(scope="module")
def original() -> dict[str, bytes]:
    """The bytes of the shipped tiny export."""
    return {name: (TINY / name).read_bytes() for name in (CONFIG, ENCODER, DECODER)}


@pytest.fixture(scope="module")
def reference() -> dict[str, Tensor]:
    return load_export(TINY).state_dict()


@pytest.fixture(scope="module")
def tok() -> vqtok.Tokenizer:
    return vqtok.load(TINY)


@pytest.fixture(scope="module")
def file_keys(original: dict[str, bytes]) -> dict[str, tuple[str, ...]]:
    """The tensor names each safetensors file of the export holds."""
    return {name: tuple(k for k in split(original[name])[0] if k != "__metadata__") for name in (ENCODER, DECODER)}


class ExportCopy:
    """An export directory whose files are replaced one corpus input at a time; files not replaced are the
    originals (rewritten only when a previous input changed them)."""

    def __init__(self, root: Path, original: dict[str, bytes]) -> None:
        self.root = root
        self.original = original
        self.current: dict[str, bytes] = {}
        root.mkdir(parents=True)
        for name, data in original.items():
            self._write(name, data)

    def _write(self, name: str, data: bytes) -> None:
        (self.root / name).write_bytes(data)
        self.current[name] = data

    def put(self, **replaced: bytes) -> Path:
        """``config=``, ``encoder=``, ``decoder=`` bytes for this input; returns the export directory."""
        wanted = {CONFIG: "config", ENCODER: "encoder", DECODER: "decoder"}
        for name, key in wanted.items():
            data = replaced.get(key, self.original[name])
            if self.current[name] is not data:
                self._write(name, data)
        return self.root


def export_refusal_names(root: Path, file: str, file_keys: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """What an ExportError about a corrupted ``file`` must mention: the file, or one of its tensors."""
    return (file, *file_keys.get(file, ()))


def load_through_facade(root: Path) -> Callable[[], vqtok.Tokenizer]:
    return lambda: vqtok.load(root)


def try_export(category: str, label: str, root: Path, file: str, file_keys: dict[str, tuple[str, ...]]) -> Outcome:
    """``vqtok.load(root)`` loads, or raises ExportError naming the directory and the corrupted file (or a tensor
    of it)."""
    outcome = attempt(
        category, label, load_through_facade(root), ExportError, export_refusal_names(root, file, file_keys)
    )
    if not outcome.loaded:
        assert str(root) in outcome.message, f"{category}: {label}: the message does not name {root}"
    return outcome


def assert_harmless(model: torch.nn.Module, reference: dict[str, Tensor], label: str) -> None:
    """A lying header that loaded changed nothing (metadata, an identical duplicate entry, an unknown field in a
    tensor's entry), or relabelled one tensor's 16-bit floats as the other 16-bit float format (F16 <-> BF16: same
    bytes, other finite values, which no loader can tell from the real thing)."""
    if any(harmless in label for harmless in ("metadata", "same entry", "extra field")):
        assert same_weights(model, reference), f"{label} loaded other weights"
        return
    assert label.endswith(("dtype 'BF16'", "dtype 'F16'")), f"{label} loaded"
    state = model.state_dict()
    differing = [k for k in reference if not torch.equal(state[k].cpu(), reference[k])]
    assert len(differing) <= 1 and all(state[k].isfinite().all() for k in differing), f"{label}: {differing}"


def same_weights(model: torch.nn.Module, reference: dict[str, Tensor]) -> bool:
    state = model.state_dict()
    return state.keys() == reference.keys() and all(torch.equal(state[k].cpu(), reference[k]) for k in reference)


# ---------------------------------------------------------------------------------------------------------------
# safetensors byte surgery


def split(data: bytes) -> tuple[dict, bytes]:
    """A safetensors file -> (header dict, data bytes)."""
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(header: dict | bytes, body: bytes, prefix: int | None = None) -> bytes:
    """(header, data) -> safetensors bytes; the header padded to 8 bytes, the length prefix true unless given."""
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text) if prefix is None else prefix) + text + body


def _with(header: dict, name: str, info: dict | None) -> dict:
    """A copy of header with tensor ``name``'s entry replaced (None: removed)."""
    h = {k: v for k, v in header.items() if k != name}
    if info is not None:
        h[name] = info
    return h


def lying_headers(data: bytes) -> list[tuple[str, bytes]]:
    """Corrupted copies of the safetensors file ``data``: (label, bytes), about 60 per picked tensor + 25."""
    header, body = split(data)
    (n,) = struct.unpack("<Q", data[:8])
    text = data[8 : 8 + n]
    cases = [
        (f"length prefix {p}", struct.pack("<Q", p) + data[8:])
        for p in (0, 1, 7, n - 8, n + 8, len(data) - 8, len(data), len(data) + 1, 2**32, 2**63, 2**64 - 1)
    ]
    for label, raw in [
        ("not JSON", b"{abc"),
        ("binary", bytes(range(256))),
        ("array", b"[1,2,3]"),
        ("string", b'"x"'),
        ("number", b"12"),
        ("null", b"null"),
        ("empty object", b"{}"),
        ("nested 100000 deep", b"[" * 100_000),
        ("byte order mark", b"\xef\xbb\xbf" + text),
        ("NUL padding", text.rstrip() + b"\0" * 8),
        ("trailing garbage", text.rstrip() + b" xx"),
    ]:
        cases.append((f"header {label}", join(raw, body)))
    cases += [("no data", join(header, b"")), ("data twice", join(header, body + body))]
    tensors = sorted(k for k in header if k != "__metadata__")
    for name in dict.fromkeys([tensors[0], tensors[len(tensors) // 2], tensors[-1], "quantizer.embed"]):
        if name in header:
            cases += _tensor_lies(header, body, name)
    cases += [
        ("metadata with a number", join({**header, "__metadata__": {"format": 1}}, body)),
        ("metadata a list", join({**header, "__metadata__": ["x"]}, body)),
        ("metadata removed", join(_with(header, "__metadata__", None), body)),
        ("metadata of another format", join({**header, "__metadata__": {"format": "other"}}, body)),
    ]
    return cases


def _tensor_lies(header: dict, body: bytes, name: str) -> list[tuple[str, bytes]]:
    info = header[name]
    start, end = info["data_offsets"]
    shape = info["shape"]
    numel = math.prod(shape)
    offsets = [
        [start, len(body) + 4],
        [end, start],
        [start - 4, end - 4],
        [start + 4, end + 4],
        [0, end - start],
        [-4, end],
        [start, end + 2**64],
        ["0", "4"],
        [start],
        [start, end, end],
        [float(start), float(end)],
    ]
    shapes = [
        [*shape, 1],
        [*shape, 2],
        shape[:-1],
        [numel],
        shape[::-1],
        [2**62, 2**62],
        [2**63, 0],
        [2**64],
        [-1],
        [],
        "abc",
        [1.5],
        [[2]],
    ]
    dtypes = [d for d in DTYPE_NAMES if d != info["dtype"]] + BAD_DTYPES
    cases = [
        (f"{name} data_offsets {o}", join(_with(header, name, {**info, "data_offsets": o}), body))
        for o in offsets
        if o != [start, end]
    ]
    cases += [
        (f"{name} shape {s}", join(_with(header, name, {**info, "shape": s}), body)) for s in shapes if s != shape
    ]
    cases += [(f"{name} dtype {d!r}", join(_with(header, name, {**info, "dtype": d}), body)) for d in dtypes]
    for field in ("dtype", "shape", "data_offsets"):
        cases.append(
            (f"{name} without {field}", join(_with(header, name, {k: v for k, v in info.items() if k != field}), body))
        )
    entry = json.dumps(info, separators=(",", ":"))
    # The entry again with other offsets: another tensor's, or (a file of one tensor) half of its own bytes.
    other = next((header[k] for k in header if k not in (name, "__metadata__")), None)
    other = other or {**info, "data_offsets": [start, start + (end - start) // 2]}
    compact = json.dumps(header, separators=(",", ":")).encode()
    cases += [
        (f"{name} renamed", join({**_with(header, name, None), name + "x": info}, body)),
        (f"{name} with an extra field", join(_with(header, name, {**info, "extra": 1}), body)),
        (f"{name} duplicated, same entry", join(compact[:-1] + f',"{name}":{entry}}}'.encode(), body)),
        (f"{name} duplicated, other bytes", join(compact[:-1] + f',"{name}":{json.dumps(other)}}}'.encode(), body)),
    ]
    return cases


@st.composite
def random_headers(draw: st.DrawFn, names: list[str]) -> bytes:
    """A random header (random entries, dtypes, shapes and offsets, possibly not an object) over random data."""
    info = st.fixed_dictionaries(
        {
            "dtype": st.sampled_from(DTYPE_NAMES + BAD_DTYPES),
            "shape": st.lists(st.one_of(st.integers(0, 8), st.integers(-2, 2**65)), max_size=4),
            "data_offsets": st.lists(st.integers(-2, 2**65), max_size=3),
        },
        optional={"extra": st.integers()},
    )
    entries = st.dictionaries(st.sampled_from([*names, "__metadata__", "x"]), info, max_size=6)
    header = draw(st.one_of(entries, st.lists(st.integers(), max_size=3), st.just({})))
    body = draw(st.binary(max_size=64))
    lie = draw(st.sampled_from([None, 0, 7, 2**63, 2**64 - 1]))
    return join(header if isinstance(header, dict) else json.dumps(header).encode(), body, lie)


# ---------------------------------------------------------------------------------------------------------------
# Exports: lying headers, truncation, bit flips


def test_exports_with_lying_safetensors_headers(tmp_path, original, reference, file_keys):
    category = "exports: lying safetensors headers"
    export = ExportCopy(tmp_path / "export", original)
    for file, key in ((ENCODER, "encoder"), (DECODER, "decoder")):
        for label, data in lying_headers(original[file]):
            outcome = try_export(category, f"{file}: {label}", export.put(**{key: data}), file, file_keys)
            if outcome.loaded:
                assert_harmless(outcome.value.model, reference, f"{file}: {label}")
    tally = assert_corpus(category, 440)
    assert tally.loaded <= 30  # the harmless lies only


def test_exports_with_random_safetensors_headers(tmp_path, original, file_keys):
    category = "exports: random safetensors headers (hypothesis)"
    export = ExportCopy(tmp_path / "export", original)

    @fuzz_settings(150)
    @given(data=random_headers(list(file_keys[ENCODER])))
    def run(data: bytes) -> None:
        outcome = try_export(category, repr(data[:120]), export.put(encoder=data), ENCODER, file_keys)
        assert not outcome.loaded  # a random header never holds the encoder's tensors

    run()
    assert_corpus(category, 120)


def test_truncated_exports(tmp_path, original, file_keys):
    category = "exports: truncated encoder/decoder"
    export = ExportCopy(tmp_path / "export", original)
    for file, key in ((ENCODER, "encoder"), (DECODER, "decoder")):
        data = original[file]
        (n,) = struct.unpack("<Q", data[:8])
        cuts = (
            set(range(17))
            | {8 + n * k // 40 for k in range(40)}
            | {8 + n + (len(data) - 8 - n) * k // 40 for k in range(40)}
        )
        cuts |= {len(data) - 4, len(data) - 1}
        for cut in sorted(cuts):
            outcome = try_export(category, f"{file} cut at {cut}", export.put(**{key: data[:cut]}), file, file_keys)
            assert not outcome.loaded
            assert file in outcome.message  # a file that cannot be read is named
    assert_corpus(category, 190)


def test_bit_flips_in_export_headers(tmp_path, original, reference, file_keys):
    category = "exports: bit flips in headers"
    export = ExportCopy(tmp_path / "export", original)
    rng = random.Random(1234)
    for file, key in ((ENCODER, "encoder"), (DECODER, "decoder")):
        data = original[file]
        (n,) = struct.unpack("<Q", data[:8])
        for _ in range(60):
            pos, bit = rng.randrange(8 + n), rng.randrange(8)
            flipped = bytearray(data)
            flipped[pos] ^= 1 << bit
            label = f"{file} byte {pos} bit {bit}"
            outcome = try_export(category, label, export.put(**{key: bytes(flipped)}), file, file_keys)
            if outcome.loaded:  # harmless only: a flip in the metadata strings or a no-op in JSON
                assert same_weights(outcome.value.model, reference), f"{label} loaded other weights"
    assert_corpus(category, 120)


def test_bit_flips_in_export_weights(tmp_path, original, reference, file_keys):
    """Flipped bits in the weights give other finite weights (loaded) or non-finite ones (refused); a flip in
    the codebook of one half makes the halves disagree (refused)."""
    category = "exports: bit flips in weights"
    export = ExportCopy(tmp_path / "export", original)
    rng = random.Random(99)
    for file, key in ((ENCODER, "encoder"), (DECODER, "decoder")):
        data = original[file]
        header, _ = split(data)
        base = 8 + struct.unpack("<Q", data[:8])[0]
        targets = [(base + rng.randrange(len(data) - base), rng.randrange(8)) for _ in range(8)]
        start = header["quantizer.embed"]["data_offsets"][0]
        targets.append((base + start + 3, 6))  # the codebook's first value: exponent bit
        norm = next(k for k in sorted(header) if k.endswith("norm1.weight"))
        targets.append((base + header[norm]["data_offsets"][0] + 3, 6))  # a GroupNorm weight 1.0 -> +Inf
        for pos, bit in targets:
            flipped = bytearray(data)
            flipped[pos] ^= 1 << bit
            label = f"{file} byte {pos} bit {bit}"
            outcome = try_export(category, label, export.put(**{key: bytes(flipped)}), file, file_keys)
            if outcome.loaded:
                state = outcome.value.model.state_dict()
                assert all(v.isfinite().all() for v in state.values() if v.is_floating_point())
                assert sum(not torch.equal(state[k].cpu(), reference[k]) for k in reference) <= 1
            else:
                assert "non-finite" in outcome.message or "disagree" in outcome.message, outcome.message
    tally = assert_corpus(category, 20)
    assert tally.refused >= 3  # at least: the two codebook flips (halves disagree) and the +Inf norm weights


# ---------------------------------------------------------------------------------------------------------------
# config.json and shapes


# Fields that change no tensor's name or shape: a config.json that changes only these loads (and means it).
SHAPELESS_FIELDS = {"name", "l2_normalize", "norm_groups"}


def assert_same_model_other_settings(
    tok: vqtok.Tokenizer, config: dict, reference: dict[str, Tensor], label: str
) -> None:
    """A config.json that loaded differs from the real one only in fields that change no tensor shape, and the
    weights are the file's."""
    loaded = tok.config.to_dict()
    # The training options a pre-0.2 config.json lists (the shipped tiny's does) are read and dropped, whatever their
    # value: they never changed the function from pixels to ids.
    differ = {k for k in config if k not in LEGACY_TRAINING_FIELDS and loaded[k] != config[k]}
    assert differ <= SHAPELESS_FIELDS, f"{label}: loaded with {differ} changed"
    assert same_weights(tok.model, reference), f"{label}: loaded other weights"


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def test_hostile_config_json(tmp_path, original, reference):
    category = "exports: config.json"
    export = ExportCopy(tmp_path / "export", original)
    config = json.loads(original[CONFIG])
    inputs: list[tuple[str, bytes]] = []
    for field in config:
        inputs += [(f"{field}={v!r}", json.dumps({**config, field: v}).encode()) for v in HOSTILE_VALUES]
        inputs.append((f"without {field}", json.dumps({k: v for k, v in config.items() if k != field}).encode()))
    inputs += [
        ("extra field", json.dumps({**config, "dropout": 0.1}).encode()),
        ("extra field target", json.dumps({**config, "target": "os.system"}).encode()),
        ("a list", b"[1, 2]"),
        ("a string", b'"tiny"'),
        ("null", b"null"),
        ("empty file", b""),
        ("not JSON", b"{name: tiny}"),
        ("binary", bytes(range(256))),
        ("UTF-16", json.dumps(config).encode("utf-16")),
        ("nested 100000 deep", b"[" * 100_000),
        ("an int of 5000 digits", f'{{"num_codes": {HUGE_INT}}}'.encode()),
        ("channel_mults of strings", json.dumps({**config, "channel_mults": ["1", "2"]}).encode()),
        ("channel_mults with 0", json.dumps({**config, "channel_mults": [1, 0, 2]}).encode()),
    ]
    for label, text in inputs:
        outcome = attempt(
            category, label, load_through_facade(export.put(config=text)), ExportError, (str(export.root),)
        )
        if outcome.loaded:
            assert_same_model_other_settings(outcome.value, config, reference, label)
    assert_corpus(category, 260)


def test_enormous_configs_are_refused_without_allocating(tmp_path, original):
    """A config.json describing a model of terabytes (or one torch cannot even represent) is refused by the shape
    check against the files, before the model is built: the process's peak memory does not grow."""
    category = "exports: enormous config.json"
    export = ExportCopy(tmp_path / "export", original)
    config = json.loads(original[CONFIG])
    huge = [
        {"base_channels": 8192},  # about 320 GB of float32 weights
        {"base_channels": 2**20},
        {"base_channels": 2**40},
        {"base_channels": 2**64},
        {"z_channels": 2**30},
        {"num_codes": 2**40},
        {"num_codes": 2**70},
        {"code_dim": 2**30},
        {"in_channels": 2**30},
        {"channel_mults": [1, 2**20, 2, 2]},
        {"num_res_blocks": 10**6},
        {"num_res_blocks": 10**12},
        {"channel_mults": [1] * 100_000},
        {"base_channels": 2**20, "num_codes": 2**40, "num_res_blocks": 64},
    ]
    before = peak_rss_bytes()
    for overrides in huge:
        text = json.dumps({**config, **overrides}).encode()
        start = time.perf_counter()
        outcome = attempt(
            category, str(overrides), load_through_facade(export.put(config=text)), ExportError, (str(export.root),)
        )
        assert not outcome.loaded
        assert time.perf_counter() - start < 20, f"{overrides}: refusing took {time.perf_counter() - start:.1f}s"
    assert peak_rss_bytes() - before < 1 << 30, "refusing an enormous config allocated more than 1 GiB"
    assert_corpus(category, len(huge))


def test_random_config_json(tmp_path, original, reference):
    category = "exports: random config.json (hypothesis)"
    export = ExportCopy(tmp_path / "export", original)
    config = json.loads(original[CONFIG])
    value = st.one_of(
        st.sampled_from(HOSTILE_VALUES),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=4),
        st.lists(st.integers(-3, 2**40), max_size=5),
    )
    fields = {k: st.one_of(st.just(v), value) for k, v in config.items()}

    @fuzz_settings(120)
    @given(cfg=st.fixed_dictionaries({}, optional=fields))
    def run(cfg: dict) -> None:
        root = export.put(config=json.dumps(cfg).encode())
        outcome = attempt(category, repr(cfg), load_through_facade(root), ExportError, (str(root),))
        if outcome.loaded:
            assert_same_model_other_settings(outcome.value, config, reference, repr(cfg))

    run()
    assert_corpus(category, 100)


def test_tensor_shapes_that_disagree_with_config_json(tmp_path, original, file_keys):
    category = "exports: shapes vs config.json"
    export = ExportCopy(tmp_path / "export", original)
    config = json.loads(original[CONFIG])
    disagreeing = [
        {"num_codes": 1024},
        {"num_codes": 256},
        {"code_dim": 16},
        {"z_channels": 32},
        {"base_channels": 64},
        {"channel_mults": [1, 2, 2]},
        {"channel_mults": [1, 2, 2, 2, 2]},
        {"channel_mults": [1, 1, 1, 1]},
        {"num_res_blocks": 2},
        {"attention": False},
        {"in_channels": 1},
        {"video": True},
        {"video": True, "temporal_downsample": 4},
        {"codebook": "learned"},
    ]
    for overrides in disagreeing:
        root = export.put(config=json.dumps({**config, **overrides}).encode())
        outcome = attempt(category, f"config {overrides}", load_through_facade(root), ExportError, (str(root),))
        if outcome.loaded:
            assert overrides == {"codebook": "learned"}, f"{overrides} loaded"  # same tensors, other training rule
        else:
            assert "do not match the tokenizer config" in outcome.message
    # The other way round: config.json as shipped, tensors reshaped in the files.
    for file, key in ((ENCODER, "encoder"), (DECODER, "decoder")):
        header, body = split(original[file])
        for name in [k for k in sorted(header) if k.endswith(".weight")][:6]:
            shape = header[name]["shape"]
            for lie in ([math.prod(shape)], shape[::-1], [*shape, 1], [1, *shape]):
                if lie == shape:
                    continue
                h = {**header, name: {**header[name], "shape": lie}}
                outcome = try_export(category, f"{name} as {lie}", export.put(**{key: join(h, body)}), file, file_keys)
                assert not outcome.loaded and f"{name}: file {tuple(lie)}" in outcome.message
    assert_corpus(category, 50)


# ---------------------------------------------------------------------------------------------------------------
# Non-finite weights


def test_non_finite_weights(tmp_path, original, file_keys):
    category = "exports: non-finite weights"
    export = ExportCopy(tmp_path / "export", original)

    halves = {file: load_bytes(original[file]) for file in (ENCODER, DECODER)}
    places = [
        ("encoder weight", [ENCODER], "encoder.conv_in.weight"),
        ("decoder weight", [DECODER], "decoder.conv_out.weight"),
        ("decoder GroupNorm", [DECODER], next(k for k in sorted(halves[DECODER]) if k.endswith("norm1.weight"))),
        ("codebook in both halves", [ENCODER, DECODER], "quantizer.embed"),
        ("codebook in the decoder only", [DECODER], "quantizer.embed"),
    ]
    for value in (math.nan, math.inf, -math.inf):
        for label, files, key in places:
            replaced = {}
            for file in files:
                state = {k: v.clone() for k, v in halves[file].items()}
                state[key].view(-1)[state[key].numel() // 2] = value
                replaced["encoder" if file == ENCODER else "decoder"] = save_bytes(state)
            root = export.put(**replaced)
            outcome = try_export(category, f"{value} in the {label}", root, files[-1], file_keys)
            assert not outcome.loaded
            expected = "disagree" if label.endswith("only") else f"non-finite values in {key}"
            assert expected in outcome.message, outcome.message
        # The shipped export stores weights as float16; `vqtok export` writes float32 by default.
        state = {k: v.float() if k.startswith("decoder.") else v for k, v in halves[DECODER].items()}
        state["decoder.conv_out.weight"].view(-1)[0] = value
        root = export.put(decoder=save_bytes(state))
        outcome = try_export(category, f"{value} in a float32 decoder weight", root, DECODER, file_keys)
        assert not outcome.loaded and "non-finite values in decoder.conv_out.weight" in outcome.message
    assert_corpus(category, 18)


# ---------------------------------------------------------------------------------------------------------------
# Pickles: never executed, always refused


class TouchOnUnpickle:
    """Creates ``marker`` when unpickled (a builtin callable: what a weights-only unpickler must refuse)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (pathlib.Path.touch, (self.marker,))


class ShellOnUnpickle:
    """Runs ``touch marker`` in a shell when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def pickle_payloads(marker: Path, tmp_path: Path) -> list[tuple[str, bytes]]:
    """Files that run code if unpickled: raw pickles of every protocol and torch.save checkpoints around one."""
    payloads = [(f"pickle protocol {p}", pickle.dumps(TouchOnUnpickle(marker), protocol=p)) for p in range(6)]
    payloads.append(("pickle calling os.system", pickle.dumps(ShellOnUnpickle(marker))))
    ckpt = {CHECKPOINT_CONFIG_KEY: TokenizerConfig.from_name("tiny").to_dict(), "state_dict": {}, "hook": None}
    for legacy in (False, True):
        path = tmp_path / f"evil-{legacy}.ckpt"
        torch.save({**ckpt, "hook": TouchOnUnpickle(marker)}, path, _use_new_zipfile_serialization=not legacy)
        payloads.append((f"torch.save {'legacy' if legacy else 'zip'} checkpoint", path.read_bytes()))
    return payloads


def test_pickle_payloads_are_live(tmp_path):
    """The corpus is honest: unpickled by an unsafe loader, the payloads do create the marker."""
    armed = tmp_path / "ARMED"
    for label, data in pickle_payloads(armed, tmp_path):
        if "torch.save" in label:
            (tmp_path / "p.ckpt").write_bytes(data)
            torch.load(tmp_path / "p.ckpt", weights_only=False)
        else:
            pickle.loads(data)  # noqa: S301 - our own payload (it touches a file in tmp_path), to show it is live
        assert armed.exists(), label
        armed.unlink()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch, reading protocols 3-5
def test_pickles_are_refused_by_every_loader(tmp_path, original, file_keys, tok, capsys, store_dir):
    category = "pickles"
    marker = tmp_path / "MARKER"
    export = ExportCopy(tmp_path / "export", original)
    loaders = _pickle_loaders(tmp_path, export, tok, capsys, store_dir)
    (tmp_path / "payloads").mkdir()
    for label, data in pickle_payloads(marker, tmp_path / "payloads"):
        for target, (load, refusal, names) in loaders.items():
            outcome = attempt(category, f"{label} as {target}", lambda: load(data), refusal, names)  # noqa: B023
            assert not outcome.loaded, f"{label} as {target} loaded"
            assert not marker.exists(), f"{label} as {target} was unpickled"
            if target in (
                "export_checkpoint",
                "vqtok export",
            ):  # the refusal says why, and does not pass on torch's advice to unpickle
                assert "pickled Python objects" in outcome.message and "weights_only" not in outcome.message
    assert_corpus(category, 9 * 12)


def _pickle_loaders(tmp_path: Path, export: ExportCopy, tok: vqtok.Tokenizer, capsys, store_dir: Path) -> dict:
    """Every place vqtok reads a file a user names: target -> (load(bytes), expected error, names it must say)."""
    ckpt = tmp_path / "user.ckpt"
    tokens = tmp_path / "tokens.safetensors"
    store = tmp_path / "store"

    def export_file(key: str) -> Callable[[bytes], object]:
        return lambda data: vqtok.load(export.put(**{key: data}))

    def write(path: Path, data: bytes) -> Path:
        path.write_bytes(data)
        return path

    def cli(argv: list[str], path: Path) -> Callable[[bytes], object]:
        def run(data: bytes) -> object:
            write(path, data)
            code = main(argv)
            err = capsys.readouterr().err
            if code == 2 and err.startswith(f"vqtok {argv[0]}: error:"):
                raise VqtokErrorFromCli(err)
            return code

        return run

    def store_file(name: str) -> Callable[[bytes], object]:
        def run(data: bytes) -> object:
            shutil.rmtree(store, ignore_errors=True)
            shutil.copytree(store_dir, store)
            target = store / name if name != "shard" else sorted((store / "shards").iterdir())[0]
            write(target, data)
            return [item.ids for item in TokenStore(store)]

        return run

    loaders = {
        "encoder.safetensors": (export_file("encoder"), ExportError, (ENCODER,)),
        "decoder.safetensors": (export_file("decoder"), ExportError, (DECODER,)),
        "config.json": (export_file("config"), ExportError, (CONFIG,)),
        "an export directory path": (lambda data: vqtok.load(write(ckpt, data)), ExportError, (str(ckpt),)),
        "export_checkpoint": (
            lambda data: export_checkpoint(write(ckpt, data), tmp_path / "out"),
            ExportError,
            (str(ckpt),),
        ),
        "vqtok export": (cli(["export", str(ckpt), str(tmp_path / "out")], ckpt), VqtokErrorFromCli, (str(ckpt),)),
        "load_tokens": (
            lambda data: load_tokens(write(tokens, data), tok.fingerprint),
            FileFormatError,
            (str(tokens),),
        ),
        "vqtok decode": (
            cli(["decode", str(tokens), "--model", str(TINY), "--out", str(tmp_path / "dec")], tokens),
            VqtokErrorFromCli,
            (str(tokens),),
        ),
        "a store shard": (store_file("shard"), FileFormatError, (".safetensors",)),
        "a store manifest": (store_file("manifest.jsonl"), FileFormatError, ("manifest.jsonl",)),
        "a store's store.json": (store_file("store.json"), FileFormatError, ("store.json",)),
    }
    if importlib.util.find_spec("lightning") is not None:
        from vqtok.training.module import TokenizerTraining

        def init_from(data: bytes) -> object:
            root = export.put(encoder=data)
            return TokenizerTraining(TokenizerConfig.from_name("tiny"), init_from=str(root)).load_init_from()

        loaders["training init_from"] = (init_from, ExportError, (ENCODER,))
    else:  # the corpus size below counts it; keep the count honest without Lightning
        loaders["training init_from (no Lightning: the export path)"] = (
            export_file("encoder"),
            ExportError,
            (ENCODER,),
        )
    return loaders


# ---------------------------------------------------------------------------------------------------------------
# Training checkpoints: weights-only torch files that are not vqtok checkpoints


def test_torch_files_that_are_not_vqtok_checkpoints(tmp_path, reference, capsys):
    category = "checkpoints: torch files that are not vqtok checkpoints"
    config = TokenizerConfig.from_name("tiny").to_dict()
    state = {"model." + k: v for k, v in reference.items()}

    def ckpt(config: object = config, **weights: object) -> dict:
        return {CHECKPOINT_CONFIG_KEY: config, "state_dict": weights.get("state_dict", state), "epoch": 1}

    def changed(key: str, value: Tensor | None) -> dict:
        return ckpt(state_dict={k: v for k, v in {**state, "model." + key: value}.items() if v is not None})

    conv = reference["decoder.conv_out.weight"]
    objects: list[tuple[str, object]] = [
        ("a tensor", torch.zeros(3)),
        ("a list", [1, 2, 3]),
        ("a dict of numbers", {"a": 1}),
        ("a plain state dict", OrderedDict(reference)),
        ("a Lightning checkpoint without a vqtok config", {"state_dict": state, "epoch": 3}),
        ("a config and no weights", {CHECKPOINT_CONFIG_KEY: config}),
        ("config is a name", ckpt("tiny")),
        ("config is a list", ckpt([1])),
        ("config with num_codes 0", ckpt({**config, "num_codes": 0})),
        ("config with an unknown field", ckpt({**config, "target": "os.system"})),
        ("config of a 320 GB model", ckpt({**config, "base_channels": 8192})),
        ("config of terabytes", ckpt({**config, "base_channels": 2**20, "num_codes": 2**40})),
        ("config with 10**9 ResNet blocks", ckpt({**config, "num_res_blocks": 10**9})),
        ("state_dict a list", ckpt(state_dict=[1, 2])),
        ("state_dict with int keys", ckpt(state_dict={1: torch.zeros(1)})),
        ("state_dict with a number", changed("decoder.conv_out.bias", 5)),  # type: ignore[arg-type]
        ("state_dict with a meta tensor", changed("decoder.conv_out.bias", torch.empty(3, device="meta"))),
        ("state_dict with a sparse tensor", changed("decoder.conv_out.bias", torch.zeros(3).to_sparse())),
        ("a NaN weight", changed("decoder.conv_out.weight", torch.full_like(conv, math.nan))),
        ("a missing weight", changed("decoder.conv_out.weight", None)),
        ("an extra weight", changed("decoder.extra.weight", torch.zeros(3))),
        ("float8 weights", changed("decoder.conv_out.weight", conv.to(torch.float8_e4m3fn))),
        ("integer weights", changed("decoder.conv_out.weight", conv.to(torch.int32))),
        ("complex weights", changed("decoder.conv_out.weight", conv.to(torch.complex64))),
        ("a transposed weight", changed("decoder.conv_out.weight", conv.transpose(0, 1).contiguous())),
        ("weights without the model. prefix", ckpt(state_dict=dict(reference))),
        ("a vqtok checkpoint", ckpt()),
    ]
    files: list[tuple[str, Path]] = []
    for i, (label, obj) in enumerate(objects):
        path = tmp_path / f"c{i}.ckpt"
        torch.save(obj, path)
        files.append((label, path))
    valid = files[-1][1].read_bytes()
    raw = [
        ("empty", b""),
        ("random bytes", random.Random(5).randbytes(4096)),
        ("a safetensors file", (TINY / DECODER).read_bytes()),
    ]
    raw += [(f"the valid checkpoint cut at {n}", valid[:n]) for n in (1, 100, len(valid) // 2, len(valid) - 1)]
    with zipfile.ZipFile(tmp_path / "garbage.zip", "w") as z:
        z.writestr("archive/data.pkl", b"not a pickle")
        z.writestr("archive/version", "3\n")
    raw.append(("a zip with a garbage pickle", (tmp_path / "garbage.zip").read_bytes()))
    for i, (label, data) in enumerate(raw):
        (tmp_path / f"r{i}.ckpt").write_bytes(data)
        files.append((label, tmp_path / f"r{i}.ckpt"))
    (tmp_path / "a-directory.ckpt").mkdir()
    files += [("a directory", tmp_path / "a-directory.ckpt"), ("a missing file", tmp_path / "missing.ckpt")]

    before = peak_rss_bytes()
    for label, path in files:
        out = tmp_path / "out" / path.stem
        outcome = attempt(category, label, lambda: export_checkpoint(path, out), ExportError, (str(path),))  # noqa: B023
        if outcome.loaded:
            assert label == "a vqtok checkpoint", f"{label} was exported"
            assert same_weights(vqtok.load(out).model, reference)
    assert peak_rss_bytes() - before < 1 << 30, "refusing a checkpoint allocated more than 1 GiB"
    # The same files through `vqtok export`: exit status 2 and a message naming the file.
    for label, path in files:
        if label == "a vqtok checkpoint":
            continue

        def cli(path: Path = path) -> int:
            code = main(["export", str(path), str(tmp_path / "cli-out")])
            err = capsys.readouterr().err
            if code == 2 and err.startswith("vqtok export: error:"):
                raise VqtokErrorFromCli(err)
            return code

        assert not attempt(category, f"{label} via vqtok export", cli, VqtokErrorFromCli, (str(path),)).loaded
    assert_corpus(category, 2 * len(files) - 1)


# ---------------------------------------------------------------------------------------------------------------
# Token files


@pytest.fixture(scope="module")
def token_bytes(tok: vqtok.Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real token file: two images of 16x20 and 16x24 pixels (2x3 ids each at f=8)."""
    path = tmp_path_factory.mktemp("tokens") / "t.safetensors"
    ids = tok.encode(torch.rand(1, 3, 16, 24) * 2 - 1)[0]  # (2, 3)
    items = [TokenItem(ids, (16, 20), "a.png"), TokenItem(ids, (16, 24), "b.png")]
    save_tokens(path, items, tok.config.name, tok.fingerprint, tok.codebook_size)
    return path.read_bytes()


def decode_token_file(tok: vqtok.Tokenizer, path: Path, out: Path) -> list[Path]:
    """What ``vqtok decode`` does with a token file: load it for this model, decode every item to a file."""
    _, items = load_tokens(path, fingerprint=tok.fingerprint)
    shutil.rmtree(out, ignore_errors=True)
    write_decoded(tok, ((i, it.source, it.ids, it.size, it.fps) for i, it in enumerate(items)), out, where=str(path))
    return sorted(out.iterdir())


def try_token_file(category: str, label: str, tok: vqtok.Tokenizer, path: Path, data: bytes) -> Outcome:
    """Decoding the token file ``data`` writes images, or is refused: FileFormatError naming the file when it
    cannot be read, and also (naming the file and the item) when an item cannot be decoded: ids outside the codebook,
    a grid that does not fit the item's size."""
    path.write_bytes(data)
    out = path.parent / "decoded"
    names = (str(path), "ids must", "ids are", "size must", "does not fit its size", "decode_chunks takes")
    outcome = attempt(category, label, lambda: decode_token_file(tok, path, out), (FileFormatError, InputError), names)
    if outcome.loaded:
        assert outcome.value, f"{label}: nothing decoded"
    elif isinstance(outcome.value, FileFormatError):
        assert str(path) in outcome.message
    return outcome


def token_file_bytes(tensors: dict[str, Tensor], items: object, fingerprint: str, **meta: str) -> bytes:
    metadata = {
        "format": "vqtok-tokens-1",
        "model": "tiny",
        "model_fingerprint": fingerprint,
        "codebook_size": "512",
        "items": items if isinstance(items, str) else json.dumps(items),
        **meta,
    }
    return save_bytes(tensors, metadata={k: v for k, v in metadata.items() if v is not None})


def test_token_files_with_lying_headers(tmp_path, tok, token_bytes):
    category = "token files: lying safetensors headers"
    path = tmp_path / "tokens.safetensors"
    for label, data in lying_headers(token_bytes):
        if try_token_file(category, label, tok, path, data).loaded:  # the same ids: I16 as U16, ignored entries
            assert label.endswith(("dtype 'U16'", "extra field", "same entry")), label
    cuts = sorted(set(range(0, 17)) | {len(token_bytes) * k // 24 for k in range(24)} | {len(token_bytes) - 1})
    for cut in cuts:
        assert not try_token_file(category, f"cut at {cut}", tok, path, token_bytes[:cut]).loaded
    assert_corpus(category, 150)


def test_token_files_with_bad_contents(tmp_path, tok, token_bytes, capsys):
    category = "token files: ids, dtypes and metadata"
    fp = tok.fingerprint
    ids = torch.zeros(2, 3, dtype=torch.int16)
    one = [{"size": [16, 24], "source": "a.png"}]

    def grid(value: int, dtype: torch.dtype = torch.int64) -> dict[str, Tensor]:
        return {"ids.0": torch.full((2, 3), value, dtype=dtype)}

    other_model = save_export(VQVAE(TokenizerConfig.from_name("tiny")).eval(), tmp_path / "other")
    files: list[tuple[str, bytes, bool]] = [  # (label, bytes, may load)
        ("the valid file", token_file_bytes({"ids.0": ids}, one, fp), True),
        ("made by another model", token_file_bytes({"ids.0": ids}, one, vqtok.load(other_model).fingerprint), False),
        ("no fingerprint", token_file_bytes({"ids.0": ids}, one, None), False),  # type: ignore[arg-type]
        ("another format", token_file_bytes({"ids.0": ids}, one, fp, format="vqtok-tokens-0"), False),
        ("no metadata", save_bytes({"ids.0": ids}), False),
        ("codebook size lies", token_file_bytes({"ids.0": ids}, one, fp, codebook_size="-5"), True),
    ]
    for value, dtype in [
        (512, torch.int16),
        (600, torch.int64),
        (-1, torch.int16),
        (2**31 - 1, torch.int32),
        (2**62, torch.int64),
        (2**63 + 5, torch.uint64),
    ]:
        files.append((f"id {value} as {dtype}", token_file_bytes(grid(value, dtype), one, fp), False))
    for dtype, loads in [
        (torch.float16, False),
        (torch.float32, False),
        (torch.bfloat16, False),
        (torch.float64, False),
        (torch.bool, False),
        (torch.complex64, False),
        (torch.float8_e4m3fn, False),
        (torch.uint8, True),
        (torch.int8, True),
        (torch.uint16, True),
        (torch.int32, True),
        (torch.uint32, True),
    ]:
        files.append((f"ids as {dtype}", token_file_bytes({"ids.0": torch.zeros(2, 3).to(dtype)}, one, fp), loads))
    for shape in [(), (6,), (1, 2, 3), (1, 1, 2, 3), (0, 3), (3, 2)]:
        files.append(
            (
                f"ids of shape {shape}",
                token_file_bytes({"ids.0": torch.zeros(shape, dtype=torch.int16)}, one, fp),
                False,
            )
        )
    video = [{"size": [5, 16, 24], "source": "v.mp4", "fps": 24.0}]
    files.append(
        (
            "a video grid for an image tokenizer",
            token_file_bytes({"ids.0": torch.zeros(2, 2, 3, dtype=torch.int16)}, video, fp),
            False,
        )
    )
    sizes: list[object] = [
        [8, 8],
        [16, 17],
        [17, 24],
        [10**9, 10**9],
        [2**63, 2**63],
        [10**30, 1],
        [-1, 16],
        [0, 16],
        [16],
        [1, 16, 24],
        [16, 16, 16, 16],
        [16.0, 24],
        [True, 24],
        "16x24",
        None,
    ]
    for size in sizes:
        item = [{"size": size, "source": "a.png"}]
        # ids (2, 3) fit sizes 9..16 x 17..24 only: a size the grid does not fit (8 x 8 gives 1 x 1) is malformed
        files.append((f"size {size!r}", token_file_bytes({"ids.0": ids}, item, fp), size == [16, 17]))
    items_lies: list[tuple[str, object, bool]] = [
        ("items not JSON", "[{size", False),
        ("items nested 100000 deep", "[" * 100_000, False),
        ("a size of 5000 digits", f'[{{"size": [{HUGE_INT}, 2], "source": "a"}}]', False),
        ("items an object", {"size": [16, 24], "source": "a"}, False),
        ("items empty", [], False),
        ("items without source", [{"size": [16, 24]}], False),
        ("source a number", [{"size": [16, 24], "source": 5}], False),
        ("source a path outside", [{"size": [16, 24], "source": "../../etc/passwd"}], True),
        ("an extra key", [{"size": [16, 24], "source": "a", "x": 1}], True),
        ("fps NaN", [{"size": [16, 24], "source": "a", "fps": math.nan}], False),
        ("fps negative", [{"size": [16, 24], "source": "a", "fps": -1}], False),
        ("fps huge", [{"size": [16, 24], "source": "a", "fps": 1e300}], False),
        ("fps a string", [{"size": [16, 24], "source": "a", "fps": "24"}], False),
        ("two items, one tensor", one * 2, False),
    ]
    for label, items, loads in items_lies:
        files.append((label, token_file_bytes({"ids.0": ids}, items, fp), loads))
    files += [
        ("one item, two tensors", token_file_bytes({"ids.0": ids, "ids.1": ids.clone()}, one, fp), False),
        ("a tensor of another name", token_file_bytes({"ids.0": ids, "x": ids.clone()}, one, fp), False),
        ("ids.1 without ids.0", token_file_bytes({"ids.1": ids}, one, fp), False),
        ("no tensors", token_file_bytes({}, one, fp), False),
    ]
    path = tmp_path / "tokens.safetensors"
    for label, data, may_load in files:
        outcome = try_token_file(category, label, tok, path, data)
        assert outcome.loaded == may_load, f"{label}: loaded={outcome.loaded}: {outcome.value}"
        if label == "made by another model":
            assert "decode it with the model that encoded it" in outcome.message
    # Through `vqtok decode`: exit status 2 and a message for every refused file (one CLI run per kind of problem).
    via_cli = {
        "made by another model",
        "no fingerprint",
        "no metadata",
        "id 600 as torch.int64",
        "id -1 as torch.int16",
        "ids as torch.bool",
        "ids as torch.float16",
        "ids of shape (6,)",
        f"size {[10**9, 10**9]!r}",
        "items nested 100000 deep",
        "two items, one tensor",
        "one item, two tensors",
    }
    for label, data, _ in files:
        if label not in via_cli:
            continue
        path.write_bytes(data)

        def cli() -> int:
            code = main(["decode", str(path), "--model", str(TINY), "--out", str(tmp_path / "cli")])
            err = capsys.readouterr().err
            if code == 2 and err.startswith("vqtok decode: error:"):
                raise VqtokErrorFromCli(err)
            return code

        assert not attempt(category, f"{label} via vqtok decode", cli, VqtokErrorFromCli, ("error:",)).loaded
    path.write_bytes(token_bytes)  # a file of the tiny model, decoded with another model: refused
    cli_other = ["decode", str(path), "--model", str(other_model), "--out", str(tmp_path / "cli")]
    assert main(cli_other) == 2 and "decode it with the model that encoded it" in capsys.readouterr().err
    assert_corpus(category, 75)


def test_token_files_with_random_item_metadata(tmp_path, tok):
    category = "token files: random 'items' metadata (hypothesis)"
    path = tmp_path / "tokens.safetensors"
    number = st.one_of(st.integers(-(2**64), 2**64), st.floats(), st.booleans(), st.none(), st.text(max_size=3))
    fits = st.tuples(st.integers(1, 16), st.integers(1, 24)).map(list)  # within the 16x24 pixels of the 2x3 ids
    size = st.one_of(
        fits, fits, st.lists(st.integers(1, 64), min_size=2, max_size=3), st.lists(number, max_size=4), number
    )
    fps = st.one_of(st.floats(0.01, 120), number)
    entry = st.fixed_dictionaries(
        {"size": size, "source": st.text(max_size=8)},
        optional={"fps": fps, "extra": number},
    )
    garbage = st.one_of(number, st.dictionaries(st.text(max_size=3), number, max_size=2), st.lists(number, max_size=2))
    dtypes = st.sampled_from([torch.int16, torch.int64, torch.uint8, torch.uint16, torch.float32, torch.bool])

    @fuzz_settings(120)
    @given(items=st.one_of(st.lists(entry, min_size=1, max_size=3), garbage), dtype=dtypes, data=st.data())
    def run(items: object, dtype: torch.dtype, data: st.DataObject) -> None:
        n = len(items) if isinstance(items, list) else 1
        count = data.draw(st.sampled_from([n, n, n, 0, n + 1]), label="tensors")  # mostly as many as listed
        tensors = {f"ids.{i}": torch.ones(2, 3).to(dtype) for i in range(count)}
        label = f"{items!r} {dtype} x{count}"
        try_token_file(category, label, tok, path, token_file_bytes(tensors, items, tok.fingerprint))

    run()
    assert_corpus(category, 100)


# ---------------------------------------------------------------------------------------------------------------
# Token stores


@pytest.fixture(scope="module")
def store_dir(tok: vqtok.Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real token store of the tiny model: 4 images in 2 units (2 shards), 2x3 ids each."""
    root = tmp_path_factory.mktemp("store") / "store"
    meta = StoreMeta(
        model="tiny",
        model_fingerprint=tok.fingerprint,
        config_hash="c" * 16,
        num_codes=tok.codebook_size,
        ids_dtype="uint16",
        video=False,
    )
    open_store(root, meta)
    sources = [str(root.parent / f"img{i}.png") for i in range(4)]
    for unit in plan_run(root, sources, 2, retry_failed=False).units:
        writer = UnitWriter(root, unit.name, len(unit.sources), meta, 1 << 20)
        for k, source in enumerate(unit.sources):
            ids = (torch.arange(6) * 97 + k).remainder(512).view(2, 3)
            item = {"source": source, "sha256": "0" * 64, "size": [16, 24], "input_size": [16, 24], "fps": None}
            writer.add({**item, "ids": ids})
        writer.commit()
    merge(root)
    assert len(TokenStore(root)) == 4 and len(list((root / "shards").iterdir())) == 2
    return root


class StoreCopy:
    """Fresh copies of a store with some of its files replaced, one corpus input at a time."""

    def __init__(self, base: Path, root: Path) -> None:
        self.base, self.root = base, root
        self.shard = sorted(p.relative_to(base).as_posix() for p in (base / "shards").iterdir())[0]

    def put(self, files: dict[str, bytes | None]) -> Path:
        """Relative path -> new bytes (None: delete it); returns the store directory."""
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.copytree(self.base, self.root)
        for name, data in files.items():
            if data is None:
                (self.root / name).unlink()
            else:
                (self.root / name).write_bytes(data)
        return self.root


def read_store(root: Path) -> list[Tensor]:
    store = TokenStore(root)
    return [store[i].ids for i in range(len(store))]


def try_store(
    category: str, label: str, copy: StoreCopy, files: dict[str, bytes | None], names: tuple[str, ...]
) -> Outcome:
    root = copy.put(files)
    outcome = attempt(category, label, lambda: read_store(root), FileFormatError, names)
    if outcome.loaded:
        for ids in outcome.value:
            assert ids.dtype == torch.int64 and 0 <= int(ids.min()) <= int(ids.max()) < 512, label
    return outcome


def test_token_stores_with_garbage_manifests(tmp_path, store_dir):
    category = "token stores: manifest lines"
    copy = StoreCopy(store_dir, tmp_path / "store")
    lines = (store_dir / "manifest.jsonl").read_text().splitlines()
    record = json.loads(lines[1])
    garbage: list[str | bytes] = [b"\xff\xfe\x00", "{", "[", "null", "5", "[]", "{}", '"x"', "[" * 100_000]
    garbage.append(json.dumps(record)[:-1] + f', "offset": {HUGE_INT}}}')
    garbage += [json.dumps({k: v for k, v in record.items() if k != field}) for field in record]
    changes: list[tuple[str, object]] = [
        ("extra", 1),
        ("source", 5),
        ("size", "16"),
        ("size", []),
        ("input_size", [0, 1]),
        ("grid", [0, 3]),
        ("grid", [-1, 3]),
        ("grid", [6]),
        ("grid", [1, 1, 2, 3]),
        ("grid", [True, 6]),
        ("grid", [2.0, 3]),
        ("grid", [10**9, 10**9]),
        ("grid", [2**63, 2**63]),
        ("grid", [3, 2]),
        ("offset", -1),
        ("offset", 10**18),
        ("offset", 2.0),
        ("offset", 1),
        ("shard", "/etc/passwd"),
        ("shard", "../store/shards/x.safetensors"),
        ("shard", "shards/missing.safetensors"),
        ("shard", 5),
        ("shard", ""),
        ("shard", "shards"),
    ]
    garbage += [json.dumps({**record, field: value}) for field, value in changes]
    for line in garbage:
        text = line if isinstance(line, bytes) else line.encode()
        manifest = "\n".join(lines[:1]).encode() + b"\n" + text + b"\n" + "\n".join(lines[2:]).encode() + b"\n"
        outcome = try_store(
            category, repr(line[:80]), copy, {"manifest.jsonl": manifest}, ("manifest.jsonl", ".safetensors", "shards")
        )
        if outcome.loaded:  # well-formed records that point at other ids of their shard: no reader can tell
            assert '"grid": [3, 2]' in line or '"offset": 1}' in line, line

    record_fields = {
        k: st.one_of(
            st.just(v),
            st.integers(-(2**64), 2**64),
            st.text(max_size=4),
            st.lists(st.integers(-2, 2**40), max_size=4),
            st.none(),
        )
        for k, v in record.items()
    }
    line = st.one_of(
        st.binary(max_size=40),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=4),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
            max_leaves=6,
        ).map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries({}, optional=record_fields).map(lambda v: json.dumps(v).encode()),
    )

    @fuzz_settings(100)
    @given(text=line)
    def run(text: bytes) -> None:
        manifest = "\n".join(lines).encode() + b"\n" + text.replace(b"\n", b" ") + b"\n"
        try_store(
            category, repr(text[:80]), copy, {"manifest.jsonl": manifest}, ("manifest.jsonl", ".safetensors", "shards")
        )

    run()
    assert_corpus(category, 140)


def test_token_stores_with_corrupt_shards(tmp_path, store_dir, tok):
    category = "token stores: shards"
    copy = StoreCopy(store_dir, tmp_path / "store")
    shard = copy.shard
    data = (store_dir / shard).read_bytes()
    names = (Path(shard).name,)
    for label, lie in lying_headers(data):
        if try_store(category, f"header: {label}", copy, {shard: lie}, names).loaded:
            assert label.endswith(("extra field", "same entry")), label
    cuts = sorted(set(range(0, 17)) | {len(data) * k // 24 for k in range(24)} | {len(data) - 1})
    for cut in cuts:
        assert not try_store(category, f"cut at {cut}", copy, {shard: data[:cut]}, names).loaded
    header, _ = split(data)
    fp = {"format": "vqtok-store-1", "model_fingerprint": tok.fingerprint}
    n = header["ids"]["shape"][0]

    contents: list[tuple[str, bytes | None, bool]] = [
        (
            "from another model",
            save_bytes({"ids": torch.zeros(n, dtype=torch.uint16)}, {**fp, "model_fingerprint": "0" * 16}),
            False,
        ),
        ("without metadata", save_bytes({"ids": torch.zeros(n, dtype=torch.uint16)}), False),
        ("float ids", save_bytes({"ids": torch.arange(n).float()}, fp), False),
        ("int32 ids", save_bytes({"ids": torch.arange(n).int()}, fp), False),
        ("negative ids", save_bytes({"ids": -torch.arange(n).int()}, fp), False),
        ("bool ids", save_bytes({"ids": torch.ones(n, dtype=torch.bool)}, fp), False),
        ("uint8 ids", save_bytes({"ids": torch.ones(n, dtype=torch.uint8)}, fp), False),
        ("ids beyond the codebook", save_bytes({"ids": torch.full((n,), 600, dtype=torch.uint16)}, fp), False),
        ("2-D ids", save_bytes({"ids": torch.zeros(2, n // 2, dtype=torch.uint16)}, fp), False),
        ("no ids tensor", save_bytes({"x": torch.zeros(n, dtype=torch.uint16)}, fp), False),
        ("fewer ids than the manifest says", save_bytes({"ids": torch.zeros(n - 1, dtype=torch.uint16)}, fp), False),
        ("an extra tensor", save_bytes({"ids": torch.zeros(n, dtype=torch.uint16), "x": torch.zeros(1)}, fp), True),
        ("deleted", None, False),
    ]
    for label, content, may_load in contents:
        outcome = try_store(category, label, copy, {shard: content}, names)
        assert outcome.loaded == may_load, f"{label}: {outcome.value}"
        if label == "from another model":
            assert "another model" in outcome.message
    assert_corpus(category, 130)


def test_token_stores_with_bad_store_json(tmp_path, store_dir):
    category = "token stores: store.json"
    copy = StoreCopy(store_dir, tmp_path / "store")
    meta = json.loads((store_dir / "store.json").read_text())
    texts = [(repr(raw), raw) for raw in (b"", b"\xff\xfe", b"[1]", b"null", b"{}", b"[" * 100_000)]
    texts.append(("num_codes of 5000 digits", json.dumps(meta)[:-1].encode() + f', "num_codes": {HUGE_INT}}}'.encode()))
    texts += [
        (f"without {field}", json.dumps({k: v for k, v in meta.items() if k != field}).encode()) for field in meta
    ]
    changes = [
        ("num_codes", "512"),
        ("num_codes", 0),
        ("num_codes", -1),
        ("num_codes", True),
        ("num_codes", 2.5),
        ("num_codes", 10),  # smaller than the ids stored
        ("ids_dtype", "float32"),
        ("ids_dtype", "int32"),
        ("ids_dtype", None),
        ("model_fingerprint", 5),
        ("format", "vqtok-store-0"),
        ("extra", 1),
    ]
    texts += [(f"{field}={value!r}", json.dumps({**meta, field: value}).encode()) for field, value in changes]
    for label, text in texts:
        names = ("store.json", ".safetensors")  # a wrong dtype or codebook size shows when a shard is read
        if try_store(category, label, copy, {"store.json": text}, names).loaded:  # fields with harmless defaults
            assert label in ("without preprocess", "without vqtok_version"), label
    assert_corpus(category, 25)
