"""The stage contracts (medmodal.contracts): dependency rules, one read per manifest, CohortDir's checks, the fixture
writer, the pattern code and a new modality kind as one contract entry."""

from __future__ import annotations

import ast
import builtins
import json
import shutil
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import medmodal.contracts as contracts
from medmodal.cohort import build_cohort
from medmodal.common import MedmodalError
from medmodal.contracts import (
    MODALITY_KINDS,
    SPLITS,
    CohortDir,
    Column,
    ModalityKind,
    Table,
    cohort_files,
    pattern_code,
    pattern_codes,
    pattern_modalities,
    register_modality_kind,
    write_cohort,
)

REPO = Path(__file__).resolve().parents[1]
BASE = {"contracts", "common", "outputs", "devices", "distributed", "options"}  # below every stage


# ------------------------------------------------------------------------------------------------ dependency rules
def _imports(path: Path) -> set[str]:
    """Every medmodal module a file imports (top level or inside functions), as its first part below medmodal."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names if node.module == "medmodal"]
        for name in names:
            parts = name.split(".")
            if parts[0] == "medmodal":
                out.add(parts[1] if len(parts) > 1 else "medmodal")
    return out


def _layer(path: Path) -> str:
    rel = path.relative_to(REPO)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


LIBRARY = sorted(
    p for p in REPO.rglob("*.py") if p.relative_to(REPO).parts[0] not in ("tests", "data", "demo_out", ".venv")
)
ALLOWED = {
    # layer -> medmodal modules it may import ("medmodal": the package root, for __version__)
    **{b: BASE | {"medmodal"} for b in BASE},
    "cohort": BASE - {"devices", "distributed"} | {"cohort", "medmodal"},  # no torch in the cohort stage
    "featurize": BASE | {"featurize"},
    "models": BASE | {"models", "report", "medmodal"},  # report: the figures a run draws
}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_stage_imports_only_what_is_below_it(layer):
    """cohort/ never imports featurize/ or models/; featurize/ only the contracts and shared helpers (no models/,
    no cohort internals); models/ no cohort/ or featurize/ (cohort dirs and stores only through contracts); the
    contracts and shared helpers no stage at all."""
    files = [p for p in LIBRARY if _layer(p) == layer]
    assert files, layer
    bad = {str(p.relative_to(REPO)): sorted(_imports(p) - ALLOWED[layer]) for p in files}
    assert not {k: v for k, v in bad.items() if v}


def test_the_library_never_imports_the_cli():
    users = [str(p.relative_to(REPO)) for p in LIBRARY if "cli" in _imports(p) and p.name != "__main__.py"]
    assert users == []


def test_no_issue_tags_or_outside_paths_in_the_package():
    """Library code and docstrings carry the why, not tracker numbers or folders outside the repository."""
    import re

    tag = re.compile(r"\(issue \d+|\bissue \d+\b|\.\./shared", re.IGNORECASE)
    hits = [
        f"{p.relative_to(REPO)}:{i}"
        # benchmarks, like tests, measure on the shared real data beside the clone when it is there
        for p in LIBRARY
        if _layer(p) != "benchmarks"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if tag.search(line)
    ]
    assert hits == []


def test_docs_name_every_column_kind_and_split_the_code_declares():
    """docs/contracts.md explains the contracts; the code declares them. Nothing declared goes unmentioned."""
    doc = (REPO / "docs" / "contracts.md").read_text()
    declared = [contracts.COHORT, contracts.ATTRITION, *contracts.item_tables()]
    missing = [f"{t.file}:{c.name}" for t in declared for c in t.columns if f"`{c.name}`" not in doc]
    missing += [f"kind {k}" for k in MODALITY_KINDS if f"`{k}`" not in doc]
    missing += [f"table {t.file}" for t in declared if f"`{t.file}`" not in doc]
    missing += [f"split {s}" for s in SPLITS if f"`{s}`" not in doc]
    assert missing == []


# ------------------------------------------------------------------------------------------------ read once
@pytest.fixture()
def reads(monkeypatch):
    """Counts every read of a cohort directory's manifest.json and cohort.parquet, by file."""
    seen: Counter[str] = Counter()

    def note(path) -> None:
        name = Path(str(path)).name
        if name in ("manifest.json", "cohort.parquet"):
            seen[name] += 1

    real_open, real_read_text = builtins.open, Path.read_text
    real = {f: getattr(pl, f) for f in ("read_parquet", "scan_parquet", "read_parquet_schema")}

    def counting_open(file, mode="r", *args, **kw):
        if "r" in mode and not any(c in mode for c in "wax+"):
            note(file)
        return real_open(file, mode, *args, **kw)

    def counting_read_text(self, *args, **kw):
        note(self)
        return real_read_text(self, *args, **kw)

    def wrap(fn):
        def counted(source, *args, **kw):
            note(source)
            return fn(source, *args, **kw)

        return counted

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(Path, "read_text", counting_read_text)
    for name, fn in real.items():
        monkeypatch.setattr(pl, name, wrap(fn))
    return seen


