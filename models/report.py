"""``medmodal report RUN_DIR``: t-SNE of a dual-stream run's causal and biased features, coloured by the confounder.

The DFD paper shows its method working with such a figure: the biased stream's features separate by the
confounder, the causal stream's do not. This module redraws it for any ``dfd`` / ``cdmm`` run directory, and puts
a number beside the picture — how well the confounder can be decoded from each stream (cross-validated AUROC of
a logistic regression), since a 2-D embedding can both hide and invent structure.

The colour is the simulator's ground-truth confounder when ``truth`` (a ``truth.parquet`` written by
``medmodal simulate``) is given — joined to the cohort on the first id column both share (stay_id, hadm_id,
subject_id) — or any column of the cohort's ``cohort.parquet`` (``color_by``) for real data, where the
confounder is unknown and a proxy such as ``insurance`` or ``race_group`` is what one can look at.

Outputs (written atomically): RUN_DIR/report/tsne_causal_biased.png (drawn by medmodal.report.figures) and
RUN_DIR/report/report.json. ``medmodal report RUN_DIR --out page.html`` puts the same figure on the run's page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from medmodal.common import MedmodalError, check_number, console, write_json
from medmodal.contracts import SPLITS as COHORT_SPLITS
from medmodal.devices import resolve_device
from medmodal.models.checkpoint import load_run_model
from medmodal.models.data import load_cohort
from medmodal.outputs import atomic_dir, check_output

JOIN_KEYS = ("stay_id", "hadm_id", "subject_id")  # most specific first: an ICU stay, an admission, a subject
SPLITS = (*COHORT_SPLITS, "all")  # "all": every sample of an external cohort


def _features(model, data, rows: torch.Tensor, device, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    zc, zb = [], []
    with torch.no_grad():
        for batch in data.iter_batches(rows, batch_size, device):
            out = model(batch)
            if "z_causal" not in out or "z_biased" not in out:
                raise MedmodalError("this run's framework has no causal / biased streams (report needs dfd or cdmm)")
            zc.append(out["z_causal"].float().cpu())
            zb.append(out["z_biased"].float().cpu())
    return torch.cat(zc).numpy(), torch.cat(zb).numpy()


def confounder_from_truth(truth: str | Path, cohort: pl.DataFrame, column: str) -> tuple[np.ndarray, str]:
    """The truth column aligned to the cohort's rows; returns (values, join key)."""
    truth = Path(truth)
    if not truth.is_file():
        raise MedmodalError("truth file not found", path=truth)
    try:
        t = pl.read_parquet(truth)
    except Exception as err:
        raise MedmodalError(f"unreadable parquet ({type(err).__name__})", path=truth) from None
    if column not in t.columns:
        raise MedmodalError(f"column not found (have: {', '.join(t.columns)})", path=truth, field=column)
    for key in JOIN_KEYS:
        if key in cohort.columns and key in t.columns and cohort[key].null_count() < cohort.height:
            right = t.filter(pl.col(key).is_not_null()).unique(key, keep="first").select(key, column)
            joined = cohort.select(key).join(right, on=key, how="left", maintain_order="left")
            if joined[column].null_count() == joined.height:
                continue
            if joined[column].null_count():
                raise MedmodalError(
                    f"{joined[column].null_count()} cohort samples have no truth row by {key} "
                    "(was the truth written for another simulation?)",
                    path=truth,
                    field=key,
                )
            return joined[column].to_numpy(), key
    raise MedmodalError(f"shares no id column with the cohort (tried {', '.join(JOIN_KEYS)})", path=truth)


