"""A researcher's own task file: docs/tasks.md's walkthrough run as written (its files and commands taken from the
page) on the vendored MIMIC-IV demo, the cohorts checked against independent polars computations; `cohort tasks
--check`; the same validation as built-in tasks, each refusal one line naming the file."""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from medmodal.cli import app
from medmodal.cohort import check_task, load_task
from medmodal.common import MedmodalError

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "mimic-iv-demo-2.2"
PAGE = REPO / "docs" / "tasks.md"
WALKTHROUGH = PAGE.read_text().split("## Writing a task", 1)[1]


def _read(name: str) -> pl.DataFrame:
    return pl.read_csv(DEMO / f"{name}.csv.gz", try_parse_dates=True, infer_schema_length=100_000)


def _page_files() -> dict[str, str]:
    """``# file: PATH`` / ``-- file: PATH`` fenced blocks of the walkthrough -> their text."""
    out = {}
    for body in re.findall(r"```(?:yaml|sql)\n(.*?)```", WALKTHROUGH, flags=re.S):
        first, _, rest = body.partition("\n")
        m = re.match(r"(?:#|--) file: (\S+)", first)
        assert m, f"walkthrough block without a file line: {first}"
        out[m.group(1)] = rest
    return out


def _page_commands() -> list[list[str]]:
    block = re.search(r"```console\n(.*?)```", WALKTHROUGH, flags=re.S).group(1)
    return [shlex.split(line[2:])[1:] for line in block.splitlines() if line.startswith("$ medmodal ")]


def _first_admissions() -> pl.DataFrame:
    adm, pat = _read("hosp/admissions"), _read("hosp/patients")
    first = adm.sort(["subject_id", "admittime", "hadm_id"]).group_by("subject_id", maintain_order=True).first()
    age = pl.col("anchor_age") + pl.col("admittime").dt.year() - pl.col("anchor_year")
    return first.join(pat, on="subject_id").filter((age >= 18) & (pl.col("hospital_expire_flag") != 1))


def _label(first: pl.DataFrame, events: pl.DataFrame, days: int, name: str) -> pl.DataFrame:
    hit = (
        first.select("subject_id", "hadm_id", "dischtime")
        .join(events, on="subject_id")
        .filter(
            (pl.col("event_time") > pl.col("dischtime"))
            & (pl.col("event_time") <= pl.col("dischtime") + dt.timedelta(days=days))
        )["hadm_id"]
        .unique()
    )
    return first.select(
        pl.col("hadm_id").cast(pl.Utf8).alias("sample_id"),
        pl.col("hadm_id").is_in(hit.implode()).cast(pl.Int8).alias(name),
    ).sort("sample_id")


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory) -> Path:
    """The page's files written, then its commands run through the CLI, in a scratch folder as the cwd."""
    root = tmp_path_factory.mktemp("walkthrough")
    files = _page_files()
    assert set(files) == {
        "my_tasks/icu_after_discharge.yaml",
        "my_tasks/emergency_readmission.yaml",
        "my_tasks/emergency_readmission.sql",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    runner = CliRunner()
    commands = _page_commands()
    assert len(commands) == 4
    for args in commands:
        local = ("my_tasks/", "cohorts/")  # the page's relative paths, here inside the scratch folder
        args = [
            str(DEMO) if a == "data/mimic-iv-demo-2.2" else str(root / a) if a.startswith(local) else a for a in args
        ]
        res = runner.invoke(app, [*args, *(["--threads", "2"] if args[1] == "build" else [])])
        assert res.exit_code == 0, res.output
        if args[1] == "tasks":
            assert "runs on empty typed views" in res.output
    return root


def test_walkthrough_template_task(walkthrough):
    got = pl.read_parquet(walkthrough / "cohorts" / "icu_after" / "cohort.parquet")
    icu = _read("icu/icustays").select("subject_id", pl.col("intime").alias("event_time"))
    exp = _label(_first_admissions(), icu, 30, "icu_within_30d")
    assert got.select(exp.columns).equals(exp)
    assert exp["icu_within_30d"].sum() >= 3
    man = json.loads((walkthrough / "cohorts" / "icu_after" / "manifest.json").read_text())
    assert any(k.endswith("templates/outcome_after_discharge.sql") for k in man["sql_hashes"])


def test_walkthrough_task_with_its_own_sql(walkthrough):
    d = walkthrough / "cohorts" / "emergency"
    got = pl.read_parquet(d / "cohort.parquet")
    adm = _read("hosp/admissions").filter(pl.col("admission_type").is_in(["EW EMER.", "DIRECT EMER."]))
    exp = _label(_first_admissions(), adm.select("subject_id", pl.col("admittime").alias("event_time")), 60, "")
    exp = exp.rename({"": "emergency_readmission_60d"})
    assert got.select(exp.columns).equals(exp)
    assert exp["emergency_readmission_60d"].sum() >= 3
    man = json.loads((d / "manifest.json").read_text())
    assert man["task"] == "emergency_readmission" and man["task_definition"]["params"] == {"horizon_days": 60}
    assert str(walkthrough / "my_tasks" / "emergency_readmission.sql") in man["sql_hashes"]
    assert "split_overlap" in man["audits_passed"]


def _task_file(tmp_path: Path, **changes) -> Path:
    """The walkthrough's own-SQL task copied to ``tmp_path`` with YAML lines or SQL text replaced."""
    files = _page_files()
    yaml_text = files["my_tasks/emergency_readmission.yaml"]
    sql_text = files["my_tasks/emergency_readmission.sql"]
    for old, new in changes.get("yaml", []):
        assert old in yaml_text
        yaml_text = yaml_text.replace(old, new)
    for old, new in changes.get("sql", []):
        assert old in sql_text
        sql_text = sql_text.replace(old, new)
    (tmp_path / "t.yaml").write_text(yaml_text)
    if sql_text:
        (tmp_path / "t.sql").write_text(sql_text)
    return tmp_path / "t.yaml"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"yaml": [("sources: [mimic_iv]", "sources: [mimic]")]}, "unknown source 'mimic'"),
        ({"yaml": [("params:", "parameters:")]}, "field 'parameters': unknown key"),
        ({"yaml": [("  timeseries:", "  notes:")]}, "names modality 'notes' that source 'mimic_iv' lacks"),
        ({"sql": [("AS incl_adult", "AS incl_grown_up")]}, "does not produce column 'incl_adult'"),
        ({"yaml": [("sources: [mimic_iv]", "sources: [mimic_iv]\ntemplate: los_threshold")]}, "not both"),
        ({"sql": [("o.admission_type", "o.admision_type")]}, "DuckDB failed"),
        ({"sql": [("{{ horizon_days }}", "{{ horizon }}")]}, "SQL parameter 'horizon' is not defined"),
        (
            {
                "yaml": [
                    (
                        "  - name: emergency_readmission_{horizon_days}d\n    column: emergency_readmission\n",
                        "  - name: emergency_readmission_{horizon_days}d\n",
                    )
                ]
            },
            "needs column:",
        ),
    ],
)
def test_check_refuses_a_broken_task_file(tmp_path, changes, message):
    path = _task_file(tmp_path, **changes)
    with pytest.raises(MedmodalError, match=re.escape(message)) as err:
        check_task(path)
    assert "\n" not in str(err.value) and ("t.yaml" in str(err.value) or "t.sql" in str(err.value))
    res = CliRunner().invoke(app, ["cohort", "tasks", "--check", str(path)])
    assert res.exit_code == 1 and message.split("'")[0] in res.output


