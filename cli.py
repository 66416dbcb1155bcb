"""The `medmodal` command line: thin typer commands, each calling one library function.

Sub-apps follow ../shared/DESIGN.md: cohort, featurize, train, evaluate, simulate, benchmark, report.
Every command catches MedmodalError, prints its one line to stderr and exits 1; every command prints where it
wrote its outputs. The library never imports this module.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import typer

from medmodal.common import MedmodalError, console, out_console

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
cohort_app = typer.Typer(no_args_is_help=True, help="Build and inspect leakage-safe cohorts from raw files.")
featurize_app = typer.Typer(
    no_args_is_help=True, help="Embed notes, images and structured data into the feature store."
)
benchmark_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print tables.")
export_app = typer.Typer(
    no_args_is_help=True, help="Write cohorts and predictions in the MEDS formats (docs/ecosystem.md)."
)
app.add_typer(cohort_app, name="cohort")
app.add_typer(export_app, name="export")
app.add_typer(featurize_app, name="featurize")
app.add_typer(benchmark_app, name="benchmark")


# the same flag on every command that writes: an existing output is replaced only when it is the same kind of
# medmodal output (its .medmodal.json marker says so) and this flag is given (docs/reliability.md)
_OVERWRITE = typer.Option(False, "--overwrite", help="Replace OUT if it is an earlier output of this same command.")


# Libraries whose exceptions mean "this input could not be read". The library turns them into MedmodalErrors
# naming file and field where it reads; this is the backstop for a place it missed: still one line, and only the
# error's type and file, since their messages may quote a value from the row (docs/reliability.md).
_INPUT_ERROR_MODULES = {"duckdb", "safetensors", "polars", "pyarrow", "json"}


def _input_error(err: BaseException) -> str | None:
    if isinstance(err, OSError):
        what = err.strerror or type(err).__name__
        return f"{err.filename}: {what}" if err.filename else what
    if type(err).__module__.lstrip("_").split(".")[0] in _INPUT_ERROR_MODULES:
        return (
            f"could not read an input ({type(err).__name__}); set MEDMODAL_DEBUG=1 for the traceback "
            "and please report where this was not named"
        )
    return None


def friendly(fn: Callable) -> Callable:
    """Turn a MedmodalError (or an unnamed read error of a data library) into one red line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MedmodalError as err:
            console.print(f"[red]error:[/red] {err}", soft_wrap=True)
            raise typer.Exit(1) from None
        except Exception as err:
            line = None if os.environ.get("MEDMODAL_DEBUG") else _input_error(err)
            if line is None:
                raise
            console.print(f"[red]error:[/red] {' '.join(line.split())}", soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


# ---------------------------------------------------------------------------------------------- cohort


@cohort_app.command("build")
@friendly
def cohort_build(
    source: str = typer.Argument(..., help="Dataset source, e.g. mimic_iv (see `medmodal cohort tasks`)."),
    raw: Path = typer.Option(
        ..., "--raw", help="Raw data root (for mimic_iv: holds hosp/, icu/, optional note/, cxr/)."
    ),
    task: str | None = typer.Option(
        None, "--task", help="Task name, or 'all' for every task into OUT/<task>/; with --labels: the label's name."
    ),
    out: Path = typer.Option(..., "--out", help="Output cohort directory."),
    labels: Path | None = typer.Option(
        None, "--labels", help="MEDS label file (e.g. ACES output): its rows are the samples and labels."
    ),
    splits: Path | None = typer.Option(
        None, "--splits", help="With --labels: MEDS metadata/subject_splits.parquet (default: medmodal's seeded split)."
    ),
    window_hours: float | None = typer.Option(
        None,
        "--window-hours",
        help="With --labels: observe [prediction_time - H, prediction_time] (default: from admittime).",
    ),
    modalities: str | None = typer.Option(
        None, "--modalities", help="With --labels: comma list (default: every modality but discharge_note)."
    ),
    value_column: str | None = typer.Option(
        None, "--value-column", help="With --labels: boolean_value | integer_value | categorical_value."
    ),
    note_root: Path | None = typer.Option(None, "--note-root", help="MIMIC-IV-Note folder (default RAW/note)."),
    cxr_root: Path | None = typer.Option(None, "--cxr-root", help="MIMIC-CXR-JPG folder (default RAW/cxr)."),
    memory_limit: str | None = typer.Option(
        None, "--memory-limit", help="DuckDB memory limit, e.g. 12GB (default: half the RAM)."
    ),
    threads: int | None = typer.Option(None, "--threads", help="DuckDB threads (default: all cores)."),
    seed: int = typer.Option(0, "--seed", help="Split seed (subject-level 70/10/20, shared by all tasks)."),
    dataset_version: str | None = typer.Option(None, "--dataset-version", help="Override release detection, e.g. 3.1."),
    overwrite: bool = _OVERWRITE,
) -> None:
    """Build a leakage-safe cohort directory from raw files (a task's SQL, or a MEDS label file)."""
    from medmodal.cohort import build_cohort

    if labels is not None:
        from medmodal.cohort.meds_import import build_from_labels

        path = build_from_labels(
            source,
            raw,
            labels,
            out,
            name=task,
            value_column=value_column,
            splits=splits,
            window_hours=window_hours,
            modalities=_csv(modalities),
            note_root=note_root,
            cxr_root=cxr_root,
            memory_limit=memory_limit,
            threads=threads,
            seed=seed,
            dataset_version=dataset_version,
            overwrite=overwrite,
        )
        console.print(f"wrote {path}")
        return
    only_with_labels = (("--splits", splits), ("--window-hours", window_hours), ("--modalities", modalities))
    for flag, given in (*only_with_labels, ("--value-column", value_column)):
        if given is not None:
            raise MedmodalError("only applies with --labels", field=flag)
    if task is None:
        raise MedmodalError("give --task (see `medmodal cohort tasks`) or --labels", field="--task")
    path = build_cohort(
        source,
        raw,
        task,
        out,
        note_root=note_root,
        cxr_root=cxr_root,
        memory_limit=memory_limit,
        threads=threads,
        seed=seed,
        dataset_version=dataset_version,
        overwrite=overwrite,
    )
    console.print(f"wrote {path}")


@cohort_app.command("validate")
@friendly
def cohort_validate(
    source: str = typer.Argument(..., help="Dataset source, e.g. mimic_iv or eicu."),
    raw: Path = typer.Option(..., "--raw", help="Raw data root, as for `cohort build`."),
    note_root: Path | None = typer.Option(None, "--note-root", help="MIMIC-IV-Note folder (default RAW/note)."),
    cxr_root: Path | None = typer.Option(None, "--cxr-root", help="MIMIC-CXR-JPG folder (default RAW/cxr)."),
    checksums: bool = typer.Option(False, "--checksums", help="Also verify each project's SHA256SUMS.txt."),
    dataset_version: str | None = typer.Option(None, "--dataset-version", help="Override release detection, e.g. 3.1."),
    threads: int | None = typer.Option(None, "--threads", help="DuckDB threads for the row counts (default: all)."),
) -> None:
    """Check a download against its release: files, gzip, headers, row counts, dictionaries (exit 1 if a needed
    table is wrong)."""
    from medmodal.cohort.validate import format_validation, validate_raw

    report = validate_raw(
        source,
        raw,
        note_root=note_root,
        cxr_root=cxr_root,
        checksums=checksums,
        dataset_version=dataset_version,
        threads=threads,
    )
    out_console.print(format_validation(report))
    if report.failed:
        raise typer.Exit(1)


@cohort_app.command("report")
@friendly
def cohort_report(
    cohort_dir: Path = typer.Argument(..., help="A cohort directory (or a folder of them, as --task all writes)."),
) -> None:
    """Print the attrition and missingness-pattern tables."""
    from medmodal.cohort import format_report
    from medmodal.cohort.report import cohort_dirs

    for d in cohort_dirs(cohort_dir):
        out_console.print(format_report(d))


@cohort_app.command("tasks")
@friendly
def cohort_tasks() -> None:
    """List the sources and the tasks each supports."""
    from medmodal.cohort.report import tasks_table

    out_console.print(tasks_table())


# ---------------------------------------------------------------------------------------------- simulate


@app.command("simulate")
@friendly
def simulate_cmd(
    source: str = typer.Argument(..., help="mimic_iv | eicu | adni"),
    out: Path = typer.Option(..., "--out", help="Output directory: raw files in the real layout + truth.parquet."),
    subjects: int = typer.Option(1000, "--subjects", help="Number of subjects (patients / participants)."),
    seed: int = typer.Option(0, "--seed", help="Same seed and arguments give byte-identical files."),
    environment: str = typer.Option(
        "train", "--environment", help="train | shifted | outcome_shift | order_shift | decoupled."
    ),
    strength: list[str] = typer.Option(
        [], "--strength", help="KEY=VALUE override of a causal strength, repeatable (docs/simulator.md)."
    ),
    image_size: int = typer.Option(256, "--image-size", help="Edge of the square CXR films in pixels."),
    no_images: bool = typer.Option(
        False, "--no-images", help="Write CXR metadata, labels and reports but no pixel files."
    ),
    overwrite: bool = _OVERWRITE,
    release: str | None = typer.Option(None, "--release", help="Release layout (mimic_iv: 2.2, default, or 3.1)."),
) -> None:
    """Write a synthetic dataset from the documented structural causal model."""
    from medmodal.simulate import simulate

    pairs = {}
    for item in strength:
        key, sep, value = item.partition("=")
        if not sep:
            raise MedmodalError(f"--strength expects KEY=VALUE, got '{item}'")
        pairs[key.strip()] = value.strip()
    path = simulate(
        source,
        out,
        subjects=subjects,
        seed=seed,
        environment=environment,
        images=not no_images,
        image_size=image_size,
        overwrite=overwrite,
        release=release,
        **pairs,
    )
    console.print(f"wrote {path} (truth in {path / 'truth.parquet'})")


# ---------------------------------------------------------------------------------------------- featurize

_STORE = typer.Option(..., "--store", help="Feature store root (cache/ and cohorts/ live under it).")
_REPLACE = typer.Option(
    False, "--overwrite", help="Replace modalities the store holds for this cohort with other encoder settings."
)
_DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda[:N].")
_PRECISION = typer.Option("auto", "--precision", help="auto (bf16/fp16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16.")


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _wrote(summaries: dict) -> None:
    dirs = sorted({str(s.path.parent) for s in summaries.values()})
    console.print(f"wrote {', '.join(dirs) or 'nothing (no modality of this kind in the cohort)'}")


@featurize_app.command("text")
@friendly
def featurize_text_cmd(
    cohort_dir: Path = typer.Argument(..., help="Cohort directory (docs/contracts.md §1)."),
    store: Path = _STORE,
    model: str = typer.Option(
        "emilyalsentzer/Bio_ClinicalBERT", "--model", help="HF repo id in the local cache, or a model directory."
    ),
    note_types: str | None = typer.Option(
        None, "--note-types", help="Comma list, e.g. discharge,radiology (default: all)."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Full-length windows per forward pass (default 32 on CUDA, 8 on CPU)."
    ),
    device: str = _DEVICE,
    max_length: int = typer.Option(512, "--max-length", help="Tokens per window incl. [CLS]/[SEP]."),
    stride: int = typer.Option(128, "--stride", help="Tokens shared by consecutive windows of a long note."),
    pooling: str = typer.Option("mean", "--pooling", help="Notes per sample: mean | latest."),
    token_pooling: str = typer.Option("mean", "--token-pooling", help="Window vector: mean (masked) | cls."),
    precision: str = _PRECISION,
    overwrite: bool = _REPLACE,
) -> None:
    """Embed notes (one modality per note type) into the feature store, reusing cached vectors."""
    from medmodal.featurize import featurize_text

    _wrote(
        featurize_text(
            cohort_dir,
            store,
            model=model,
            note_types=_csv(note_types),
            batch_size=batch_size,
            device=device,
            max_length=max_length,
            stride=stride,
            pooling=pooling,
            token_pooling=token_pooling,
            precision=precision,
            overwrite=overwrite,
        )
    )


@featurize_app.command("image")
@friendly
def featurize_image_cmd(
    cohort_dir: Path = typer.Argument(..., help="Cohort directory (docs/contracts.md §1)."),
    store: Path = _STORE,
    model: str = typer.Option("densenet121", "--model", help="timm model name."),
    weights: Path | None = typer.Option(
        None, "--weights", help="Weights file (.safetensors preferred); default: local HF cache."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Images per forward pass (default 32 on CUDA, 8 on CPU)."
    ),
    device: str = _DEVICE,
    num_workers: int | None = typer.Option(None, "--num-workers", help="DataLoader workers (default min(8, CPUs))."),
    pooling: str = typer.Option("mean", "--pooling", help="Images per sample: mean | latest."),
    precision: str = _PRECISION,
    rehash: bool = typer.Option(False, "--rehash", help="Re-read every file even if its size and mtime are unchanged."),
    overwrite: bool = _REPLACE,
) -> None:
    """Embed chest X-rays (JPG/PNG/DICOM) into the feature store; unreadable files are skipped and reported."""
    from medmodal.featurize import featurize_image

    _wrote(
        featurize_image(
            cohort_dir,
            store,
            model=model,
            weights=weights,
            batch_size=batch_size,
            device=device,
            num_workers=num_workers,
            pooling=pooling,
            precision=precision,
            rehash=rehash,
            overwrite=overwrite,
        )
    )


@featurize_app.command("structured")
@friendly
def featurize_structured_cmd(
    cohort_dir: Path = typer.Argument(..., help="Cohort directory (docs/contracts.md §1)."),
    store: Path = _STORE,
    max_hours: int = typer.Option(48, "--max-hours", help="Cap on the timeseries length T (hours)."),
    align: str = typer.Option(
        "start", "--align", help="start: the first T hours of the window | end: the T hours before prediction."
    ),
    overwrite: bool = _REPLACE,
) -> None:
    """Structured and timeseries tensors, z-scored on the train split, with observed masks."""
    from medmodal.featurize import featurize_structured

    _wrote(featurize_structured(cohort_dir, store, max_hours=max_hours, align=align, overwrite=overwrite))


@featurize_app.command("all")
@friendly
def featurize_all_cmd(
    cohort_dir: Path = typer.Argument(..., help="Cohort directory (docs/contracts.md §1)."),
    store: Path = _STORE,
    text_model: str = typer.Option(
        "emilyalsentzer/Bio_ClinicalBERT", "--text-model", help="HF repo id in the local cache, or a directory."
    ),
    image_model: str = typer.Option("densenet121", "--image-model", help="timm model name."),
    image_weights: Path | None = typer.Option(
        None, "--image-weights", help="Image weights file (.safetensors preferred)."
    ),
    modalities: str | None = typer.Option(
        None, "--modalities", help="Comma list of modalities (default: all in the manifest)."
    ),
    note_types: str | None = typer.Option(None, "--note-types", help="Comma list of note types (default: all)."),
    device: str = _DEVICE,
    precision: str = _PRECISION,
    text_batch_size: int | None = typer.Option(None, "--text-batch-size", help="Default 32 on CUDA, 8 on CPU."),
    image_batch_size: int | None = typer.Option(None, "--image-batch-size", help="Default 32 on CUDA, 8 on CPU."),
    max_length: int = typer.Option(512, "--max-length"),
    stride: int = typer.Option(128, "--stride"),
    text_pooling: str = typer.Option("mean", "--text-pooling", help="Notes per sample: mean | latest."),
    image_pooling: str = typer.Option("mean", "--image-pooling", help="Images per sample: mean | latest."),
    num_workers: int | None = typer.Option(None, "--num-workers"),
    max_hours: int = typer.Option(48, "--max-hours"),
    align: str = typer.Option(
        "start", "--align", help="Timeseries: start (first T hours) | end (T hours before prediction)."
    ),
    overwrite: bool = _REPLACE,
) -> None:
    """Featurize every modality of the cohort: structured, timeseries, notes, images."""
    from medmodal.featurize import featurize_all

    _wrote(
        featurize_all(
            cohort_dir,
            store,
            text_model=text_model,
            image_model=image_model,
            image_weights=image_weights,
            modalities=_csv(modalities),
            note_types=_csv(note_types),
            device=device,
            precision=precision,
            text_batch_size=text_batch_size,
            image_batch_size=image_batch_size,
            max_length=max_length,
            stride=stride,
            text_pooling=text_pooling,
            image_pooling=image_pooling,
            num_workers=num_workers,
            max_hours=max_hours,
            align=align,
            overwrite=overwrite,
        )
    )


# ---------------------------------------------------------------------------------------------- train / evaluate


@app.command("train")
@friendly
def train_cmd(
    cohort_dir: Path = typer.Argument(..., help="Cohort directory (from `medmodal cohort build`)."),
    store: Path = typer.Option(..., "--store", help="Feature store holding this cohort's featurized tensors."),
    backbone: str = typer.Option(..., "--backbone", help="late_fusion | attention_fusion | muse (BACKBONES)."),
    out: Path = typer.Option(..., "--out", help="Run directory to write."),
    framework: str = typer.Option("erm", "--framework", help="erm | dfd | cdmm | mmnar (FRAMEWORKS)."),
    task: list[str] | None = typer.Option(None, "--task", help="Label(s) to train on; default: all labels."),
    modality: list[str] | None = typer.Option(None, "--modality", help="Restrict to these modalities."),
    epochs: int = typer.Option(30, "--epochs"),
    batch_size: int = typer.Option(256, "--batch-size", help="Global batch size (split across torchrun ranks)."),
    lr: float = typer.Option(1e-3, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    threads: int | None = typer.Option(
        None, "--threads", help="torch CPU threads (default: all cores); same seed + same threads = same bytes."
    ),
    patience: int = typer.Option(5, "--patience", help="Early-stopping patience in epochs (val AUPRC)."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the test intervals."),
    framework_arg: list[str] | None = typer.Option(None, "--framework-arg", help="key=value, repeatable."),
    backbone_arg: list[str] | None = typer.Option(None, "--backbone-arg", help="key=value, e.g. hidden=64."),
    train_arg: list[str] | None = typer.Option(None, "--train-arg", help="Other TrainConfig field=value."),
    overwrite: bool = _OVERWRITE,
) -> None:
    """Train a framework around a backbone on a cohort's cached features (torchrun-aware)."""
    import os

    from medmodal.models.train import parse_kv, train

    run_dir = train(
        cohort_dir,
        store,
        out,
        backbone=backbone,
        framework=framework,
        tasks=task or None,
        modalities=modality or None,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        patience=patience,
        n_boot=n_boot,
        backbone_config=parse_kv(backbone_arg, "--backbone-arg"),
        framework_config=parse_kv(framework_arg),
        overwrite=overwrite,
        threads=threads,
        **parse_kv(train_arg, "--train-arg"),
    )
    if int(os.environ.get("RANK", "0")) == 0:
        console.print(f"wrote {run_dir}")


@app.command("evaluate")
@friendly
def evaluate_cmd(
    run_dir: Path = typer.Argument(..., help="Run directory written by `medmodal train`."),
    cohort: Path | None = typer.Option(None, "--cohort", help="Another cohort directory (external validation)."),
    store: Path | None = typer.Option(None, "--store", help="Feature store of that cohort."),
    out: Path | None = typer.Option(None, "--out", help="Output directory (default RUN_DIR/eval/<cohort_id>)."),
    subgroup: list[str] | None = typer.Option(None, "--subgroup", help="cohort.parquet column(s) to stratify by."),
    n_boot: int | None = typer.Option(None, "--n-boot"),
    device: str = typer.Option("auto", "--device"),
    overwrite: bool = _OVERWRITE,
    export: str | None = typer.Option(None, "--export", help="meds: also write OUT/meds/ for meds-evaluation."),
) -> None:
    """Reload a trained run and score it, on its own cohort or on another one."""
    from medmodal.models.evaluate import evaluate

    if export not in (None, "meds"):
        raise MedmodalError(f"unknown export format '{export}' (known: meds)", field="--export")
    where = evaluate(run_dir, cohort, store, out, subgroup or None, n_boot=n_boot, device=device, overwrite=overwrite)
    console.print(f"wrote {where}")
    if export == "meds":
        from medmodal.models.export import export_predictions

        console.print(f"wrote {export_predictions(where, overwrite=True)}")


# ---------------------------------------------------------------------------------------------- export


@export_app.command("meds")
@friendly
def export_meds_cmd(
    cohort_dir: Path = typer.Argument(..., help="Cohort directory (from `medmodal cohort build`)."),
    out: Path = typer.Option(..., "--out", help="Output folder: labels/<label>.parquet + metadata/."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it is an earlier MEDS export."),
) -> None:
    """A cohort's labels (meds LabelSchema), subject splits (train/tuning/held_out) and provenance as MEDS files."""
    from medmodal.cohort.meds import export_meds

    console.print(f"wrote {export_meds(cohort_dir, out, overwrite=overwrite)}")


@export_app.command("predictions")
@friendly
def export_predictions_cmd(
    run_dir: Path = typer.Argument(..., help="Run directory (`medmodal train`) or evaluation output (`evaluate`)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default RUN_DIR/meds)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it is an earlier prediction export."),
) -> None:
    """Predictions in meds-evaluation's layout: OUT/<label>/<split>.parquet (binary labels)."""
    from medmodal.models.export import export_predictions

    console.print(f"wrote {export_predictions(run_dir, out, overwrite=overwrite)}")


# ---------------------------------------------------------------------------------------------- report / benchmark


@app.command("report")
@friendly
def report_cmd(
    path: Path = typer.Argument(
        ..., help="A cohort directory, a run directory (train or evaluate output) or a benchmark output folder."
    ),
    out: Path | None = typer.Option(None, "--out", help="The HTML file to write (one self-contained page)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing --out file (without --out: RUN_DIR/report)."
    ),
    n_boot: int = typer.Option(200, "--n-boot", help="Bootstrap resamples for a run page's curve bands."),
    truth: Path | None = typer.Option(
        None, "--truth", help="Simulator truth.parquet: colour the t-SNE by its confounder."
    ),
    confounder: str = typer.Option("C", "--confounder", help="truth.parquet column to colour by."),
    color_by: str | None = typer.Option(None, "--color-by", help="cohort.parquet column to colour by instead."),
    cohort: Path | None = typer.Option(
        None, "--cohort", help="t-SNE on another cohort directory (default: the run's)."
    ),
    store: Path | None = typer.Option(None, "--store", help="Feature store of that cohort."),
    split: str = typer.Option("test", "--split", help="t-SNE split: train | val | test | all"),
    max_points: int = typer.Option(2000, "--max-points", help="t-SNE: subsample to at most this many samples."),
    iterations: int = typer.Option(1000, "--iterations", help="t-SNE optimisation steps (>= 250)."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """An offline HTML page of a cohort, run or benchmark folder (--out); without --out, a dfd/cdmm run's t-SNE of
    causal vs biased features (PNG + JSON in RUN_DIR/report)."""
    tsne = None
    if truth is not None or color_by is not None:
        tsne = {
            "truth": truth,
            "confounder": confounder,
            "color_by": color_by,
            "cohort_dir": cohort,
            "store": store,
            "split": split,
            "max_points": max_points,
            "iterations": iterations,
            "seed": seed,
            "device": device,
        }
    if out is None:
        if tsne is None:
            raise MedmodalError("give --out report.html for a page, or --truth / --color-by for a run's t-SNE figure")
        from medmodal.models.report import report

        where = report(path, **tsne, overwrite=overwrite)
        console.print(f"wrote {where / 'tsne_causal_biased.png'} and {where / 'report.json'}")
        return
    from medmodal.report import write_report

    written, kind = write_report(path, out, overwrite=overwrite, n_boot=n_boot, tsne=tsne)
    console.print(f"wrote {written} ({kind} page, {written.stat().st_size / 1024:.0f} KiB)")


@benchmark_app.command("shift")
@friendly
def benchmark_shift_cmd(
    out: Path = typer.Option(..., "--out", help="Output folder (resumable; keeps its work/ subfolder)."),
    quick: bool = typer.Option(False, "--quick", help="The small profile: every code path in a few minutes."),
    jobs: int = typer.Option(1, "--jobs", help="Worker processes (one torch thread each)."),
    target_selection: bool = typer.Option(
        False, "--target-selection", help="Also select on target-domain labels; reported apart, labelled."
    ),
    worlds: str | None = typer.Option(None, "--worlds", help="Comma list of simulator seeds (default 1,2,3,4,5)."),
    seeds: str | None = typer.Option(None, "--seeds", help="Comma list of model seeds (default 0,1,2)."),
    backbone: str | None = typer.Option(None, "--backbone", help="Backbone of every run (default late_fusion)."),
    epochs: int | None = typer.Option(None, "--epochs"),
    subjects: int | None = typer.Option(None, "--subjects", help="Simulated subjects per environment."),
) -> None:
    """Select on the training environment, train every method on 5 worlds x 3 seeds, score every mechanism."""
    import dataclasses

    try:
        from medmodal.benchmarks.shift import QUICK, ShiftConfig, run_benchmark
    except ImportError:
        raise MedmodalError(
            "benchmarks/ is not part of this installation; run it from a clone (python benchmarks/shift.py --out DIR)"
        ) from None

    def ints(text: str, flag: str) -> tuple[int, ...]:
        try:
            return tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise MedmodalError(f"expected a comma list of integers, got '{text}'", field=flag) from None

    changes = {"jobs": jobs, "target_selection": target_selection or quick}
    for name, value in (("backbone", backbone), ("epochs", epochs), ("subjects", subjects)):
        if value is not None:
            changes[name] = value
    if worlds is not None:
        changes["worlds"] = ints(worlds, "--worlds")
    if seeds is not None:
        changes["seeds"] = ints(seeds, "--seeds")
    cfg = dataclasses.replace(QUICK if quick else ShiftConfig(), **changes)
    from medmodal.outputs import claim_dir

    # resumable: an earlier benchmark output is continued (one from before markers: it has work/), anything else
    # that is not empty is refused
    claim_dir(out, "benchmark", legacy=lambda d: (d / "work").is_dir())
    where = run_benchmark(out, cfg)
    console.print(f"wrote {where / 'benchmark.md'}")


# ---------------------------------------------------------------------------------------------- demo


@app.command()
@friendly
def demo(
    out: Path = typer.Option(Path("demo_out"), help="Where the demo writes its cohorts, features and runs."),
    subjects: int = typer.Option(2000, help="Simulated MIMIC-IV subjects."),
    seed: int = typer.Option(0, help="Seed of the simulator, the splits and training."),
    epochs: int = typer.Option(20, help="Training epochs per backbone."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier demo output in OUT."),
) -> None:
    """Run the main job end to end: real MIMIC-IV demo cohorts, then simulate -> build -> featurize -> train."""
    from medmodal.demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=out, subjects=subjects, seed=seed, epochs=epochs, overwrite=overwrite))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
