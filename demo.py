"""`make demo` / `medmodal demo`: the main job end to end, offline, in a few minutes on 2 CPU cores.

1. Real data: every MIMIC-IV task built from the vendored MIMIC-IV demo v2.2 (100 patients), with the
   attrition and missingness-pattern tables of each.
2. A simulated MIMIC-IV world (hosp, icu, note, cxr in the real layouts): cohort build, featurization with
   tiny randomly initialised encoders (no weights to download; point ``medmodal featurize`` at ClinicalBERT and
   a pretrained timm model for real work), then every registered backbone trained with ``erm``, and one table
   of test AUROC / AUPRC with bootstrap 95% intervals.
3. Reports: one offline HTML page for the real demo cohort, the simulated cohort and every trained run
   (``medmodal report``), written to OUT/reports/.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.table import Table

import medmodal.models.backbones  # noqa: F401  (fill the registry)
from medmodal.cohort import build_cohort, format_report, tasks_for
from medmodal.common import console
from medmodal.featurize import ImageConfig, TextConfig, featurize_all, tiny
from medmodal.models.base import BACKBONES
from medmodal.models.train import train
from medmodal.options import option, validate
from medmodal.outputs import claim_dir
from medmodal.simulate import simulate

REPO = Path(__file__).resolve().parent
MIMIC_DEMO = REPO / "data" / "mimic-iv-demo-2.2"


@dataclass(frozen=True)
class DemoConfig:
    out: Path = option(Path("demo_out"), "where the demo writes its cohorts, features and runs")
    # enough test positives for intervals narrower than ±0.1
    subjects: int = option(2000, "simulated MIMIC-IV subjects", minimum=1)
    seed: int = option(0, "seed of the simulator, the splits and training", minimum=0)
    task: str = option("readmission_30d", "the MIMIC-IV task of the simulated part")
    epochs: int = option(20, "training epochs per backbone", minimum=1)
    # the tiny image encoder gains nothing from 256 px; keeps the demo in minutes
    image_size: int = option(64, "edge of the simulated CXR films in pixels", minimum=32)
    # each part is replaced only if it is the demo's own
    overwrite: bool = option(False, "replace an earlier demo output in OUT")
    # the numbers depend on the thread count (muse most: its test AUROC moves by ~0.02 between 1 and 2 threads),
    # so a fixed count gives the same table on every machine
    threads: int = option(2, "torch CPU threads for the whole demo", minimum=1)

    def __post_init__(self) -> None:
        validate(self)


def real_cohorts(cfg: DemoConfig) -> Path:
    out = cfg.out / "mimic_iv_demo"
    console.rule("[bold]1. MIMIC-IV demo v2.2 (real, 100 patients): every task")
    build_cohort("mimic_iv", MIMIC_DEMO, "all", out, seed=cfg.seed, overwrite=cfg.overwrite)
    for task in tasks_for("mimic_iv"):
        console.print(format_report(out / task))
    console.print(f"cohorts written to [bold]{out}[/bold]")
    return out


def simulated_models(cfg: DemoConfig) -> Table:
    root = cfg.out / "simulated"
    console.rule(f"[bold]2. Simulated MIMIC-IV world ({cfg.subjects} subjects): build, featurize, train")
    raw = simulate(
        "mimic_iv",
        root / "raw",
        subjects=cfg.subjects,
        seed=cfg.seed,
        image_size=cfg.image_size,
        overwrite=cfg.overwrite,
    )
    cohort = build_cohort("mimic_iv", raw, cfg.task, root / "cohort", seed=cfg.seed, overwrite=cfg.overwrite)
    console.print(format_report(cohort))
    bert = tiny.make_tiny_bert(root / "encoders" / "tiny_bert")
    timm_weights = tiny.make_tiny_timm(root / "encoders" / "test_convnext.safetensors", name="test_convnext")
    featurize_all(
        cohort,
        root / "store",
        configs=[
            TextConfig(model=str(bert), max_length=128, stride=32),
            ImageConfig(model="test_convnext", weights=str(timm_weights)),
        ],
        overwrite=cfg.overwrite,
    )

    table = Table(title=f"Simulated MIMIC-IV, {cfg.task}: test metrics (erm, 95% bootstrap CI)")
    for col in ("backbone", "label", "AUROC", "AUPRC", "n test", "train s"):
        table.add_column(col, justify="right" if col not in ("backbone", "label") else "left")
    for name in BACKBONES.names():
        t0 = time.perf_counter()
        run = train(
            cohort,
            root / "store",
            root / "runs" / name,
            backbone=name,
            framework="erm",
            epochs=cfg.epochs,
            batch_size=128,
            lr=3e-3,
            seed=cfg.seed,
            overwrite=cfg.overwrite,
            backbone_config={"hidden": 64},
        )
        seconds = time.perf_counter() - t0
        metrics = json.loads((run / "metrics.json").read_text())
        labels = [lab["name"] for lab in json.loads((cohort / "manifest.json").read_text())["labels"]]
        for label in labels:  # primary label first, as the cohort's manifest orders them
            test = metrics["tasks"][label]["test"]["overall"]
            table.add_row(name, label, _ci(test["auroc"]), _ci(test["auprc"]), str(test.get("n", "")), f"{seconds:.0f}")
    console.print(table)
    console.print(f"runs written to [bold]{root / 'runs'}[/bold]")
    return table


def reports(cfg: DemoConfig) -> list[Path]:
    from medmodal.report import write_report

    console.rule("[bold]3. Reports: one self-contained HTML page each")
    out = cfg.out / "reports"
    pages = [
        (cfg.out / "mimic_iv_demo" / cfg.task, out / f"cohort_mimic_iv_demo_{cfg.task}.html"),
        (cfg.out / "simulated" / "cohort", out / f"cohort_simulated_{cfg.task}.html"),
        *((cfg.out / "simulated" / "runs" / name, out / f"run_{name}_erm.html") for name in BACKBONES.names()),
    ]
    written = []
    for src, dst in pages:
        path, kind = write_report(src, dst, overwrite=True)
        console.print(f"{kind} report: [bold]{path}[/bold] ({path.stat().st_size / 1024:.0f} KiB)")
        written.append(path)
    return written


def _ci(m: dict) -> str:
    if m["value"] is None:
        return "n/a"
    if m["ci_low"] is None:
        return f"{m['value']:.3f}"
    return f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"


def run_demo(cfg: DemoConfig = DemoConfig()) -> Path:
    """Everything under ``cfg.out`` (marked as a demo output: a rerun needs ``overwrite``, and then replaces only
    the demo's own cohorts, store and runs)."""
    t0 = time.perf_counter()
    claim_dir(cfg.out, "demo", overwrite=cfg.overwrite)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        real_cohorts(cfg)
        simulated_models(cfg)
        reports(cfg)
    finally:
        torch.set_num_threads(threads_before)
    console.print(f"demo finished in {time.perf_counter() - t0:.0f} s; outputs under [bold]{cfg.out}[/bold]")
    return cfg.out