def test_sql_referenced_from_the_yaml(tmp_path):
    (tmp_path / "sql").mkdir()
    path = _task_file(tmp_path, yaml=[("sources: [mimic_iv]", "sources: [mimic_iv]\nsql: sql/emergency.sql")])
    (tmp_path / "t.sql").rename(tmp_path / "sql" / "emergency.sql")
    spec = load_task(path)
    assert spec.sql_file("mimic_iv") == tmp_path / "sql" / "emergency.sql"
    assert len(check_task(path, params={"horizon_days": "7"})) == 2
    (tmp_path / "sql" / "emergency.sql").unlink()
    with pytest.raises(MedmodalError, match="SQL file missing"):
        check_task(path)


def test_cli_task_file_errors(tmp_path):
    runner = CliRunner()
    path = _task_file(tmp_path)
    base = ["cohort", "build", "mimic_iv", "--raw", str(DEMO), "--out", str(tmp_path / "o")]
    res = runner.invoke(app, [*base, "--task-file", str(path), "--task", "readmission_30d"])
    assert res.exit_code == 1 and "not both" in res.output
    res = runner.invoke(app, [*base, "--task-file", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 1 and "task file not found" in res.output
    res = runner.invoke(app, [*base, "--task-file", str(path), "--param", "horizon_days=soon"])
    assert res.exit_code == 1 and "horizon_days: expected int, got 'soon'" in res.output
    res = runner.invoke(app, ["cohort", "tasks", "--check", str(path), "--param", "horizon_days=14"])
    assert res.exit_code == 0 and "labels emergency_readmission_14d" in res.output
    res = runner.invoke(app, ["cohort", "tasks", "--check", str(path), "--param", "horizon=14"])
    assert res.exit_code == 1 and "has no option 'horizon' (its options: horizon_days)" in res.output
    res = runner.invoke(app, [*base, "--task", "all", "--param", "horizon_days=3"])
    assert res.exit_code == 1 and "parameters apply to one task" in res.output
    assert not (tmp_path / "o").exists()


def test_every_registered_task_passes_the_same_check():
    """Built-in tasks and task files go through one validation: every registered task passes it as it stands."""
    from medmodal.cohort import TASKS

    for name in TASKS.names():
        lines = check_task(TASKS.get(name))
        assert len(lines) == 1 + len(TASKS.get(name).sources), name
