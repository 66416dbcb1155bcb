"""A cohort's feature store as tensors: memory-mapped once, normalised per batch, batched by tensor indexing.

The model layer reads only the cohort directory (labels, splits, subgroups; docs/contracts.md §1, opened once as a
``contracts.CohortDir``) and the feature store through ``contracts.load_cohort_features`` (§2). The store's
tensors are memory-mapped, not read whole (a (546k, 48, 2V) MIMIC-IV input would not fit a laptop), and a batch
is one ``tensor[rows]`` per field plus the elementwise standardisation of those rows: no Dataset, no collate, no
per-sample Python; mask (N, M), labels (N, K), label_mask (N, K) and pattern (N) are small and dense.

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


# train-split features up to 256 MB (float64) are fitted in one pass, as always; larger ones in row blocks of
# that size (the fit's temporaries are ~4 blocks)
EXACT_FIT_BYTES = 1 << 28
PRECOMPUTE_ROWS = 8192  # rows standardised at a time while precomputing (temporaries stay small)
# inputs up to 1 GB are standardised once and held (fastest); larger ones per batch from the memory-mapped store
DENSE_INPUT_BYTES = 1 << 30


def _raw(x: Tensor) -> Tensor:
    """What the store's x means as model input: float32 with non-finite entries as 0 (elementwise, so a batch of
    rows gives the rows of the whole)."""
    return torch.nan_to_num(x.float(), nan=0.0, posinf=0.0, neginf=0.0)


class _Finite:
    """The observed indicator of a modality whose store records none: the finite entries of x, per row block."""

    def __init__(self, x: Tensor):
        self.x = x
        self.shape = x.shape

    def __getitem__(self, rows) -> Tensor:
        return torch.isfinite(self.x[rows])

    def to(self, device) -> _Finite:
        return _Finite(self.x.to(device))

    def pin_memory(self) -> _Finite:
        return _Finite(self.x.pin_memory())


def _moments(v: Tensor, o: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(count, mean, variance) of the observed entries per feature; v, o (n, D) or (n, T, V), float64."""
    if v.ndim == 3:  # statistics per variable, pooled over time bins
        v, o = v.reshape(-1, v.shape[-1]), o.reshape(-1, o.shape[-1])
    cnt = o.sum(0)
    mu = (v * o).sum(0) / cnt.clamp_min(1)
    var = (((v - mu) ** 2) * o).sum(0) / cnt.clamp_min(1)
    return cnt, mu, var


