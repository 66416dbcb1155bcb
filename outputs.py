"""Where a command writes: the refusal rules, atomic replacement, private temporaries and the leftovers sweep.

The rule (docs/reliability.md): **no command deletes what it did not create.** So

- an output folder is written as a private (0700) temporary sibling and renamed into place only when all of it
  succeeded; it carries a marker (``contracts.MARKER``) naming its kind;
- an existing ``--out`` is replaced only when its marker says it is the same kind of medmodal output *and* the
  user passed ``--overwrite``; an empty folder is taken over; anything else is refused with one line;
- an ``--out`` equal to, inside or above any input of the command (raw roots, cohort, store, run) is refused,
  and so are the current folder (or one above it), a symbolic link and a file;
- temporaries are named ``.<name>.tmp-<host>-<pid>-<random>`` (``.old-`` for a replaced output on its way out,
  ``.medmodal-work-<host>-<pid>-<random>`` for DuckDB's spill database): the next command that writes beside
  them removes those whose process is provably gone (same host and boot, pid no longer running) and that
  medmodal provably made (its marker inside; files by their name alone), and puts back an output whose
  replacement was interrupted half way.

Persistent outputs that grow rather than being replaced (a feature store, a resumable benchmark) are claimed
with :func:`claim_dir` instead of :func:`atomic_dir`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from medmodal.common import OWNER_TAG, MedmodalError, console, output_mode
from medmodal.contracts import MARKER, describe_kind, read_marker, write_marker

Inputs = Mapping[str, "str | os.PathLike | None"]

_LEFTOVER = re.compile(
    r"^(?:\.(?P<name>.+)\.(?P<what>tmp|old)|\.medmodal-(?P<work>work))-(?P<tag>[0-9a-f]{8})-(?P<pid>\d+)-[A-Za-z0-9_]+$"
)


# ---------------------------------------------------------------------------------------------------- refusals
def _real(path: Path) -> Path:
    """``path`` with symlinks resolved as far as it exists (the rest appended), absolute."""
    return Path(os.path.realpath(Path(path).expanduser().absolute()))


def _within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_relations(
    out: str | os.PathLike,
    inputs: Inputs | None = None,
    *,
    flag: str | None = "--out",
    allow_inside: Sequence[str | os.PathLike] = (),
    replaced: bool = True,
) -> None:
    """Refuse an output equal to, inside or above an input; ``replaced``: also the current folder or above it."""
    target = _real(Path(out))
    if replaced and _within(_real(Path.cwd()), target):
        raise MedmodalError(
            "is the current folder or one above it; give a new folder for the output", path=out, field=flag
        )
    allowed = [_real(Path(a)) for a in allow_inside]
    for label, given in (inputs or {}).items():
        if given is None:
            continue
        src = _real(Path(given))
        if target == src:
            raise MedmodalError(f"is the input given as {label} ({given}); choose a new folder", path=out, field=flag)
        if _within(src, target):
            raise MedmodalError(
                f"contains the input given as {label} ({given}); writing there could destroy it", path=out, field=flag
            )
        if _within(target, src) and not any(target != a and _within(target, a) for a in allowed):
            raise MedmodalError(
                f"is inside the input given as {label} ({given}); choose a folder outside every input",
                path=out,
                field=flag,
            )


def check_output(
    out: str | os.PathLike,
    kind: str,
    *,
    overwrite: bool = False,
    inputs: Inputs | None = None,
    allow_inside: Sequence[str | os.PathLike] = (),
    flag: str | None = "--out",
    legacy: Callable[[Path], bool] | None = None,
) -> Path:
    """Refuse (one line) an ``out`` this command may not write or replace; return it as an absolute path.

    Call it before the expensive work, so a refusal comes at once; :func:`atomic_dir` calls it again.
    ``legacy`` recognises an output of this kind written before markers existed (it has its own signature file).
    """
    out = Path(out).expanduser().absolute()
    check_relations(out, inputs, flag=flag, allow_inside=allow_inside)
    if out.is_symlink():
        raise MedmodalError("is a symbolic link; give the folder it points to, or a new one", path=out, field=flag)
    if not out.exists():
        for parent in out.parents:
            if parent.exists() and not parent.is_dir():
                raise MedmodalError("has a parent that is a file, not a folder", path=parent, field=flag)
        return out
    if not out.is_dir():
        raise MedmodalError("exists and is not a folder; nothing was written", path=out, field=flag)
    found = read_marker(out)
    if found is None and legacy is not None and legacy(out):
        found = kind
    if found is None:
        if _is_empty(out):
            return out
        raise MedmodalError(
            f"exists and is not a medmodal output (no {MARKER}); medmodal never replaces what it did not "
            "create: choose a new folder",
            path=out,
            field=flag,
        )
    if found != kind:
        raise MedmodalError(
            f"is a {describe_kind(found)}, not a {describe_kind(kind)}; choose another folder", path=out, field=flag
        )
    if not overwrite:
        raise MedmodalError(f"already exists (pass --overwrite to replace this {kind})", path=out, field=flag)
    return out


@contextlib.contextmanager
def _os_errors(path: Path, flag: str | None) -> Iterator[None]:
    """An OS refusal (read-only disk, no permission, disk full) as one line naming the folder."""
    try:
        yield
    except OSError as err:
        raise MedmodalError(
            f"cannot write here ({err.strerror or type(err).__name__})", path=path, field=flag
        ) from None


def _is_empty(folder: Path) -> bool:
    with os.scandir(folder) as it:
        return next(it, None) is None


# ---------------------------------------------------------------------------------------------------- temporaries
def _tmp_dir(final: Path, what: str = "tmp") -> Path:
    """A private (0700) sibling of ``final`` named for the sweep, holding ``final``'s marker from the start."""
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.{what}-{OWNER_TAG}-{os.getpid()}-", dir=final.parent))


