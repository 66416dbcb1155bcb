"""Output markers and ids used as path parts.

Every folder a command writes carries ``.medmodal.json`` naming its *kind* (a cohort directory, a feature store, a
run directory, ...). A command replaces an existing folder only when the marker says it is the same kind of
medmodal output and the user passed ``--overwrite`` (``medmodal.outputs``). Ids that name folders (the cohort id
names a store folder and an evaluation folder) are checked, so a manifest can never make a command write outside
its root.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from medmodal.common import MedmodalError

# ---------------------------------------------------------------------------------------------------- markers
MARKER = ".medmodal.json"
MARKER_FORMAT = 1

# kind -> what it is, as error messages name it. A new command that writes a folder adds its kind here.
OUTPUT_KINDS: dict[str, str] = {
    "cohort": "cohort directory (medmodal cohort build)",
    "cohort_set": "folder of cohorts (medmodal cohort build --task all)",
    "store": "feature store (medmodal featurize)",
    "store_cohort": "cohort's tensors inside a feature store (medmodal featurize)",
    "run": "run directory (medmodal train)",
    "evaluation": "evaluation output (medmodal evaluate)",
    "report": "report (medmodal report)",
    "simulation": "simulated dataset (medmodal simulate)",
    "benchmark": "benchmark output (medmodal benchmark)",
    "meds_export": "MEDS export (medmodal export meds)",
    "prediction_export": "prediction export (medmodal export predictions / evaluate --export meds)",
    "demo": "demo output (medmodal demo)",
    "work": "temporary work folder of an interrupted medmodal command",
}


def describe_kind(kind: str) -> str:
    return OUTPUT_KINDS.get(kind, f"'{kind}' output")


def marker_payload(kind: str) -> dict[str, Any]:
    """The marker's content: no timestamp and no process id, so identical runs write identical bytes."""
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind '{kind}' (add it to contracts.OUTPUT_KINDS)")
    return {"format": MARKER_FORMAT, "kind": kind, "written_by": "medmodal"}


def write_marker(folder: str | Path, kind: str) -> None:
    text = json.dumps(marker_payload(kind), indent=2, sort_keys=True) + "\n"
    (Path(folder) / MARKER).write_text(text)


def read_marker(folder: str | Path) -> str | None:
    """The kind recorded in ``folder``'s marker; None when there is no readable medmodal marker."""
    path = Path(folder) / MARKER
    try:
        if path.is_symlink() or not path.is_file():
            return None
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("written_by") != "medmodal" or not isinstance(data.get("kind"), str):
        return None
    return data["kind"]


# ---------------------------------------------------------------------------------------------------- path parts
_PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}")


def check_path_part(value: Any, *, path: str | Path | None = None, field: str | None = None) -> str:
    """``value`` if it can name one folder (letters, digits, ``_ . -``; no separator, no ``..``); else one line."""
    text = str(value) if isinstance(value, (str, int)) else None
    if text is None or not _PATH_PART.fullmatch(text) or ".." in text:
        shown = repr(value)[:80]
        raise MedmodalError(
            f"{shown} cannot name a folder (letters, digits, '_', '.', '-' only, no '..')", path=path, field=field
        )
    return text
