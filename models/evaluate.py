"""Predict with a trained run and score it: per split, per missingness pattern, per subgroup, with intervals.

``evaluate(run_dir)`` reloads a run (config.json + safetensors; no retraining) and scores it on its own cohort or,
with ``cohort_dir`` / ``store``, on another one — a shifted environment or another site. The other cohort is
normalised with the *training* statistics, its modalities are aligned by name (a modality it lacks is treated as
missing for everyone) and its labels must have the same kinds.

metrics.json layout::

    {"tasks": {task: {split: {"overall": M, "by_pattern": {name: M}, "by_subgroup": {col: {value: M}}}}},
     "bootstrap": {...}, "cohort": {...}}
    M = {"n", "n_pos" | "class_counts", "auroc": {"value", "ci_low", "ci_high", "n_boot"}, "auprc", "brier", "ece"}
    (value / ci_* are null where undefined — one class only — or, for ci_*, not bootstrapped)

Only the test split (and ``all`` for an external cohort) gets intervals and pattern / subgroup breakdowns;
train and val get point estimates (they are for diagnosing over-fitting, not for reporting).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from medmodal.common import MedmodalError, check_number, console, write_json
from medmodal.contracts import SPLITS, CohortDir, check_feature_fingerprints, cohort_store_dir
from medmodal.devices import autocast, resolve_device
from medmodal.models.base import DataSpec, Framework
from medmodal.models.checkpoint import load_run_model
from medmodal.models.data import CohortData, feature_fingerprints, load_cohort
from medmodal.models.frameworks.label_losses import label_columns, output_probs
from medmodal.models.metrics import grouped_metrics, metrics_with_ci
from medmodal.outputs import atomic_dir, check_output

REPORT_SPLITS = ("test",)


@torch.no_grad()
def predict_logits(
    model: Framework,
    data: CohortData,
    rows: torch.Tensor,
    *,
    batch_size: int = 1024,
    device=None,
    amp: bool = True,
    raw: bool = False,
) -> torch.Tensor:
    """Logits (len(rows), C) in fixed batch order; ``raw`` = forward's logits before any post-hoc correction."""
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    out = []
    for batch in data.iter_batches(rows, batch_size, device):
        with autocast(torch.device(device), "auto" if amp else "fp32"):
            z = model(batch)["logits"] if raw else model.predict(batch)
        out.append(z.float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, data.spec.n_outputs)


def predict_all(model: Framework, data: CohortData, **kw) -> torch.Tensor:
    """Logits for every row, each split predicted on its own so no split's batches contain another's samples."""
    logits = torch.zeros(data.n, data.spec.n_outputs)
    for split in np.unique(data.split):
        rows = data.rows(str(split))
        logits[rows.cpu()] = predict_logits(model, data, rows, **kw)
    return logits


def prediction_frame(data: CohortData, logits: torch.Tensor) -> pl.DataFrame:
    """predictions.parquet: sample_id, split, pattern, <task>_label, <task>_prob (list of class probs if multiclass)."""
    probs = output_probs(logits, data.spec.labels).numpy().astype(np.float64)
    labels, lmask = data.labels.cpu().numpy(), data.label_mask.cpu().numpy()
    cols: dict[str, Any] = {
        "sample_id": data.sample_ids,
        "split": data.split.tolist(),
        "pattern": data.pattern.cpu().numpy(),
    }
    for k, (lab, sl) in enumerate(zip(data.spec.labels, label_columns(data.spec.labels))):
        cols[f"{lab.name}_label"] = pl.Series(
            [int(v) if m else None for v, m in zip(labels[:, k], lmask[:, k])], dtype=pl.Int64
        )
        p = probs[:, sl]
        cols[f"{lab.name}_prob"] = p[:, 0] if lab.kind == "binary" else pl.Series(p.tolist(), dtype=pl.List(pl.Float64))
    return pl.DataFrame(cols)