def work_dir(beside: str | os.PathLike) -> Path:
    """A private scratch folder (DuckDB's database and spill files) beside ``beside``, removed by the caller;
    marked so that the sweep may remove it after a kill."""
    parent = Path(beside).expanduser().absolute().parent
    with _os_errors(parent, None):
        parent.mkdir(parents=True, exist_ok=True)
        sweep(parent)
        work = Path(tempfile.mkdtemp(prefix=f".medmodal-work-{OWNER_TAG}-{os.getpid()}-", dir=parent))
        write_marker(work, "work")
    return work


def _link_or_copy(src: Path, dst: Path) -> None:
    """Seed ``dst`` with ``src``'s files: hard links (files are replaced by rename, never edited in place)."""
    for entry in src.iterdir():
        if entry.name == MARKER or entry.is_symlink():
            continue
        target = dst / entry.name
        if entry.is_dir():
            target.mkdir()
            _link_or_copy(entry, target)
            continue
        try:
            os.link(entry, target)
        except OSError:
            shutil.copy2(entry, target)


@contextlib.contextmanager
def atomic_dir(
    final: str | os.PathLike,
    *,
    kind: str,
    overwrite: bool = False,
    inputs: Inputs | None = None,
    allow_inside: Sequence[str | os.PathLike] = (),
    keep_existing: bool = False,
    flag: str | None = "--out",
    legacy: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """Yield a private temporary sibling of ``final``; rename it to ``final`` only if the block succeeds.

    ``final`` is checked by :func:`check_output` first. On any exception (or a kill: see :func:`sweep`) the
    temporary is removed and ``final`` is untouched. ``keep_existing`` seeds the temporary with ``final``'s
    current files (a store cohort folder gaining one modality keeps the others).
    """
    rules = {"overwrite": overwrite, "inputs": inputs, "allow_inside": allow_inside, "flag": flag, "legacy": legacy}
    final = check_output(final, kind, **rules)
    with _os_errors(final, flag):
        final.parent.mkdir(parents=True, exist_ok=True)
        sweep(final.parent)
        tmp = _tmp_dir(final)
    try:
        write_marker(tmp, kind)
        if keep_existing and final.is_dir():
            _link_or_copy(final, tmp)
        yield tmp
        # again: another process may have created final meanwhile
        check_output(final, kind, **rules)
        os.chmod(tmp, output_mode(directory=True))  # private while being written; the user's umask once final
        if final.is_dir() and not _is_empty(final):
            old = final.with_name(f".{final.name}.old-{OWNER_TAG}-{os.getpid()}-{secrets.token_hex(4)}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)  # onto an empty folder too (POSIX rename)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def claim_dir(
    folder: str | os.PathLike,
    kind: str,
    *,
    inputs: Inputs | None = None,
    legacy: Callable[[Path], bool] | None = None,
    overwrite: bool | None = None,
    flag: str | None = "--out",
) -> Path:
    """Make ``folder`` a persistent medmodal output of ``kind`` (created, taken over when empty, or already one).

    For outputs that grow instead of being replaced (a feature store, a resumable benchmark). ``legacy``
    recognises a folder of this kind written before markers existed. ``overwrite``: None = an existing one is
    reused as it is (resume); False = an existing non-empty one is refused without ``--overwrite``.
    """
    folder = Path(folder).expanduser().absolute()
    check_relations(folder, inputs, flag=flag, replaced=False)
    if folder.exists() and not folder.is_dir():
        raise MedmodalError(f"is a file, not a {describe_kind(kind)} folder", path=folder, field=flag)
    if not folder.exists():
        for parent in folder.parents:
            if parent.exists() and not parent.is_dir():
                raise MedmodalError("has a parent that is a file, not a folder", path=parent, field=flag)
        with _os_errors(folder, flag):
            folder.mkdir(parents=True)
    found = read_marker(folder)
    if found is None:
        if not (_is_empty(folder) or (legacy is not None and legacy(folder))):
            raise MedmodalError(
                f"exists and is not a medmodal {describe_kind(kind)} (no {MARKER}); choose a new folder",
                path=folder,
                field=flag,
            )
        with _os_errors(folder, flag):
            write_marker(folder, kind)
    elif found != kind:
        raise MedmodalError(f"is a {describe_kind(found)}, not a {describe_kind(kind)}", path=folder, field=flag)
    elif overwrite is False and any(p.name != MARKER for p in folder.iterdir()):
        raise MedmodalError(f"already exists (pass --overwrite to replace this {kind})", path=folder, field=flag)
    sweep(folder)
    return folder


# ---------------------------------------------------------------------------------------------------- sweep
def _pid_gone(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False  # alive (another user's process): not provably gone
    return False


def sweep(folder: str | os.PathLike, *, quiet: bool = False) -> int:
    """Remove what interrupted medmodal commands left in ``folder``; return how many entries were handled.

    Only entries named by this module or ``common.atomic_file`` for *this* host and boot whose process is no
    longer running; a folder must also hold a medmodal marker (an unmarked one is removed only when empty).
    An ``.old-`` folder whose output is missing is the previous output of an interrupted replacement: it is put
    back rather than deleted. Symbolic links are never followed.
    """
    folder = Path(folder)
    handled = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        m = _LEFTOVER.match(entry.name)
        if not m or m["tag"] != OWNER_TAG or not _pid_gone(int(m["pid"])) or entry.is_symlink():
            continue
        path = Path(entry.path)
        try:
            if entry.is_file():
                path.unlink()
            elif entry.is_dir():
                final = folder / m["name"] if m["name"] else None
                if m["what"] == "old" and final is not None and not final.exists() and read_marker(path):
                    os.replace(path, final)  # the replacement never landed: the previous output comes back
                elif read_marker(path) is not None:
                    shutil.rmtree(path)
                else:
                    path.rmdir()  # only succeeds when empty: killed between mkdtemp and the marker
            else:
                continue
            handled += 1
        except OSError:
            continue
    if handled and not quiet:
        console.print(f"[yellow]cleaned up {handled} leftover(s) of interrupted medmodal commands[/yellow] in {folder}")
    return handled


def sweep_tree(root: str | os.PathLike, *, depth: int = 3) -> int:
    """:func:`sweep` ``root`` and its sub-folders down to ``depth`` levels (a feature store's cache shards)."""
    root = Path(root)
    n = sweep(root, quiet=True)
    if depth > 0:
        with contextlib.suppress(OSError):
            for sub in sorted(root.iterdir()):
                if sub.is_dir() and not sub.is_symlink() and not _LEFTOVER.match(sub.name):
                    n += sweep_tree(sub, depth=depth - 1)
    return n
