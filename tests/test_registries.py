"""The registries and the options they carry: filled by importing their package, every entry's typed config
(defaults, help, JSON round trip, search spaces), option errors that name the field and the expected type, the
CLI and docs tables derived from them, and one real build per registered source through the CLI."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from medmodal import catalog
from medmodal.cli import build_app
from medmodal.common import MedmodalError
from medmodal.options import config_for, make_config, options_of, parse_assignments

REPO = Path(__file__).resolve().parents[1]
ENTRIES = [(what, name) for what in ("featurizers", "backbones", "frameworks") for name in catalog.registry(what)]


def _names_after(statement: str, expr: str) -> list[str]:
    code = f"{statement}\nprint(','.join({expr}.names()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip().split(",")


@pytest.mark.parametrize(
    ("module", "attr"),
    [
        ("medmodal.models.base", "BACKBONES"),
        ("medmodal.models.base", "FRAMEWORKS"),
        ("medmodal.featurize.base", "FEATURIZERS"),
        ("medmodal.cohort.base", "SOURCES"),
        ("medmodal.cohort.base", "TASKS"),
    ],
)
def test_a_registry_is_full_once_the_module_that_defines_it_is_imported(module, attr):
    """In a fresh interpreter, importing the registry's own module (nothing else) registers every entry: the
    package imports its entries, so no caller depends on having imported an unrelated module first."""
    alone = _names_after(f"from {module} import {attr}", attr)
    everything = _names_after(f"import medmodal.cli\nmedmodal.cli.build_app()\nfrom {module} import {attr}", attr)
    assert alone == everything and len(alone) >= 3


@pytest.mark.parametrize(("what", "name"), ENTRIES)
def test_every_entry_declares_a_typed_config_with_help(what, name):
    cls = catalog.registry(what).get(name).config_class
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    cfg = cls()  # every option has a default: the entry's own default config
    for opt in options_of(cls):
        assert opt.help, f"{what} {name}: option {opt.name} has no help"
        assert opt.type_name() and not opt.required
    # config.json stores asdict(); the run is rebuilt from that JSON through the same checks
    again = make_config(cls, json.loads(json.dumps(dataclasses.asdict(cfg))), what=name)
    assert again == cfg


def test_framework_search_spaces_are_valid_options_with_one_budget():
    from medmodal.models.base import FRAMEWORKS
    from medmodal.models.train import TrainConfig

    sizes = set()
    for name, cls in FRAMEWORKS.items():
        space = cls.config_class.search_space
        sizes.add(len(space))
        for opts in space:
            opts = dict(opts)
            make_config(TrainConfig, opts.pop("train", {}), what="training")
            config_for(FRAMEWORKS, name, opts)
    assert sizes == {3}  # the shift benchmark gives every method the same number of option sets


def test_option_errors_name_the_field_and_what_it_expects():
    from medmodal.models.base import BACKBONES

    def make(values):
        return config_for(BACKBONES, "attention_fusion", values, flag="--backbone-arg", text=True)

    cfg = make(parse_assignments(["hidden=64", "pattern_embedding=no", "dropout=0"], "--backbone-arg"))
    assert (cfg.hidden, cfg.pattern_embedding, cfg.dropout) == (64, False, 0.0) and type(cfg.dropout) is float
    with pytest.raises(MedmodalError, match=r"--backbone-arg heads: expected int >= 1, got 'four'"):
        make({"heads": "four"})
    with pytest.raises(MedmodalError, match=r"no option 'head' \(its options: hidden, layers, heads, ff_mult"):
        make({"head": "4"})
    with pytest.raises(MedmodalError, match=r"--backbone-arg dropout: must be >= 0 and < 1 \(got 1.5\)"):
        make({"dropout": "1.5"})
    with pytest.raises(MedmodalError, match=r"divisible by heads"):  # a rule across fields, still one line
        make({"hidden": "30"})
    with pytest.raises(MedmodalError, match=r"pattern_embedding: expected bool, got 'maybe'"):
        make({"pattern_embedding": "maybe"})
    with pytest.raises(MedmodalError, match=r"mi: expected one of club, hsic, none; got 'mine'"):
        config_for(catalog.registry("frameworks"), "dfd", {"mi": "mine"})
    with pytest.raises(MedmodalError, match="key=value"):
        parse_assignments(["hidden"], "--backbone-arg")
    # the same checks hold for Python callers: a config cannot be built wrong
    with pytest.raises(ValueError, match="field 'hidden': expected an integer"):
        BACKBONES.get("late_fusion").config_class(hidden="64")


def test_docs_tables_are_generated_from_the_registries():
    pages = sorted((REPO / "docs").glob("*.md"))
    found = {key: page.name for page in pages for key in catalog.blocks(page.read_text())}
    assert {"sources", "tasks", "featurizers", "backbones", "frameworks", "train"} <= set(found)
    for page in pages:
        text = page.read_text()
        assert catalog.update(text) == text, f"{page.name} is stale: run `python -m medmodal.catalog`"
    for what in ("backbones", "frameworks", "featurizers"):  # every option of every entry is in its table
        table = catalog.render(what)
        for name, obj in catalog.registry(what).items():
            assert f"`{name}`" in table and all(f"`{o.name}`" in table for o in options_of(obj.config_class))


def test_cli_list_and_help_come_from_the_registries():
    app, runner = build_app(), CliRunner()
    res = runner.invoke(app, ["list"])
    assert res.exit_code == 0, res.output
    for what in catalog.WHAT:
        assert all(name in res.output for name in catalog.registry(what).names()), what
    res = runner.invoke(app, ["list", "backbones", "muse"])
    assert res.exit_code == 0 and "temperature" in res.output and "0.07" in res.output
    assert runner.invoke(app, ["list", "sources", "mimic_iv"]).output.count("-root") == 2
    res = runner.invoke(app, ["list", "widgets"])
    assert res.exit_code == 1 and "choose from: sources" in res.output
    helps = {
        cmd: runner.invoke(app, [*cmd.split(), "--help"], env={"COLUMNS": "200"}).output
        for cmd in ("featurize text", "featurize all", "train", "cohort build")
    }
    text_fields = options_of(catalog.registry("featurizers").get("transformers").config_class)
    assert all(o.flag in helps["featurize text"] for o in text_fields)
    assert all(f in helps["featurize all"] for f in ("--text-model", "--image-weights", "--max-hours", "--device"))
    assert all(f in helps["train"] for f in ("--weight-decay", "--no-amp", "--framework-arg"))
    assert "--note-root" in helps["cohort build"] and "--cxr-root" in helps["cohort build"]


def test_cli_options_are_typed_before_any_work(tmp_path):
    """A wrong key or value fails in one line naming the flag and field, before any input is opened."""
    app, runner = build_app(), CliRunner()
    train = ["train", str(tmp_path / "no_cohort"), "--store", str(tmp_path / "s"), "--out", str(tmp_path / "r")]
    cases = [
        ([*train, "--backbone", "late_fusion", "--backbone-arg", "hidden=big"], "hidden: expected int >= 1"),
        ([*train, "--backbone", "muse", "--framework-arg", "q=0.5"], "framework 'erm' has no option 'q'"),
        ([*train, "--backbone", "late_fusion", "--train-arg", "epochs=2.5"], "--train-arg epochs: expected int"),
        ([*train, "--backbone", "late_fusion", "--warmup-frac", "2"], "--warmup-frac: must be >= 0 and <= 0.99"),
        ([*train, "--backbone", "gru"], "unknown backbone 'gru'"),
        (
            ["featurize", "text", str(tmp_path), "--store", str(tmp_path / "s"), "--stride", "-1"],
            "--stride: must be >= 0",
        ),
        (["featurize", "text", str(tmp_path), "--store", str(tmp_path / "s"), "--featurizer", "timm"], "embeds image"),
        (["featurize", "all", str(tmp_path), "--store", str(tmp_path / "s"), "--align", "middle"], "--align: expected"),
    ]
    for argv, message in cases:
        res = runner.invoke(app, argv)
        assert res.exit_code == 1 and message in " ".join(res.output.split()), (argv, res.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------- sources
SOURCE_NAMES = catalog.registry("sources").names()


@pytest.mark.parametrize("source", SOURCE_NAMES)
def test_every_source_builds_a_cohort_through_the_cli(source, tmp_path):
    """Per registered source: its simulator writes a tiny world; every extra root the source declares is moved
    out of RAW and given by its own flag; `cohort build` writes a cohort that meets the directory contract."""
    from medmodal.cohort import SOURCES, TASKS, audit_cohort_dir, tasks_for
    from medmodal.cohort.base import root_flag
    from medmodal.contracts import CohortDir
    from medmodal.simulate import SIMULATORS, simulate

    assert source in SIMULATORS, f"source {source} has no simulator: a source comes with one (docs/simulator.md)"
    src = SOURCES.get(source)
    raw = simulate(source, tmp_path / "raw", subjects=60, seed=1, images=False)
    flags = []
    for module in src.extra_roots:
        apart = shutil.move(str(raw / module), str(tmp_path / f"apart_{module}"))
        flags += [root_flag(module), apart]
    task = tasks_for(source)[0]
    out = tmp_path / "cohort"
    argv = ["cohort", "build", source, "--raw", str(raw), "--task", task, "--out", str(out), "--threads", "1"]
    res = CliRunner().invoke(build_app(), [*argv, *flags])
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["source"], manifest["task"]) == (source, task)
    for spec in src.files:  # every file of a moved module was read from where its flag pointed
        recorded = manifest["raw_files"].get(spec.view)
        if spec.module in src.extra_roots and recorded:
            assert recorded["path"].startswith(str(tmp_path / f"apart_{spec.module}")), spec.view
    cohort = pl.read_parquet(out / "cohort.parquet")
    assert cohort.height > 0 and set(cohort["split"].unique()) <= {"train", "val", "test"}
    mods = pl.read_parquet(out / "modalities.parquet")
    allowed = TASKS.get(task).modalities
    assert set(manifest["modalities"]) == {m.name for m in src.modalities if m.name in allowed}
    assert {f"has_{m}" for m in manifest["modalities"]} <= set(mods.columns)
    assert mods["sample_id"].to_list() == cohort["sample_id"].to_list()
    assert CohortDir.open(out, masks=True).n == cohort.height  # the stages' reader accepts it
    audit_cohort_dir(out)  # the leakage audits pass again on what was written
    wrong = "--note-root" if "note" not in src.extra_roots else None
    if wrong:  # a root the source does not declare is refused, naming the ones it has
        res = CliRunner().invoke(build_app(), [*argv, "--overwrite", wrong, str(tmp_path)])
        assert res.exit_code == 1 and f"source {source} has no note root" in res.output
