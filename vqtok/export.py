"""Exported tokenizers: ``config.json`` + ``encoder.safetensors`` + ``decoder.safetensors``.

An export loads with the base dependencies only (torch, safetensors): no Lightning, nothing unpickled.
Writes are atomic: the directory is assembled under a temporary name and renamed into place, so a killed export
never leaves a directory that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor

from vqtok._version import __version__
from vqtok.config import CHECKPOINT_CONFIG_KEY, LEGACY_TRAINING_FIELDS, TokenizerConfig
from vqtok.errors import ConfigError, ExportError
from vqtok.io.atomic import default_dir_mode, fsync_dir, replace_dir
from vqtok.io.tensors import save_safetensors
from vqtok.model.vqvae import DECODER_PREFIXES, ENCODER_PREFIXES, QUANTIZER_PREFIX, VQVAE
from vqtok.model_card import CARD_FILE, model_card

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
ENCODER_FILE = "encoder.safetensors"
DECODER_FILE = "decoder.safetensors"
ONNX_MANIFEST = "onnx.json"  # marks a directory written by vqtok export-onnx (vqtok.backends.onnx_export)
FORMAT = "vqtok-export-1"
CKPT_MODEL_PREFIX = "model."  # where training checkpoints keep the generator's weights
# The floating-point dtypes, by name, that exports store weights in and tokenizers run in.
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# The dtypes a file may hold a floating-point weight in (loaded as float32); fp8 and the like are refused.
WEIGHT_DTYPES = (*DTYPES.values(), torch.float64)

# Where short names such as "video" are looked up: the exports an installed wheel carries (package data), then
# the checkpoints/ folder of a source checkout (beside the package, next to pyproject.toml).
_PACKAGE_DIR = Path(__file__).resolve().parent  # vqtok/
_IN_CHECKOUT = (_PACKAGE_DIR.parent / "pyproject.toml").is_file()
CHECKPOINT_DIRS = (_PACKAGE_DIR / "_checkpoints",) + ((_PACKAGE_DIR.parent / "checkpoints",) if _IN_CHECKOUT else ())
DEFAULT_MODEL = "image"  # what vqtok.load() gives: the shipped f8 image tokenizer (checkpoints/image)


def split_state_dict(model: VQVAE) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """A VQVAE's state dict -> (encoder half, decoder half), each a contiguous copy; the decoder half also carries
    the quantizer's identity tensors (a learned codebook), which turn ids back into vectors."""
    state = model.state_dict()
    shared = {k for k in model.identity_tensors() if k.startswith(QUANTIZER_PREFIX)}
    enc = {k: v.detach().contiguous().clone() for k, v in state.items() if k.startswith(ENCODER_PREFIXES)}
    dec = {
        k: v.detach().contiguous().clone() for k, v in state.items() if k.startswith(DECODER_PREFIXES) or k in shared
    }
    return enc, dec


