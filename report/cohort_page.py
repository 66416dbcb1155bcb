"""The cohort page: who is in the cohort, which modalities they have, and whether missingness predicts the label.

It reads the cohort directory's contract files (docs/contracts.md §1) — cohort.parquet (ids, labels, split),
modalities.parquet (has_* and pattern), attrition.parquet and manifest.json — and never notes.parquet or
images.parquet, so no note text can reach the page.

The MMNAR view is the missingness-pattern chart: if the label rate differs between patterns beyond what the
Wilson intervals allow, *which* modalities exist carries outcome information — a model can learn from it, and a
debiasing framework has something to correct. Pearson's chi-square test of label × pattern puts one number on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from medmodal.common import MedmodalError
from medmodal.contracts import SPLITS, pattern_modalities
from medmodal.report import figures
from medmodal.report.curves import independence_test, wilson, wilson_series
from medmodal.report.html import Details, Facts, Heading, Image, Page, Section, Table, Text, interval, num

MAX_PATTERNS_DRAWN = 24  # an UpSet chart wider than this is unreadable; the table lists every pattern


def _read(d: Path, name: str, columns: list[str] | None = None) -> pl.DataFrame | None:
    path = d / f"{name}.parquet"
    if not path.is_file():
        return None
    try:
        return pl.read_parquet(path, columns=columns)
    except Exception as err:  # a truncated file or a renamed column: name the file, not a traceback
        raise MedmodalError(f"unreadable for the report ({type(err).__name__}: {err})", path=path) from None


def _label_targets(man: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(display name, label column, class value): one per binary label, one per class of a multiclass label."""
    out = []
    for lab in man.get("labels", []):
        if lab.get("kind") == "multiclass":
            for i, cls in enumerate(lab.get("classes") or []):
                out.append((f"{lab['name']} = {cls}", lab["name"], i))
        else:
            out.append((lab["name"], lab["name"], 1))
    return out


def cohort_page(cohort_dir: str | Path) -> Page:
    d = Path(cohort_dir)
    man = json.loads((d / "manifest.json").read_text())
    labels = [lab["name"] for lab in man.get("labels", [])]
    modalities: list[str] = list(man.get("modalities", []))
    cohort = _read(d, "cohort", ["sample_id", "subject_id", "split", *labels])
    mods = _read(d, "modalities", ["sample_id", "pattern", *(f"has_{m}" for m in modalities)])
    if cohort is None or mods is None:
        raise MedmodalError("cohort.parquet or modalities.parquet missing (not a complete cohort directory)", path=d)
    df = cohort.join(mods, on="sample_id", how="left")
    targets = _label_targets(man)
    title = f"Cohort {man.get('source', '?')} / {man.get('task', '?')}"
    subtitle = [
        f"cohort_id {man.get('cohort_id', '?')} · dataset release {man.get('dataset_version', '?')} · "
        f"{df.height:,} samples of {df['subject_id'].n_unique():,} subjects",
        f"prediction time: {man.get('prediction_time_rule', '?')}",
    ]
    sections = [
        _summary(man, df),
        _attrition(d),
        _availability(man, df, modalities),
        _patterns(man, df, modalities, targets),
        _prevalence(df, targets),
        _rules_and_audits(man),
        _provenance(man),
    ]
    return Page("cohort", title, subtitle, str(d), sections)


