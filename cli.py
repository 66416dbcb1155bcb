"""The `medmodal` command line: thin typer commands, each calling one library function.

Sub-apps, one per stage: cohort, featurize, train, evaluate, simulate, benchmark, report, plus `list`.
Every command catches MedmodalError, prints its one line to stderr and exits 1; every command prints where it
wrote its outputs. The library never imports this module.

Options that a registry entry declares are not written here: the featurize commands' flags are the fields of the
registered featurizers' configs, train's are TrainConfig's, the extra-root flags of `cohort build` are the
sources' ``extra_roots`` (medmodal.options). ``build_app`` reads the registries each time it is called, and
``main`` builds only the command group it is asked for, so `medmodal cohort ...` never imports torch.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from medmodal.common import MedmodalError, console, out_console

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
    task_file: Path | None = typer.Option(
        None, "--task-file", help="A task YAML of your own (docs/tasks.md, 'Writing a task'), instead of --task."
    ),
    param: list[str] | None = typer.Option(
        None,
        "--param",
        help="NAME=VALUE: override one of the task's parameters (repeatable; see `medmodal list tasks`).",
    ),
    split_protocol: str = typer.Option(
        "subject", "--split-protocol", help="subject (default, subject-level) | muse (random by sample, as published)."
    ),
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
    memory_limit: str | None = typer.Option(
        None, "--memory-limit", help="DuckDB memory limit, e.g. 12GB (default: 3GB, or half the RAM if less)."
    ),
    threads: int | None = typer.Option(None, "--threads", help="DuckDB threads (default: all cores)."),
    dataset_version: str | None = typer.Option(None, "--dataset-version", help="Override release detection, e.g. 3.1."),
    overwrite: bool = _OVERWRITE,
    derived: dict | None = None,
) -> None:
    """Build a leakage-safe cohort directory from raw files (a task's SQL, or a MEDS label file)."""
    from medmodal.cohort import build_cohort

    roots = dict(derived or {})
    options = {
        "memory_limit": memory_limit,
        "threads": threads,
        **({"seed": roots.pop("seed")} if "seed" in roots else {}),
    }
    options["roots"] = roots

    if labels is not None:
        for flag, given in (("--task-file", task_file), ("--param", param), ("--split-protocol", split_protocol)):
            if given and given != "subject":
                raise MedmodalError("does not apply with --labels (the label file is the task)", field=flag)
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
            dataset_version=dataset_version,
            overwrite=overwrite,
            **options,
        )
        console.print(f"wrote {path}")
        return
    only_with_labels = (("--splits", splits), ("--window-hours", window_hours), ("--modalities", modalities))
    for flag, given in (*only_with_labels, ("--value-column", value_column)):
        if given is not None:
            raise MedmodalError("only applies with --labels", field=flag)
    if task_file is not None:
        if task is not None:
            raise MedmodalError("give --task or --task-file, not both", field="--task-file")
        from medmodal.cohort import load_task

        task = load_task(task_file)
    if task is None:
        raise MedmodalError("give --task (see `medmodal cohort tasks`), --task-file or --labels", field="--task")
    from medmodal.options import parse_assignments

    options["params"] = parse_assignments(param, "--param")
    options["split_protocol_name"] = split_protocol
    path = build_cohort(source, raw, task, out, dataset_version=dataset_version, overwrite=overwrite, **options)
    console.print(f"wrote {path}")


@friendly
def cohort_validate(
    source: str = typer.Argument(..., help="Dataset source, e.g. mimic_iv or eicu."),
    raw: Path = typer.Option(..., "--raw", help="Raw data root, as for `cohort build`."),
    checksums: bool = typer.Option(False, "--checksums", help="Also verify each project's SHA256SUMS.txt."),
    dataset_version: str | None = typer.Option(None, "--dataset-version", help="Override release detection, e.g. 3.1."),
    threads: int | None = typer.Option(None, "--threads", help="DuckDB threads for the row counts (default: all)."),
    derived: dict | None = None,
) -> None:
    """Check a download against its release: files, gzip, headers, row counts, dictionaries (exit 1 if a needed
    table is wrong)."""
    from medmodal.cohort.validate import format_validation, validate_raw

    report = validate_raw(
        source,
        raw,
        roots=derived or {},
        checksums=checksums,
        dataset_version=dataset_version,
        threads=threads,
    )
    out_console.print(format_validation(report))
    if report.failed:
        raise typer.Exit(1)