def save_export(model: VQVAE, out_dir: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Path:
    """Write model to out_dir atomically (replacing an earlier export there). Returns the directory.

    ``dtype`` is the storage type of the encoder's and decoder's floating-point weights (float16 halves the
    files); the quantizer's tensors stay float32, so the fingerprint does not depend on it (ids may, where rounding
    the weights tips a nearest-code choice). Loading always gives float32 weights. config.json holds the
    architecture and the name (:class:`~vqtok.config.TokenizerConfig`), no training options; README.md is a model
    card with Hugging Face metadata (:mod:`vqtok.model_card`), so the folder can be uploaded to the hub as it is.
    """
    if dtype not in DTYPES.values():
        raise ExportError(f"export dtype must be one of {sorted(DTYPES)}, got {dtype}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory; choose a directory path for the export")
    if out.exists() and not (out / CONFIG_FILE).is_file() and any(out.iterdir()):
        raise ExportError(f"{out} exists and is not a vqtok export; refusing to replace it (choose an empty path)")
    out.parent.mkdir(parents=True, exist_ok=True)
    enc, dec = (_cast_weights(part, dtype) for part in split_state_dict(model))
    overflow = sorted(
        k for part in (enc, dec) for k, v in part.items() if v.is_floating_point() and not v.isfinite().all()
    )
    if overflow:
        raise ExportError(f"weights do not fit {dtype} (non-finite after the cast): {_head(overflow)}; export float32")
    meta = {"format": FORMAT, "vqtok_version": __version__}
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        tmp.chmod(default_dir_mode())  # mkdtemp makes it private (0o700)
        save_safetensors(enc, tmp / ENCODER_FILE, metadata={**meta, "part": "encoder"})
        save_safetensors(dec, tmp / DECODER_FILE, metadata={**meta, "part": "decoder"})
        (tmp / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
        (tmp / CARD_FILE).write_text(model_card(model.config, fingerprint(model.config, model.identity_tensors())))
        _fsync_dir_files(tmp)
        replace_dir(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):  # a full disk, say: name the export, not the temporary folder
            raise ExportError(f"cannot write the export {out}: {e.strerror or e}") from e
        raise
    return out


def _cast_weights(state: dict[str, Tensor], dtype: torch.dtype) -> dict[str, Tensor]:
    """Floating-point tensors outside the quantizer in ``dtype``; the rest as they are."""
    return {
        k: v.to(dtype) if v.is_floating_point() and not k.startswith(QUANTIZER_PREFIX) else v for k, v in state.items()
    }


def _fsync_dir_files(d: Path) -> None:
    for f in d.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(d)


def export_checkpoint(
    ckpt_path: str | os.PathLike, out_dir: str | os.PathLike, dtype: torch.dtype = torch.float32
) -> Path:
    """Export the generator of a vqtok training checkpoint (``.ckpt``) to out_dir, weights stored in ``dtype``."""
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise ExportError(f"checkpoint {ckpt_path} does not exist or is not a file")
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's message suggests weights_only=False; vqtok never does that
        raise ExportError(
            f"{ckpt_path} holds pickled Python objects besides tensors, which vqtok never loads (unpickling can run "
            f"code); export a checkpoint written by vqtok fit ({unpickler_reason(e)})"
        ) from None
    except Exception as e:  # torch raises many types for a bad or non-weights-only file
        raise ExportError(f"cannot read checkpoint {ckpt_path} as a torch weights file: {_first_line(e)}") from None
    if not isinstance(ckpt, dict) or CHECKPOINT_CONFIG_KEY not in ckpt or "state_dict" not in ckpt:
        raise ExportError(f"{ckpt_path} is not a vqtok training checkpoint (no '{CHECKPOINT_CONFIG_KEY}' entry)")
    config = _config_from_dict(ckpt[CHECKPOINT_CONFIG_KEY], str(ckpt_path))
    state_dict = ckpt["state_dict"]
    if not isinstance(state_dict, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) and v.layout == torch.strided and v.device.type == "cpu"
        for k, v in state_dict.items()
    ):
        raise ExportError(f"{ckpt_path}: 'state_dict' is not a dict of named dense tensors; not a vqtok checkpoint")
    state = {k[len(CKPT_MODEL_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(CKPT_MODEL_PREFIX)}
    return save_export(_build_and_load(config, state, str(ckpt_path)), out_dir, dtype)


def _config_from_dict(d: object, where: str) -> TokenizerConfig:
    if not isinstance(d, dict):
        raise ExportError(f"{where}: tokenizer config must be a JSON object")
    try:
        return TokenizerConfig.from_dict(d)
    except ConfigError as e:
        raise ExportError(f"{where}: {e}") from None


def fingerprint(config: TokenizerConfig, identity: dict[str, Tensor]) -> str:
    """16 hex digits that identify a model: token files carry the fingerprint of the model that wrote them, so
    another model can refuse them.

    It hashes the architecture (:meth:`TokenizerConfig.architecture`: not the name, not training options) and the
    model's identity tensors (:meth:`VQVAE.identity_tensors`: a learned codebook in float32, else the 1x1 convs
    around the code space rounded to float16), so it is the same for a renamed export, an export retrained with
    other training options into the same weights, and a float32 or float16 export of one model.
    """
    h = hashlib.sha256(json.dumps(config.architecture(), sort_keys=True).encode())
    for name in sorted(identity):
        dtype = torch.float32 if name.startswith(QUANTIZER_PREFIX) else torch.float16
        h.update(name.encode())
        h.update(identity[name].detach().to(dtype).cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def legacy_fingerprint(config_dict: dict, codebook: Tensor) -> str:
    """The fingerprint that vqtok before 0.2 gave an export whose config.json still holds training options (its
    whole config.json and codebook), so token files written then keep loading."""
    h = hashlib.sha256(json.dumps(config_dict, sort_keys=True).encode())
    h.update(codebook.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def export_fingerprints(path: str | os.PathLike) -> tuple[str, ...]:
    """The fingerprints token files of an export directory may carry: its :func:`fingerprint`, then, for a
    config.json from before vqtok 0.2, the older one. Read from config.json and the identity tensors alone (the
    model is built on the meta device only to name them), so matching a token file against many exports costs a
    few reads, not loading each model."""
    root = Path(path)
    if (root / ONNX_MANIFEST).is_file() and not (root / ENCODER_FILE).is_file():  # written by vqtok export-onnx
        return _onnx_fingerprints(root)
    try:
        config_dict = json.loads((root / CONFIG_FILE).read_text())
        config = _config_from_dict(config_dict, str(root / CONFIG_FILE))
        with torch.device("meta"):
            names = list(VQVAE(config).identity_tensors())
        identity = {}
        for file in (DECODER_FILE, ENCODER_FILE):
            with safe_open(str(root / file), framework="pt") as f:
                identity.update({k: f.get_tensor(k) for k in names if k in f.keys() and k not in identity})
    except (ExportError, SafetensorError, OSError, ValueError, TypeError, RuntimeError, RecursionError) as e:
        raise ExportError(f"{root} is not a readable export: {str(e).splitlines()[0] if str(e) else e!r}") from None
    missing = sorted(set(names) - set(identity))
    if missing:
        raise ExportError(f"{root} is not a readable export: missing {missing}")
    return (fingerprint(config, identity), *_legacy(config_dict, identity))


def _onnx_fingerprints(root: Path) -> tuple[str, ...]:
    """The fingerprints an ONNX export (see vqtok.backends.onnx_export) recorded from the export it was made of."""
    try:
        found = json.loads((root / ONNX_MANIFEST).read_text())["fingerprints"]
    except (OSError, ValueError, RecursionError, KeyError, TypeError) as e:
        raise ExportError(f"{root} is not a readable ONNX export: {ONNX_MANIFEST}: {e!r}") from None
    if not isinstance(found, list) or not found or not all(isinstance(f, str) for f in found):
        raise ExportError(f"{root} is not a readable ONNX export: {ONNX_MANIFEST} lists no fingerprints")
    return tuple(found)


def _legacy(config_dict: dict, identity: dict[str, Tensor]) -> tuple[str, ...]:
    """The pre-0.2 fingerprint of an old-format config.json (one with training options), else nothing. Every
    pre-0.2 export is a VQ model, whose one identity tensor is its codebook."""
    if not any(k in config_dict for k in LEGACY_TRAINING_FIELDS) or len(identity) != 1:
        return ()
    (codebook,) = identity.values()
    return (legacy_fingerprint(config_dict, codebook),)


def load_export(path: str | os.PathLike) -> VQVAE:
    """Build the model of an export directory and load its weights, checking every name, shape and value."""
    root = Path(path)
    if not root.is_dir():
        raise ExportError(f"{root} is not a directory; expected a vqtok export ({CONFIG_FILE}, {ENCODER_FILE}, ...)")
    missing = [f for f in (CONFIG_FILE, ENCODER_FILE, DECODER_FILE) if not (root / f).is_file()]
    if missing:
        raise ExportError(f"{root} is not a vqtok export: missing {', '.join(missing)}")
    try:
        config_dict = json.loads((root / CONFIG_FILE).read_text())
    except (OSError, ValueError, RecursionError) as e:  # bad JSON, an int of 4300+ digits, nesting too deep
        raise ExportError(f"{root / CONFIG_FILE} is not valid JSON: {e}") from None
    config = _config_from_dict(config_dict, str(root / CONFIG_FILE))
    enc = _read_safetensors(root / ENCODER_FILE)
    dec = _read_safetensors(root / DECODER_FILE)
    shared = set(enc) & set(dec)
    differing = sorted(k for k in shared if not _same_bytes(enc[k], dec[k]))
    if differing:
        raise ExportError(f"{root}: encoder and decoder files disagree on {differing}; they come from different models")
    return _build_and_load(config, {**enc, **dec}, str(root))


def _same_bytes(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors read from files are identical: dtype, shape and bytes (works for every dtype)."""
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
    )


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError, RuntimeError) as e:  # torch rejects some lying shapes
        raise ExportError(f"{path} is not a readable safetensors file: {_first_line(e)}") from None


def _first_line(error: Exception, marker: str = "") -> str:
    """The line of an error message that starts with ``marker`` (else the first line), without torch's C++ trace."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    return next((line for line in lines if marker and line.startswith(marker)), lines[0])


def unpickler_reason(error: Exception) -> str:
    """What torch's weights-only unpickler refused ("Unsupported global: GLOBAL os.system ...", "Trying to load
    unsupported GLOBAL posix.system ..."), without its advice to allowlist the object or to load with
    weights_only=False; for a file that is corrupt rather than hostile, the unpickler's own complaint."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    refused = next((line for line in lines if "unsupported" in line.lower()), None)
    if refused is None:
        return lines[-1] if lines else type(error).__name__
    return refused[refused.lower().find("unsupported") :].split(" Please use")[0].split(" Check the doc")[0].strip()


def _build_and_load(config: TokenizerConfig, state: dict[str, Tensor], where: str) -> VQVAE:
    """The model of ``config`` with ``state`` loaded strictly: every expected tensor present, no extra ones, shapes
    equal, values finite.

    The expected shapes come from a model built on the meta device, so a config.json that asks for a huge model is
    refused by the shape check before any memory is allocated; the real model is only built for weights that fit.
    """
    blocks = config.num_res_blocks * len(config.channel_mults)
    if blocks > len(state):  # every ResNet block owns tensors; this also bounds the time the meta build takes
        raise ExportError(
            f"{where}: the config asks for {blocks} ResNet blocks but the weights hold only {len(state)} tensors; "
            "config.json does not belong to these weights"
        )
    try:
        with torch.device("meta"):
            shapes = VQVAE(config)
    except (RuntimeError, TypeError, ValueError) as e:  # sizes beyond what torch can represent
        raise ExportError(
            f"{where}: the tokenizer config describes a model torch cannot build: {_first_line(e)}"
        ) from None
    expected, identity = shapes.state_dict(), set(shapes.identity_tensors())
    # The quantizer's training state (EMA statistics) is kept when present, and optional: an export trained with
    # a learned codebook has none, and inference never reads it.
    optional = {k for k in expected if k.startswith(QUANTIZER_PREFIX) and k not in identity}
    if set(state) - set(expected):  # a file with a name the model lacks is damaged: report all that is missing
        optional = set()
    _check_state({k: v for k, v in expected.items() if k not in optional or k in state}, state, where)
    model = VQVAE(config)
    model.load_state_dict(state, strict=False)  # every tensor but the optional ones was checked above
    return model


def _check_state(expected: dict[str, Tensor], state: dict[str, Tensor], where: str) -> None:
    """Raise ExportError listing every missing, extra, misshapen, wrongly typed or non-finite tensor."""
    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        problems.append(f"missing tensors {_head(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_head(unexpected)}")
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs config {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if wrong:
        problems.append(f"shapes that do not match config.json: {_head(wrong)}")
    wrong_kind = {
        k
        for k, v in expected.items()
        if k in state and (state[k].dtype not in WEIGHT_DTYPES if v.is_floating_point() else state[k].dtype != v.dtype)
    }
    if wrong_kind:
        kinds = [f"{k}: {state[k].dtype} where {expected[k].dtype} is expected" for k in sorted(wrong_kind)]
        problems.append(f"tensors of the wrong kind: {_head(kinds)}")
    nonfinite = sorted(
        k
        for k, v in expected.items()
        if k in state and k not in wrong_kind and v.is_floating_point() and not torch.isfinite(state[k]).all()
    )
    if nonfinite:
        problems.append(f"non-finite values in {_head(nonfinite)}")
    if problems:
        raise ExportError(f"{where}: weights do not match the tokenizer config: " + "; ".join(problems))


def _head(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def resolve_export(name_or_path: str | os.PathLike = DEFAULT_MODEL) -> Path:
    """An export directory from a path, or from the short name of a shipped checkpoint (see CHECKPOINT_DIRS).

    A folder in the working directory that happens to have a shipped name (say ``image/`` of photos) does not
    hide the shipped export unless it holds a config.json. A hub name (``hf://OWNER/REPO[/PATH][?from=SOURCE]``)
    is fetched through huggingface_hub's cache, and converted once when it names a published checkpoint
    (see :mod:`vqtok.convert.hub`).
    """
    if str(name_or_path).startswith("hf://"):
        from vqtok.convert.hub import resolve  # the hub layer sits above exports; imported only for hub names

        return resolve(str(name_or_path))
    path = Path(name_or_path)
    shipped = [root / path for root in CHECKPOINT_DIRS if len(path.parts) == 1 and (root / path).is_dir()]
    if path.is_dir() and ((path / CONFIG_FILE).is_file() or not shipped):
        return path
    if shipped:
        return shipped[0]
    known = sorted(p.name for root in CHECKPOINT_DIRS if root.is_dir() for p in root.iterdir() if p.is_dir())
    raise ExportError(f"no tokenizer export at {str(name_or_path)!r}: not a directory, nor a short name of {known}")
