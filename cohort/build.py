"""``build_cohort``: raw files -> one cohort directory (docs/contracts.md §1), for any registered source and task.

Steps: locate and header-check the raw files -> typed DuckDB views -> detect the release -> the source's
pre-task SQL -> the task SQL (``candidates``) -> attrition and the ``cohort`` table with splits -> the source's
post-task SQL -> every output written by DuckDB straight to Parquet -> audits -> manifest. Everything lands in
a temporary sibling directory that is renamed into place only when all of it, audits included, succeeded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

import medmodal
from medmodal.cohort.audits import run_audits
from medmodal.cohort.base import COMMON_SQL, REPO_ROOT, SOURCES, TASKS, Source, TaskSpec, root_flag, tasks_for
from medmodal.cohort.masks import modalities_sql
from medmodal.cohort.preflight import run_preflight
from medmodal.cohort.rules import Flagged, apply_exclusions, check_files, exclude_untimed
from medmodal.cohort.runner import (
    Located,
    SharedRelations,
    connect,
    locate,
    register_views,
    render_sql,
    run_sql,
    run_sql_file,
    translate_error,
)
from medmodal.cohort.splits import FRACTIONS, SplitProtocol, assign_sample_splits, assign_splits, split_protocol
from medmodal.common import MedmodalError, console, file_fingerprint
from medmodal.contracts import (
    ATTRITION,
    COHORT,
    IMAGES,
    MODALITY_KINDS,
    cohort_column_order,
    cohort_files,
    cohort_identity,
    cohort_sample_ids,
    compute_cohort_id,
    structured_table,
    write_cohort_manifest,
    write_marker,
)
from medmodal.outputs import atomic_dir, check_output, work_dir


def build_cohort(
    source: str,
    raw: str | Path,
    task: str | TaskSpec,
    out: str | Path,
    *,
    roots: Mapping[str, str | Path | None] | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    dataset_version: str | None = None,
    imported: Any = None,
    params: Mapping[str, Any] | None = None,
    split_protocol_name: str = "subject",
) -> Path:
    """Build the cohort of ``task`` from ``source``'s raw files into ``out``; return ``out``.

    ``task="all"`` builds every task of the source into ``out/<task>/`` (one folder of cohorts, replaced as a
    whole). ``roots``: the source's extra module roots kept outside ``raw`` (``{"note": path}``; its
    ``extra_roots``). ``dataset_version`` overrides the release detection (e.g. "3.1"). ``imported``
    (cohort/meds_import.ImportedLabels) supplies the labels of a task built from a MEDS label file. ``task`` may be
    a TaskSpec (``medmodal.cohort.load_task`` reads a researcher's own YAML). ``params`` overrides the task's
    declared parameters (typed against them; text as on the command line is fine). ``split_protocol_name``: a
    named protocol of ``cohort/splits.SPLIT_PROTOCOLS`` (default subject-level). An existing
    ``out`` is replaced only when it is a cohort (or a folder of cohorts) and ``overwrite`` is true; an ``out``
    inside or above a raw root is refused. Raises MedmodalError (one line) on bad input; leaves no partial output.
    """
    src = SOURCES.get(source)()
    out = Path(out)
    names = tasks_for(source) if task == "all" else None
    spec = None if names is not None else task if isinstance(task, TaskSpec) else TASKS.get(task)
    if params and spec is None:
        raise MedmodalError("parameters apply to one task, not --task all", field="--param")
    if spec is not None:
        spec = spec.with_params(params, text=True)
        _check_task(src, spec)
    protocol = split_protocol(split_protocol_name)
    if dataset_version is not None:
        src.check_version(dataset_version)
    raw = Path(raw)
    if not raw.is_dir():
        raise MedmodalError("raw data folder not found", path=raw)
    given = dict(roots or {})
    roots = src.resolve_roots(raw, given)
    inputs = {"--raw": raw, **{root_flag(module): path for module, path in given.items()}}
    if imported is not None:
        inputs["--labels"] = getattr(imported, "path", None)
    inputs.update({f"the {module} root": root for module, root in roots.items() if root.exists()})
    kind = "cohort_set" if names is not None else "cohort"
    check_output(out, kind, overwrite=overwrite, inputs=inputs)
    work = work_dir(out)
    try:
        with atomic_dir(out, kind=kind, overwrite=overwrite, inputs=inputs) as tmp:
            jobs = [(spec, tmp, out)] if names is None else [(TASKS.get(n), tmp / n, out / n) for n in names]
            # one task streams the events through a view; several share one Parquet extract of them
            shared = SharedRelations(work / "shared") if len(jobs) > 1 else None
            for one, where, final in jobs:
                _check_task(src, one)
                options = {"memory_limit": memory_limit, "threads": threads, "seed": seed, "protocol": protocol}
                options["shared"] = shared
                _build_one(
                    src,
                    one,
                    raw,
                    roots,
                    where,
                    final,
                    work,
                    dataset_version=dataset_version,
                    imported=imported,
                    **options,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _check_task(src: Source, spec: TaskSpec) -> None:
    if src.name not in spec.sources:
        raise MedmodalError(
            f"task '{spec.name}' is not defined for source '{src.name}' "
            f"(its tasks: {', '.join(tasks_for(src.name)) or 'none'})"
        )
    unknown = [m for m in spec.modalities if m not in {x.name for x in src.modalities}]
    if unknown:
        raise MedmodalError(f"task '{spec.name}' names modality '{unknown[0]}' that source '{src.name}' lacks")


def _build_one(
    src: Source,
    spec: TaskSpec,
    raw: Path,
    roots: dict[str, Path],
    tmp: Path,
    final: Path,
    work: Path,
    *,
    memory_limit: str | None,
    threads: int | None,
    seed: int,
    dataset_version: str | None,
    imported: Any = None,
    shared: SharedRelations | None = None,
    protocol: SplitProtocol | None = None,
) -> None:
    """One task's cohort into ``tmp`` (a folder inside the caller's atomic output); ``final`` names it in messages."""
    located = locate(src.files, roots)
    absent = _absent_files(src, spec, located)
    if absent:
        console.print(
            "[yellow]absent optional files[/yellow]: " + "; ".join(f"{a['file']} ({a['effect']})" for a in absent)
        )
    started = dt.datetime.now(dt.timezone.utc)
    tmp.mkdir(exist_ok=True)
    db_dir = work / spec.name  # DuckDB's database and spill files: GBs on full data, gone once the task is built
    con = connect(db_dir, memory_limit=memory_limit, threads=threads)
    try:
        manifest = _build(
            con,
            src,
            spec,
            raw,
            roots,
            located,
            tmp,
            seed=seed,
            dataset_version=dataset_version,
            imported=imported,
            out=final,
            shared=shared,
            protocol=protocol,
        )
    except duckdb.Error as err:  # backstop: a query that reads raw files outside the wrapped paths
        raise translate_error(err, located, sql_file=f"{src.name}/{spec.name} build", con=con) from None
    finally:
        con.close()
        shutil.rmtree(db_dir, ignore_errors=True)
    manifest["created_at"] = started.isoformat(timespec="seconds")
    manifest["build_seconds"] = round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 2)
    write_cohort_manifest(tmp, manifest)
    write_marker(tmp, "cohort")
    n = manifest["row_counts"]["cohort"]
    console.print(f"[green]cohort[/green] {src.name}/{spec.name}: {n} samples -> {final}")


def _absent_files(src: Source, spec: TaskSpec, located: list[Located]) -> list[dict[str, str]]:
    """Each absent optional file and what its absence does to the task's modalities (printed and in the manifest)."""
    missing = {it.spec.view for it in located if it.path is None}
    out = []
    for it in located:
        if it.path is not None:
            continue
        hit = [m for m in src.modalities if m.name in spec.modalities and it.spec.view in m.needs]
        lost = [m.name for m in hit if set(m.needs) <= missing]
        partial = [m.name for m in hit if m.name not in lost]
        effect = (
            "; ".join(
                ([f"{', '.join(lost)} marked missing"] if lost else [])
                + ([f"{', '.join(partial)} built from the other files only"] if partial else [])
            )
            or "not used by this task"
        )
        out.append({"file": f"{it.spec.module}/{it.spec.stem}.csv(.gz)", "view": it.spec.view, "effect": effect})
    return out


