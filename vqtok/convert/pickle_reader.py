"""Read the tensors of a torch checkpoint without running any of its code.

A ``.ckpt`` or ``.pt`` written by ``torch.save`` is a zip archive: ``<prefix>/data.pkl`` (a pickle) and one file per
storage under ``<prefix>/data/``. The pickle names Python objects besides tensors: Lightning 1.x stores its callback
classes as dict keys, LlamaGen an ``argparse.Namespace``, others OmegaConf configs. A plain unpickle imports and
calls whatever the file names, so a hostile file runs code. ``torch.load(weights_only=True)`` refuses such files.

:func:`read_checkpoint` tries ``torch.load(weights_only=True)`` first and, when torch refuses a name, unpickles with
:class:`_InertUnpickler`: every global the file names becomes an inert stand-in class made here (nothing is
imported or called), except the few torch names that rebuild tensors, which map to functions defined here that
only record where a tensor's bytes lie. Only the tensors the caller asks for are then read from the archive.
"""

from __future__ import annotations

import io
import logging
import pickle
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vqtok.errors import FileFormatError
from vqtok.export import unpickler_reason

log = logging.getLogger(__name__)

# torch's typed storage class names -> element dtype (what torch.save writes for each storage).
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
MAX_PICKLE_BYTES = 1 << 30  # data.pkl holds structure, not tensor bytes: a larger one is not a checkpoint


@dataclass(frozen=True)
class _StorageRef:
    """Where a storage's bytes lie in the archive: ``<prefix>/data/<key>``, ``numel`` elements of ``dtype``."""

    key: str
    dtype: torch.dtype
    numel: int


@dataclass(frozen=True)
class TensorRef:
    """A tensor of the checkpoint, not yet read: a strided view of a storage."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


class InertObject:
    """Stand-in for an object of a class the file names: it keeps the arguments and state it was given."""

    module: str = ""
    qualname: str = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:  # BUILD: never the named class's own __setstate__
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self.module}.{self.qualname}>"


def _inert_class(module: str, name: str) -> type[InertObject]:
    """A new stand-in class that only records the (module, name) the file gave; nothing is imported."""
    return type(name if name.isidentifier() else "Unnamed", (InertObject,), {"module": module, "qualname": name})


def _rebuild_tensor(
    storage: object, offset: object, size: object, stride: object, *_: object, **__: object
) -> TensorRef | InertObject:
    """torch._utils._rebuild_tensor_v2's stand-in: records the view; reads nothing."""
    if not (
        isinstance(storage, _StorageRef)
        and isinstance(offset, int)
        and isinstance(size, tuple)
        and isinstance(stride, tuple)
        and all(isinstance(v, int) for v in (*size, *stride))
    ):
        return InertObject(storage, offset, size, stride)
    return TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data: object, *_: object) -> object:
    """torch._utils._rebuild_parameter's stand-in: the parameter's tensor."""
    return data


def _ordered_dict(*args: object) -> OrderedDict:
    return OrderedDict()


# The only names mapped to something other than an inert stand-in: functions and types defined above (or the
# builtin OrderedDict), so what the file names never decides which code runs.
_KNOWN: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}

_TENSOR_NAMES = {f"{m}.{n}" for m, n in _KNOWN} | {f"torch.{n}" for n in _STORAGE_DTYPES}


