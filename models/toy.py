"""A small, learnable, contract-compliant cohort + feature store, for tests and smoke runs of the model layer.

It bypasses ``simulate`` and ``featurize`` on purpose: the model layer must be testable from its two input
contracts alone (docs/contracts.md §1–2). A latent patient state z ~ N(0, I_4) drives every modality and the
labels, so a model that fuses the modalities it sees can beat chance, and missingness is partly informative (the
discharge note is more often present for sicker patients), as in the real cohorts:

    mortality        ~ Bernoulli(σ(1.5 z0 + z1 - 1.2))
    readmission_30d  ~ Bernoulli(σ(z1 - z2 - 0.5)), undefined for 20 % (a multitask cohort)
    diagnosis_3class = [z0 + 0.5 z1 > -0.5] + [z0 + 0.5 z1 > 0.5]  (optional, ADNI-like multiclass)

Modalities: ``structured`` [N, 10] with 10 % unobserved entries, ``timeseries`` [N, 8, 3] hourly with 20 %
unobserved, ``discharge_note`` [N, 16] and ``cxr`` [N, 12] standing in for frozen text / image embeddings.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import torch

from medmodal.contracts import (
    CohortDir,
    is_legacy_store,
    sample_ids_digest,
    write_cohort,
    write_modality,
    write_samples,
)
from medmodal.outputs import atomic_dir, claim_dir

MODALITIES = ("structured", "timeseries", "discharge_note", "cxr")
KINDS = {"structured": "structured", "timeseries": "timeseries", "discharge_note": "text", "cxr": "image"}
PRESENCE = {"structured": 0.97, "timeseries": 0.8, "discharge_note": 0.6, "cxr": 0.4}


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def write_toy_cohort(
    cohort_dir: str | Path,
    store: str | Path,
    *,
    n: int = 600,
    seed: int = 0,
    multiclass: bool = False,
    signal: float = 1.0,
    modalities: tuple[str, ...] = MODALITIES,
) -> Path:
    """Write ``cohort_dir`` (cohort.parquet, modalities.parquet, manifest.json) and its tensors in ``store``.

    ``signal`` scales how strongly the modalities reflect z (0 gives a cohort with nothing to learn).
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    sample_ids = [f"{100000 + i}" for i in range(n)]  # already sorted: the contract's row order
    subject = np.arange(n) // 2 + 10000  # two admissions per subject, so splits must group them

    y_mort = rng.random(n) < _sigmoid(1.5 * z[:, 0] + z[:, 1] - 1.2)
    y_readm = rng.random(n) < _sigmoid(z[:, 1] - z[:, 2] - 0.5)
    readm_defined = rng.random(n) > 0.2
    severity = z[:, 0] + 0.5 * z[:, 1]
    y_dx = (severity > -0.5).astype(int) + (severity > 0.5).astype(int)

    # subject-level split 60/20/20, deterministic from the seed
    subjects = np.unique(subject)
    u = np.random.default_rng(seed + 1).random(len(subjects))
    subj_split = np.where(u < 0.6, "train", np.where(u < 0.8, "val", "test"))
    split = subj_split[np.searchsorted(subjects, subject)]

    present = {m: rng.random(n) < PRESENCE[m] for m in modalities}
    if "discharge_note" in present:  # informative missingness: sicker patients more often have a note
        present["discharge_note"] = rng.random(n) < _sigmoid(0.8 * z[:, 0] + 0.4)
    present[modalities[0]][:3] = False  # a few all-missing rows exist in real cohorts (e.g. data never linked)
    for m in modalities[1:]:
        present[m][:3] = False

    feats: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    if "structured" in modalities:
        x = np.concatenate([signal * z + 0.7 * rng.normal(size=(n, 4)), rng.normal(size=(n, 6))], axis=1) * 3 + 50
        obs = rng.random(x.shape) > 0.1
        feats["structured"] = (np.where(obs, x, np.nan), obs)
    if "timeseries" in modalities:
        x = np.zeros((n, 8, 3))
        x[..., 0] = signal * z[:, :1] * np.linspace(0, 1, 8)  # a trend whose slope is the severity
        x[..., 1] = signal * z[:, 2:3]  # a level
        x = x + 0.5 * rng.normal(size=x.shape) + np.array([80.0, 12.0, 1.0])  # variable 2 is pure noise
        obs = rng.random(x.shape) > 0.2
        feats["timeseries"] = (np.where(obs, x, 0.0), obs)
    if "discharge_note" in modalities:
        w = rng.normal(size=(4, 16))
        feats["discharge_note"] = (signal * z @ w + rng.normal(size=(n, 16)), None)
    if "cxr" in modalities:
        w = rng.normal(size=(3, 12))
        feats["cxr"] = (signal * z[:, :3] @ w + rng.normal(size=(n, 12)), None)

    base = datetime(2150, 1, 1)
    index_time = [base + timedelta(hours=int(h)) for h in rng.integers(0, 24 * 365, n)]
    pred_time = [t + timedelta(hours=24) for t in index_time]
    labels = {
        "mortality": y_mort.astype(np.int8).tolist(),
        "readmission_30d": [int(v) if d else None for v, d in zip(y_readm, readm_defined)],
    }
    label_specs = [
        {"name": "mortality", "kind": "binary", "classes": [0, 1]},
        {"name": "readmission_30d", "kind": "binary", "classes": [0, 1]},
    ]
    if multiclass:
        labels["diagnosis_3class"] = y_dx.tolist()
        label_specs.append({"name": "diagnosis_3class", "kind": "multiclass", "classes": ["CN", "MCI", "AD"]})

    cohort_dir = Path(cohort_dir)
    # every generator argument changes the rows or columns, so all of them are in the identity
    identity = {
        "source": "toy",
        "task": "mortality",
        "n": n,
        "seed": seed,
        "multiclass": multiclass,
        "signal": signal,
        "modalities": list(modalities),
        "sample_ids_sha256": sample_ids_digest(sample_ids),
    }
    with atomic_dir(cohort_dir, kind="cohort", overwrite=True) as tmp:
        cohort = write_cohort(
            tmp,
            sample_ids=sample_ids,
            splits=split.tolist(),
            modalities={m: KINDS[m] for m in modalities},
            has={m: present[m] for m in modalities},
            labels=labels,
            label_specs=label_specs,
            columns={
                "subject_id": subject.astype(np.int64),
                "hadm_id": np.arange(n, dtype=np.int64) + 100000,
                "index_time": pl.Series(index_time, dtype=pl.Datetime("us")),
                "prediction_time": pl.Series(pred_time, dtype=pl.Datetime("us")),
                "gender": np.where(rng.random(n) < 0.5, "F", "M"),
            },
            feature_groups={"structured": [f"f{i}" for i in range(10)]} if "structured" in modalities else {},
            subgroups=["gender"],
            source="toy",
            task="mortality",
            identity=identity,
            manifest={
                "dataset_version": "toy-1",
                "prediction_time_rule": "index_time + 24h",
                "split_seed": seed,
                "raw_files": {},
                "sql_hashes": {},
                "medmodal_version": "toy",
                "seed": seed,
            },
        )
        opened = CohortDir.open(cohort)

    claim_dir(store, "store", legacy=is_legacy_store, flag="store")
    d = Path(store) / "cohorts" / opened.cohort_id
    write_samples(d, sample_ids)
    for m, (x, obs) in feats.items():
        keep = present[m].reshape(-1, *([1] * (x.ndim - 1)))
        xt = torch.from_numpy(np.where(keep, x, 0.0).astype(np.float32))
        ot = None if obs is None else torch.from_numpy(obs & keep)
        write_modality(
            d,
            m,
            xt,
            torch.from_numpy(present[m]),
            {"kind": KINDS[m], "encoder_fingerprint": "toy-v1", "pooling": "none"},
            observed=ot,
        )
    return cohort_dir