def _params(src: Source, spec: TaskSpec, roots: dict[str, Path], version: str) -> dict[str, Any]:
    params: dict[str, Any] = {"dataset_version": version}
    for m in src.modalities:
        params[f"allow_{m.name}"] = m.name in spec.modalities
        params[f"{m.name}_grace_hours"] = spec.grace_hours(m.name)
    params.update(src.extra_params(roots, version))
    params.update(spec.params)
    return params


def _build(
    con: duckdb.DuckDBPyConnection,
    src: Source,
    spec: TaskSpec,
    raw: Path,
    roots: dict[str, Path],
    located: list[Located],
    tmp: Path,
    *,
    seed: int,
    dataset_version: str | None,
    imported: Any = None,
    out: Path | None = None,
    shared: SharedRelations | None = None,
    protocol: SplitProtocol | None = None,
) -> dict[str, Any]:
    con.execute("SET enable_progress_bar = false")
    register_views(con, located)
    if imported is not None:
        imported.register(con)  # the `meds_labels` relation the label-linking SQL reads
    try:
        # the same raw files for every task of a build: once they passed clean, later tasks skip the full scans
        clean = shared is not None and shared.files_clean
        flagged = [] if clean else check_files(con, located)
        if shared is not None and not flagged:
            shared.files_clean = True
        src.check_values(con, located)
        version, evidence = (dataset_version, "given by the user") if dataset_version else src.detect_version(con, raw)
    except duckdb.Error as err:  # a source's own queries: still one line naming the raw file
        raise translate_error(err, located, sql_file=f"{src.name} value checks", con=con) from None
    params = _params(src, spec, roots, version)
    # The cheap half of `cohort validate` (headers, the variable map against the release's dictionaries), before
    # any heavy SQL; an item the dictionaries reject feeds nothing (docs/cohort.md, "Before you build").
    preflight = run_preflight(con, src, located, roots, raw, version, params)
    params["variable_map_excluded"] = preflight.excluded_keys
    for line in preflight.warnings():
        console.print(f"[yellow]check[/yellow]: {line}", soft_wrap=True)
    before = [*COMMON_SQL, *(src.sql_dir / f"{s}.sql" for s in (*src.before_task_sql, *src.shared_sql))]
    sql_files = [*before, spec.sql_file(src.name)]
    post_files = [src.sql_dir / f"{s}.sql" for s in src.after_task_sql]
    for p in sql_files + post_files:
        if not p.is_file():
            raise MedmodalError("SQL file missing", path=p)

    steps = len(sql_files) + 1 + len(post_files) + 2
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        bar = progress.add_task(f"{src.name}/{spec.name}", total=steps)

        def step(label: str) -> None:
            progress.update(bar, description=f"{src.name}/{spec.name}: {label}")

        rendered = []  # what a shared relation's reuse is keyed on (cohort.runner.SharedRelations)
        for p in sql_files:
            step(p.stem)
            if shared is not None and p.stem in src.shared_sql:
                shared.run(con, p, params, located, "\0".join(rendered))
            else:
                run_sql_file(con, p, params, located)
                rendered.append(render_sql(p.read_text(), params, path=p))
            progress.advance(bar)
        if imported is not None:
            imported.check(con)  # unknown subjects, prediction times outside the record: errors, not exclusions
        step("cohort, splits, attrition")
        attrition, data_quality = _make_cohort(con, src, spec, located, seed, flagged, imported, protocol)
        progress.advance(bar)
        modalities = [m.name for m in src.modalities if m.name in spec.modalities]
        labels = [lab.name for lab in spec.labels]
        # what the post-task SQL reads besides `cohort`: the relations before the task SQL, and its own text
        texts = [render_sql(p.read_text(), params, path=p) for p in (*before, *post_files)]
        post_key = "\0".join([*modalities, *texts])
        earlier = shared.find_outputs(con, labels, post_key) if shared is not None else None
        if earlier is None:
            for p in post_files:
                step(p.stem)
                run_sql_file(con, p, params, located)
                progress.advance(bar)
        step("writing parquet")
        if earlier is None:
            feature_groups = _write_outputs(con, spec, src, modalities, attrition, located, tmp)
        else:
            _write_cohort(con, spec, attrition, located, tmp)
            feature_groups = shared.copy_outputs(earlier, tmp)
        if shared is not None and earlier is None:
            shared.remember_outputs(con, labels, post_key, tmp, feature_groups)
        progress.advance(bar)
        step("audits")
        manifest = _manifest(
            con,
            src,
            spec,
            raw,
            located,
            tmp,
            version,
            evidence,
            params,
            modalities,
            feature_groups,
            seed,
            sql_files + post_files,
        )
        root = src.image_root(roots)
        manifest["image_root"] = None if root is None else str(root)
        manifest["data_quality"] = data_quality
        manifest["split_protocol"] = (protocol or split_protocol("subject")).manifest()
        manifest["preflight"] = preflight.manifest()
        if imported is not None:
            manifest["imported_labels"] = imported.provenance()
        # identity once every field that shapes the rows is in (imported labels too): medmodal.contracts
        manifest["cohort_identity"] = cohort_identity(manifest, cohort_sample_ids(tmp))
        manifest["cohort_id"] = compute_cohort_id(manifest["cohort_identity"])
        warnings: list[str] = []
        manifest["audits_passed"] = run_audits(tmp, manifest, shown_as=out, warnings=warnings)  # errors: final out
        manifest["audit_warnings"] = warnings
        progress.advance(bar)
    return manifest


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[str]:
    return [r[0] for r in con.execute(f"DESCRIBE {relation}").fetchall()]