def _summary(man: dict, df: pl.DataFrame) -> Section:
    s = Section("Summary", "summary")
    split_counts = {r["split"]: r["len"] for r in df.group_by("split").len().iter_rows(named=True)}
    task = man.get("task_definition") or {}
    facts = [
        ("source / task", f"{man.get('source', '?')} / {man.get('task', '?')}"),
        (
            "dataset release",
            f"{man.get('dataset_version', '?')} ({man.get('dataset_version_evidence', 'no evidence')})",
        ),
        ("samples per split", ", ".join(f"{k} {split_counts.get(k, 0):,}" for k in SPLITS)),
        ("index event", task.get("index_event", "?")),
        ("observation window", task.get("observation_window", "?")),
        ("prediction time", man.get("prediction_time_rule", "?")),
    ]
    for lab in man.get("labels", []):
        kind = lab.get("kind", "binary")
        classes = f" (classes {', '.join(map(str, lab.get('classes') or []))})" if kind == "multiclass" else ""
        facts.append((f"label {lab['name']}", f"{kind}{classes}: {lab.get('definition', '')}"))
    if task.get("description"):
        s.add(Text(task["description"]))
    s.add(Facts(facts))
    if man.get("unavailable_modalities"):
        s.add(
            Text(
                "Unavailable in this build (raw files absent, so every sample counts as missing them): "
                + ", ".join(man["unavailable_modalities"])
                + ".",
                note=True,
            )
        )
    return s


def _attrition(d: Path) -> Section:
    s = Section("Attrition", "attrition")
    att = _read(d, "attrition")
    if att is None:
        return s.add(Text("attrition.parquet is absent from this cohort directory.", note=True))
    steps, subj, samp = att["step"].to_list(), att["n_subjects"].to_list(), att["n_samples"].to_list()
    s.add(
        Image(
            figures.attrition_funnel(steps, subj, samp),
            "Attrition funnel: subjects and samples left after each inclusion step",
            "Subjects and samples left after each step, applied top to bottom; the share is of the step above.",
        )
    )
    rows = []
    for i, r in enumerate(att.iter_rows(named=True)):
        prev = samp[i - 1] if i else None
        kept = "" if not prev else f"{r['n_samples'] / prev:.1%}"
        rows.append([r["step"], r["description"], f"{r['n_subjects']:,}", f"{r['n_samples']:,}", kept])
    s.add(Table(["step", "description", "subjects", "samples", "samples kept"], rows, numeric=(2, 3, 4)))
    return s


def _availability(man: dict, df: pl.DataFrame, modalities: list[str]) -> Section:
    s = Section("Modality availability", "availability")
    if not modalities:
        return s.add(Text("The manifest lists no modalities.", note=True))
    kinds = man.get("modality_kinds", {})
    splits = [sp for sp in SPLITS if (df["split"] == sp).any()]
    share = np.zeros((len(modalities), len(splits)))
    rows = []
    for i, m in enumerate(modalities):
        row = [m, kinds.get(m, "?")]
        for j, sp in enumerate(splits):
            sub = df.filter(pl.col("split") == sp)[f"has_{m}"]
            k = int(sub.sum() or 0)
            share[i, j] = k / max(sub.len(), 1)
            row.append(f"{k:,} ({share[i, j]:.1%})")
        k_all = int(df[f"has_{m}"].sum() or 0)
        row.append(f"{k_all:,} ({k_all / max(df.height, 1):.1%})")
        rows.append(row)
    s.add(
        Image(
            figures.availability_by_split(modalities, splits, share),
            "Share of samples with each modality per split",
            "A modality counts as observed when the sample has it under the task's time rule (has_<modality>).",
        ),
        Table(["modality", "kind", *splits, "all"], rows, numeric=tuple(range(2, 3 + len(splits)))),
    )
    return s


