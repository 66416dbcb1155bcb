"""One self-contained HTML page from a list of sections: text, figures (inline base64 PNG), tables, facts.

The page is rendered by Jinja2 with autoescaping on for every value (``select_autoescape(default=True)``):
cohort manifests, paths and column values are user data, and a ``<`` in any of them must reach the reader as a
character, never as markup. The template (templates/page.html) carries its own CSS and a Content-Security-Policy
that allows inline images and styles only, so even a browser that is online fetches nothing while showing it.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

import medmodal
from medmodal.common import MedmodalError, atomic_file

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class Text:
    text: str
    note: bool = False  # a caveat the reader should not miss
    kind: str = "text"


@dataclass(frozen=True)
class Heading:
    text: str
    kind: str = "heading"


@dataclass(frozen=True)
class Image:
    png: bytes
    alt: str
    caption: str = ""
    kind: str = "figure"

    @property
    def base64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in CSS pixels, from the PNG header (so the layout does not jump while decoding)."""
        if self.png[:8] != b"\x89PNG\r\n\x1a\n":
            raise ValueError("not a PNG")
        w, h = struct.unpack(">II", self.png[16:24])
        return w, h

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]


@dataclass(frozen=True)
class Table:
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""
    numeric: Sequence[int] = ()  # right-aligned column indexes
    code: Sequence[int] = ()  # monospace column indexes (hashes, paths)
    kind: str = "table"

    @property
    def styles(self) -> list[str]:
        return ["num" if i in self.numeric else "code" if i in self.code else "" for i in range(len(self.columns))]


@dataclass(frozen=True)
class Facts:
    items: Sequence[tuple[str, Any]]
    kind: str = "facts"


@dataclass(frozen=True)
class Details:
    summary: str
    blocks: Sequence[Any]
    kind: str = "details"


@dataclass
class Section:
    title: str
    anchor: str
    blocks: list[Any] = field(default_factory=list)

    def add(self, *blocks: Any) -> Section:
        self.blocks.extend(blocks)
        return self


@dataclass
class Page:
    kind: str  # cohort | run | benchmark
    title: str
    subtitle: list[str]
    source: str  # the input folder, shown in the footer
    sections: list[Section]

    def images(self) -> Iterable[Image]:
        def walk(blocks):
            for b in blocks:
                if isinstance(b, Image):
                    yield b
                elif isinstance(b, Details):
                    yield from walk(b.blocks)

        for s in self.sections:
            yield from walk(s.blocks)


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(page: Page) -> str:
    return (
        _env()
        .get_template("page.html")
        .render(
            kind=page.kind,
            title=page.title,
            subtitle=page.subtitle,
            source=page.source,
            sections=[s for s in page.sections if s.blocks],
            version=medmodal.__version__,
        )
    )


def write_page(page: Page, out: str | Path, *, overwrite: bool = False) -> Path:
    """Render ``page`` to ``out`` atomically; an existing file is replaced only with ``overwrite``."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise MedmodalError("the report is one HTML file: give a path ending in .html", path=out, field="--out")
    if out.is_dir():
        raise MedmodalError("is a directory; give a file path ending in .html", path=out, field="--out")
    if out.exists() and not overwrite:
        raise MedmodalError("already exists (pass --overwrite to replace it)", path=out)
    text = render(page)
    with atomic_file(out, "w") as fh:
        fh.write(text)
    return out


# ---------------------------------------------------------------------------------------------- cell formats


def num(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None or v != v else f"{v:.{digits}f}"


def interval(v: float | None, lo: float | None, hi: float | None, digits: int = 3, percent: bool = False) -> str:
    """``0.812 [0.774, 0.849]``; the point alone when there is no interval, ``n/a`` when undefined."""
    if v is None or v != v:
        return "n/a"
    scale, unit = (100.0, "%") if percent else (1.0, "")
    d = 1 if percent else digits
    text = f"{v * scale:.{d}f}{unit}"
    if lo is None or hi is None or lo != lo or hi != hi:
        return text
    return f"{text} [{lo * scale:.{d}f}, {hi * scale:.{d}f}]"


def metric_cell(m: dict | None, digits: int = 3) -> str:
    """A metrics.json entry {"value", "ci_low", "ci_high"} as text."""
    if not isinstance(m, dict):
        return "n/a" if m is None else num(float(m), digits)
    return interval(m.get("value"), m.get("ci_low"), m.get("ci_high"), digits)