def score(
    frame: pl.DataFrame,
    data: CohortData,
    *,
    splits: tuple[str, ...] = SPLITS,
    report_splits: tuple[str, ...] = REPORT_SPLITS,
    subgroups: list[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    spec = data.spec
    cols = subgroups if subgroups is not None else list(data.groups.columns)
    missing = [c for c in cols if c not in data.groups.columns]
    if missing:
        raise MedmodalError(
            f"subgroup column(s) {', '.join(missing)} not in cohort.parquet/manifest subgroups",
            path=data.cohort_dir / "cohort.parquet",
            field=missing[0],
        )
    split_arr = frame["split"].to_numpy()
    pattern = frame["pattern"].to_numpy()
    out: dict[str, Any] = {}
    for lab in spec.labels:
        y_all = frame[f"{lab.name}_label"]
        defined = y_all.is_not_null().to_numpy()
        y_np = y_all.fill_null(0).to_numpy()
        p_col = frame[f"{lab.name}_prob"]
        p_np = p_col.to_numpy() if lab.kind == "binary" else np.array(p_col.to_list(), dtype=float)
        per_split = {}
        for split in splits:
            sel = defined & (split_arr == split) if split != "all" else defined
            if split in report_splits:
                groups = {c: data.groups[c].to_numpy()[sel] for c in cols}
                per_split[split] = grouped_metrics(
                    y_np[sel],
                    p_np[sel],
                    pattern=pattern[sel],
                    modalities=spec.modality_names,
                    groups=groups,
                    n_boot=n_boot,
                    seed=seed,
                )
            else:
                per_split[split] = {"overall": metrics_with_ci(y_np[sel], p_np[sel], n_boot=0)}
        out[lab.name] = per_split
    return {"tasks": out, "bootstrap": {"n_boot": n_boot, "seed": seed, "interval": "percentile 95%"}}


def print_summary(metrics: dict[str, Any], split: str = "test", title: str = "") -> None:
    from rich.table import Table

    table = Table(title=title or f"{split} metrics (95% bootstrap CI)")
    for col in ("task", "n", "AUROC", "AUPRC", "Brier", "ECE"):
        table.add_column(col)
    for task, per_split in metrics["tasks"].items():
        o = per_split.get(split, {}).get("overall")
        if not o:
            continue

        def fmt(v):
            if v["value"] is None:
                return "n/a"
            ci = f" [{v['ci_low']:.3f}, {v['ci_high']:.3f}]" if v["ci_low"] is not None else ""
            return f"{v['value']:.3f}{ci}"

        table.add_row(task, str(o["n"]), *(fmt(o.get(m)) for m in ("auroc", "auprc", "brier", "ece")))
    console.print(table)


def evaluate(
    run_dir: str | Path,
    cohort_dir: str | Path | None = None,
    store: str | Path | None = None,
    out: str | Path | None = None,
    subgroups: list[str] | None = None,
    *,
    n_boot: int | None = None,
    device: str = "auto",
    overwrite: bool = False,
) -> Path:
    """Score a trained run; writes metrics.json and predictions.parquet to ``out`` and returns it.

    Default ``out``: RUN_DIR/eval/<cohort_id>. On the training cohort the splits are scored as in training; on
    another cohort every sample is also scored together as split ``all`` (external validation). The store's
    modalities must mean what they meant in training (every recorded fingerprint; ``normalisation`` too unless
    the cohort is external); an existing ``out`` is replaced only when it is an evaluation and ``overwrite``.
    """
    run_dir = Path(run_dir)
    if n_boot is not None:
        check_number(n_boot, "--n-boot", minimum=0, integer=True)
    dev = resolve_device(device)
    model, cfg, normalizer = load_run_model(run_dir, dev)
    spec: DataSpec = model.spec
    train_cohort = cfg["data"]["cohort"]
    given = cohort_dir is not None
    cohort_dir = Path(cohort_dir or train_cohort["dir"])
    cohort = CohortDir.open(cohort_dir)
    cid = cohort.cohort_id
    if not given and cid != train_cohort["cohort_id"]:
        raise MedmodalError(
            f"is no longer the cohort this run was trained on (its cohort_id is {cid}, the run recorded "
            f"{train_cohort['cohort_id']}): it was rebuilt; pass it as --cohort to score it as an external cohort",
            path=cohort_dir,
        )
    external = cid != train_cohort["cohort_id"]
    store = Path(store or cfg["data"]["store"])
    out = Path(out) if out else run_dir / "eval" / cid
    inputs = {"RUN_DIR": run_dir, "--cohort": cohort_dir, "--store": store}
    check_output(out, "evaluation", overwrite=overwrite, inputs=inputs, allow_inside=[run_dir])
    data = load_cohort(
        cohort, store, normalizer=normalizer, expect=spec, indicators=cfg["data"]["indicators"], subgroups=subgroups
    )
    # an external cohort's store is z-scored on its own train split: only its normalisation may differ
    check_feature_fingerprints(
        cfg["data"].get("feature_fingerprints", {}),
        feature_fingerprints(data.feature_manifests),
        store=cohort_store_dir(store, cohort),
        ignore=("normalisation",) if external else (),
    )
    tc = cfg["train"]
    logits = predict_all(model, data, batch_size=tc["eval_batch_size"], device=dev, amp=tc["amp"])
    frame = prediction_frame(data, logits)
    splits = (*SPLITS, "all") if external else SPLITS
    report = ("test", "all") if external else REPORT_SPLITS
    metrics = score(
        frame,
        data,
        splits=splits,
        report_splits=report,
        n_boot=tc["n_boot"] if n_boot is None else n_boot,
        seed=cfg["seed"],
    )
    warn_missing_metrics(metrics, report)
    metrics["cohort"] = {"dir": str(cohort_dir), "cohort_id": cid, "external": external, "run_dir": str(run_dir)}
    with atomic_dir(out, kind="evaluation", overwrite=overwrite, inputs=inputs, allow_inside=[run_dir]) as tmp:
        frame.write_parquet(tmp / "predictions.parquet")
        write_json(tmp / "metrics.json", metrics)
    print_summary(metrics, "all" if external else "test", title=f"{cid}: {'all' if external else 'test'} metrics")
    return out


def warn_missing_metrics(metrics: dict[str, Any], splits: tuple[str, ...] = REPORT_SPLITS) -> list[str]:
    """One warning line per task and split whose overall metrics are undefined (metrics.json says why)."""
    lines = []
    for task, per_split in metrics["tasks"].items():
        for split in splits:
            overall = per_split.get(split, {}).get("overall")
            if not overall:
                continue
            why = sorted({v["why_missing"] for v in overall.values() if isinstance(v, dict) and v.get("why_missing")})
            if why:
                missing = [m for m, v in overall.items() if isinstance(v, dict) and v.get("why_missing")]
                lines.append(f"{task} / {split}: {', '.join(missing)} undefined ({'; '.join(why)})")
    for line in lines:
        console.print(f"[yellow]warning:[/yellow] {line}", soft_wrap=True)
    return lines