def _patterns(man: dict, df: pl.DataFrame, modalities: list[str], targets: list) -> Section:
    s = Section("Missingness patterns and the label", "patterns")
    g = df.group_by("pattern").len().sort(["len", "pattern"], descending=[True, False])
    codes, counts = g["pattern"].to_list(), g["len"].to_list()
    present = np.array([[bool(c >> i & 1) for i in range(len(modalities))] for c in codes], dtype=bool)
    present = present.reshape(len(codes), len(modalities))
    names = ["+".join(pattern_modalities(c, modalities)) or "(none)" for c in codes]
    per_target = []  # (name, k per pattern, n labelled per pattern, overall)
    for name, col, value in targets:
        lab = df.filter(pl.col(col).is_not_null())
        agg = lab.group_by("pattern").agg(pl.len().alias("n"), (pl.col(col) == value).sum().alias("k"))
        by = {r["pattern"]: (r["k"], r["n"]) for r in agg.iter_rows(named=True)}
        k = np.array([by.get(c, (0, 0))[0] for c in codes])
        n = np.array([by.get(c, (0, 0))[1] for c in codes])
        overall = float((lab[col] == value).mean()) if lab.height else None
        per_target.append((name, k, n, overall))
    drawn = min(len(codes), MAX_PATTERNS_DRAWN)
    rates = [(name, wilson_series(name, k[:drawn], n[:drawn]), overall) for name, k, n, overall in per_target[:3]]
    s.add(
        Text(
            "Each column is one pattern of observed modalities (dots below), sorted by sample count. The middle "
            "panels give the label rate among that pattern's labelled samples with its 95% Wilson interval; the "
            "dashed line is the rate over all samples. Rates that differ beyond their intervals mean that "
            "missingness carries outcome information."
        ),
        Image(
            figures.upset(modalities, present[:drawn], counts[:drawn], rates),
            "UpSet chart of missingness patterns with the label rate per pattern",
            f"Patterns 1–{drawn} of {len(codes)}"
            + (f"; the {len(codes) - drawn} rarest are only in the table." if drawn < len(codes) else "."),
        ),
    )
    rows = []
    for i, (code, name, n) in enumerate(zip(codes, names, counts)):
        row = [str(i + 1), str(code), name, f"{n:,}", f"{n / max(df.height, 1):.1%}"]
        for _, k, nl, _ in per_target:
            r, lo, hi = wilson(int(k[i]), int(nl[i]))
            row.append(f"{interval(r, lo, hi, percent=True)} ({int(k[i])}/{int(nl[i])})")
        rows.append(row)
    columns = ["#", "code", "modalities", "samples", "share", *(f"{t[0]} rate [95% CI] (k/n)" for t in per_target)]
    bits = ", ".join(f"bit {i} = {m}" for i, m in enumerate(modalities))
    s.add(
        Table(
            columns, rows, caption=f"pattern code = Σ 2^bit over the observed modalities ({bits})", numeric=(0, 1, 3, 4)
        )
    )
    tests = []
    for lab in man.get("labels", []):
        res = independence_test(_class_table(df, lab["name"], codes))
        if res is None:
            tests.append([lab["name"], "n/a (one pattern or one class only)", "", ""])
        else:
            tests.append([lab["name"], num(res[0], 2), str(res[2]), f"{res[1]:.3g}"])
    s.add(
        Table(
            ["label", "chi-square", "dof", "p-value"],
            tests,
            caption="Pearson's chi-square test that the label is independent of the pattern (approximate when "
            "patterns are small)",
            numeric=(1, 2, 3),
        )
    )
    return s


def _class_table(df: pl.DataFrame, col: str, codes: list[int]) -> np.ndarray:
    lab = df.filter(pl.col(col).is_not_null())
    classes = sorted(lab[col].unique().to_list())
    t = np.zeros((len(codes), len(classes)))
    for r in lab.group_by(["pattern", col]).len().iter_rows(named=True):
        t[codes.index(r["pattern"]), classes.index(r[col])] = r["len"]
    return t


def _prevalence(df: pl.DataFrame, targets: list) -> Section:
    s = Section("Label prevalence per split", "prevalence")
    splits = [sp for sp in SPLITS if (df["split"] == sp).any()]
    series, rows = [], []
    for sp in [*splits, "all"]:
        sub = df if sp == "all" else df.filter(pl.col("split") == sp)
        vals, los, his = [], [], []
        for name, col, value in targets:
            lab = sub[col].drop_nulls()
            k = int((lab == value).sum())
            r, lo, hi = wilson(k, lab.len())
            vals.append(r), los.append(lo), his.append(hi)
            rows.append([name, sp, f"{lab.len():,}", f"{k:,}", interval(r, lo, hi, percent=True)])
        if sp != "all":
            series.append(figures.Series(sp, vals, los, his))
    if not targets:
        return s.add(Text("The manifest lists no labels.", note=True))
    s.add(
        Image(
            figures.prevalence_by_split([t[0] for t in targets], splits, series),
            "Label prevalence per split with 95% Wilson intervals",
            "Among samples whose label is defined; splits are by subject, so prevalences differ only by chance.",
        ),
        Table(["label", "split", "labelled", "positive", "prevalence [95% CI]"], rows, numeric=(2, 3, 4)),
    )
    return s


