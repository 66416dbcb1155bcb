"""A cohort's feature store as tensors: loaded once, normalised once, batched by tensor indexing.

The model layer reads only the cohort directory (labels, splits, subgroups; docs/contracts.md §1, opened once as a
``contracts.CohortDir``) and the feature store through ``contracts.load_cohort_features`` (§2). Everything is
materialised as dense tensors — x[m] (N, D_m) or (N, T, V), mask (N, M), labels (N, K), label_mask (N, K),
pattern (N) — so a training step is one ``tensor[rows]`` per field: no Dataset, no collate, no per-sample Python.

Inputs are standardised with statistics of the *training* split only (observed entries of samples that have
the modality), clipped to ±10 SD, and unobserved entries set to 0 (the training mean). Where the store records
which entries were observed (structured / timeseries ``observed``), those indicators are appended as extra input
features, so "not measured" stays distinguishable from "measured at the mean" (informative missingness at the
feature level, as in GRU-D; Che et al., Sci. Rep. 2018). The statistics are saved with the model and reused at
evaluation, including on another cohort.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import Tensor

from medmodal.common import MedmodalError, console
from medmodal.contracts import CohortDir, feature_fingerprint, load_cohort_features
from medmodal.models.base import Batch, DataSpec, LabelSpec, ModalitySpec
from medmodal.models.encoders import pattern_from_mask

CLIP_SD = 10.0  # standardised inputs beyond ±10 SD are unit errors or extreme outliers; cap their leverage


@dataclass
class Normalizer:
    """Per-feature mean / std from the training split; ``state()`` is what the run directory stores."""

    mean: dict[str, Tensor]
    std: dict[str, Tensor]

    @classmethod
    def fit(cls, x: dict[str, Tensor], observed: dict[str, Tensor], mask: dict[str, Tensor], rows: Tensor):
        mean, std = {}, {}
        for m, xm in x.items():
            keep = mask[m][rows]
            v = xm[rows][keep].double()  # (n, D) or (n, T, V)
            o = observed[m][rows][keep].double()
            if v.ndim == 3:  # statistics per variable, pooled over time bins
                v, o = v.reshape(-1, v.shape[-1]), o.reshape(-1, o.shape[-1])
            cnt = o.sum(0)
            mu = (v * o).sum(0) / cnt.clamp_min(1)
            var = (((v - mu) ** 2) * o).sum(0) / cnt.clamp_min(1)
            sd = var.sqrt()
            sd = torch.where((cnt > 1) & (sd > 1e-6), sd, torch.ones_like(sd))
            mean[m], std[m] = mu.float(), sd.float()
        return cls(mean, std)

    def apply(self, m: str, x: Tensor, observed: Tensor) -> Tensor:
        z = ((x - self.mean[m]) / self.std[m]).clamp(-CLIP_SD, CLIP_SD)
        return torch.where(observed, z, torch.zeros((), dtype=z.dtype))

    def state(self) -> dict[str, Tensor]:
        out = {f"{m}.mean": t.contiguous() for m, t in self.mean.items()}
        out.update({f"{m}.std": t.contiguous() for m, t in self.std.items()})
        return out

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> Normalizer:
        mean = {k[: -len(".mean")]: v for k, v in state.items() if k.endswith(".mean")}
        std = {k[: -len(".std")]: v for k, v in state.items() if k.endswith(".std")}
        return cls(mean, std)


@dataclass
class CohortData:
    """One cohort's inputs, labels and bookkeeping, in cohort row order."""

    cohort: CohortDir  # the opened cohort directory: manifest, cohort.parquet rows, id
    spec: DataSpec
    sample_ids: list[str]
    split: np.ndarray  # (N,) str
    x: dict[str, Tensor]
    mask: Tensor  # (N, M) bool
    labels: Tensor  # (N, K) float
    label_mask: Tensor  # (N, K) bool
    pattern: Tensor  # (N,) long
    groups: pl.DataFrame  # subgroup columns (Utf8), cohort row order
    normalizer: Normalizer
    indicators: list[str]  # modalities whose observed-indicators are appended to x
    feature_manifests: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.sample_ids)

    @property
    def cohort_dir(self) -> Path:
        return self.cohort.dir

    @property
    def cohort_id(self) -> str:
        return self.cohort.cohort_id

    @property
    def manifest(self) -> dict[str, Any]:
        return self.cohort.manifest

    @property
    def device(self) -> torch.device:
        return self.mask.device

    def rows(self, split: str | None = None) -> Tensor:
        """Row indices of one split (all rows when None), ascending, on the data's device."""
        keep = np.ones(self.n, bool) if split is None else self.split == split
        return torch.from_numpy(np.flatnonzero(keep)).to(self.device)

    def batch(self, rows: Tensor, index: Tensor | None = None, device: torch.device | str | None = None) -> Batch:
        """Gather a batch by tensor indexing; ``index`` defaults to ``rows`` (see base.Batch)."""
        b = {
            "x": {m: t[rows] for m, t in self.x.items()},
            "mask": self.mask[rows],
            "labels": self.labels[rows],
            "label_mask": self.label_mask[rows],
            "pattern": self.pattern[rows],
            "index": rows if index is None else index,
        }
        if device is not None and torch.device(device) != self.device:
            b = to_device(b, device)
        return b

    def iter_batches(self, rows: Tensor, batch_size: int, device=None) -> Iterator[Batch]:
        """Fixed-order batches over ``rows`` (evaluation); ``index`` is the position within ``rows``."""
        for start in range(0, len(rows), batch_size):
            pos = torch.arange(start, min(start + batch_size, len(rows)), device=rows.device)
            yield self.batch(rows[pos], pos, device)

    def to(self, device: torch.device | str) -> CohortData:
        self.x = {m: t.to(device) for m, t in self.x.items()}
        for name in ("mask", "labels", "label_mask", "pattern"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def pin(self) -> CohortData:
        """Page-locked host memory, so batch copies to the GPU can overlap compute (non_blocking)."""
        self.x = {m: t.pin_memory() for m, t in self.x.items()}
        for name in ("mask", "labels", "label_mask", "pattern"):
            setattr(self, name, getattr(self, name).pin_memory())
        return self

    def nbytes(self) -> int:
        tensors = [*self.x.values(), self.mask, self.labels, self.label_mask, self.pattern]
        return sum(t.numel() * t.element_size() for t in tensors)


def to_device(batch: Batch, device) -> Batch:
    nb = torch.device(device).type == "cuda"
    out = {k: v.to(device, non_blocking=nb) for k, v in batch.items() if k != "x"}
    out["x"] = {m: t.to(device, non_blocking=nb) for m, t in batch["x"].items()}
    return out


def label_specs(cohort: CohortDir, tasks: list[str] | None) -> tuple[LabelSpec, ...]:
    """The model's labels: the cohort's (checked by CohortDir), or the ``tasks`` among them, in that order."""
    by_name = {lab.name: LabelSpec(lab.name, lab.kind, lab.n_classes, lab.classes) for lab in cohort.labels}
    names = list(by_name) if not tasks else list(tasks)
    unknown = [t for t in names if t not in by_name]
    if unknown:
        raise MedmodalError(
            f"unknown task(s) {', '.join(unknown)} (have: {', '.join(by_name)})",
            path=cohort.manifest_path,
            field="labels",
        )
    return tuple(by_name[t] for t in names)


def _label_tensors(cohort: pl.DataFrame, labels: tuple[LabelSpec, ...]) -> tuple[Tensor, Tensor]:
    """(labels, label_mask) [N, K]: the values CohortDir checked, 0 where a label is undefined."""
    ys, ms = [], []
    for lab in labels:
        col = cohort[lab.name]
        defined = col.is_not_null().to_numpy()
        ys.append(np.where(defined, col.cast(pl.Float64).fill_null(0.0).to_numpy(), 0.0))
        ms.append(defined)
    return (torch.from_numpy(np.stack(ys, 1).astype(np.float32)), torch.from_numpy(np.stack(ms, 1)))


def feature_fingerprints(manifests: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What each modality's tensor means (encoder, pooling, preprocessing, normalisation, dtype, feature shape):
    recorded by train, compared by evaluate (medmodal.contracts.feature_fingerprint). Absent modalities skip."""
    return {m: feature_fingerprint(man) for m, man in manifests.items() if not man.get("absent")}


def load_cohort(
    cohort_dir: str | Path | CohortDir,
    store: str | Path,
    *,
    tasks: list[str] | None = None,
    modalities: list[str] | None = None,
    observed_indicators: bool = True,
    normalizer: Normalizer | None = None,
    expect: DataSpec | None = None,
    indicators: list[str] | None = None,
    subgroups: list[str] | None = None,
) -> CohortData:
    """Load labels, splits and features of one cohort.

    Training: ``normalizer=None`` fits one on the train split. Evaluation of a trained model: pass its
    ``normalizer``, ``expect`` (its DataSpec) and ``indicators``: modalities are aligned to it, a modality this
    store lacks becomes all-missing (a site without chest X-rays), and a dimension mismatch is an error.
    ``subgroups``: cohort.parquet columns kept for stratified metrics (default: the manifest's ``subgroups``).
    ``cohort_dir``: the folder, or a ``CohortDir`` the caller already opened (nothing is read twice).
    """
    cohort = CohortDir.open(cohort_dir)
    manifest, cohort_path, man_path = cohort.manifest, cohort.dir / "cohort.parquet", cohort.manifest_path
    split = cohort.split
    labels = label_specs(cohort, tasks or ([l.name for l in expect.labels] if expect else None))
    if expect is not None:
        for got, want in zip(labels, expect.labels):
            if got.kind != want.kind or got.n_classes != want.n_classes:
                raise MedmodalError(
                    f"label '{got.name}' is {got.kind}/{got.n_classes} here but the model was "
                    f"trained on {want.kind}/{want.n_classes}",
                    path=man_path,
                    field="labels",
                )
    y, y_mask = _label_tensors(cohort.frame, labels)

    sample_ids, feats = load_cohort_features(store, cohort)
    kinds = manifest.get("modality_kinds", {})
    order = [m for m in manifest.get("modalities", []) if m in feats] + sorted(
        m for m in feats if m not in manifest.get("modalities", [])
    )
    if expect is not None:
        names = expect.modality_names
    elif modalities:
        unknown = [m for m in modalities if m not in feats]
        if unknown:
            raise MedmodalError(
                f"modality {', '.join(unknown)} not featurized (have: {', '.join(order) or 'none'})", path=store
            )
        names = list(modalities)
    else:
        names = order
    if not names:
        raise MedmodalError("no featurized modality for this cohort", path=store)

    n = len(sample_ids)
    raw, observed, masks, specs, manifests, with_ind = {}, {}, {}, [], {}, []
    for m in names:
        want = next((s for s in expect.modalities if s.name == m), None) if expect else None
        if m not in feats:
            if want is None:
                raise MedmodalError(f"modality '{m}' not featurized", path=store)
            console.print(
                f"[yellow]warning:[/yellow] modality '{m}' is not in this store; treated as missing for every sample"
            )
            base_dim = want.dim // 2 if m in (indicators or []) else want.dim
            shape = (n, want.seq_len, base_dim) if want.seq_len else (n, base_dim)
            x = torch.zeros(shape)
            raw[m], observed[m], masks[m] = x, torch.zeros(shape, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
            manifests[m] = {"modality": m, "absent": True}
            specs.append(want)
            if m in (indicators or []):
                with_ind.append(m)
            continue
        t = feats[m]
        x = t["x"].float()
        if x.ndim not in (2, 3) or x.shape[0] != n:
            raise MedmodalError(f"x has shape {tuple(x.shape)}, expected [{n}, D] or [{n}, T, D]", path=store, field=m)
        has_obs = "observed" in t
        obs = t["observed"].bool() if has_obs else torch.isfinite(x)
        raw[m], observed[m], masks[m] = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), obs, t["mask"].bool()
        manifests[m] = t.get("manifest", {})
        kind = kinds.get(m) or manifests[m].get("kind") or ("timeseries" if x.ndim == 3 else "structured")
        use_ind = m in indicators if indicators is not None else (observed_indicators and has_obs)
        dim = x.shape[-1] * (2 if use_ind else 1)
        if use_ind:
            with_ind.append(m)
        spec_m = ModalitySpec(m, kind, int(dim), int(x.shape[1]) if x.ndim == 3 else None)
        if want is not None and (want.dim, want.seq_len) != (spec_m.dim, spec_m.seq_len):
            raise MedmodalError(
                f"modality '{m}' has dim {spec_m.dim} / seq_len {spec_m.seq_len} here but the model "
                f"expects {want.dim} / {want.seq_len}",
                path=store,
                field=m,
            )
        specs.append(want or spec_m)

    train_rows = torch.from_numpy(np.flatnonzero(split == "train"))
    if normalizer is None:
        if len(train_rows) == 0:
            raise MedmodalError("no training samples (split == 'train')", path=cohort_path, field="split")
        normalizer = Normalizer.fit(raw, observed, masks, train_rows)
    x_final = {}
    for s in specs:
        m = s.name
        z = normalizer.apply(m, raw[m], observed[m])
        if m in with_ind:
            z = torch.cat([z, observed[m].float()], dim=-1)  # (N, D) -> (N, 2D) / (N, T, 2V)
        # a masked-out sample holds zeros whatever the store wrote there
        x_final[m] = torch.where(masks[m].reshape(-1, *([1] * (z.ndim - 1))), z, torch.zeros(()))
    mask = torch.stack([masks[s.name] for s in specs], dim=1)  # (N, M)

    if subgroups is not None:
        absent = [c for c in subgroups if c not in cohort.frame.columns]
        if absent:
            raise MedmodalError("subgroup column missing", path=cohort_path, field=absent[0])
        subgroup_cols = list(subgroups)
    else:
        subgroup_cols = [c for c in manifest.get("subgroups", []) if c in cohort.frame.columns]
    groups = cohort.frame.select([pl.col(c).cast(pl.Utf8).fill_null("missing") for c in subgroup_cols])
    spec = DataSpec(tuple(specs), labels)
    return CohortData(
        cohort=cohort,
        spec=spec,
        sample_ids=sample_ids,
        split=split,
        x=x_final,
        mask=mask,
        labels=y,
        label_mask=y_mask,
        pattern=pattern_from_mask(mask),
        groups=groups,
        normalizer=normalizer,
        indicators=with_ind,
        feature_manifests=manifests,
    )


def pos_weight(labels: Tensor, label_mask: Tensor, spec: DataSpec) -> Tensor:
    """n_neg / n_pos per binary label over the given rows (1 for multiclass or a label without positives)."""
    out = []
    for k, lab in enumerate(spec.labels):
        if lab.kind != "binary":
            out.append(1.0)
            continue
        y = labels[label_mask[:, k], k]
        n_pos = float(y.sum())
        n_neg = float(len(y)) - n_pos
        out.append(n_neg / n_pos if n_pos > 0 and n_neg > 0 else 1.0)
    return torch.tensor(out, dtype=torch.float32)


def fits_on_device(data: CohortData, device: torch.device, fraction: float = 0.5) -> bool:
    """Whether the whole dataset may live on a CUDA device (at most ``fraction`` of its free memory)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return data.nbytes() <= fraction * free