def _make_cohort(
    con,
    src: Source,
    spec: TaskSpec,
    located: list[Located],
    seed: int,
    flagged: Sequence[Flagged] = (),
    imported: Any = None,
    protocol: SplitProtocol | None = None,
) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """Attrition over the data-quality and inclusion steps, then ``cohort`` = candidates passing all steps, with
    their split. Returns the attrition table and what each data-quality exclusion did (for the manifest)."""
    cols = _columns(con, "candidates")
    needed = ["sample_id", "subject_id", "index_time", "prediction_time", "window_start_time"]
    needed += [lab.column for lab in spec.labels] + list(src.subgroups) + [f"incl_{s.step}" for s in spec.inclusion]
    missing = [c for c in needed if c not in cols]
    if missing:
        raise MedmodalError(f"task SQL does not produce column '{missing[0]}'", path=spec.sql_file(src.name))

    rows = []
    n_pop = con.execute(f"SELECT count(DISTINCT subject_id) FROM {src.population_view}").fetchone()[0]
    rows.append(("population", f"subjects in {src.population_view}", n_pop, n_pop))
    conds: list[str] = []
    n_s, n_x = con.execute("SELECT count(DISTINCT subject_id), count(*) FROM candidates").fetchone()
    rows.append(("index_event", spec.index_event, n_s, n_x))
    data_quality = apply_exclusions(con, flagged, cols, conds, rows)
    for s in spec.inclusion:
        conds.append(f'coalesce("incl_{s.step}", false)')
        n_s, n_x = con.execute(
            f"SELECT count(DISTINCT subject_id), count(*) FROM candidates WHERE {' AND '.join(conds)}"
        ).fetchone()
        rows.append((s.step, s.description, n_s, n_x))
    if (untimed := exclude_untimed(con, cols, conds, rows)) is not None:
        data_quality.append(untimed)
    _refuse_empty(rows, src, located)
    attrition = pl.DataFrame(rows, schema=ATTRITION.polars_schema(), orient="row")
    where = " AND ".join(conds) or "TRUE"
    subjects = [
        r[0]
        for r in con.execute(f"SELECT DISTINCT CAST(subject_id AS VARCHAR) FROM candidates WHERE {where}").fetchall()
    ]
    by_sample = protocol is not None and not protocol.subject_level
    if by_sample:  # a paper's sample-level protocol, asked for by name (the audits then warn)
        samples = [r[0] for r in con.execute(f"SELECT sample_id FROM candidates WHERE {where}").fetchall()]
        splits = assign_sample_splits(samples, seed)
    else:
        splits = assign_splits(subjects, seed) if imported is None else imported.split_assignment(subjects, seed)
    con.register("split_assignment", splits.to_arrow())
    on = "c.sample_id = s.sample_key" if by_sample else "CAST(c.subject_id AS VARCHAR) = s.subject_key"
    rename = {lab.column: lab.name for lab in spec.labels}
    projection = []
    for c in cols:
        if c.startswith("incl_"):
            continue
        if c in rename:
            projection.append(f'CAST(c."{c}" AS TINYINT) AS "{rename[c]}"')
        else:
            projection.append(f'c."{c}"')
    run_sql(
        con,
        f"""
        CREATE OR REPLACE TABLE cohort AS
        SELECT {", ".join(projection)}, s.split
        FROM candidates AS c
        JOIN split_assignment AS s ON {on}
        WHERE {where}
        ORDER BY c.sample_id
    """,
        located,
        what="cohort",
    )
    con.unregister("split_assignment")
    dup = con.execute("SELECT sample_id FROM cohort GROUP BY 1 HAVING count(*) > 1 LIMIT 1").fetchone()
    if dup:
        raise MedmodalError(f"task SQL yields sample_id '{dup[0]}' twice", path=spec.sql_file(src.name))
    # the raw rules catch the usual causes first; this is the backstop for whatever the task SQL derives
    for col in ("subject_id", *(lab.name for lab in spec.labels)):
        n, example = con.execute(f'SELECT count(*), min(sample_id) FROM cohort WHERE "{col}" IS NULL').fetchone()
        if n:
            raise MedmodalError(
                f"{n} included samples have no {col} (e.g. sample_id {example}); a raw row it is derived from is "
                "missing or empty",
                path=spec.sql_file(src.name),
                field=col,
            )
    return attrition, data_quality


