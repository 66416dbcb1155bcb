"""The `medmodal` command line: thin typer commands, each calling one library function.

Sub-apps follow ../shared/DESIGN.md: cohort, featurize, train, evaluate, simulate, benchmark, report.
Every command catches MedmodalError, prints its one line to stderr and exits 1; every command prints where it
wrote its outputs. The library never imports this module.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, List, Optional

import typer

from medmodal.common import MedmodalError, console

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
cohort_app = typer.Typer(no_args_is_help=True, help="Build and inspect leakage-safe cohorts from raw files.")
featurize_app = typer.Typer(no_args_is_help=True, help="Embed notes, images and structured data into the feature store.")
benchmark_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print tables.")
app.add_typer(cohort_app, name="cohort")
app.add_typer(featurize_app, name="featurize")
app.add_typer(benchmark_app, name="benchmark")


def friendly(fn: Callable) -> Callable:
    """Turn a MedmodalError into one red line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MedmodalError as err:
            console.print(f"[red]error:[/red] {err}", soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


# ---------------------------------------------------------------------------------------------- cohort (issue 2, 7)


@cohort_app.command("build")
@friendly
def cohort_build(
    source: str = typer.Argument(..., help="Dataset source, e.g. mimic_iv (see `medmodal cohort tasks`)."),
    raw: Path = typer.Option(..., "--raw", help="Raw data root (for mimic_iv: holds hosp/, icu/, optional note/, cxr/)."),
    task: str = typer.Option(..., "--task", help="Task name, or 'all' to build every task into OUT/<task>/."),
    out: Path = typer.Option(..., "--out", help="Output cohort directory."),
    note_root: Optional[Path] = typer.Option(None, "--note-root", help="MIMIC-IV-Note folder (default RAW/note)."),
    cxr_root: Optional[Path] = typer.Option(None, "--cxr-root", help="MIMIC-CXR-JPG folder (default RAW/cxr)."),
    memory_limit: Optional[str] = typer.Option(None, "--memory-limit", help="DuckDB memory limit, e.g. 12GB (default: half the RAM)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="DuckDB threads (default: all cores)."),
    seed: int = typer.Option(0, "--seed", help="Split seed (subject-level 70/10/20, shared by all tasks)."),
    dataset_version: Optional[str] = typer.Option(None, "--dataset-version", help="Override release detection, e.g. 3.1."),
) -> None:
    """Build a leakage-safe cohort directory from raw files."""
    from medmodal.cohort import build_cohort

    path = build_cohort(source, raw, task, out, note_root=note_root, cxr_root=cxr_root, memory_limit=memory_limit,
                        threads=threads, seed=seed, dataset_version=dataset_version)
    console.print(f"wrote {path}")


@cohort_app.command("report")
@friendly
def cohort_report(cohort_dir: Path = typer.Argument(..., help="A cohort directory (or a folder of them, as --task all writes).")) -> None:
    """Print the attrition and missingness-pattern tables."""
    from rich.console import Console

    from medmodal.cohort import format_report
    from medmodal.cohort.report import cohort_dirs

    out = Console()
    for d in cohort_dirs(cohort_dir):
        out.print(format_report(d))


@cohort_app.command("tasks")
@friendly
def cohort_tasks() -> None:
    """List the sources and the tasks each supports."""
    from rich.console import Console

    from medmodal.cohort.report import tasks_table

    Console().print(tasks_table())

# ---------------------------------------------------------------------------------------------- simulate (issue 3)

# ---------------------------------------------------------------------------------------------- featurize (issue 4)

# ---------------------------------------------------------------------------------------------- train / evaluate (issue 5)


@app.command("train")
@friendly
def train_cmd(
    cohort_dir: Path = typer.Argument(..., help="Cohort directory (from `medmodal cohort build`)."),
    store: Path = typer.Option(..., "--store", help="Feature store holding this cohort's featurized tensors."),
    backbone: str = typer.Option(..., "--backbone", help="late_fusion | attention_fusion | muse (BACKBONES)."),
    out: Path = typer.Option(..., "--out", help="Run directory to write."),
    framework: str = typer.Option("erm", "--framework", help="erm | dfd | cdmm | mmnar (FRAMEWORKS)."),
    task: Optional[List[str]] = typer.Option(None, "--task", help="Label(s) to train on; default: all labels."),
    modality: Optional[List[str]] = typer.Option(None, "--modality", help="Restrict to these modalities."),
    epochs: int = typer.Option(30, "--epochs"),
    batch_size: int = typer.Option(256, "--batch-size", help="Global batch size (split across torchrun ranks)."),
    lr: float = typer.Option(1e-3, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    patience: int = typer.Option(5, "--patience", help="Early-stopping patience in epochs (val AUPRC)."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the test intervals."),
    framework_arg: Optional[List[str]] = typer.Option(None, "--framework-arg", help="key=value, repeatable."),
    backbone_arg: Optional[List[str]] = typer.Option(None, "--backbone-arg", help="key=value, e.g. hidden=64."),
    train_arg: Optional[List[str]] = typer.Option(None, "--train-arg", help="Other TrainConfig field=value."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
) -> None:
    """Train a framework around a backbone on a cohort's cached features (torchrun-aware)."""
    import os

    from medmodal.models.train import parse_kv, train

    run_dir = train(
        cohort_dir, store, out, backbone=backbone, framework=framework, tasks=task or None, modalities=modality or None,
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, patience=patience, n_boot=n_boot,
        backbone_args=parse_kv(backbone_arg, "--backbone-arg"), framework_args=parse_kv(framework_arg),
        overwrite=overwrite, **parse_kv(train_arg, "--train-arg"),
    )
    if int(os.environ.get("RANK", "0")) == 0:
        console.print(f"wrote {run_dir}")


@app.command("evaluate")
@friendly
def evaluate_cmd(
    run_dir: Path = typer.Argument(..., help="Run directory written by `medmodal train`."),
    cohort: Optional[Path] = typer.Option(None, "--cohort", help="Another cohort directory (external validation)."),
    store: Optional[Path] = typer.Option(None, "--store", help="Feature store of that cohort."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default RUN_DIR/eval/<cohort_id>)."),
    subgroup: Optional[List[str]] = typer.Option(None, "--subgroup", help="cohort.parquet column(s) to stratify by."),
    n_boot: Optional[int] = typer.Option(None, "--n-boot"),
    device: str = typer.Option("auto", "--device"),
) -> None:
    """Reload a trained run and score it, on its own cohort or on another one."""
    from medmodal.models.evaluate import evaluate

    where = evaluate(run_dir, cohort, store, out, subgroup or None, n_boot=n_boot, device=device)
    console.print(f"wrote {where}")


# ---------------------------------------------------------------------------------------------- report / benchmark (issue 6)

# ---------------------------------------------------------------------------------------------- demo


def main() -> None:
    app()


if __name__ == "__main__":
    main()