@friendly
def cohort_report(
    cohort_dir: Path = typer.Argument(..., help="A cohort directory (or a folder of them, as --task all writes)."),
) -> None:
    """Print the attrition and missingness-pattern tables."""
    from medmodal.cohort import format_report
    from medmodal.cohort.report import cohort_dirs

    for d in cohort_dirs(cohort_dir):
        out_console.print(format_report(d))


@friendly
def cohort_tasks(
    check: Path | None = typer.Option(
        None, "--check", help="Validate this task YAML (fields, SQL, columns) against its sources without building."
    ),
    param: list[str] | None = typer.Option(None, "--param", help="With --check: NAME=VALUE, as for `cohort build`."),
) -> None:
    """List the sources and the tasks each supports (or, with --check, validate a task file)."""
    if check is not None:
        from medmodal.cohort.task_check import check_task
        from medmodal.options import parse_assignments

        for line in check_task(check, params=parse_assignments(param, "--param")):
            out_console.print(line, soft_wrap=True)
        return
    if param:
        raise MedmodalError("only applies with --check", field="--param")
    from medmodal.cohort.report import tasks_table

    out_console.print(tasks_table())


# ---------------------------------------------------------------------------------------------- simulate


@friendly
def simulate_cmd(
    source: str = typer.Argument(..., help="mimic_iv | eicu | adni"),
    out: Path = typer.Option(..., "--out", help="Output directory: raw files in the real layout + truth.parquet."),
    subjects: int = typer.Option(1000, "--subjects", help="Number of subjects (patients / participants)."),
    seed: int = typer.Option(0, "--seed", help="Same seed and arguments give byte-identical files."),
    strength: list[str] = typer.Option(
        [], "--strength", help="KEY=VALUE override of a causal strength, repeatable (docs/simulator.md)."
    ),
    no_images: bool = typer.Option(
        False, "--no-images", help="Write CXR metadata, labels and reports but no pixel files."
    ),
    overwrite: bool = _OVERWRITE,
    release: str | None = typer.Option(None, "--release", help="Release layout (mimic_iv: 2.2, default, or 3.1)."),
    density: str | None = typer.Option(
        None,
        "--density",
        help="mimic_iv: tasks (default: only items tasks read) or release (MIMIC-IV v3.1's rows per stay/admission).",
    ),
    derived: dict | None = None,
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
        images=not no_images,
        overwrite=overwrite,
        release=release,
        density=density,
        **(derived or {}),
        **pairs,
    )
    console.print(f"wrote {path} (truth in {path / 'truth.parquet'})")


# ---------------------------------------------------------------------------------------------- derived options
# A registry entry's config fields become typer options here (medmodal.catalog says which, under which names);
# the values arrive as text and are typed by the field (medmodal.options), so `--max-length x` and
# `--backbone-arg hidden=x` fail the same way.
_TYPES = {"bool": bool | None, "path": Path | None, "int": int | None, "float": float | None, "text": str | None}


def _typer(flag: Any) -> Any:
    names = [f"{n}/--no-{n[2:]}" for n in flag.names] if flag.type == "bool" else list(flag.names)
    opt, metavar = flag.option, None
    if opt is not None and flag.type != "bool":
        metavar = "[" + "|".join(map(str, opt.choices)) + "]" if opt.choices else opt.type_name().split(" ")[0].upper()
    shown = flag.default or False
    return typer.Option(None, *names, help=flag.help, show_default=shown, metavar=metavar, rich_help_panel=flag.panel)


def _with_flags(fn: Callable, flags: list[Any]) -> Callable:
    """``fn`` exposed to typer with its own parameters plus ``flags`` (medmodal.catalog.Flag); the ones given
    reach ``fn`` as ``derived={flag.key: value}``."""
    own = [p for p in inspect.signature(fn).parameters.values() if p.name != "derived"]
    kw, by_param = inspect.Parameter.KEYWORD_ONLY, {f.param: f for f in flags}
    extra = [inspect.Parameter(f.param, kw, default=_typer(f), annotation=_TYPES[f.type]) for f in flags]

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        given = {by_param[n].key: kwargs.pop(n) for n in list(kwargs) if n in by_param}
        return fn(**kwargs, derived={k: v for k, v in given.items() if v is not None})

    wrapper.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]
    return wrapper


