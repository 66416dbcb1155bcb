"""Setups for tests/test_hostile.py: corrupt a private copy of a real input, return the CLI argv to run on it.

Inputs: the hand-made fixtures in tests/data (plain CSV), a 30-subject simulated MIMIC-IV (.csv.gz), the vendored
MIMIC-IV demo (only the file a case breaks is copied; the rest are links), a cohort built from the fixture (its
manifest names the CXR root), hand-made cohorts (featurize/tiny.py) and the toy cohort + store. A canary string is
planted in note text and in raw rows; the test asserts it is never printed.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl

from medmodal.contracts import write_cohort
from medmodal.featurize import tiny

DATA = Path(__file__).resolve().parent / "data"
MIMIC, EICU, ADNI = DATA / "mimic_iv_fixture", DATA / "eicu_fixture", DATA / "adni_fixture"
MIMIC_DEMO = DATA.parents[1] / "data" / "mimic-iv-demo-2.2"
CANARY = "CANARY-note-text-7f3a"  # planted in note text and in raw rows; must never be printed


# ---------------------------------------------------------------------------------------------------- editing
def _open(path: Path, mode: str):
    return (gzip.open if path.name.endswith(".gz") else open)(path, mode + "t", newline="", encoding="utf-8")


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with _open(path, "r") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with _open(path, "w") as fh:
        csv.writer(fh, lineterminator="\n").writerows([header, *rows])


def edit(path: Path, fn: Callable[[list[str], list[list[str]]], list[list[str]] | None]) -> None:
    """Rewrite a CSV through ``fn(header, rows)``, which edits the rows in place or returns new ones."""
    header, rows = _rows(path)
    new = fn(header, rows)
    _write(path, header, rows if new is None else new)


def set_column(path: Path, col: str, fn: Callable[[str], str]) -> None:
    """Apply ``fn`` to one column of every data row."""
    edit(path, lambda h, rows: [[fn(v) if i == h.index(col) else v for i, v in enumerate(r)] for r in rows])


def set_value(path: Path, row: int, col: str, value: str) -> None:
    edit(path, lambda h, rows: rows[row].__setitem__(h.index(col), value))


def duplicate(path: Path, row: int, col: str | None = None, value: str | None = None) -> None:
    """Append a copy of data row ``row`` (optionally with one changed, conflicting value)."""

    def fn(h, rows):
        copy = list(rows[row])
        if col is not None:
            copy[h.index(col)] = value
        rows.append(copy)

    edit(path, fn)


def append_line(path: Path, line: bytes) -> None:
    path.write_bytes(path.read_bytes() + line + b"\n")


def gzip_file(path: Path, mutate: Callable[[bytes], bytes] = lambda b: b) -> Path:
    gz = path.with_name(path.name + ".gz")
    gz.write_bytes(mutate(gzip.compress(path.read_bytes(), mtime=0)))
    path.unlink()
    return gz


def plant_canaries(raw: Path, source: str, suffix: str = ".csv") -> None:
    """The canary in every note text and in an unused text column of every row of the main raw table."""
    if source == "mimic_iv":
        for note in ("discharge", "radiology"):
            set_column(raw / "note" / f"{note}{suffix}", "text", lambda v: f"{v} {CANARY}")
        set_column(raw / "hosp" / f"admissions{suffix}", "admission_location", lambda v: CANARY)
    elif source == "eicu":
        set_column(raw / "patient.csv", "apacheadmissiondx", lambda v: CANARY)
    else:
        set_column(raw / "ADNIMERGE.csv", "COLPROT", lambda v: CANARY)


# ---------------------------------------------------------------------------------------------------- cases
@dataclass
class Ctx:
    tmp: Path
    res: dict

    def raw(self, source: str) -> Path:
        src = {"mimic_iv": MIMIC, "eicu": EICU, "adni": ADNI}[source]
        dst = self.tmp / "raw"
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("expected", "SUBJECTS.md"))
        plant_canaries(dst, source)
        return dst

    def simulated(self) -> Path:
        """A private copy of a 30-subject simulated MIMIC-IV (real layout, .csv.gz), canaried."""
        dst = self.tmp / "raw"
        shutil.copytree(self.res["sim"], dst)
        plant_canaries(dst, "mimic_iv", ".csv.gz")
        return dst

    def demo(self, *edited: str) -> Path:
        """The vendored MIMIC-IV demo: the ``edited`` files copied (to be broken), every other file linked."""
        dst = self.tmp / "raw"
        for src in MIMIC_DEMO.glob("*/*.csv.gz"):
            rel = src.relative_to(MIMIC_DEMO)
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            if str(rel) in edited:
                shutil.copy(src, dst / rel)
            else:
                (dst / rel).symlink_to(src)
        return dst

    def cohort(self) -> Path:
        """A private copy of the readmission cohort built from the canaried MIMIC-IV fixture (has image_root)."""
        dst = self.tmp / "cohort"
        shutil.copytree(self.res["cohort"], dst)
        return dst


@dataclass
class Run:
    argv: list[str]
    out: Path  # absent after an error; present after an accepted (warned) input
    absent: list[Path] = field(default_factory=list)  # must not exist either way


@dataclass(frozen=True)
class Case:
    id: str
    item: str  # the issue-10 item it covers
    setup: Callable[[Ctx], Run]
    exit_code: int
    expect: tuple[str, ...]  # fragments of the one line: the file / flag / field it names and what is wrong
    check: Callable[[Path], None] | None = None  # more assertions on the output of an accepted input
    not_in_line: tuple[str, ...] = ()


def build(
    source: str, task: str, mutate: Callable[[Path], object], *extra: str, raw: Callable[[Ctx], Path] | None = None
) -> Callable[[Ctx], Run]:
    def setup(ctx: Ctx) -> Run:
        root = ctx.raw(source) if raw is None else raw(ctx)
        mutate(root)
        out = ctx.tmp / "out"
        argv = ["cohort", "build", source, "--raw", str(root), "--task", task, "--out", str(out), "--threads", "1"]
        return Run([*argv, *extra], out)

    return setup


def attrition_has(step: str, excluded: int) -> Callable[[Path], None]:
    def check(out: Path) -> None:
        att = pl.read_parquet(out / "attrition.parquet")
        steps = att["step"].to_list()
        assert step in steps, steps
        i = steps.index(step)
        assert att["n_samples"][i - 1] - att["n_samples"][i] == excluded
        man = json.loads((out / "manifest.json").read_text())
        assert [d["samples_excluded"] for d in man["data_quality"] if d["step"] == step] == [excluded]

    return check


def featurize_image(mutate: Callable[[Ctx, Path], object], *extra: str) -> Callable[[Ctx], Run]:
    def setup(ctx: Ctx) -> Run:
        cohort = ctx.cohort()
        mutate(ctx, cohort)
        store = ctx.tmp / "store"
        argv = ["featurize", "image", str(cohort), "--store", str(store), "--model", "test_convnext"]
        argv += ["--weights", str(ctx.res["weights"]), "--device", "cpu", "--num-workers", "0", *extra]
        return Run(argv, store / "cohorts")

    return setup


def image_path(path: str | Callable[[Ctx], str]) -> Callable[[Ctx, Path], None]:
    """Point the first image of images.parquet at ``path``."""

    def mutate(ctx: Ctx, cohort: Path) -> None:
        images = pl.read_parquet(cohort / "images.parquet")
        value = path(ctx) if callable(path) else path
        paths = images["path"].to_list()
        paths[0] = value
        images.with_columns(pl.Series("path", paths)).write_parquet(cohort / "images.parquet")

    return mutate


def skipped(reason: str) -> Callable[[Path], None]:
    def check(out: Path) -> None:
        man = json.loads(next(out.glob("*/cxr.json")).read_text())
        assert man["skip_reasons"].get(reason) == 1, man["skip_reasons"]

    return check


def symlink_out_of_root(ctx: Ctx) -> str:
    """A link inside the CXR root to a real image outside it (the vendored fixture's own copy)."""
    link = Path(ctx.res["raw"]) / "cxr" / "files" / "p10" / f"link-{ctx.tmp.name}.jpg"
    link.symlink_to(next((MIMIC / "cxr" / "files").rglob("*.jpg")))
    return str(link)


def fifo(ctx: Ctx) -> str:
    path = Path(ctx.res["raw"]) / "cxr" / "files" / "p10" / f"fifo-{ctx.tmp.name}.jpg"
    os.mkfifo(path)
    return str(path)


def dev_zero_without_root(ctx: Ctx) -> Run:
    """A hand-made cohort (no image_root) may point anywhere; /dev/zero must still be refused, not read."""
    images = pl.DataFrame(
        {
            "sample_id": ["a", "b"],
            "dicom_id": ["d1", "d2"],
            "study_id": [1, 2],
            "view": ["PA", "PA"],
            "study_time": [datetime(2150, 1, 1)] * 2,
            "path": ["/dev/zero", str(next((MIMIC / "cxr" / "files").rglob("*.jpg")))],
        }
    )
    cohort = tiny_cohort(
        ctx,
        sample_ids=["a", "b"],
        splits=["train", "test"],
        modalities={"cxr": "image"},
        has={"cxr": [True, True]},
        images=images,
    )
    store = ctx.tmp / "store"
    argv = ["featurize", "image", str(cohort), "--store", str(store), "--model", "test_convnext"]
    argv += ["--weights", str(ctx.res["weights"]), "--device", "cpu", "--num-workers", "0"]
    return Run(argv, store / "cohorts")


def tiny_cohort(ctx: Ctx, **kw) -> Path:
    return write_cohort(ctx.tmp / "cohort", **kw)


def featurize_structured(make: Callable[[Ctx], Path], store_is_file: bool = False) -> Callable[[Ctx], Run]:
    def setup(ctx: Ctx) -> Run:
        cohort = make(ctx)
        store = ctx.tmp / "store"
        if store_is_file:
            store.write_text("not a folder")
        return Run(["featurize", "structured", str(cohort), "--store", str(store)], store / "cohorts")

    return setup


def train_on_toy(mutate: Callable[[Path, Path], object]) -> Callable[[Ctx], Run]:
    def setup(ctx: Ctx) -> Run:
        cohort, store = ctx.tmp / "cohort", ctx.tmp / "store"
        shutil.copytree(ctx.res["toy"][0], cohort)
        shutil.copytree(ctx.res["toy"][1], store)
        mutate(cohort, store)
        run = ctx.tmp / "run"
        argv = ["train", str(cohort), "--store", str(store), "--backbone", "late_fusion", "--out", str(run)]
        return Run([*argv, "--epochs", "1", "--device", "cpu", "--n-boot", "10"], run)

    return setup


def truncate_tensor(cohort: Path, store: Path) -> None:
    path = next(store.glob("cohorts/*/structured.safetensors"))
    path.write_bytes(path.read_bytes()[:100])


def store_is_a_file(cohort: Path, store: Path) -> None:
    shutil.rmtree(store)
    store.write_text("not a folder")


def garbage_text_model(ctx: Ctx) -> Run:
    cohort = ctx.cohort()
    model = tiny.make_tiny_bert(ctx.tmp / "bert")
    (model / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage}" * 8)
    store = ctx.tmp / "store"
    return Run(
        ["featurize", "text", str(cohort), "--store", str(store), "--model", str(model), "--device", "cpu"],
        store / "cohorts",
    )


def ts0_cohort(ctx: Ctx) -> Path:
    return tiny_cohort(
        ctx,
        sample_ids=["a", "b", "c"],
        splits=["train", "val", "test"],
        modalities={"timeseries": "timeseries"},
        has={"timeseries": [True, True, False]},
    )


def empty_cohort(ctx: Ctx) -> Path:
    return tiny_cohort(
        ctx,
        sample_ids=[],
        splits=[],
        modalities={"structured": "structured"},
        has={"structured": []},
        feature_groups={"structured": ["age"]},
        structured=pl.DataFrame(schema={"sample_id": pl.Utf8, "age": pl.Float64}),
    )


def bad_json_cohort(ctx: Ctx) -> Path:
    cohort = ctx.cohort()
    (cohort / "manifest.json").write_text('{"source": "mimic_iv", "task": oops-not-json')
    return cohort


def no_timeseries_written(out: Path) -> None:
    assert not list(out.glob("*/timeseries.safetensors"))


H = "hosp/admissions.csv"


# ---------------------------------------------------------------------------------------------------- mutators
def replace_bytes(rel: str, old: bytes, new: bytes) -> Callable[[Path], None]:
    """Replace the first ``old`` in raw file ``rel`` (inside the gzip stream of a .gz)."""

    def mutate(raw: Path) -> None:
        path = raw / rel
        gz = path.name.endswith(".gz")
        data = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
        assert old in data, (rel, old)
        data = data.replace(old, new, 1)
        path.write_bytes(gzip.compress(data, mtime=0) if gz else data)

    return mutate


def cut(rel: str, keep: Callable[[int], int]) -> Callable[[Path], None]:
    """Truncate raw file ``rel`` to ``keep(size)`` bytes."""

    def mutate(raw: Path) -> None:
        data = (raw / rel).read_bytes()
        (raw / rel).write_bytes(data[: keep(len(data))])

    return mutate