def _refuse_empty(rows: list[tuple[str, str, int, int]], src: Source, located: list[Located]) -> None:
    """A task that ends with no sample is an error naming the step that emptied it (featurize and train would
    otherwise fail later, far from the cause)."""
    if rows[-1][3]:
        return
    step = next(r for r in rows if r[3] == 0)
    if step[0] == "population":
        # the population view is a raw file (patients) or derived from the source's first, main file
        main = next((it for it in located if it.spec.view == src.population_view), located[0])
        where = main.path or src.population_view
        raise MedmodalError("no subjects at all (the file has a header but no rows?)", path=where)
    kept = rows[rows.index(step) - 1]
    raise MedmodalError(
        f"no samples left after attrition step '{step[0]}' ({step[1]}); '{kept[0]}' before it had {kept[3]} samples"
    )


def _copy(con, located: list[Located], select: str, path: Path) -> None:
    target = "'" + str(path).replace("'", "''") + "'"
    run_sql(con, f"COPY ({select}) TO {target} (FORMAT parquet, COMPRESSION zstd)", located, what=path.name)


def _write_cohort(con, spec: TaskSpec, attrition: pl.DataFrame, located: list[Located], tmp: Path) -> None:
    label_names = [lab.name for lab in spec.labels]
    public = [c for c in _columns(con, "cohort") if not c.startswith("_")]
    quoted = ", ".join(f'"{c}"' for c in cohort_column_order(public, label_names))
    _copy(con, located, f"SELECT {quoted} FROM cohort ORDER BY sample_id", tmp / COHORT.file)
    attrition.write_parquet(tmp / ATTRITION.file)