# ---------------------------------------------------------------------------------------------- featurize

_STORE = typer.Option(..., "--store", help="Feature store root (cache/ and cohorts/ live under it).")
_REPLACE = typer.Option(
    False, "--overwrite", help="Replace modalities the store holds for this cohort with other encoder settings."
)


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _wrote(summaries: dict) -> None:
    dirs = sorted({str(s.path.parent) for s in summaries.values()})
    console.print(f"wrote {', '.join(dirs) or 'nothing (no modality of this kind in the cohort)'}")


def _featurize_command(kinds: list[str], flags: list[Any]) -> Callable:
    from medmodal.catalog import spelled

    said = spelled(flags)

    @friendly
    def run(
        cohort_dir: Path = typer.Argument(..., help="Cohort directory (docs/contracts.md §1)."),
        store: Path = _STORE,
        overwrite: bool = _REPLACE,
        derived: dict | None = None,
    ) -> None:
        from medmodal.featurize import featurize, kind_configs

        options = dict(derived or {})
        chosen = {key[1]: options.pop(key) for key in list(options) if isinstance(key, tuple)}
        mods = _csv(options.pop("modalities", None))
        from medmodal.distributed import DistEnv

        configs = kind_configs(kinds, options, chosen, text=True, spelled=said)
        summaries = featurize(cohort_dir, store, kinds=kinds, modalities=mods, configs=configs, overwrite=overwrite)
        if DistEnv.from_env().main:  # under torchrun rank 0 wrote the store; the others say nothing
            _wrote(summaries)

    return _with_flags(run, flags)


def _add_featurize(app: typer.Typer) -> None:
    from medmodal.catalog import Flag, description, featurize_commands, featurize_flags
    from medmodal.featurize import FEATURIZERS, default_featurizer

    sub = typer.Typer(no_args_is_help=True, help="Embed notes, images and structured data into the feature store.")
    commands = featurize_commands()
    every = sorted({k for kinds in commands.values() for k in kinds})
    mods = Flag("modalities", ("--modalities",), "Comma list of modalities.", "all in the manifest")
    text = "Featurize every modality of the cohort, each kind through its featurizer (default or chosen)."
    sub.command("all", help=text)(_featurize_command(every, [mods, *featurize_flags(every, prefix_all=True)]))
    for command, kinds in commands.items():
        text = " ".join(description(FEATURIZERS.get(default_featurizer(k))) for k in kinds)
        sub.command(command, help=text)(_featurize_command(kinds, featurize_flags(kinds, prefix_all=False)))
    app.add_typer(sub, name="featurize")


# ---------------------------------------------------------------------------------------------- train