def _blocked_moments(x: Tensor, observed: Tensor, rows: Tensor, step: int) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`_moments` over ``rows`` read ``step`` rows at a time (mean first, then squared deviations): memory
    is one block, the sums agree with the one-pass ones up to float64 rounding."""
    cnt = total = None
    for a in range(0, len(rows), step):
        r = rows[a : a + step]
        v, o = _raw(x[r]).double(), observed[r].double()
        v, o = v.reshape(-1, v.shape[-1]), o.reshape(-1, o.shape[-1])
        c, t = o.sum(0), (v * o).sum(0)
        cnt, total = (c, t) if cnt is None else (cnt + c, total + t)
    mu = total / cnt.clamp_min(1)
    sq = torch.zeros_like(mu)
    for a in range(0, len(rows), step):
        r = rows[a : a + step]
        v, o = _raw(x[r]).double(), observed[r].double()
        v, o = v.reshape(-1, v.shape[-1]), o.reshape(-1, o.shape[-1])
        sq += (((v - mu) ** 2) * o).sum(0)
    return cnt, mu, sq / cnt.clamp_min(1)


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
            n_keep = int(keep.sum())
            row_numel = int(np.prod(xm.shape[1:], dtype=np.int64))
            if n_keep * row_numel * 8 <= EXACT_FIT_BYTES:
                cnt, mu, var = _moments(_raw(xm[rows][keep]).double(), observed[m][rows][keep].double())
            else:  # the train split's features do not fit twice in memory in float64: two passes in row blocks
                cnt, mu, var = _blocked_moments(xm, observed[m], rows[keep], max(1, EXACT_FIT_BYTES // (row_numel * 8)))
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
    store_x: dict[str, Tensor]  # the store's x[m] as written (memory-mapped): (N, D_m) or (N, T, D_m)
    store_observed: dict[str, Any]  # observed indicators (bool, same shape) or _Finite
    mask: Tensor  # (N, M) bool
    labels: Tensor  # (N, K) float
    label_mask: Tensor  # (N, K) bool
    pattern: Tensor  # (N,) long
    groups: pl.DataFrame  # subgroup columns (Utf8), cohort row order
    normalizer: Normalizer
    indicators: list[str]  # modalities whose observed-indicators are appended to x
    feature_manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    dense: dict[str, Tensor] | None = None  # every input precomputed, when it fits DENSE_INPUT_BYTES

    def inputs(self, m: str, rows: Tensor) -> Tensor:
        """The model input of modality ``m`` for ``rows``: standardised, clipped, observed indicators appended
        ((B, D) -> (B, 2D), (B, T, V) -> (B, T, 2V)), zeros where the sample lacks the modality. Computed per
        batch from the memory-mapped store, elementwise, so it equals the rows of the whole-cohort tensor."""
        if self.dense is not None:
            return self.dense[m][rows]
        obs = self.store_observed[m][rows]
        z = self.normalizer.apply(m, _raw(self.store_x[m][rows]), obs.bool())
        if m in self.indicators:
            z = torch.cat([z, obs.float()], dim=-1)
        have = self.mask[rows, self.spec.modality_names.index(m)]
        return torch.where(have.reshape(-1, *([1] * (z.ndim - 1))), z, torch.zeros((), dtype=z.dtype))

    @property
    def x(self) -> dict[str, Tensor]:
        """Every modality's input for every sample, materialised (small cohorts and tests; batches use
        :meth:`inputs`)."""
        if self.dense is not None:
            return self.dense
        rows = torch.arange(self.n, device=self.device)
        return {m: self.inputs(m, rows) for m in self.spec.modality_names}

    def input_nbytes(self) -> int:
        """Bytes of every modality's input for every sample (float32, indicators included)."""
        total = 0
        for s in self.spec.modalities:
            shape = self.store_x[s.name].shape
            total += int(np.prod(shape[1:-1], dtype=np.int64)) * s.dim * self.n * 4
        return total

    def precompute(self) -> CohortData:
        """Hold every input in memory (small cohorts: batches are then one gather each, as fast as it gets)."""
        dense = {}
        for s in self.spec.modalities:
            out = None
            for rows in torch.arange(self.n).split(PRECOMPUTE_ROWS):
                block = self.inputs(s.name, rows)
                if out is None:
                    out = torch.empty((self.n, *block.shape[1:]), dtype=block.dtype)
                out[rows] = block
            dense[s.name] = out if out is not None else self.inputs(s.name, torch.arange(0))
        self.dense = dense
        return self

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
            "x": {m: self.inputs(m, rows) for m in self.spec.modality_names},
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
        if self.dense is not None:
            self.dense = {m: t.to(device) for m, t in self.dense.items()}
        else:  # batches are standardised where the store's tensors are
            self.store_x = {m: t.to(device) for m, t in self.store_x.items()}
            self.store_observed = {m: t.to(device) for m, t in self.store_observed.items()}
            self.normalizer = Normalizer(
                {m: t.to(device) for m, t in self.normalizer.mean.items()},
                {m: t.to(device) for m, t in self.normalizer.std.items()},
            )
        for name in ("mask", "labels", "label_mask", "pattern"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def pin(self) -> CohortData:
        """Page-locked host memory, so batch copies to the GPU can overlap compute (non_blocking). A large
        cohort's memory-mapped store is left mapped: pinning would read it whole into memory."""
        if self.dense is not None:
            self.dense = {m: t.pin_memory() for m, t in self.dense.items()}
        for name in ("mask", "labels", "label_mask", "pattern"):
            setattr(self, name, getattr(self, name).pin_memory())
        return self

    def nbytes(self) -> int:
        """Bytes of the data on a device: the inputs (precomputed, or the store's tensors) and the label tensors."""
        if self.dense is not None:
            inputs = list(self.dense.values())
        else:
            inputs = [*self.store_x.values()]
            inputs += [t for t in self.store_observed.values() if not isinstance(t, _Finite)]
        tensors = [*inputs, self.mask, self.labels, self.label_mask, self.pattern]
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

    sample_ids, feats = load_cohort_features(store, cohort, mmap=True)  # rows are read when a batch needs them
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
            x = torch.zeros(()).expand(shape)  # a view: no memory whatever N
            raw[m], observed[m] = x, torch.zeros((), dtype=torch.bool).expand(shape)
            masks[m] = torch.zeros(n, dtype=torch.bool)
            manifests[m] = {"modality": m, "absent": True}
            specs.append(want)
            if m in (indicators or []):
                with_ind.append(m)
            continue
        t = feats[m]
        x = t["x"]
        if x.ndim not in (2, 3) or x.shape[0] != n:
            raise MedmodalError(f"x has shape {tuple(x.shape)}, expected [{n}, D] or [{n}, T, D]", path=store, field=m)
        has_obs = "observed" in t
        raw[m], observed[m], masks[m] = x, t["observed"] if has_obs else _Finite(x), t["mask"].bool()
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
    data = CohortData(
        cohort=cohort,
        spec=spec,
        sample_ids=sample_ids,
        split=split,
        store_x=raw,
        store_observed=observed,
        mask=mask,
        labels=y,
        label_mask=y_mask,
        pattern=pattern_from_mask(mask),
        groups=groups,
        normalizer=normalizer,
        indicators=with_ind,
        feature_manifests=manifests,
    )
    return data.precompute() if data.input_nbytes() <= DENSE_INPUT_BYTES else data


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