def _write_outputs(
    con, spec: TaskSpec, src: Source, modalities: list[str], attrition: pl.DataFrame, located: list[Located], tmp: Path
) -> dict[str, list[str]]:
    """Every Parquet file of the cohort directory, each from its contract (``medmodal.contracts.schema``)."""
    _write_cohort(con, spec, attrition, located, tmp)
    _copy(con, located, modalities_sql(modalities), tmp / "modalities.parquet")

    groups: dict[str, list[str]] = {}
    task_kinds = {src.modality(m).kind for m in modalities}
    relations = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    for kind in MODALITY_KINDS.values():
        if kind.wide:
            groups = _write_structured(con, located, modalities, tmp / kind.table.file)
            continue
        # Rows belong to the task's modalities of this kind, whatever their names (MIMIC-IV: timeseries); a source
        # whose SQL leaves no relation for the kind (eICU and ADNI have no notes or images) gets the empty table.
        relation = kind.source_relation if kind.source_relation in relations else None
        where = "TRUE" if kind.name in task_kinds else "FALSE"
        order = _row_order(con, relation) if relation is not None else []
        _copy(con, located, kind.table.select_sql(relation, where, order), tmp / kind.table.file)
    return groups


ROW_ORDER_PREFIX = "_row_order_"


def _row_order(con, relation: str) -> list[str]:
    """``relation``'s columns ``_row_order_1``, ``_row_order_2``, ...: keys (integers, say) whose order its SQL
    guarantees to be the contract's row order, sorted by instead of the contract's (string) columns."""
    keys = [c for c in _columns(con, relation) if c.startswith(ROW_ORDER_PREFIX)]
    return sorted(keys, key=lambda c: int(c[len(ROW_ORDER_PREFIX) :]))