def _decodability(z: np.ndarray, c: np.ndarray, seed: int) -> float | None:
    """5-fold cross-validated AUROC (one-vs-rest macro for > 2 values) of a logistic regression predicting the
    categorical colour c from z; None for a continuous colour or a class with fewer than 5 samples."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    values, y = np.unique(c.astype(str), return_inverse=True)
    if not 2 <= len(values) <= 12 or np.bincount(y).min() < 5 or np.issubdtype(c.dtype, np.floating):
        return None
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    p = cross_val_predict(clf, z, y, cv=StratifiedKFold(5, shuffle=True, random_state=seed), method="predict_proba")
    if len(values) == 2:
        return float(roc_auc_score(y, p[:, 1]))
    return float(roc_auc_score(y, p, multi_class="ovr"))


def tsne_streams(
    run_dir: str | Path,
    *,
    truth: str | Path | None = None,
    confounder: str = "C",
    color_by: str | None = None,
    cohort_dir: str | Path | None = None,
    store: str | Path | None = None,
    split: str = "test",
    max_points: int = 2000,
    perplexity: float = 30.0,
    iterations: int = 1000,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """The computation behind the figure: 2-D t-SNE of each stream, the colour, and report.json's content.

    Returns {"causal": (n, 2), "biased": (n, 2), "color": (n,), "label", "title", "result"} (``result`` is what
    report.json holds); the HTML run page (medmodal.report) calls this too, so both show the same numbers.
    """
    from sklearn.manifold import TSNE

    run_dir = Path(run_dir)
    if split not in SPLITS:
        raise MedmodalError(f"split must be one of {', '.join(SPLITS)}, got '{split}'", field="--split")
    if (truth is None) == (color_by is None):
        raise MedmodalError("give exactly one of --truth (simulated data) or --color-by (a cohort column)")
    check_number(max_points, "--max-points", minimum=2, integer=True)
    check_number(seed, "--seed", minimum=0, integer=True)
    dev = resolve_device(device)
    model, cfg, normalizer = load_run_model(run_dir, dev)
    cohort_dir = Path(cohort_dir or cfg["data"]["cohort"]["dir"])
    store = Path(store or cfg["data"]["store"])
    data = load_cohort(
        cohort_dir, store, normalizer=normalizer, expect=model.spec, indicators=cfg["data"]["indicators"]
    )
    cohort = data.cohort.frame
    if truth is not None:
        color_all, key = confounder_from_truth(truth, cohort, confounder)
        label, source = confounder, f"{Path(truth).name} joined on {key}"
    else:
        if color_by not in cohort.columns:
            raise MedmodalError(
                f"column not found (have: {', '.join(cohort.columns)})",
                path=cohort_dir / "cohort.parquet",
                field=color_by,
            )
        color_all, label, source = cohort[color_by].to_numpy(), color_by, f"cohort.parquet column {color_by}"

    rows = data.rows(None if split == "all" else split)
    if len(rows) < 10:
        raise MedmodalError(f"only {len(rows)} samples in split '{split}' (need >= 10 for a t-SNE)", field="--split")
    rng = np.random.default_rng(seed)
    if len(rows) > max_points:  # t-SNE is O(n log n) but slow on 2 cores beyond a few thousand points
        rows = rows[torch.from_numpy(np.sort(rng.choice(len(rows), max_points, replace=False)))]
    zc, zb = _features(model, data, rows, dev)
    color = color_all[rows.cpu().numpy()]
    keep = ~pl.Series(color).is_null().to_numpy()
    zc, zb, color = zc[keep], zb[keep], color[keep]
    perp = float(min(perplexity, max(5.0, (len(color) - 1) / 3)))
    console.print(f"t-SNE of {len(color)} {split} samples (perplexity {perp:g}) coloured by {label} from {source}")
    if iterations < 250:
        raise MedmodalError(f"t-SNE needs at least 250 iterations, got {iterations}", field="--iterations")
    emb = {
        name: TSNE(2, perplexity=perp, init="pca", max_iter=iterations, random_state=seed).fit_transform(z)
        for name, z in (("causal", zc), ("biased", zb))
    }
    scores = {name: _decodability(z, color, seed) for name, z in (("causal", zc), ("biased", zb))}
    title = f"{cfg['framework']['name']}/{cfg['backbone']['name']} on {cohort_dir.name} ({split})"
    result: dict[str, Any] = {
        "run_dir": str(run_dir),
        "cohort_dir": str(cohort_dir),
        "split": split,
        "n_points": len(color),
        "color": {"name": label, "source": source},
        "perplexity": perp,
        "iterations": iterations,
        "seed": seed,
        "confounder_decodability_auroc": scores,
        "note": "5-fold CV AUROC (one-vs-rest macro for > 2 values) of a logistic regression predicting the "
        "colour from each stream's features; 0.5 = not decodable",
    }
    return {
        "causal": emb["causal"],
        "biased": emb["biased"],
        "color": color,
        "label": label,
        "title": title,
        "result": result,
    }


def report(run_dir: str | Path, *, overwrite: bool = False, **options: Any) -> Path:
    """Write RUN_DIR/report/ (t-SNE figure + report.json) and return that folder; ``options`` as tsne_streams.

    An existing RUN_DIR/report is replaced only with ``overwrite`` (docs/reliability.md)."""
    from medmodal.report.figures import tsne_pair

    run_dir = Path(run_dir)
    if (options.get("truth") is None) == (options.get("color_by") is None):
        raise MedmodalError("give exactly one of --truth (simulated data) or --color-by (a cohort column)")
    inputs = {k: options.get(k) for k in ("cohort_dir", "store", "truth")}
    where = {"overwrite": overwrite, "inputs": {"RUN_DIR": run_dir, **inputs}, "allow_inside": [run_dir], "flag": None}
    check_output(run_dir / "report", "report", **where)  # before the t-SNE: a refusal comes at once
    t = tsne_streams(run_dir, **options)
    scores = t["result"]["confounder_decodability_auroc"]
    png = tsne_pair(t["causal"], t["biased"], t["color"], t["label"], t["title"], scores)
    with atomic_dir(run_dir / "report", kind="report", **where) as tmp:
        (tmp / "tsne_causal_biased.png").write_bytes(png)
        write_json(tmp / "report.json", t["result"])
    return run_dir / "report"