def _rules_and_audits(man: dict) -> Section:
    s = Section("Time rules and audits", "rules")
    s.add(
        Text(
            f"Prediction time: {man.get('prediction_time_rule', '?')}. Nothing observed after it (plus the "
            "modality's grace, if any) may enter a sample's features or modality masks."
        )
    )
    rules = man.get("time_rules") or {}
    s.add(
        Table(
            ["modality", "time rule", "grace (hours)"],
            [[m, " ".join(str(r.get("rule", "")).split()), num(r.get("grace_hours"), 1)] for m, r in rules.items()],
            numeric=(2,),
        )
    )
    audits = man.get("audits_passed")
    s.add(Heading("Audits run on the written files"))
    if audits is None:
        s.add(Text("This manifest records no audits.", note=True))
    else:
        s.add(
            Text(
                f"{len(audits)} audits ran when the cohort was built and all passed (a failing audit stops the "
                "build, so a cohort directory exists only when every audit passed)."
            ),
            Table(["audit", "result"], [[a, "passed"] for a in audits]),
        )
    absent = man.get("absent_files") or []
    if absent:
        s.add(
            Table(
                ["absent raw file", "effect"],
                [[a.get("file", "?"), a.get("effect", "")] for a in absent],
                caption="optional raw files not found at build time",
            )
        )
    if man.get("images_missing_file"):
        s.add(Text(f"{man['images_missing_file']} image rows point to a file that was not found.", note=True))
    return s


def _provenance(man: dict) -> Section:
    s = Section("Provenance", "provenance")
    fractions = man.get("split_fractions") or {}
    s.add(
        Facts(
            [
                ("cohort_id", man.get("cohort_id", "?")),
                ("raw root", man.get("raw_root", "?")),
                ("dataset release", man.get("dataset_version", "?")),
                ("split seed", man.get("split_seed", "?")),
                ("split fractions", ", ".join(f"{k} {v:g}" for k, v in fractions.items()) or "?"),
                ("medmodal version", man.get("medmodal_version", "?")),
                ("duckdb version", man.get("duckdb_version", "?")),
                ("built at", man.get("created_at", "?")),
                ("build time (s)", man.get("build_seconds", "?")),
            ]
        )
    )
    raw = man.get("raw_files") or {}
    s.add(
        Heading("Raw files"),
        Table(
            ["file", "path", "bytes", "hash", "hash kind"],
            [
                [k, v.get("path", ""), f"{v.get('bytes', 0):,}", v.get("hash", ""), v.get("hash_kind", "")]
                if isinstance(v, dict)
                else [k, "(absent)", "", "", ""]
                for k, v in sorted(raw.items())
            ],
            numeric=(2,),
            code=(1, 3),
        ),
    )
    sql = man.get("sql_hashes") or {}
    params = (man.get("task_definition") or {}).get("params") or {}
    s.add(
        Heading("Parameters"),
        Table(["task parameter", "value"], [[k, json.dumps(v)] for k, v in sorted(params.items())]),
        Details(
            f"SQL files ({len(sql)}) and their sha256",
            [Table(["SQL file", "sha256"], [[k, v] for k, v in sorted(sql.items())], code=(0, 1))],
        ),
        Details(
            "all SQL parameters",
            [
                Table(
                    ["parameter", "value"],
                    [[k, json.dumps(v)] for k, v in sorted((man.get("sql_params") or {}).items())],
                    code=(1,),
                )
            ],
        ),
        Details(
            "row counts",
            [
                Table(
                    ["file", "rows"],
                    [[k, f"{v:,}"] for k, v in sorted((man.get("row_counts") or {}).items())],
                    numeric=(1,),
                )
            ],
        ),
    )
    return s