def _train_command() -> Callable:
    from medmodal.catalog import config_flags, spelled
    from medmodal.models.base import BACKBONES, FRAMEWORKS
    from medmodal.models.train import TrainConfig

    flags = config_flags(TrainConfig, panel="training options")
    said_flags = spelled(flags)

    @friendly
    def train_cmd(
        cohort_dir: Path = typer.Argument(..., help="Cohort directory (from `medmodal cohort build`)."),
        store: Path = typer.Option(..., "--store", help="Feature store holding this cohort's featurized tensors."),
        backbone: str = typer.Option(
            ..., "--backbone", help=f"{' | '.join(BACKBONES.names())} (`medmodal list backbones`)."
        ),
        out: Path = typer.Option(..., "--out", help="Run directory to write."),
        framework: str = typer.Option(
            FRAMEWORKS.default, "--framework", help=f"{' | '.join(FRAMEWORKS.names())} (`medmodal list frameworks`)."
        ),
        task: list[str] | None = typer.Option(None, "--task", help="Label(s) to train on; default: all labels."),
        modality: list[str] | None = typer.Option(None, "--modality", help="Restrict to these modalities."),
        backbone_arg: list[str] | None = typer.Option(
            None,
            "--backbone-arg",
            help="key=value of the backbone's config, e.g. hidden=64 (`medmodal list backbones NAME`).",
        ),
        framework_arg: list[str] | None = typer.Option(
            None,
            "--framework-arg",
            help="key=value of the framework's config, repeatable (`medmodal list frameworks NAME`).",
        ),
        train_arg: list[str] | None = typer.Option(None, "--train-arg", help="field=value of a training option below."),
        overwrite: bool = _OVERWRITE,
        derived: dict | None = None,
    ) -> None:
        """Train a framework around a backbone on a cohort's cached features (torchrun-aware)."""
        from medmodal.models.train import train
        from medmodal.options import config_for, make_config, parse_assignments

        values, said = dict(derived or {}), dict(said_flags)
        for key, value in parse_assignments(train_arg, "--train-arg").items():
            values[key], said[key] = value, f"--train-arg {key}"
        cfg = make_config(TrainConfig, values, what="training", text=True, spelled=said)
        bb = config_for(
            BACKBONES, backbone, parse_assignments(backbone_arg, "--backbone-arg"), flag="--backbone-arg", text=True
        )
        fw = config_for(
            FRAMEWORKS,
            framework,
            parse_assignments(framework_arg, "--framework-arg"),
            flag="--framework-arg",
            text=True,
        )
        run_dir = train(
            cohort_dir,
            store,
            out,
            backbone=backbone,
            framework=framework,
            tasks=task or None,
            modalities=modality or None,
            backbone_config=bb,
            framework_config=fw,
            config=cfg,
            overwrite=overwrite,
        )
        if int(os.environ.get("RANK", "0")) == 0:
            console.print(f"wrote {run_dir}")

    return _with_flags(train_cmd, flags)


# ---------------------------------------------------------------------------------------------- list


@friendly
def list_cmd(
    what: str | None = typer.Argument(None, help="sources | tasks | featurizers | backbones | frameworks (all)."),
    name: str | None = typer.Argument(None, help="One entry: its options with type, default and meaning."),
) -> None:
    """List what is registered, or one entry's options (the same tables as docs/)."""
    from medmodal import catalog

    if name is not None:
        if what is None:
            raise MedmodalError("give what NAME is (e.g. `medmodal list backbones muse`)")
        rows = catalog.options(what, name)
        out_console.print(catalog.rich_table(f"{what[:-1]} {name}: options", rows) if rows else f"{name}: no options")
        return
    for w in catalog.WHAT if what is None else (what,):
        out_console.print(catalog.rich_table(w, catalog.summary(w)))


# ---------------------------------------------------------------------------------- evaluate, export, report, demo


@friendly
def evaluate_cmd(
    run_dir: Path = typer.Argument(..., help="Run directory written by `medmodal train`."),
    cohort: Path | None = typer.Option(None, "--cohort", help="Another cohort directory (external validation)."),
    store: Path | None = typer.Option(None, "--store", help="Feature store of that cohort."),
    out: Path | None = typer.Option(None, "--out", help="Output directory (default RUN_DIR/eval/<cohort_id>)."),
    subgroup: list[str] | None = typer.Option(None, "--subgroup", help="cohort.parquet column(s) to stratify by."),
    n_boot: int | None = typer.Option(None, "--n-boot", help="Bootstrap resamples (default: the run's)."),
    overwrite: bool = _OVERWRITE,
    export: str | None = typer.Option(None, "--export", help="meds: also write OUT/meds/ for meds-evaluation."),
    derived: dict | None = None,
) -> None:
    """Reload a trained run and score it, on its own cohort or on another one."""
    from medmodal.models.evaluate import evaluate

    if export not in (None, "meds"):
        raise MedmodalError(f"unknown export format '{export}' (known: meds)", field="--export")
    where = evaluate(
        run_dir, cohort, store, out, subgroup or None, n_boot=n_boot, overwrite=overwrite, **(derived or {})
    )
    console.print(f"wrote {where}")
    if export == "meds":
        from medmodal.models.export import export_predictions

        console.print(f"wrote {export_predictions(where, overwrite=True)}")


# ---------------------------------------------------------------------------------------------- export


