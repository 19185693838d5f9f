"""A minimal reader (and writer, for tests) of Lua Torch7 ``.t7`` binary files.

LS3D-W ships its 68-point landmarks as one ``.t7`` file per image holding a
``torch.FloatTensor`` (68 x 2, or 68 x 3 for 3-D points). Only what such files
need is supported: numbers, strings, booleans, tables, tensors and storages
(Float, Double, Long, Int, Short, Byte, Char), with back-references.

Binary layout (torch7 ``File:writeObject``, little-endian): a 4-byte int type
tag (0 nil, 1 number, 2 string, 3 table, 4 torch object, 5 boolean); numbers
are 8-byte doubles; strings are an int length then bytes; tables and torch
objects carry an int reference index (a repeated index refers back to the
object already read); a torch object then has a version string ``"V 1"`` and
its class name; a tensor is ``int ndim, long sizes[ndim], long strides[ndim],
long storage_offset`` (1-based) and its storage object; a storage is
``long size`` followed by the raw elements. ``long`` is 8 bytes by default.

This is written from the format's description and tested on files written by
:func:`write_t7_tensor`; it has not been checked here against a real LS3D-W file.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

TYPE_NIL, TYPE_NUMBER, TYPE_STRING, TYPE_TABLE, TYPE_TORCH, TYPE_BOOLEAN = 0, 1, 2, 3, 4, 5

_STORAGE_DTYPES = {
    "torch.FloatStorage": np.float32, "torch.DoubleStorage": np.float64, "torch.LongStorage": np.int64,
    "torch.IntStorage": np.int32, "torch.ShortStorage": np.int16, "torch.ByteStorage": np.uint8,
    "torch.CharStorage": np.int8,
}
_TENSOR_TYPES = {k.replace("Storage", "Tensor"): v for k, v in _STORAGE_DTYPES.items()}


class T7FormatError(ValueError):
    """The file is not a Torch7 binary file this reader understands."""


class _Reader:
    def __init__(self, f: BinaryIO, path: str, long_size: int = 8):
        self.f, self.path, self.long_size = f, path, long_size
        self.objects: dict[int, Any] = {}

    def _read(self, n: int) -> bytes:
        b = self.f.read(n)
        if len(b) != n:
            raise T7FormatError(f"{self.path}: truncated at byte {self.f.tell()} (wanted {n} more bytes)")
        return b

    def int(self) -> int:
        return struct.unpack("<i", self._read(4))[0]

    def long(self) -> int:
        return struct.unpack("<q" if self.long_size == 8 else "<i", self._read(self.long_size))[0]

    def longs(self, n: int) -> list[int]:
        return [self.long() for _ in range(n)]

    def string(self) -> str:
        n = self.int()
        if n < 0 or n > 1 << 20:
            raise T7FormatError(f"{self.path}: implausible string length {n} at byte {self.f.tell()}")
        return self._read(n).decode("utf-8", errors="replace")

    def obj(self) -> Any:
        tag = self.int()
        if tag == TYPE_NIL:
            return None
        if tag == TYPE_NUMBER:
            return struct.unpack("<d", self._read(8))[0]
        if tag == TYPE_STRING:
            return self.string()
        if tag == TYPE_BOOLEAN:
            return self.int() == 1
        if tag == TYPE_TABLE:
            idx = self.int()
            if idx in self.objects:
                return self.objects[idx]
            table: dict[Any, Any] = {}
            self.objects[idx] = table
            for _ in range(self.int()):
                k = self.obj()
                table[k] = self.obj()
            return table
        if tag == TYPE_TORCH:
            idx = self.int()
            if idx in self.objects:
                return self.objects[idx]
            version = self.string()
            cls = self.string() if version.startswith("V ") else version
            if cls in _STORAGE_DTYPES:
                dt = np.dtype(_STORAGE_DTYPES[cls])
                n = self.long()
                out: Any = np.frombuffer(self._read(n * dt.itemsize), dtype=dt.newbyteorder("<")).copy()
            elif cls in _TENSOR_TYPES:
                ndim = self.int()
                sizes, strides = self.longs(ndim), self.longs(ndim)
                offset = self.long() - 1
                storage = self.obj()
                if ndim == 0 or storage is None:
                    out = np.zeros((0,), _TENSOR_TYPES[cls])
                else:
                    it = storage.dtype.itemsize
                    out = np.lib.stride_tricks.as_strided(storage[offset:], shape=sizes,
                                                          strides=[s * it for s in strides]).copy()
            else:
                raise T7FormatError(f"{self.path}: unsupported torch class {cls!r}")
            self.objects[idx] = out
            return out
        raise T7FormatError(f"{self.path}: unknown type tag {tag} at byte {self.f.tell() - 4}")


def read_t7(path: str | Path, long_size: int = 8) -> Any:
    """Read one object from a Torch7 binary ``.t7`` file (tensors become numpy arrays)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    with open(path, "rb") as f:
        return _Reader(f, str(path), long_size).obj()


def write_t7_tensor(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as a contiguous Torch7 Float/Double/Long tensor (used by tests)."""
    arr = np.ascontiguousarray(array)
    kind = {np.dtype(np.float32): "Float", np.dtype(np.float64): "Double", np.dtype(np.int64): "Long"}[arr.dtype]

    def s(x: str) -> bytes:
        b = x.encode()
        return struct.pack("<i", len(b)) + b

    strides, acc = [], 1
    for n in reversed(arr.shape):
        strides.insert(0, acc)
        acc *= n
    out = struct.pack("<ii", TYPE_TORCH, 1) + s("V 1") + s(f"torch.{kind}Tensor")
    out += struct.pack("<i", arr.ndim) + struct.pack(f"<{arr.ndim}q", *arr.shape)
    out += struct.pack(f"<{arr.ndim}q", *strides) + struct.pack("<q", 1)
    out += struct.pack("<ii", TYPE_TORCH, 2) + s("V 1") + s(f"torch.{kind}Storage")
    out += struct.pack("<q", arr.size) + arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    Path(path).write_bytes(out)
