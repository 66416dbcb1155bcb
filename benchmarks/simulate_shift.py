"""Does the shift cost a plain model AUROC? Simulate each environment, build the MIMIC-IV cohorts with the real
cohort builder, fit a plain logistic regression on the train environment, score every environment.

    python benchmarks/simulate_shift.py                          # defaults: 4000 subjects, default strengths
    python benchmarks/simulate_shift.py --set c_outcome=0.5      # a weaker spurious path

Features are what any model downstream sees from structured.parquet (demographics + lab/vital aggregates) plus
the modality-presence flags of modalities.parquet; the model is fitted on one 'train' world and scored on
fresh worlds of every environment (other seeds, so 'train' is an in-distribution test). The last column is the
AUROC of truth.parquet's causal risk sigmoid(a + s_U U): a model that knew U and ignored C. It is not an upper
bound for the mortality tasks, whose window also shows the deterioration that precedes a death (U drifts up).
Prints a table; the numbers in docs/simulator.md come from it. Not run by the test suite.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medmodal.cohort import build_cohort
from medmodal.simulate import simulate

TASKS = {  # task -> (label, truth risk column, truth key)
    "readmission_30d": ("readmission_30d", "risk_readmission_30d", "hadm_id"),
    "in_hospital_mortality_48h": ("in_hospital_mortality_48h", "risk_in_hospital_mortality", "stay_id"),
}


def features(cohort_dir: Path) -> tuple[pl.DataFrame, list[str]]:
    c = pl.read_parquet(cohort_dir / "cohort.parquet")
    s = pl.read_parquet(cohort_dir / "structured.parquet")
    m = pl.read_parquet(cohort_dir / "modalities.parquet").select("sample_id", pl.col("^has_.*$").cast(pl.Float64))
    df = c.join(s, on="sample_id").join(m, on="sample_id")
    cols = [x for x in s.columns if x != "sample_id"] + [x for x in m.columns if x != "sample_id"]
    return df, cols


def matrix(df: pl.DataFrame, cols: list[str], fill: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix with NaN -> the fitting data's column means (0 for columns never observed there)."""
    x = df.select(
        [pl.col(c).cast(pl.Float64) if c in df.columns else pl.lit(None, pl.Float64).alias(c) for c in cols]
    ).to_numpy()
    if fill is None:
        seen = ~np.isnan(x)
        fill = np.where(seen.any(0), np.where(seen, x, 0).sum(0) / np.maximum(seen.sum(0), 1), 0.0)
    return np.where(np.isnan(x), fill, x), fill


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--envs",
        nargs="+",
        default=["train", "shifted", "outcome_shift", "order_shift", "decoupled"],
        help="environments to score; the model is fitted on a separate 'train' world (another seed)",
    )
    ap.add_argument("--set", nargs="*", default=[], help="KEY=VALUE strength overrides")
    ap.add_argument("--tmp", type=Path, default=None)
    args = ap.parse_args()
    strengths = dict(kv.split("=", 1) for kv in args.set)
    console = Console(width=160)
    root = Path(tempfile.mkdtemp(prefix="simshift-", dir=args.tmp))
    try:
        built = {}
        for i, env in enumerate(["fit", *args.envs]):
            raw = simulate(
                "mimic_iv",
                root / env / "raw",
                subjects=args.subjects,
                seed=args.seed + 1000 * i,
                environment="train" if env == "fit" else env,
                image_size=32,
                **strengths,
            )
            built[env] = (raw, build_cohort("mimic_iv", raw, "all", root / env / "cohorts"))
            console.print(f"built {env}")
        table = Table(
            title=f"plain logistic regression trained on 'train' ({args.subjects} subjects per env; "
            f"strengths {strengths or 'default'})"
        )
        for col in (
            "task",
            "environment",
            "n",
            "positives",
            "AUROC plain (all features)",
            "AUROC plain (no presence flags)",
            "AUROC of the causal risk (U only)",
        ):
            table.add_column(col, justify="right")
        for task, (label, risk, key) in TASKS.items():
            fit_rows, cols = features(built["fit"][1] / task)
            models = {}
            for name, use in (("all", cols), ("noflags", [c for c in cols if not c.startswith("has_")])):
                x, fill = matrix(fit_rows, use)
                models[name] = (
                    make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5)).fit(x, fit_rows[label]),
                    use,
                    fill,
                )
            for env in args.envs:
                raw, out = built[env]
                df, _ = features(out / task)
                y = df[label].to_numpy()
                aurocs = []
                for name in ("all", "noflags"):
                    model, use, fill = models[name]
                    aurocs.append(roc_auc_score(y, model.predict_proba(matrix(df, use, fill)[0])[:, 1]))
                truth = pl.read_parquet(raw / "truth.parquet").filter(pl.col(key).is_not_null()).select(key, risk)
                j = df.select(key, label).join(truth, on=key)
                table.add_row(
                    task,
                    env,
                    str(len(y)),
                    str(int(y.sum())),
                    f"{aurocs[0]:.3f}",
                    f"{aurocs[1]:.3f}",
                    f"{roc_auc_score(j[label], j[risk]):.3f}",
                )
        console.print(table)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
