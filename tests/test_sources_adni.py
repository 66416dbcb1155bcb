"""The ADNI source: the hand-made ADNIMERGE fixture (tests/data/adni_fixture, see its SUBJECTS.md) against
hand-written expected CSVs, the multiclass label and manifest contract, splits by RID, bad input, and the
simulator's ADNIMERGE output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from goldens import read_expected  # tests/goldens.py
from polars.testing import assert_frame_equal

from medmodal.cohort import build_cohort, tasks_for
from medmodal.cohort.splits import split_of
from medmodal.common import MedmodalError
from medmodal.contracts import compute_cohort_id, sample_ids_digest

FIXTURE = Path(__file__).resolve().parent / "data" / "adni_fixture"
EXPECTED = FIXTURE / "expected"
ADNI_TASKS = ["diagnosis_3class", "mci_conversion_24m"]
MODALITIES = ["demographics", "mri", "fdg_pet", "amyloid_pet", "csf"]
COGNITIVE = ("MMSE", "CDRSB", "ADAS", "RAVLT", "FAQ", "MOCA", "Ecog", "mPACC", "LDELTOTAL", "DIGITSCOR", "TRABSCOR")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("adni_fixture_cohorts")
    build_cohort("adni", FIXTURE, "all", out, threads=1)
    return out


def test_every_adni_task_is_registered_and_builds(built):
    assert sorted(tasks_for("adni")) == ADNI_TASKS
    for task in ADNI_TASKS:
        assert (built / task / "manifest.json").is_file()


@pytest.mark.parametrize(
    "task,name",
    [(t, n) for t in ADNI_TASKS for n in ("cohort", "attrition", "modalities")] + [("diagnosis_3class", "structured")],
)
def test_fixture_matches_expected_csv(built, task, name):
    actual = pl.read_parquet(built / task / f"{name}.parquet")
    exp = read_expected(EXPECTED / task / f"{name}.csv", actual)
    assert_frame_equal(actual.select(exp.columns), exp, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize("task", ADNI_TASKS)
def test_manifest_contract(built, task):
    d = built / task
    man = json.loads((d / "manifest.json").read_text())
    cohort = pl.read_parquet(d / "cohort.parquet")
    assert man["source"] == "adni" and man["task"] == task
    assert man["cohort_id"] == compute_cohort_id(man["cohort_identity"]) and man["cohort_id"].startswith(
        f"adni__{task}__"
    )
    assert man["cohort_identity"]["sample_ids_sha256"] == sample_ids_digest(cohort["sample_id"].to_list())
    assert man["modalities"] == MODALITIES
    assert set(man["modality_kinds"].values()) == {"structured"}
    assert man["subgroups"] == ["gender", "age_group", "race", "apoe4"] and set(man["subgroups"]) <= set(cohort.columns)
    assert man["dataset_version"] == "ADNIMERGE 2024-03-01"  # newest update_stamp
    assert cohort.schema["subject_id"] == pl.Int64 and cohort.schema[task] == pl.Int8
    assert (cohort["index_time"] == cohort["prediction_time"]).all()
    assert {"split_overlap", "mask_consistency", "csf_time_after_cutoff"} <= set(man["audits_passed"])
    assert sum(man["label_counts"][task].values()) == cohort.height


def test_diagnosis_is_a_multiclass_label_with_named_classes(built):
    man = json.loads((built / "diagnosis_3class" / "manifest.json").read_text())
    assert man["labels"] == [
        {
            "name": "diagnosis_3class",
            "kind": "multiclass",
            "classes": ["CN", "MCI", "Dementia"],
            "definition": man["labels"][0]["definition"],
        }
    ]
    assert man["label_counts"]["diagnosis_3class"] == {"0": 6, "1": 12, "2": 4}
    conv = json.loads((built / "mci_conversion_24m" / "manifest.json").read_text())
    assert conv["labels"][0]["kind"] == "binary" and conv["labels"][0]["classes"] == [0, 1]


def test_report_shows_per_class_rates_for_the_multiclass_label(built):
    from medmodal.cohort.report import format_report, pattern_table

    pt = pattern_table(built / "diagnosis_3class")
    rates = ["diagnosis_3class_CN_rate", "diagnosis_3class_MCI_rate", "diagnosis_3class_Dementia_rate"]
    assert pt.columns == ["pattern", "modalities", "n", "share", *rates]
    assert pt.select(pl.sum_horizontal(rates).alias("total"))["total"].to_list() == pytest.approx([1.0] * pt.height)
    demo_only = pt.filter(pl.col("pattern") == 1).row(0, named=True)  # 44_m18, 66_bl (MCI) + five RID 77 visits
    assert demo_only["n"] == 7 and demo_only["diagnosis_3class_MCI_rate"] == pytest.approx(4 / 7)
    assert format_report(built / "diagnosis_3class") is not None


def test_cognitive_scores_never_become_features(built):
    """DX is made from the cognitive battery: no score (nor DX_bl) may reach structured.parquet."""
    for task in ADNI_TASKS:
        man = json.loads((built / task / "manifest.json").read_text())
        cols = pl.read_parquet(built / task / "structured.parquet").columns
        assert cols == ["sample_id"] + [
            c for m in MODALITIES if m in man["feature_groups"] for c in man["feature_groups"][m]
        ]
        assert not [c for c in cols if c.startswith(COGNITIVE) or c.upper().startswith("DX")]
        assert [len(man["feature_groups"][m]) for m in MODALITIES] == [18, 8, 1, 3, 6]


def test_splits_are_by_rid_never_by_visit(built):
    by_subject: dict[int, str] = {}
    for task in ADNI_TASKS:
        cohort = pl.read_parquet(built / task / "cohort.parquet")
        for rid, split in cohort.select("subject_id", "split").iter_rows():
            assert split == split_of(rid, 0)
            assert by_subject.setdefault(rid, split) == split
        assert cohort.group_by("subject_id").agg(pl.col("split").n_unique())["split"].max() == 1


def test_rebuild_is_identical(built, tmp_path):
    again = build_cohort("adni", FIXTURE, "diagnosis_3class", tmp_path / "again", threads=2)
    for name in ("cohort", "modalities", "structured", "attrition"):
        assert_frame_equal(
            pl.read_parquet(again / f"{name}.parquet"), pl.read_parquet(built / "diagnosis_3class" / f"{name}.parquet")
        )


# ------------------------------------------------------------------------------------------- bad input


@pytest.fixture()
def raw(tmp_path) -> Path:
    dst = tmp_path / "raw"
    dst.mkdir()
    shutil.copy(FIXTURE / "ADNIMERGE.csv", dst / "ADNIMERGE.csv")
    return dst


def _build_fails(raw: Path, out: Path, task: str = "diagnosis_3class") -> MedmodalError:
    with pytest.raises(MedmodalError) as info:
        build_cohort("adni", raw, task, out)
    assert "\n" not in str(info.value)
    assert not out.exists() and not list(out.parent.glob(".medmodal-work-*"))
    return info.value


def _edit(raw: Path, old: str, new: str) -> None:
    path = raw / "ADNIMERGE.csv"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_missing_file(raw, tmp_path):
    (raw / "ADNIMERGE.csv").unlink()
    err = _build_fails(raw, tmp_path / "out")
    assert "required file missing" in str(err) and "ADNIMERGE" in str(err)


def test_renamed_column_names_file_and_field(raw, tmp_path):
    _edit(raw, ",Hippocampus,", ",Hippo,")
    err = _build_fails(raw, tmp_path / "out")
    assert err.path.endswith("ADNIMERGE.csv") and err.field == "Hippocampus"


def test_unknown_diagnosis_is_an_error(raw, tmp_path):
    _edit(raw, ",NL to MCI,", ",probable AD,")
    err = _build_fails(raw, tmp_path / "out")
    assert err.field == "DX" and "RID 77" in str(err) and "Dementia" in str(err)
    assert "probable AD" not in str(err)  # a row's value is never echoed (docs/reliability.md)


def test_unparseable_csf_value_is_an_error(raw, tmp_path):
    _edit(raw, ",<80,", ",n/a,")
    err = _build_fails(raw, tmp_path / "out")
    assert err.field == "TAU" and "RID 22" in str(err)


def test_duplicated_visit_is_an_error(raw, tmp_path):
    path = raw / "ADNIMERGE.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[1]]) + "\n")
    err = _build_fails(raw, tmp_path / "out")
    assert err.field == "VISCODE" and "appears more than once" in str(err)


def test_bad_date_names_field_and_line(raw, tmp_path):
    _edit(raw, ",2012-07-05,", ",July 2012,")
    err = _build_fails(raw, tmp_path / "out")
    assert err.field == "EXAMDATE" and "data line" in str(err)


def test_dated_loni_export_is_found_and_names_the_version(raw, tmp_path):
    (raw / "ADNIMERGE.csv").rename(raw / "ADNIMERGE_18Feb2025.csv")
    out = build_cohort("adni", raw, "mci_conversion_24m", tmp_path / "out")
    man = json.loads((out / "manifest.json").read_text())
    assert man["dataset_version"] == "ADNIMERGE 18Feb2025"
    assert man["raw_files"]["adnimerge"]["path"].endswith("ADNIMERGE_18Feb2025.csv")


# ------------------------------------------------------------------------------------------- simulated ADNI


DX_CLASS = {"CN": 0, "NL": 0, "MCI": 1, "Dementia": 2}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> tuple[Path, Path]:
    from medmodal.simulate import simulate

    root = tmp_path_factory.mktemp("adni_sim")
    raw = simulate("adni", root / "raw", subjects=150, seed=5)
    return raw, build_cohort("adni", raw, "all", root / "cohorts", threads=2)


def test_simulated_diagnosis_labels_follow_the_raw_dx(simulated):
    raw, out = simulated
    merged = pl.read_csv(raw / "ADNIMERGE.csv", columns=["RID", "VISCODE", "EXAMDATE", "DX"], infer_schema_length=0)
    expected = (
        merged.filter(pl.col("DX").is_in(list(DX_CLASS)) & pl.col("EXAMDATE").is_not_null())
        .select(
            (pl.col("RID") + "_" + pl.col("VISCODE")).alias("sample_id"),
            pl.col("DX").replace_strict(DX_CLASS, return_dtype=pl.Int8).alias("diagnosis_3class"),
        )
        .sort("sample_id")
    )
    cohort = pl.read_parquet(out / "diagnosis_3class" / "cohort.parquet")
    assert cohort.select(expected.columns).equals(expected)
    assert cohort["diagnosis_3class"].n_unique() == 3


def test_simulated_conversion_labels_are_the_scm_draws(simulated):
    raw, out = simulated
    cohort = pl.read_parquet(out / "mci_conversion_24m" / "cohort.parquet")
    truth = pl.read_parquet(raw / "truth.parquet").select("RID", "VISCODE", "y_conversion_24m")
    joined = cohort.join(truth, on=["RID", "VISCODE"], how="left").filter(pl.col("y_conversion_24m").is_not_null())
    assert cohort.height >= 50 and joined.height >= 20 and cohort["mci_conversion_24m"].sum() >= 5
    assert (joined["mci_conversion_24m"] == joined["y_conversion_24m"]).all()


def test_model_layer_runs_unchanged_on_simulated_adni(simulated, tmp_path, one_torch_thread):
    """featurize_all -> train (a debiasing framework, multiclass label) -> run directory, on an ADNI cohort."""
    from medmodal.featurize import featurize_all
    from medmodal.models.train import train

    cohort_dir = simulated[1] / "diagnosis_3class"
    store = tmp_path / "store"
    assert set(featurize_all(cohort_dir, store)) == set(MODALITIES)
    run = train(
        cohort_dir,
        store,
        tmp_path / "run",
        backbone="attention_fusion",
        framework="mmnar",
        epochs=2,
        batch_size=64,
        n_boot=20,
        progress=False,
        backbone_config={"hidden": 16},
    )
    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["tasks"]["diagnosis_3class"]["test"]["overall"]
    cohort = pl.read_parquet(cohort_dir / "cohort.parquet")
    assert test["n"] == (cohort["split"] == "test").sum() and len(test["class_counts"]) == 3
    config = json.loads((run / "config.json").read_text())
    assert "CN" in json.dumps(config) and "Dementia" in json.dumps(config)  # class names travel with the model


@pytest.mark.slow
@pytest.mark.parametrize(
    "source,task", [("eicu", "icu_readmission_15d"), ("adni", "mci_conversion_24m"), ("adni", "diagnosis_3class")]
)
def test_every_framework_and_backbone_trains_on_simulated_eicu_and_adni(source, task, tmp_path, one_torch_thread):
    """Slow: all registered frameworks x backbones, one epoch each, on a simulated cohort of both new sources."""
    import medmodal.models.backbones
    import medmodal.models.frameworks  # noqa: F401
    from medmodal.featurize import featurize_all
    from medmodal.models.base import BACKBONES, FRAMEWORKS
    from medmodal.models.train import train
    from medmodal.simulate import simulate

    raw = simulate(source, tmp_path / "raw", subjects=200, seed=11)
    cohort_dir = build_cohort(source, raw, task, tmp_path / "cohort", threads=2)
    featurize_all(cohort_dir, tmp_path / "store")
    for framework in FRAMEWORKS.names():
        for backbone in BACKBONES.names():
            run = train(
                cohort_dir,
                tmp_path / "store",
                tmp_path / f"run_{framework}_{backbone}",
                backbone=backbone,
                framework=framework,
                epochs=1,
                batch_size=64,
                n_boot=10,
                progress=False,
                backbone_config={"hidden": 16},
            )
            metrics = json.loads((run / "metrics.json").read_text())
            assert metrics["tasks"][task]["test"]["overall"]["n"] > 0, (framework, backbone)
