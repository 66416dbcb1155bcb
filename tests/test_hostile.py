"""Hostile inputs, table-driven (issue 10 items 4, 5, 6, 7, 9, 11; docs/reliability.md "Bad input").

Every row of ``CASES`` corrupts a private copy of a real input (tests/hostile.py: the fixtures in tests/data,
simulator output, the vendored MIMIC-IV demo, a built cohort, the toy store), runs the CLI in-process with typer's
CliRunner, and ONE parametrised test checks for each: the exit code; exactly one line (the ``error:`` line, or the
warning of an accepted data-quality exclusion) holding the expected fragments - the file, flag or field it names
and what is wrong; no traceback; the canary planted in note text and raw rows nowhere in stdout, stderr, the logs
or any JSON written; the output absent after an error (present after an accepted input); no temporary folder left.
Output-side cases (folders, markers, --overwrite, identity) are in tests/test_hostile_outputs.py.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
from hostile import (  # tests/hostile.py
    CANARY,
    MIMIC,
    Case,
    Ctx,
    Run,
    append_line,
    attrition_has,
    bad_json_cohort,
    build,
    cut,
    dev_zero_without_root,
    duplicate,
    edit,
    empty_cohort,
    featurize_image,
    featurize_structured,
    fifo,
    garbage_text_model,
    gzip_file,
    image_path,
    no_timeseries_written,
    plant_canaries,
    replace_bytes,
    set_column,
    set_value,
    skipped,
    store_is_a_file,
    symlink_out_of_root,
    train_on_toy,
    truncate_tensor,
    ts0_cohort,
)
from typer.testing import CliRunner

from medmodal.cli import app
from medmodal.featurize import tiny

runner = CliRunner()
pytestmark = pytest.mark.timeout(120)  # a path to /dev/zero once hung featurize forever

mimic, eicu, adni = partial(build, "mimic_iv"), partial(build, "eicu"), partial(build, "adni")
RA, M24, E24, DX = "readmission_30d", "in_hospital_mortality_24h", "icu_mortality_24h", "diagnosis_3class"
ADM, PAT, ICU, CXR = "hosp/admissions.csv", "hosp/patients.csv", "icu/icustays.csv", "cxr/mimic-cxr-2.0.0-metadata.csv"
SIM, DEMO = {"raw": Ctx.simulated}, {"raw": lambda name: lambda ctx: ctx.demo(name)}
NOT_UTF8 = ("not UTF-8",)
ESCAPED = ("path outside the image root",)


def report(mutate):
    """``cohort report`` on a broken copy of the built cohort (its output is the terminal: nothing to leave)."""

    def setup(ctx: Ctx) -> Run:
        cohort = ctx.cohort()
        mutate(cohort)
        return Run(["cohort", "report", str(cohort)], ctx.tmp / "no-output")

    return setup


def first_row_plus(rel: str, extra: str):
    return lambda r: append_line(r / rel, ((r / rel).read_text().splitlines()[1] + extra).encode())


# fmt: off
CASES = [
    # ---- item 4: malformed rows, broken gzip streams: one line naming the file, never a traceback or the raw line
    Case("mimic-patients-malformed-row", "4",
         mimic(RA, lambda r: append_line(r / PAT, f'10000099,F,"unterminated {CANARY}'.encode())),
         1, ("patients.csv", "data line 12", "never closed")),
    Case("mimic-patients-truncated-gzip", "4", mimic(RA, lambda r: gzip_file(r / PAT, lambda b: b[:-12])),
         1, ("patients.csv.gz", "gzip")),
    Case("mimic-patients-trailing-garbage-gzip", "4",
         mimic(RA, lambda r: gzip_file(r / PAT, lambda b: b + CANARY.encode())), 1, ("patients.csv.gz", "gzip")),
    Case("eicu-patient-malformed-row", "4",
         eicu(E24, lambda r: append_line(r / "patient.csv", f'9901,"{CANARY}'.encode())),
         1, ("patient.csv", "never closed")),
    Case("eicu-patient-truncated-gzip", "4",
         eicu(E24, lambda r: gzip_file(r / "patient.csv", lambda b: b[: len(b) // 2])),
         1, ("patient.csv.gz", "gzip")),
    Case("eicu-patient-trailing-garbage-gzip", "4",
         eicu(E24, lambda r: gzip_file(r / "patient.csv", lambda b: b + b"\x00junk")), 1, ("patient.csv.gz", "gzip")),
    Case("adni-malformed-row", "4", adni(DX, lambda r: append_line(r / "ADNIMERGE.csv", f'5,"{CANARY}'.encode())),
         1, ("ADNIMERGE.csv", "never closed")),
    Case("mimic-admissions-extra-field", "4", mimic(RA, first_row_plus(ADM, f",{CANARY}")),
         1, ("admissions.csv", "17 fields where the header has 16")),
    Case("mimic-note-bad-id", "4", mimic(RA, lambda r: set_value(r / "note/radiology.csv", 0, "hadm_id", "x12")),
         1, ("radiology.csv", "field 'hadm_id'", "not a valid BIGINT")),
    Case("sim-discharge-truncated-gzip", "4", mimic(RA, cut("note/discharge.csv.gz", lambda n: n - 40), **SIM),
         1, ("discharge.csv.gz", "gzip")),
    Case("sim-chartevents-trailing-garbage-gzip", "4",  # DuckDB names no file here: the failing SQL's files are probed
         mimic(M24, lambda r: append_line(r / "icu/chartevents.csv.gz", CANARY.encode()), **SIM),
         1, ("chartevents.csv.gz", "gzip"), not_in_line=("measurements.sql",)),
    Case("demo-admissions-truncated-gzip", "4",
         mimic(RA, cut("hosp/admissions.csv.gz", lambda n: 4000), raw=DEMO["raw"]("hosp/admissions.csv.gz")),
         1, ("admissions.csv.gz", "gzip")),
    # ---- item 11: a bad byte in a data row is named as such, with file, field and line (not "header", "quoting")
    Case("mimic-admissions-not-utf8-row", "11", mimic(RA, replace_bytes(ADM, b"WHITE", b"WH\xffITE")),
         1, ("admissions.csv", "field 'race'", *NOT_UTF8, "data line 1"), not_in_line=("header", "quoting")),
    Case("mimic-note-text-not-utf8", "11", mimic(RA, replace_bytes("note/discharge.csv", b"Brief", b"Br\xfe\xffief")),
         1, ("discharge.csv", "field 'text'", *NOT_UTF8), not_in_line=("header", "quoting")),
    Case("eicu-patient-not-utf8-row", "11", eicu(E24, replace_bytes("patient.csv", b"Caucasian", b"Cauc\xe9sian")),
         1, ("patient.csv", "field 'ethnicity'", *NOT_UTF8), not_in_line=("header",)),
    Case("sim-radiology-text-not-utf8", "11",
         mimic(RA, replace_bytes("note/radiology.csv.gz", CANARY.encode(), b"\xc3(" + CANARY.encode()), **SIM),
         1, ("radiology.csv.gz", "field 'text'", *NOT_UTF8), not_in_line=("header",)),
    # ---- item 6: duplicate keys, null keys, impossible values: an error naming file, column and an example key
    Case("mimic-duplicate-subject-conflicting-age", "6", mimic(RA, lambda r: duplicate(r / PAT, 0, "anchor_age", "61")),
         1, ("patients.csv", "field 'subject_id'", "subject_id 10000001", "more than once")),
    Case("mimic-duplicate-hadm", "6", mimic(RA, lambda r: duplicate(r / ADM, 0)),
         1, ("admissions.csv", "field 'hadm_id'", "hadm_id 20000011")),
    Case("mimic-duplicate-stay", "6", mimic(M24, lambda r: duplicate(r / ICU, 0)),
         1, ("icustays.csv", "field 'stay_id'", "stay_id 30000011")),
    Case("mimic-duplicate-note", "6", mimic(RA, lambda r: duplicate(r / "note/discharge.csv", 0, "text", CANARY)),
         1, ("discharge.csv", "field 'note_id'", "10000001-DS-1")),
    Case("mimic-duplicate-dicom", "6", mimic(RA, lambda r: duplicate(r / CXR, 0)),
         1, ("mimic-cxr-2.0.0-metadata.csv", "field 'dicom_id'", "aa7a0001")),
    Case("eicu-duplicate-stay", "6", eicu(E24, lambda r: duplicate(r / "patient.csv", 0, "age", "70")),
         1, ("patient.csv", "field 'patientunitstayid'", "patientunitstayid 1001")),
    Case("adni-duplicate-visit", "6", adni(DX, lambda r: duplicate(r / "ADNIMERGE.csv", 0)),
         1, ("ADNIMERGE.csv", "field 'VISCODE'", "RID 11, VISCODE bl")),
    Case("demo-duplicate-subject", "6",
         mimic(RA, lambda r: duplicate(r / "hosp/patients.csv.gz", 3, "anchor_age", "33"),
               raw=DEMO["raw"]("hosp/patients.csv.gz")),
         1, ("patients.csv.gz", "field 'subject_id'", "more than once")),
    Case("mimic-null-subject-in-admissions", "6", mimic(RA, lambda r: set_value(r / ADM, 0, "subject_id", "")),
         1, ("admissions.csv", "field 'subject_id'", "without a value", "hadm_id 20000011")),
    Case("mimic-age-999", "6", mimic(RA, lambda r: set_value(r / PAT, 1, "anchor_age", "999")),
         1, ("patients.csv", "field 'anchor_age'", "outside [0, 130]", "subject_id 10000002"), not_in_line=("999",)),
    Case("mimic-expire-flag-7", "6", mimic(M24, lambda r: set_value(r / ADM, 2, "hospital_expire_flag", "7")),
         1, ("admissions.csv", "field 'hospital_expire_flag'", "other than 0, 1")),
    Case("eicu-age-999", "6", eicu(E24, lambda r: set_value(r / "patient.csv", 2, "age", "999")),
         1, ("patient.csv", "field 'age'", "whole years", "patientunitstayid 2001"), not_in_line=("999",)),
    Case("adni-unknown-diagnosis", "6", adni(DX, lambda r: set_value(r / "ADNIMERGE.csv", 0, "DX", CANARY)),
         1, ("ADNIMERGE.csv", "field 'DX'", "RID 11")),
    Case("mimic-unknown-dataset-version", "6", mimic(RA, lambda r: None, "--dataset-version", "9.9"),
         1, ("--dataset-version", "'9.9'", "known: 2.0, 2.1, 2.2, 3.0, 3.1")),
    Case("eicu-unknown-dataset-version", "6", eicu(E24, lambda r: None, "--dataset-version", "nine"),
         1, ("--dataset-version", "known: 2.0, demo-2.0.1")),
    Case("mimic-header-only-admissions", "6", mimic(RA, lambda r: edit(r / ADM, lambda h, rows: [])),
         1, ("no samples left", "'index_event'")),
    Case("sim-every-stay-broken", "6",
         mimic(M24, lambda r: set_column(r / "icu/icustays.csv.gz", "outtime", lambda v: "2100-01-01 00:00:00"), **SIM),
         1, ("no samples left after attrition step 'valid_icustays'", "'index_event' before it had")),
    # ---- item 6: clinically plausible data-quality flaws: an attrition step that counts them, and one warning
    Case("mimic-null-dischtime", "6", mimic(RA, lambda r: set_value(r / ADM, 0, "dischtime", "")),
         0, ("admissions.csv", "dischtime missing or before admittime", "hadm_id 20000011", "'valid_admissions'"),
         check=attrition_has("valid_admissions", 1)),
    Case("mimic-outtime-before-intime", "6",
         mimic(M24, lambda r: set_value(r / ICU, 0, "outtime", "2150-01-01 10:00:00")),
         0, ("icustays.csv", "outtime missing or before intime", "stay_id 30000011", "'valid_icustays'"),
         check=attrition_has("valid_icustays", 1)),
    Case("sim-outtime-before-intime", "6",
         mimic(M24, lambda r: set_value(r / "icu/icustays.csv.gz", 0, "outtime", "2100-01-01 00:00:00"), **SIM),
         0, ("icustays.csv.gz", "outtime missing or before intime")),
    Case("eicu-negative-unit-discharge", "6",
         eicu(E24, lambda r: set_value(r / "patient.csv", 0, "unitdischargeoffset", "-5")),
         0, ("patient.csv", "unitdischargeoffset missing or before 0", "'valid_patient'"),
         check=attrition_has("valid_patient", 1)),
    Case("eicu-stay-off-the-clock", "6",  # no rule covers it; the sample cannot be placed on the timeline
         eicu(E24, lambda r: [set_value(r / "patient.csv", i, "hospitaladmitoffset", "") for i in (4, 5)]),
         0, ("task SQL", "samples without index_time", "'valid_times'"), check=attrition_has("valid_times", 1)),
    # ---- item 5: ids used as path parts are checked; image paths stay inside the CXR root, regular files only
    Case("mimic-dicom-id-path-escape", "5", mimic(RA, lambda r: set_value(r / CXR, 0, "dicom_id", "../../../../x")),
         1, ("mimic-cxr-2.0.0-metadata.csv", "field 'dicom_id'", "a DICOM id", "subject_id 10000007"),
         not_in_line=("../",)),
    Case("image-relative-path-escape", "5", featurize_image(image_path("../../../../../../../../etc/hostname")),
         0, ("cxr:", "skipped"), check=skipped(*ESCAPED)),
    Case("image-absolute-path-outside-root", "5", featurize_image(image_path("/etc/hostname")),
         0, ("cxr:", "skipped"), check=skipped(*ESCAPED)),
    Case("image-symlink-out-of-root", "5", featurize_image(image_path(symlink_out_of_root)),
         0, ("cxr:", "skipped"), check=skipped(*ESCAPED)),
    Case("image-dev-zero-outside-root", "5", featurize_image(image_path("/dev/zero")),
         0, ("cxr:", "skipped"), check=skipped(*ESCAPED)),
    Case("image-dev-zero-hand-made-cohort", "5", dev_zero_without_root,
         0, ("cxr:", "skipped"), check=skipped("not a regular file")),
    Case("image-fifo-in-root", "5", featurize_image(image_path(fifo)),
         0, ("cxr:", "skipped"), check=skipped("not a regular file")),
    # ---- item 7: one line instead of a traceback
    Case("image-garbage-weights", "7", featurize_image(lambda ctx, c: None, "--weights", "GARBAGE"),
         1, ("garbage.safetensors", "not a readable safetensors file")),
    Case("text-garbage-model-weights", "7", garbage_text_model, 1, ("bert", "cannot load the text model")),
    Case("images-parquet-truncated", "7",
         featurize_image(lambda ctx, c: cut("images.parquet", lambda n: 60)(c)),
         1, ("images.parquet", "unreadable Parquet")),
    Case("cohort-manifest-not-json", "7", featurize_structured(bad_json_cohort),
         1, ("manifest.json", "unreadable JSON"), not_in_line=("oops",)),
    Case("report-attrition-truncated", "7", report(lambda c: cut("attrition.parquet", lambda n: n // 2)(c)),
         1, ("attrition.parquet", "unreadable Parquet")),
    Case("report-manifest-not-json", "7",
         report(lambda c: (c / "manifest.json").write_text('{"source": "mimic_iv", oops')),
         1, ("manifest.json", "unreadable JSON"), not_in_line=("oops",)),
    Case("featurize-store-is-a-file", "7", featurize_structured(ts0_cohort, store_is_file=True),
         1, ("store", "is not a folder")),
    Case("featurize-zero-sample-cohort", "7", featurize_structured(empty_cohort), 1, ("cohort.parquet", "no samples")),
    Case("featurize-zero-variable-timeseries", "7", featurize_structured(ts0_cohort),
         0, ("timeseries", "no variable has a value in the train split"), check=no_timeseries_written),
    Case("train-truncated-store-tensor", "7", train_on_toy(truncate_tensor),
         1, ("structured.safetensors", "unreadable tensor file")),
    Case("train-store-is-a-file", "7", train_on_toy(store_is_a_file), 1, ("store", "is not a folder")),
]
# fmt: on


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
    res = runner.invoke(
        app, ["simulate", "mimic_iv", "--out", str(root / "sim"), "--subjects", "30", "--seed", "1", "--no-images"]
    )
    assert res.exit_code == 0, res.output
    weights = tiny.make_tiny_timm(root / "test_convnext.safetensors", name="test_convnext", seed=0)
    (root / "garbage.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}" + CANARY.encode())
    return {
        "raw": raw,
        "cohort": root / "cohort",
        "sim": root / "sim",
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
        if case.check is not None:
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