class _InertUnpickler(pickle.Unpickler):
    """Unpickles data.pkl with every named global replaced (see the module docstring)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.named: list[str] = []  # the globals the file named, for messages

    def find_class(self, module: str, name: str) -> Any:
        self.named.append(f"{module}.{name}")
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        return _KNOWN.get((module, name)) or _inert_class(module, name)

    def persistent_load(self, pid: Any) -> _StorageRef:
        # torch.save writes ("storage", storage type, key, location, numel)
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise FileFormatError(f"unexpected persistent id {str(pid)[:80]!r}")
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, torch.dtype) or not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise FileFormatError(f"a storage record of an unknown kind: {str(pid)[:80]!r}")
        return _StorageRef(key, dtype, numel)


class Checkpoint:
    """An opened torch zip checkpoint: its unpickled structure (tensors as :class:`TensorRef` where the inert
    reader was needed, real tensors otherwise) and the names of the Python objects the file refers to."""

    def __init__(self, path: Path, root: Any, named: list[str], archive: zipfile.ZipFile | None, prefix: str) -> None:
        self.path, self.root, self.named = path, root, named
        self._archive, self._prefix = archive, prefix

    def note(self) -> str:
        """For error messages: the Python names the file refers to besides torch's tensor machinery, if any."""
        foreign = sorted({n for n in self.named if n not in _TENSOR_NAMES})
        if not foreign:
            return ""
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        return f" (the file also names {', '.join(foreign[:5])}{more}: never imported or called)"

    def tensors(self, obj: object, what: str) -> dict[str, Tensor]:
        """``obj`` (a part of :attr:`root`, e.g. its "state_dict") as a dict of names to dense CPU tensors."""
        if not isinstance(obj, dict) or not obj:
            raise FileFormatError(f"{self.path}: {what} is not a dict of named tensors{self.note()}")
        out = {}
        for name, value in obj.items():
            if not isinstance(name, str):
                raise FileFormatError(f"{self.path}: {what} has a key that is not a string: {name!r}")
            out[name] = self._tensor(value, f"{what}[{name!r}]")
        return out

    def _tensor(self, value: object, where: str) -> Tensor:
        if isinstance(value, Tensor):
            return value
        if not isinstance(value, TensorRef) or self._archive is None:
            raise FileFormatError(f"{self.path}: {where} is not a tensor ({value!r:.80}){self.note()}")
        ref = value
        member = f"{self._prefix}data/{ref.storage.key}"
        itemsize = torch.empty(0, dtype=ref.storage.dtype).element_size()
        try:
            info = self._archive.getinfo(member)
            if info.file_size != ref.storage.numel * itemsize:
                raise FileFormatError(
                    f"{self.path}: storage {ref.storage.key} holds {info.file_size} bytes, "
                    f"not the {ref.storage.numel} x {itemsize} its record says"
                )
            data = bytearray(self._archive.read(member))
        except (KeyError, zipfile.BadZipFile, OSError, EOFError) as e:
            raise FileFormatError(f"{self.path}: cannot read the bytes of {where}: {e}") from None
        flat = torch.frombuffer(data, dtype=ref.storage.dtype) if data else torch.empty(0, dtype=ref.storage.dtype)
        try:
            return torch.as_strided(flat, ref.size, ref.stride, ref.offset).clone()
        except RuntimeError as e:  # a view outside its storage
            raise FileFormatError(f"{self.path}: {where} does not fit its storage: {str(e).splitlines()[0]}") from None


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Open a torch checkpoint (``.ckpt``/``.pt``/``.pth`` written by ``torch.save``) without running its code.

    Raises:
        FileFormatError: not a file, not torch's zip format (e.g. the pre-1.6 format), or a damaged archive.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"checkpoint {path} does not exist or is not a file")
    try:
        root = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
        return Checkpoint(path, root, [], None, "")
    except pickle.UnpicklingError as e:  # names torch does not allow: read with stand-ins below
        log.info("%s names Python objects besides tensors; reading its tensors only (%s)", path, unpickler_reason(e))
    except Exception as e:  # torch raises many types for a file that is not its format
        if not zipfile.is_zipfile(path):
            raise FileFormatError(f"{path} is not a torch checkpoint in torch's zip format: {_first_line(e)}") from None
    return _read_inert(path)


def _read_inert(path: Path) -> Checkpoint:
    if not zipfile.is_zipfile(path):
        raise FileFormatError(
            f"{path} is not a torch checkpoint in torch's zip format (torch.save since torch 1.6); vqtok does not "
            "read other pickles"
        )
    try:
        archive = zipfile.ZipFile(path)
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    except (zipfile.BadZipFile, OSError) as e:
        raise FileFormatError(f"{path} is not a readable torch checkpoint: {e}") from None
    if len(pickles) != 1:
        raise FileFormatError(f"{path} is not a torch checkpoint: expected one <name>/data.pkl, found {pickles[:3]}")
    info = archive.getinfo(pickles[0])
    if info.file_size > MAX_PICKLE_BYTES:
        raise FileFormatError(f"{path}: data.pkl is {info.file_size} bytes; not a checkpoint's structure")
    unpickler = _InertUnpickler(archive.read(info))
    limit = sys.getrecursionlimit()
    try:
        root = unpickler.load()
    except FileFormatError as e:
        raise FileFormatError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError, KeyError) as e:
        raise FileFormatError(f"{path}: cannot read its pickle: {type(e).__name__}: {e}") from None
    except RecursionError:
        raise FileFormatError(f"{path}: its pickle nests deeper than {limit} levels") from None
    prefix = pickles[0][: -len("data.pkl")]
    return Checkpoint(path, root, unpickler.named, archive, prefix)


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    refused = next((line for line in lines if "unsupported" in line.lower()), None)
    return (refused or (lines[0] if lines else type(error).__name__))[:200]