def test_train_and_evaluate_read_the_cohort_manifest_and_table_once(toy, tmp_path, reads, one_torch_thread):
    from medmodal.models.evaluate import evaluate
    from medmodal.models.train import train

    cohort, store = toy
    run = train(cohort, store, tmp_path / "run", backbone="late_fusion", epochs=1, n_boot=0, progress=False)
    assert reads == {"manifest.json": 1, "cohort.parquet": 1}
    reads.clear()
    evaluate(run, cohort, store, out=tmp_path / "eval", n_boot=0)
    assert reads == {"manifest.json": 1, "cohort.parquet": 1}


def test_featurize_reads_the_cohort_manifest_and_table_once(tmp_path, reads):
    from medmodal.featurize import featurize_structured

    ts = pl.DataFrame(
        {"sample_id": ["a", "a", "b"], "hour": [0, 1, 0], "variable": ["hr"] * 3, "value": [80.0, 90, 70]}
    )
    cohort = write_cohort(
        tmp_path / "c",
        sample_ids=["a", "b", "c"],
        splits=["train", "train", "test"],
        modalities={"timeseries": "timeseries"},
        has={"timeseries": [True, True, False]},
        timeseries=ts.with_columns(pl.col("hour").cast(pl.Int32)),
    )
    reads.clear()
    featurize_structured(cohort, tmp_path / "store")
    assert reads == {"manifest.json": 1, "cohort.parquet": 1}


# ------------------------------------------------------------------------------------------------ CohortDir
def _tiny(root: Path, **kw) -> Path:
    args = {
        "sample_ids": ["c", "a", "b"],
        "splits": ["test", "train", "val"],
        "modalities": {"structured": "structured", "cxr": "image"},
        "has": {"structured": [True, True, False], "cxr": [False, True, True]},
    }
    return write_cohort(root, **(args | kw))


def test_the_writer_writes_what_cohort_dir_reads(tmp_path):
    d = _tiny(tmp_path / "c")
    assert sorted(p.stem for p in d.glob("*.parquet")) == sorted(cohort_files())
    c = CohortDir.open(d, masks=True)
    assert c.sample_ids == ["a", "b", "c"] and c.split.tolist() == ["train", "val", "test"]
    assert {m: v.tolist() for m, v in c.has.items()} == {"structured": [True, False, True], "cxr": [True, True, False]}
    mods = pl.read_parquet(d / "modalities.parquet")
    assert mods["pattern"].to_list() == [3, 2, 1] and mods["n_observed"].to_list() == [2, 1, 1]
    assert mods["cxr_time"].is_null().to_list() == [False, False, True]
    assert [lab.name for lab in c.labels] == ["label"] and c.cohort_id.startswith("tiny__tiny_task__")
    for table in contracts.item_tables():  # empty tables carry the contract's columns and types
        assert pl.read_parquet(d / table.file).schema == table.polars_schema()
    assert c.items("image").columns[:6] == [col.name for col in contracts.IMAGES.columns]
    # same content, same id; other content, another id
    assert CohortDir.open(_tiny(tmp_path / "again")).cohort_id == c.cohort_id
    assert CohortDir.open(_tiny(tmp_path / "other", splits=["train"] * 3)).cohort_id != c.cohort_id


def _edit(d: Path, name: str, fn) -> None:
    path = d / name
    if name.endswith(".json"):
        path.write_text(json.dumps(fn(json.loads(path.read_text()))))
    else:
        fn(pl.read_parquet(path)).write_parquet(path)