def _write_structured(con, located: list[Located], modalities: list[str], path: Path) -> dict[str, list[str]]:
    """structured.parquet: the ``structured_features`` long form pivoted to the columns ``structured_feature_list``
    fixes, in its order; returns the feature groups (modality -> columns) for the manifest."""
    features = con.execute(
        "SELECT feature, modality FROM structured_feature_list ORDER BY position, feature"
    ).fetchall()
    groups: dict[str, list[str]] = {}
    for feat, mod in features:
        groups.setdefault(mod, []).append(feat)
    groups = {m: f for m, f in groups.items() if m in modalities}
    wanted = [feat for feat, mod in features if mod in groups]
    if wanted:
        # PIVOT with an explicit IN list: one grouped pass (~30x faster than one FILTER aggregate per column, which
        # took seconds for eICU's ~200 features on the demo); columns come out exactly as listed, NULL if unseen.
        names = ", ".join("'" + f.replace("'", "''") + "'" for f in wanted)
        table = structured_table(wanted)
        casts = ", ".join(f'CAST(p."{c.name}" AS {c.type}) AS "{c.name}"' for c in table.columns[1:])
        select = f"""
            WITH p AS (
                PIVOT (SELECT c.sample_id, f.feature, f.value
                       FROM cohort AS c LEFT JOIN structured_features AS f USING (sample_id))
                ON feature IN ({names}) USING max(value) GROUP BY sample_id
            )
            SELECT p.sample_id, {casts} FROM p ORDER BY p.sample_id"""
    else:
        select = "SELECT sample_id FROM cohort ORDER BY sample_id"
    _copy(con, located, select, path)
    return groups


def _sha256_text(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(
    con,
    src: Source,
    spec: TaskSpec,
    raw: Path,
    located: list[Located],
    tmp: Path,
    version: str,
    evidence: str,
    params: dict[str, Any],
    modalities: list[str],
    feature_groups: dict[str, list[str]],
    seed: int,
    sql_files: Sequence[Path],
) -> dict[str, Any]:
    row_counts = {
        name: pl.scan_parquet(tmp / f"{name}.parquet").select(pl.len()).collect().item() for name in cohort_files()
    }
    label_counts = {
        lab.name: {
            str(k): int(v)
            for k, v in con.execute(
                f'SELECT CAST("{lab.name}" AS VARCHAR), count(*) FROM cohort GROUP BY 1 ORDER BY 1'
            ).fetchall()
        }
        for lab in spec.labels
    }
    images = pl.read_parquet(tmp / IMAGES.file, columns=["path"])["path"].to_list()
    missing_images = sum(1 for p in images if not os.path.exists(p))
    if missing_images:
        console.print(
            f"[yellow]{missing_images} of {len(images)} images have no file on disk[/yellow] "
            "(kept; the image featurizer will mark them unreadable)"
        )
    unavailable = [
        m.name
        for m in src.modalities
        if m.name in modalities and m.needs and all(it.path is None for it in located if it.spec.view in m.needs)
    ]
    return {
        "source": src.name,
        "task": spec.name,
        "dataset_version": version,
        "dataset_version_evidence": evidence,
        "task_definition": {
            "description": spec.description,
            "index_event": spec.index_event,
            "prediction_time": spec.prediction_time,
            "observation_window": spec.observation_window,
            "inclusion": [{"step": s.step, "description": s.description} for s in spec.inclusion],
            "params": dict(spec.params),
        },
        "prediction_time_rule": spec.prediction_time,
        "modalities": modalities,
        "modality_kinds": {m: src.modality(m).kind for m in modalities},
        "time_rules": {
            m: {"rule": spec.modalities[m].rule, "grace_hours": spec.modalities[m].grace_hours} for m in modalities
        },
        "unavailable_modalities": unavailable,
        "absent_files": _absent_files(src, spec, located),
        "feature_groups": feature_groups,
        "labels": [
            {"name": lab.name, "kind": lab.kind, "classes": list(lab.classes), "definition": lab.definition}
            for lab in spec.labels
        ],
        "label_counts": label_counts,
        "subgroups": list(src.subgroups),
        "split_seed": seed,
        "split_fractions": FRACTIONS,
        "row_counts": row_counts,
        "images_missing_file": missing_images,
        "raw_root": str(raw.resolve()),
        "raw_files": {it.spec.view: (file_fingerprint(it.path) if it.path is not None else None) for it in located},
        "sql_hashes": {
            str(p.resolve().relative_to(REPO_ROOT)) if p.resolve().is_relative_to(REPO_ROOT) else str(p): _sha256_text(
                p
            )
            for p in sql_files
        },
        "sql_params": dict(params.items()),
        "medmodal_version": medmodal.__version__,
        "duckdb_version": duckdb.__version__,
    }
