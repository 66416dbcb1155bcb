"""Pieces every stage shares: the one error type, atomic files, registries, hashing, the console.

Kept in one small module so that cohort/, featurize/, models/ and simulate/ agree on how a bad input is
reported (one line naming the file and field), how files land (temporary path, then rename; output folders:
``medmodal.outputs``) and how a new source / task / featurizer / backbone / framework is found by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

from rich.console import Console


# stderr so that stdout stays clean for tables a user may pipe; one instance for the whole package. Logs and CI
# (no terminal) get 120 columns instead of rich's 80, so the metric tables are not wrapped cell by cell.
def _width(stream) -> int | None:
    return None if stream.isatty() or os.environ.get("COLUMNS") else 120


console = Console(stderr=True, highlight=False, width=_width(sys.stderr))
# stdout, for the tables a command exists to print (`cohort report`, `cohort tasks`)
out_console = Console(highlight=False, width=_width(sys.stdout))

T = TypeVar("T")

_UMASK = os.umask(0)
os.umask(_UMASK)


def _owner_tag() -> str:
    """8 hex naming this host and boot in temporary names, so the leftovers sweep (``medmodal.outputs``) only
    ever judges a process id it can check: one of this machine since its last start."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return hashlib.sha256(f"{socket.gethostname()}\0{boot}".encode()).hexdigest()[:8]


OWNER_TAG = _owner_tag()


def output_mode(*, directory: bool) -> int:
    """The permissions the user's umask gives a new file or folder; temporaries stay private until renamed."""
    return (0o777 if directory else 0o666) & ~_UMASK


class MedmodalError(Exception):
    """A user-facing error: one line naming the file / row / field and what is wrong.

    The CLI prints ``str(err)`` and exits non-zero. Messages must never contain note text.
    """

    def __init__(self, message: str, *, path: str | os.PathLike | None = None, field: str | None = None):
        parts = []
        if path is not None:
            parts.append(str(path))
        if field is not None:
            parts.append(f"field '{field}'")
        prefix = ": ".join(parts)
        line = f"{prefix}: {message}" if prefix else message
        super().__init__(" ".join(line.split()))  # always one line
        self.path = None if path is None else str(path)
        self.field = field


def check_number(
    value: Any,
    flag: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    integer: bool = False,
) -> Any:
    """``value`` if it is a finite number in range; else a MedmodalError naming ``flag`` (``--lr nan``, ``-5``).

    ``minimum`` / ``maximum`` are inclusive bounds, ``above`` an exclusive lower bound.
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (not integer or float(value).is_integer())
    if ok and minimum is not None:
        ok = value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if ok and above is not None:
        ok = value > above
    if not ok:
        kind = "an integer" if integer else "a finite number"
        bounds = [f">= {minimum:g}" if minimum is not None else "", f"> {above:g}" if above is not None else ""]
        bounds.append(f"<= {maximum:g}" if maximum is not None else "")
        rng = " and ".join(b for b in bounds if b)
        raise MedmodalError(f"{flag} must be {kind}{' ' + rng if rng else ''} (got {value!r})")
    return value


class Registry(Generic[T]):
    """Name -> object map filled by a decorator; the single place a new X is found by name.

    >>> BACKBONES = Registry("backbone")
    >>> @BACKBONES.register("late_fusion")
    ... class LateFusion: ...

    What a registered object declares beyond its name (its typed ``config_class``, a featurizer's ``kind``) is
    read from the object itself (``medmodal.options``), so the CLI, ``medmodal list`` and the docs tables all
    derive from the registry. ``default`` names the entry used when a caller names none.
    """

    def __init__(self, kind: str, *, default: str | None = None):
        self.kind = kind
        self.default = default
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._items[name] = obj
            return obj

        return deco

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a throwaway entry clean up with this)."""
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise MedmodalError(f"unknown {self.kind} '{name}' (known: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._items[name]) for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Write a file through a private temporary sibling and rename it into place on success.

    The temporary is named like ``medmodal.outputs``' temporaries, so a killed writer's leftover is swept.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.tmp-{OWNER_TAG}-{os.getpid()}-", dir=final.parent)
    os.close(fd)
    try:
        with open(tmp, mode) as fh:
            yield fh
        os.chmod(tmp, output_mode(directory=False))  # mkstemp makes 0600: the user's usual permissions once final
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_file(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")


def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_fingerprint(path: str | os.PathLike, *, full_hash_below: int = 64 << 20) -> dict[str, Any]:
    """Provenance of a raw file: size, mtime and a content hash.

    Files above ``full_hash_below`` bytes (chartevents is ~3 GB) are hashed on their first and last MiB plus
    size, which identifies a PhysioNet release without reading the whole file on every build.
    """
    p = Path(path)
    st = p.stat()
    if st.st_size <= full_hash_below:
        digest, how = sha256_file(p), "sha256"
    else:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            h.update(fh.read(1 << 20))
            fh.seek(max(0, st.st_size - (1 << 20)))
            h.update(fh.read(1 << 20))
        h.update(str(st.st_size).encode())
        digest, how = h.hexdigest(), "sha256(head+tail+size)"
    return {"path": str(p), "bytes": st.st_size, "mtime": int(st.st_mtime), "hash": digest, "hash_kind": how}