@friendly
def export_meds_cmd(
    cohort_dir: Path = typer.Argument(..., help="Cohort directory (from `medmodal cohort build`)."),
    out: Path = typer.Option(..., "--out", help="Output folder: labels/<label>.parquet + metadata/."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it is an earlier MEDS export."),
) -> None:
    """A cohort's labels (meds LabelSchema), subject splits (train/tuning/held_out) and provenance as MEDS files."""
    from medmodal.cohort.meds import export_meds

    console.print(f"wrote {export_meds(cohort_dir, out, overwrite=overwrite)}")


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


@friendly
def demo(derived: dict | None = None) -> None:
    """Run the main job end to end: real MIMIC-IV demo cohorts, then simulate -> build -> featurize -> train."""
    from medmodal.catalog import spelled
    from medmodal.demo import DemoConfig, run_demo
    from medmodal.options import make_config

    said = spelled(_demo_flags())
    run_demo(make_config(DemoConfig, derived, what="the demo", text=True, spelled=said))


def _demo_flags() -> list[Any]:
    from medmodal.catalog import config_flags
    from medmodal.demo import DemoConfig

    return config_flags(DemoConfig)


# ---------------------------------------------------------------------------------------------- the app
_GROUPS = ("cohort", "simulate", "featurize", "train", "evaluate", "export", "report", "benchmark", "demo", "list")


def _group() -> None:
    pass


def build_app(only: str | None = None) -> typer.Typer:
    """The typer app, its registry-derived options read from the registries as they are now. ``only``: build
    just that command group (what `medmodal <group> ...` needs); None: all of them."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
    app.callback()(_group)  # a group even when `only` leaves one command in it (typer would flatten it)

    def want(group: str) -> bool:
        return only is None or only == group

    if want("cohort"):
        cohort = typer.Typer(no_args_is_help=True, help="Build and inspect leakage-safe cohorts from raw files.")
        from medmodal.catalog import default_flag, root_flags
        from medmodal.cohort.build import build_cohort

        seed = default_flag(build_cohort, "seed", "Split seed (subject-level 70/10/20, shared by all tasks).")
        cohort.command("build")(_with_flags(cohort_build, [*root_flags(), seed]))
        cohort.command("validate")(_with_flags(cohort_validate, root_flags()))
        cohort.command("report")(cohort_report)
        cohort.command("tasks")(cohort_tasks)
        app.add_typer(cohort, name="cohort")
    if want("simulate"):
        from medmodal.catalog import default_flag
        from medmodal.simulate import simulate

        environments = "train | shifted | outcome_shift | order_shift | decoupled."
        sim = [default_flag(simulate, "environment", environments)]
        sim.append(default_flag(simulate, "image_size", "Edge of the square CXR films in pixels."))
        app.command("simulate")(_with_flags(simulate_cmd, sim))
    if want("featurize"):
        _add_featurize(app)
    if want("train"):
        app.command("train")(_train_command())
    if want("evaluate"):
        from medmodal.catalog import default_flag
        from medmodal.models.evaluate import evaluate

        device = default_flag(evaluate, "device", "auto | cpu | cuda | cuda:N")
        app.command("evaluate")(_with_flags(evaluate_cmd, [device]))
    if want("export"):
        export = typer.Typer(
            no_args_is_help=True, help="Write cohorts and predictions in the MEDS formats (docs/ecosystem.md)."
        )
        export.command("meds")(export_meds_cmd)
        export.command("predictions")(export_predictions_cmd)
        app.add_typer(export, name="export")
    if want("report"):
        app.command("report")(report_cmd)
    if want("benchmark"):
        bench = typer.Typer(no_args_is_help=True, help="Benchmarks that print tables.")
        bench.command("shift")(benchmark_shift_cmd)
        app.add_typer(bench, name="benchmark")
    if want("demo"):
        app.command("demo")(_with_flags(demo, _demo_flags()))
    if want("list"):
        app.command("list")(list_cmd)
    return app


def __getattr__(name: str) -> Any:
    """``medmodal.cli.app``: the whole app, built on first use (tests import it; `main` builds less)."""
    if name == "app":
        globals()["app"] = built = build_app()
        return built
    raise AttributeError(name)


def main() -> None:
    first = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    build_app(first if first in _GROUPS else None)()


if __name__ == "__main__":
    main()