@pytest.mark.parametrize(
    ("file", "edit", "words"),
    [
        ("cohort.parquet", lambda df: df.drop("split"), ("cohort.parquet", "field 'split'", "missing")),
        ("cohort.parquet", lambda df: df.with_columns(split=pl.lit("dev")), ("field 'split'", "train/val/test")),
        ("cohort.parquet", lambda df: df.reverse(), ("field 'sample_id'", "sorted")),
        ("cohort.parquet", lambda df: df.with_columns(sample_id=pl.lit("a")), ("field 'sample_id'", "unique")),
        ("cohort.parquet", lambda df: df.with_columns(label=pl.lit(2, pl.Int8)), ("field 'label'", "outside")),
        ("cohort.parquet", lambda df: df.drop("label"), ("field 'label'", "label column missing")),
        ("manifest.json", lambda m: m | {"labels": []}, ("manifest.json", "field 'labels'", "no labels")),
        (
            "manifest.json",
            lambda m: m | {"labels": [{"name": "label", "kind": "ordinal"}]},
            ("field 'labels'", "unknown kind 'ordinal'"),
        ),
        (
            "manifest.json",
            lambda m: m | {"modality_kinds": {"structured": "structured", "cxr": "hologram"}},
            ("field 'modality_kinds'", "unknown modality kind 'hologram'"),
        ),
        ("manifest.json", lambda m: {k: v for k, v in m.items() if k != "modalities"}, ("field 'modalities'",)),
        ("manifest.json", lambda m: m | {"cohort_id": "tiny__tiny_task__000000000000"}, ("cohort_id", "match")),
        ("modalities.parquet", lambda df: df.head(2), ("modalities.parquet", "field 'has_structured'")),
    ],
)
def test_cohort_dir_refuses_a_broken_cohort_in_one_line(tmp_path, file, edit, words):
    d = _tiny(tmp_path / "c")
    _edit(d, file, edit)
    with pytest.raises(MedmodalError) as err:
        CohortDir.open(d, masks=True)
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_cohort_dir_refuses_unreadable_files(tmp_path):
    d = _tiny(tmp_path / "c")
    (d / "cohort.parquet").write_bytes((d / "cohort.parquet").read_bytes()[:50])
    with pytest.raises(MedmodalError, match=r"cohort\.parquet: unreadable Parquet"):
        CohortDir.open(d)
    shutil.rmtree(d)
    with pytest.raises(MedmodalError, match="not a cohort directory"):
        CohortDir.open(d)


def test_a_built_cohort_opens_and_every_reader_sees_one_split_list(mimic_demo, tmp_path):
    out = build_cohort("mimic_iv", mimic_demo, "in_hospital_mortality_24h", tmp_path / "c", threads=1)
    c = CohortDir.open(out, masks=True)
    assert (
        set(c.split) <= set(SPLITS) and c.n == json.loads((out / "manifest.json").read_text())["row_counts"]["cohort"]
    )
    mods = pl.read_parquet(out / "modalities.parquet")
    has = np.stack([c.has[m] for m in c.modalities], 1)
    assert (pattern_codes(has) == mods["pattern"].to_numpy()).all()


# ------------------------------------------------------------------------------------------------ pattern code
def test_pattern_code_bit_order_and_its_three_forms_agree():
    mods = ["structured", "timeseries", "discharge_note", "radiology_note", "cxr"]
    assert pattern_code([True, False, False, False, True]) == 17
    assert pattern_modalities(17, mods) == ["structured", "cxr"]
    every = np.array([[p >> i & 1 for i in range(5)] for p in range(32)], dtype=bool)
    assert pattern_codes(every).tolist() == list(range(32))
    import duckdb

    con = duckdb.connect()
    con.register("m", pl.DataFrame({f"has_{m}": every[:, i] for i, m in enumerate(mods)}).to_arrow())
    sql = [r[0] for r in con.execute(f"SELECT {contracts.pattern_sql(mods)} FROM m").fetchall()]
    assert sql == list(range(32))


# ------------------------------------------------------------------------------------------------ a new kind
@pytest.fixture()
def waveform_kind():
    """A new modality kind, added the one way the contracts offer (removed again after the test)."""
    table = Table(
        "waveforms",
        (Column("sample_id", "VARCHAR"), Column("lead", "VARCHAR"), Column("start_time", "TIMESTAMP")),
        order_by=("sample_id", "start_time"),
    )
    yield register_modality_kind(ModalityKind("waveform", table, "ECG segments"))
    MODALITY_KINDS.pop("waveform")


def test_a_new_modality_kind_is_one_contract_entry(waveform_kind, tmp_path, mimic_demo):
    assert "waveforms" in cohort_files()
    rows = pl.DataFrame(
        {"sample_id": ["a", "b"], "lead": ["II", "V1"], "start_time": [datetime(2150, 1, 1)] * 2},
        schema=waveform_kind.table.polars_schema(),
    )
    d = write_cohort(
        tmp_path / "c",
        sample_ids=["a", "b"],
        splits=["train", "test"],
        modalities={"ecg": "waveform"},
        has={"ecg": [True, True]},
        waveforms=rows,
    )
    c = CohortDir.open(d, masks=True)
    assert c.modalities_of("waveform") == ["ecg"] and c.items("waveform")["row"].to_list() == [0, 1]
    # the builder writes the new kind's table too: empty here, since no MIMIC-IV SQL leaves a waveforms_out
    built = build_cohort("mimic_iv", mimic_demo, "in_hospital_mortality_24h", tmp_path / "built", threads=1)
    empty = pl.read_parquet(built / "waveforms.parquet")
    assert empty.height == 0 and empty.schema == waveform_kind.table.polars_schema()
    assert json.loads((built / "manifest.json").read_text())["row_counts"]["waveforms"] == 0
    with pytest.raises(ValueError, match="already a cohort file"):
        register_modality_kind(ModalityKind("waveform2", waveform_kind.table, "same table"))
