"""Hostile inputs, table-driven (issue 10 items 4, 5, 6, 7, 9, 11; docs/reliability.md "Bad input").

Every case corrupts a private copy of a real input (the hand-made fixtures in tests/data, a cohort built from
them, the toy cohort and store), runs the CLI in-process with typer's CliRunner and is checked by ONE test for:
the exit code; exactly one line (an ``error:`` line, or the warning of a data-quality exclusion) naming the file,
flag or field; no traceback; the canary planted in note text and raw rows nowhere in stdout, stderr, the logs or
any JSON written; the output absent after an error (present after an accepted exclusion); no temporary folder
left behind. Output-side cases (folders, markers, --overwrite, identity) live in tests/test_hostile_outputs.py.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from medmodal.cli import app
from medmodal.featurize import tiny

DATA = Path(__file__).resolve().parent / "data"
MIMIC, EICU, ADNI = DATA / "mimic_iv_fixture", DATA / "eicu_fixture", DATA / "adni_fixture"
CANARY = "CANARY-note-text-7f3a"  # planted in note text and in raw rows; must never be printed
runner = CliRunner()
pytestmark = pytest.mark.timeout(120)  # a path to /dev/zero once hung featurize forever


# ---------------------------------------------------------------------------------------------------- editing
def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
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


def plant_canaries(raw: Path, source: str) -> None:
    """The canary in every note text and in an unused text column of every row of the main raw table."""
    if source == "mimic_iv":
        for note in ("discharge", "radiology"):
            set_column(raw / "note" / f"{note}.csv", "text", lambda v: f"{v} {CANARY}")
        set_column(raw / "hosp" / "admissions.csv", "admission_location", lambda v: CANARY)
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


def build(source: str, task: str, mutate: Callable[[Path], object], *extra: str) -> Callable[[Ctx], Run]:
    def setup(ctx: Ctx) -> Run:
        raw = ctx.raw(source)
        mutate(raw)
        out = ctx.tmp / "out"
        argv = ["cohort", "build", source, "--raw", str(raw), "--task", task, "--out", str(out), "--threads", "1"]
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


def tiny_cohort(ctx: Ctx, **kw) -> Path:
    return tiny.write_cohort(ctx.tmp / "cohort", **kw)


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
    model = tiny.make_tiny_bert(ctx.tmp / "bert", tiny.TINY_BERT_VOCAB)
    (model / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage}" * 8)
    store = ctx.tmp / "store"
    return Run(
        ["featurize", "text", str(cohort), "--store", str(store), "--model", str(model), "--device", "cpu"],
        store / "cohorts",
    )


def _ts0(ctx: Ctx) -> Path:
    return tiny_cohort(
        ctx,
        sample_ids=["a", "b", "c"],
        splits=["train", "val", "test"],
        modalities={"timeseries": "timeseries"},
        has={"timeseries": [True, True, False]},
    )


def _empty(ctx: Ctx) -> Path:
    return tiny_cohort(
        ctx,
        sample_ids=[],
        splits=[],
        modalities={"structured": "structured"},
        has={"structured": []},
        feature_groups={"structured": ["age"]},
        structured=pl.DataFrame(schema={"sample_id": pl.Utf8, "age": pl.Float64}),
    )


def _bad_json(ctx: Ctx) -> Path:
    cohort = ctx.cohort()
    (cohort / "manifest.json").write_text('{"source": "mimic_iv", "task": oops-not-json')
    return cohort


def _ts0_check(out: Path) -> None:
    assert not list(out.glob("*/timeseries.safetensors"))


H = "hosp/admissions.csv"
CASES = [
    # ---- item 4: malformed rows and broken gzip streams of the tables read first, never a traceback or the line
    Case(
        "mimic-patients-malformed-row",
        "4",
        build(
            "mimic_iv",
            "readmission_30d",
            lambda r: append_line(r / "hosp/patients.csv", f'10000099,F,"unterminated {CANARY}'.encode()),
        ),
        1,
        ("patients.csv", "data line 12", "never closed"),
    ),
    Case(
        "mimic-patients-truncated-gzip",
        "4",
        build("mimic_iv", "readmission_30d", lambda r: gzip_file(r / "hosp/patients.csv", lambda b: b[:-12])),
        1,
        ("patients.csv.gz", "gzip"),
    ),
    Case(
        "mimic-patients-trailing-garbage-gzip",
        "4",
        build(
            "mimic_iv", "readmission_30d", lambda r: gzip_file(r / "hosp/patients.csv", lambda b: b + CANARY.encode())
        ),
        1,
        ("patients.csv.gz", "gzip"),
    ),
    Case(
        "eicu-patient-malformed-row",
        "4",
        build("eicu", "icu_mortality_24h", lambda r: append_line(r / "patient.csv", f'9901,"{CANARY}'.encode())),
        1,
        ("patient.csv", "never closed"),
    ),
    Case(
        "eicu-patient-truncated-gzip",
        "4",
        build("eicu", "icu_mortality_24h", lambda r: gzip_file(r / "patient.csv", lambda b: b[: len(b) // 2])),
        1,
        ("patient.csv.gz", "gzip"),
    ),
    Case(
        "eicu-patient-trailing-garbage-gzip",
        "4",
        build("eicu", "icu_mortality_24h", lambda r: gzip_file(r / "patient.csv", lambda b: b + b"\x00junk")),
        1,
        ("patient.csv.gz", "gzip"),
    ),
    Case(
        "adni-malformed-row",
        "4",
        build("adni", "diagnosis_3class", lambda r: append_line(r / "ADNIMERGE.csv", f'5,"{CANARY}'.encode())),
        1,
        ("ADNIMERGE.csv", "never closed"),
    ),
    Case(
        "mimic-admissions-extra-field",
        "4",
        build(
            "mimic_iv",
            "readmission_30d",
            lambda r: append_line(r / H, ((r / H).read_text().splitlines()[1] + f",{CANARY}").encode()),
        ),
        1,
        ("admissions.csv", "17 fields where the header has 16"),
    ),
    Case(
        "mimic-note-bad-id",
        "4",
        build("mimic_iv", "readmission_30d", lambda r: set_value(r / "note/radiology.csv", 0, "hadm_id", "x12")),
        1,
        ("radiology.csv", "field 'hadm_id'", "not a valid BIGINT"),
    ),
    # ---- item 11: a bad byte in a data row is named as such, with file, field and line
    Case(
        "mimic-admissions-not-utf8-row",
        "11",
        build(
            "mimic_iv",
            "readmission_30d",
            lambda r: (r / H).write_bytes((r / H).read_bytes().replace(b"WHITE", b"WH\xffITE", 1)),
        ),
        1,
        ("admissions.csv", "field 'race'", "not UTF-8", "data line 1"),
        not_in_line=("header", "quoting"),
    ),
    Case(
        "mimic-note-text-not-utf8",
        "11",
        build(
            "mimic_iv",
            "readmission_30d",
            lambda r: (r / "note/discharge.csv").write_bytes(
                (r / "note/discharge.csv").read_bytes().replace(b"Brief", b"Br\xfe\xffief", 1)
            ),
        ),
        1,
        ("discharge.csv", "field 'text'", "not UTF-8"),
        not_in_line=("header", "quoting"),
    ),
    Case(
        "eicu-patient-not-utf8-row",
        "11",
        build(
            "eicu",
            "icu_mortality_24h",
            lambda r: (r / "patient.csv").write_bytes(
                (r / "patient.csv").read_bytes().replace(b"Caucasian", b"Cauc\xe9sian", 1)
            ),
        ),
        1,
        ("patient.csv", "field 'ethnicity'", "not UTF-8"),
        not_in_line=("header",),
    ),
    # ---- item 6: duplicate keys, null keys, impossible values -> error naming file, column and an example key
    Case(
        "mimic-duplicate-subject-conflicting-age",
        "6",
        build("mimic_iv", "readmission_30d", lambda r: duplicate(r / "hosp/patients.csv", 0, "anchor_age", "61")),
        1,
        ("patients.csv", "field 'subject_id'", "subject_id 10000001", "more than once"),
    ),
    Case(
        "mimic-duplicate-hadm",
        "6",
        build("mimic_iv", "readmission_30d", lambda r: duplicate(r / H, 0)),
        1,
        ("admissions.csv", "field 'hadm_id'", "hadm_id 20000011"),
    ),
    Case(
        "mimic-duplicate-stay",
        "6",
        build("mimic_iv", "in_hospital_mortality_24h", lambda r: duplicate(r / "icu/icustays.csv", 0)),
        1,
        ("icustays.csv", "field 'stay_id'", "stay_id 30000011"),
    ),
    Case(
        "mimic-duplicate-note",
        "6",
        build("mimic_iv", "readmission_30d", lambda r: duplicate(r / "note/discharge.csv", 0, "text", CANARY)),
        1,
        ("discharge.csv", "field 'note_id'", "10000001-DS-1"),
    ),
    Case(
        "mimic-duplicate-dicom",
        "6",
        build("mimic_iv", "readmission_30d", lambda r: duplicate(r / "cxr/mimic-cxr-2.0.0-metadata.csv", 0)),
        1,
        ("mimic-cxr-2.0.0-metadata.csv", "field 'dicom_id'", "aa7a0001"),
    ),
    Case(
        "eicu-duplicate-stay",
        "6",
        build("eicu", "icu_mortality_24h", lambda r: duplicate(r / "patient.csv", 0, "age", "70")),
        1,
        ("patient.csv", "field 'patientunitstayid'", "patientunitstayid 1001"),
    ),
    Case(
        "adni-duplicate-visit",
        "6",
        build("adni", "diagnosis_3class", lambda r: duplicate(r / "ADNIMERGE.csv", 0)),
        1,
        ("ADNIMERGE.csv", "field 'VISCODE'", "RID 11, VISCODE bl"),
    ),
    Case(
        "mimic-null-subject-in-admissions",
        "6",
        build("mimic_iv", "readmission_30d", lambda r: set_value(r / H, 0, "subject_id", "")),
        1,
        ("admissions.csv", "field 'subject_id'", "without a value", "hadm_id 20000011"),
    ),
    Case(
        "mimic-age-999",
        "6",
        build("mimic_iv", "readmission_30d", lambda r: set_value(r / "hosp/patients.csv", 1, "anchor_age", "999")),
        1,
        ("patients.csv", "field 'anchor_age'", "outside [0, 130]", "subject_id 10000002"),
    ),
    Case(
        "mimic-expire-flag-7",
        "6",
        build("mimic_iv", "in_hospital_mortality_24h", lambda r: set_value(r / H, 2, "hospital_expire_flag", "7")),
        1,
        ("admissions.csv", "field 'hospital_expire_flag'", "other than 0, 1"),
    ),
    Case(
        "eicu-age-999",
        "6",
        build("eicu", "icu_mortality_24h", lambda r: set_value(r / "patient.csv", 2, "age", "999")),
        1,
        ("patient.csv", "field 'age'", "whole years", "patientunitstayid"),
    ),
    Case(
        "adni-unknown-diagnosis",
        "6",
        build("adni", "diagnosis_3class", lambda r: set_value(r / "ADNIMERGE.csv", 0, "DX", CANARY)),
        1,
        ("ADNIMERGE.csv", "field 'DX'", "RID 11"),
    ),
    Case(
        "mimic-dicom-id-path-escape",
        "5",
        build(
            "mimic_iv",
            "readmission_30d",
            lambda r: set_value(r / "cxr/mimic-cxr-2.0.0-metadata.csv", 0, "dicom_id", "../../../../x"),
        ),
        1,
        ("mimic-cxr-2.0.0-metadata.csv", "field 'dicom_id'", "a DICOM id", "subject_id 10000007"),
        not_in_line=("../",),
    ),
    Case(
        "mimic-unknown-dataset-version",
        "6",
        build("mimic_iv", "readmission_30d", lambda r: None, "--dataset-version", "9.9"),
        1,
        ("--dataset-version", "'9.9'", "known: 2.0, 2.1, 2.2, 3.0, 3.1"),
    ),
    Case(
        "eicu-unknown-dataset-version",
        "6",
        build("eicu", "icu_mortality_24h", lambda r: None, "--dataset-version", "nine"),
        1,
        ("--dataset-version", "known: 2.0, demo-2.0.1"),
    ),
    Case(
        "mimic-header-only-admissions",
        "6",
        build("mimic_iv", "readmission_30d", lambda r: edit(r / H, lambda h, rows: [])),
        1,
        ("no samples left", "'index_event'"),
    ),
    # ---- item 6: clinically plausible data-quality flaws -> an attrition step that counts and warns
    Case(
        "mimic-null-dischtime",
        "6",
        build("mimic_iv", "readmission_30d", lambda r: set_value(r / H, 0, "dischtime", "")),
        0,
        ("admissions.csv", "dischtime missing or before admittime", "hadm_id 20000011", "'valid_admissions'"),
        check=attrition_has("valid_admissions", 1),
    ),
    Case(
        "mimic-outtime-before-intime",
        "6",
        build(
            "mimic_iv",
            "in_hospital_mortality_24h",
            lambda r: set_value(r / "icu/icustays.csv", 0, "outtime", "2150-01-01 10:00:00"),
        ),
        0,
        ("icustays.csv", "outtime missing or before intime", "stay_id 30000011", "'valid_icustays'"),
        check=attrition_has("valid_icustays", 1),
    ),
    Case(
        "eicu-negative-unit-discharge",
        "6",
        build("eicu", "icu_mortality_24h", lambda r: set_value(r / "patient.csv", 0, "unitdischargeoffset", "-5")),
        0,
        ("patient.csv", "unitdischargeoffset missing or before 0", "'valid_patient'"),
        check=attrition_has("valid_patient", 1),
    ),
    # ---- item 5: image paths stay inside the CXR root; only regular files are read; the rest is counted
    Case(
        "image-relative-path-escape",
        "5",
        featurize_image(image_path("../../../../../../../../etc/hostname")),
        0,
        ("cxr:", "skipped"),
        check=skipped("path outside the image root"),
    ),
    Case(
        "image-absolute-path-outside-root",
        "5",
        featurize_image(image_path("/etc/hostname")),
        0,
        ("cxr:", "skipped"),
        check=skipped("path outside the image root"),
    ),
    Case(
        "image-symlink-out-of-root",
        "5",
        featurize_image(image_path(symlink_out_of_root)),
        0,
        ("cxr:", "skipped"),
        check=skipped("path outside the image root"),
    ),
    Case(
        "image-fifo-in-root",
        "5",
        featurize_image(image_path(fifo)),
        0,
        ("cxr:", "skipped"),
        check=skipped("not a regular file"),
    ),
    # ---- item 7: one line instead of a traceback
    Case(
        "image-garbage-weights",
        "7",
        featurize_image(lambda ctx, c: None, "--weights", "GARBAGE"),
        1,
        ("garbage.safetensors", "not a readable safetensors file"),
    ),
    Case("text-garbage-model-weights", "7", garbage_text_model, 1, ("bert", "cannot load the text model")),
    Case(
        "images-parquet-truncated",
        "7",
        featurize_image(lambda ctx, c: (c / "images.parquet").write_bytes((c / "images.parquet").read_bytes()[:60])),
        1,
        ("images.parquet", "unreadable Parquet"),
    ),
    Case(
        "cohort-manifest-not-json",
        "7",
        featurize_structured(_bad_json),
        1,
        ("manifest.json", "unreadable JSON"),
        not_in_line=("oops",),
    ),
    Case(
        "featurize-store-is-a-file",
        "7",
        featurize_structured(_ts0, store_is_file=True),
        1,
        ("store", "is not a folder"),
    ),
    Case("featurize-zero-sample-cohort", "7", featurize_structured(_empty), 1, ("cohort.parquet", "no samples")),
    Case(
        "featurize-zero-variable-timeseries",
        "7",
        featurize_structured(_ts0),
        0,
        ("timeseries", "no variable has a value in the train split"),
        check=_ts0_check,
    ),
    Case(
        "train-truncated-store-tensor",
        "7",
        train_on_toy(truncate_tensor),
        1,
        ("structured.safetensors", "unreadable tensor file"),
    ),
    Case("train-store-is-a-file", "7", train_on_toy(store_is_a_file), 1, ("store", "is not a folder")),
]


@pytest.fixture(scope="module")
def resources(tmp_path_factory, toy) -> dict:
    """Built once, copied by the cases: the canaried MIMIC-IV raw copy and its readmission cohort (whose manifest
    names the CXR root), tiny timm weights and a garbage weights file, the toy cohort + store."""
    root = tmp_path_factory.mktemp("hostile")
    raw = root / "raw"
    shutil.copytree(MIMIC, raw, ignore=shutil.ignore_patterns("expected", "SUBJECTS.md"))
    plant_canaries(raw, "mimic_iv")
    res = runner.invoke(
        app,
        [
            "cohort",
            "build",
            "mimic_iv",
            "--raw",
            str(raw),
            "--task",
            "readmission_30d",
            "--out",
            str(root / "cohort"),
            "--threads",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    weights = tiny.make_tiny_timm(root / "test_convnext.safetensors", name="test_convnext", seed=0)
    (root / "garbage.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}" + CANARY.encode())
    return {
        "raw": raw,
        "cohort": root / "cohort",
        "weights": weights,
        "garbage": root / "garbage.safetensors",
        "toy": toy,
    }


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp" in p.name or p.name.startswith((".medmodal-work-", ".old-"))]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, tmp_path, resources, caplog, one_torch_thread):
    run = case.setup(Ctx(tmp_path, resources))
    run.argv = [str(resources["garbage"]) if a == "GARBAGE" else a for a in run.argv]
    with caplog.at_level(logging.DEBUG):
        res = runner.invoke(app, run.argv)
    text = res.output
    assert res.exit_code == case.exit_code, text
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in text
    if case.exit_code:
        lines = [line for line in text.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, text
        assert not run.out.exists(), "a failed command leaves nothing half-written"
    else:
        lines = [line for line in text.splitlines() if case.expect[0] in line and case.expect[1] in line]
        assert len(lines) == 1, text
        assert run.out.exists()
        case.check(run.out)
    for fragment in case.expect:
        assert fragment in lines[0], lines[0]
    for fragment in case.not_in_line:
        assert fragment not in lines[0], lines[0]
    written = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*.json") if p.is_file())
    for where in (text, caplog.text, written):
        assert CANARY not in where
    for path in run.absent:
        assert not path.exists()
    assert not _leftovers(tmp_path)


def test_the_table_covers_every_item_of_the_issue():
    assert len(CASES) >= 30
    assert {c.item for c in CASES} == {"4", "5", "6", "7", "11"}  # item 9 (offline) is tested below


# ---------------------------------------------------------------------------------------------------- offline
def test_importing_medmodal_switches_the_hub_offline(tmp_path):
    """Before any hub library: the hub reads HF_HUB_OFFLINE once, at its own import."""
    env = {k: v for k, v in os.environ.items() if "OFFLINE" not in k}
    code = "import medmodal, huggingface_hub.constants as c, transformers.utils.hub as t; print(c.HF_HUB_OFFLINE)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


_NET_EVENTS = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"}
_guard: list[tuple[str, str]] | None = None


def _audit(event: str, args: tuple) -> None:
    if _guard is not None and event in _NET_EVENTS:
        _guard.append((event, repr(args)[:80]))
        raise OSError("network access attempted during an offline test")


sys.addaudithook(_audit)  # audit hooks cannot be removed; it only records while a test arms ``_guard``


def test_featurize_text_and_image_defaults_make_no_connection_attempt(tmp_path, resources, monkeypatch):
    """Default options, an empty local cache and a hub told it is online: each command fails with its one-line
    instruction, and no socket is ever asked to resolve or connect."""
    global _guard
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)  # the lookups themselves must not need the switch
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    cohort = tmp_path / "cohort"
    shutil.copytree(resources["cohort"], cohort)
    _guard = []
    try:
        text = runner.invoke(app, ["featurize", "text", str(cohort), "--store", str(tmp_path / "s")])
        image = runner.invoke(app, ["featurize", "image", str(cohort), "--store", str(tmp_path / "s")])
    finally:
        events, _guard = _guard, None
    assert events == []
    assert text.exit_code == 1 and "hf download emilyalsentzer/Bio_ClinicalBERT" in text.output
    assert image.exit_code == 1 and "hf download timm/densenet121" in image.output
    assert "Traceback" not in text.output + image.output
