"""Tensors too large to hold whole: written block by block, saved as safetensors without materialising them.

A feature store at MIMIC-IV size holds a (546k, 48, V) timeseries tensor of several GB; building it in memory,
then handing it to ``safetensors.torch.save_file`` (which serialises the whole file into one buffer) costs
two to three times that. Here a featurizer appends row blocks to a :class:`SpooledTensor` (an anonymous file
beside the store, unlinked from the start, so nothing is left behind even after a kill), and
:func:`save_safetensors` writes the file format's header followed by each tensor's bytes in fixed-size pieces.

The bytes are those ``save_file`` writes (the same header JSON, tensor order and padding; tests compare the two),
so outputs stay byte-identical whichever path wrote them. The header layout is the documented safetensors format
(8-byte little-endian header length, JSON header padded with spaces to 8 bytes, then the raw data); the order of
the tensors is taken from the library itself (``_safetensors_order``), not re-implemented.
"""

from __future__ import annotations

import json
import struct
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

PIECE_BYTES = 64 << 20  # what is held in memory at once while copying a spooled tensor into place

_ST_DTYPES = {"float32": "F32", "float64": "F64", "float16": "F16", "bool": "BOOL", "int64": "I64", "int32": "I32"}


class SpooledTensor:
    """An [N, ...] tensor of ``dtype`` filled by appending row blocks in order; its bytes live in a temporary file.

    Shape comments as elsewhere: ``append`` takes (k, *shape[1:]) blocks until N rows are in. ``dtype`` and
    ``shape`` read like a torch tensor's, so store manifests and fingerprints see no difference.
    """

    def __init__(self, shape: tuple[int, ...], dtype: Any, *, dir: str | Path | None = None):
        self.shape = tuple(int(s) for s in shape)
        self.np_dtype = np.dtype(dtype)
        # unlinked already: vanishes when closed or the process dies; open as long as the tensor lives
        self._fh = tempfile.TemporaryFile(dir=dir)  # noqa: SIM115
        self._rows = 0

    @property
    def dtype(self):
        import torch

        return getattr(torch, str(self.np_dtype))

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.np_dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.row_bytes

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.np_dtype)
        if block.shape[1:] != self.shape[1:] or self._rows + block.shape[0] > self.shape[0]:
            raise ValueError(f"block {block.shape} does not continue a tensor of shape {self.shape}")
        self._fh.write(block.tobytes())
        self._rows += block.shape[0]

    def append_zeros(self, rows: int) -> None:
        """``rows`` rows of zeros (samples without any value), written a piece at a time."""
        step = max(1, PIECE_BYTES // max(1, self.row_bytes))
        while rows > 0:
            k = min(rows, step)
            self.append(np.zeros((k, *self.shape[1:]), dtype=self.np_dtype))
            rows -= k

    def pieces(self) -> Iterator[bytes]:
        if self._rows != self.shape[0]:
            raise ValueError(f"tensor has {self._rows} of its {self.shape[0]} rows")
        self._fh.seek(0)
        while piece := self._fh.read(PIECE_BYTES):
            yield piece

    def numpy(self) -> np.ndarray:
        """The whole tensor in memory (tests and small cohorts only)."""
        return np.frombuffer(b"".join(self.pieces()), dtype=self.np_dtype).reshape(self.shape)

    def close(self) -> None:
        self._fh.close()


def _pieces(t: Any) -> Iterator[bytes]:
    if isinstance(t, SpooledTensor):
        yield from t.pieces()
        return
    a = t.contiguous().numpy() if hasattr(t, "contiguous") else np.ascontiguousarray(t)
    flat = a.reshape(-1).view(np.uint8)
    for start in range(0, len(flat), PIECE_BYTES):
        yield flat[start : start + PIECE_BYTES].tobytes()


def _np_dtype(t: Any) -> np.dtype:
    if isinstance(t, SpooledTensor):
        return t.np_dtype
    if hasattr(t, "numpy"):  # torch tensor: its dtype name is numpy's (float32, bool, ...)
        return np.dtype(str(t.dtype).replace("torch.", ""))
    return np.asarray(t).dtype


def _safetensors_order(dtypes: Mapping[str, np.dtype]) -> list[str]:
    """The order in which safetensors lays out tensors of these names and dtypes (it sorts by dtype, then name):
    read off a file the library writes for one-element stand-ins, so a change of that rule is followed."""
    import torch
    from safetensors.torch import save

    stand_ins = {k: torch.zeros(1, dtype=getattr(torch, str(d))) for k, d in dtypes.items()}
    blob = save(stand_ins)
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    return sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])


def save_safetensors(tensors: Mapping[str, Any], path: str | Path) -> None:
    """Write ``tensors`` (torch tensors or SpooledTensors) to ``path`` as ``save_file`` would, piece by piece."""
    dtypes = {k: _np_dtype(t) for k, t in tensors.items()}
    header: dict[str, Any] = {}
    offset = 0
    order = _safetensors_order(dtypes)
    for k in order:
        t = tensors[k]
        shape = list(t.shape)
        size = int(np.prod(shape, dtype=np.int64)) * dtypes[k].itemsize
        header[k] = {"dtype": _ST_DTYPES[str(dtypes[k])], "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(text)))
        fh.write(text)
        for k in order:
            for piece in _pieces(tensors[k]):
                fh.write(piece)


_FROM_ST = {v: k for k, v in _ST_DTYPES.items()}


def load_safetensors_mmap(path: str | Path) -> dict[str, Any]:
    """Every tensor of a safetensors file as a torch tensor over a copy-on-write memory map of the file: nothing
    is read until a row is used, and pages the OS can drop again are not the process's own memory. Raises
    ValueError on a header that is not the format's."""
    import torch

    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > 100 << 20:
            raise ValueError("header too large")
        header = json.loads(fh.read(n))
    size = Path(path).stat().st_size
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = np.dtype(_FROM_ST[info["dtype"]])
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end - start != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize or 8 + n + end > size:
            raise ValueError(f"tensor {name}: offsets do not match its shape")
        if end == start:
            out[name] = torch.from_numpy(np.zeros(shape, dtype=dtype))
            continue
        # mode "c": writable without touching the file (torch refuses read-only arrays without a warning)
        arr = np.memmap(path, dtype=dtype, mode="c", offset=8 + n + start, shape=shape)
        out[name] = torch.from_numpy(arr)
    return out
