"""The model contract: batches, backbones, frameworks and their registries.

A **backbone** maps a batch to per-modality embeddings and a fused representation. A **framework** wraps any
backbone and owns the heads, the losses and any post-hoc step (such as a rectifier fitted on validation data).
The training loop (``models/train.py``) only talks to these interfaces, so a new backbone or framework is one
file with a ``@BACKBONES.register`` / ``@FRAMEWORKS.register`` decorator plus one import line in the package's
``__init__``. Each declares its options as a typed ``config_class`` (``medmodal.options``): the model's own
default config, as timm's ``create_model(name, **kwargs)`` has; ``--backbone-arg`` / ``--framework-arg``,
``medmodal list`` and the docs tables read them from there.

Shapes: B batch, M modalities, H hidden size, K label tasks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from medmodal.common import Registry
from medmodal.options import option, validate

Batch = dict[str, Any]
"""x: {modality: [B, D_m] | [B, T, D_m]}, mask: bool [B, M], labels: float [B, K] (0/1 for binary labels, the
class index for multiclass ones, 0 where label_mask is false), label_mask: bool [B, K], pattern: long [B]
(Σ_i mask_i · 2^i), index: long [B] (row of the sample within the split being iterated; for training batches
0..n_train-1, the rows of ``on_train_begin``'s train_* tensors)."""


@dataclass(frozen=True)
class ModalitySpec:
    name: str
    kind: str  # "structured" | "timeseries" | "text" | "image"
    dim: int  # D_m (feature size of the last axis)
    seq_len: int | None = None  # T for [B, T, D_m] inputs


@dataclass(frozen=True)
class LabelSpec:
    name: str
    kind: str = "binary"  # "binary" | "multiclass"
    n_classes: int = 2
    classes: tuple[str, ...] = ()  # class names in index order (manifest "classes"); informational

    @property
    def n_outputs(self) -> int:
        return 1 if self.kind == "binary" else self.n_classes


@dataclass(frozen=True)
class DataSpec:
    """What a model must know about the data to be rebuilt from config.json."""

    modalities: tuple[ModalitySpec, ...]
    labels: tuple[LabelSpec, ...]

    @property
    def modality_names(self) -> list[str]:
        return [m.name for m in self.modalities]

    @property
    def n_patterns(self) -> int:
        return 2 ** len(self.modalities)

    @property
    def n_outputs(self) -> int:
        """Logit columns C = Σ_k n_outputs(k): one per binary label, n_classes per multiclass label."""
        return sum(lab.n_outputs for lab in self.labels)


@dataclass
class BackboneOutput:
    tokens: Tensor  # (B, M, H) per-modality embeddings; rows of missing modalities are zeros
    fused: Tensor  # (B, H)
    aux_loss: Tensor | None = None  # backbone-specific training loss (e.g. MUSE contrastive terms)
    extras: dict[str, Tensor] = field(default_factory=dict)
    embeddings: Tensor | None = None  # (B, M, H) pre-fusion embeddings (``Backbone.encode``), set by forward


@dataclass(frozen=True)
class BackboneConfig:
    """What every backbone's config has: H. A backbone's own config subclasses this."""

    hidden: int = option(128, "H: size of each modality embedding and of the fused vector", minimum=1)

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class FrameworkConfig:
    """A framework's options (none here). ``search_space``: the option sets the shift benchmark tries for it,
    the same number for every method (benchmarks/shift.py; ``{"train": {...}}`` changes TrainConfig fields)."""

    search_space: ClassVar[tuple[dict[str, Any], ...]] = ({},)

    def __post_init__(self) -> None:
        validate(self)


def _configured(obj: Any, config: Any, options: dict[str, Any]) -> Any:
    cls = type(obj).config_class
    if config is None:
        return cls(**options)
    if not isinstance(config, cls):
        raise TypeError(f"{type(obj).__name__} takes a {cls.__name__}, got {type(config).__name__}")
    return dataclasses.replace(config, **options) if options else config


class Backbone(nn.Module):
    """Maps a batch to ``BackboneOutput`` in two steps that frameworks may call apart:

    - ``encode(batch)`` -> (B, M, H): the *pre-fusion* embedding of each modality, computed from that modality's
      input alone (rows of missing modalities are zeros);
    - ``fuse(embeddings, mask)`` -> ``BackboneOutput``: fusion of the modalities that ``mask`` marks observed.
      It must read no row that ``mask`` marks missing, so a framework can recompute the fused representation
      *without* a modality by passing a mask with that modality switched off (MMNAR's leave-one-out
      reconstruction does; ``tests/test_frameworks_contract.py`` checks it exactly for every backbone).

    Contract (tested for every registered backbone): changing the input of a masked-out modality changes no
    output, and in ``eval()`` mode a sample's output does not depend on the other samples of its batch (batch
    invariance: a prediction is a function of the patient, not of who else is being scored).
    Subclasses declare ``config_class`` (a ``BackboneConfig``; H is its ``hidden``) and implement ``encode`` and
    ``fuse``; ``forward`` may add a training loss. Built as ``Cls(spec, config)`` or ``Cls(spec, **options)``.
    """

    config_class: ClassVar[type[BackboneConfig]] = BackboneConfig
    hidden: int

    def __init__(self, spec: DataSpec, config: BackboneConfig | None = None, **options: Any):
        super().__init__()
        self.spec = spec
        self.cfg = _configured(self, config, options)
        self.hidden = self.cfg.hidden

    def config(self) -> dict[str, Any]:
        """The full config (defaults included), as config.json records it."""
        return asdict(self.cfg)

    def encode(self, batch: Batch) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def fuse(self, embeddings: Tensor, mask: Tensor) -> BackboneOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, batch: Batch) -> BackboneOutput:
        embeddings = self.encode(batch)  # (B, M, H)
        out = self.fuse(embeddings, batch["mask"])
        out.embeddings = embeddings
        return out


class Framework(nn.Module):
    """Wraps a backbone; owns heads, losses and post-hoc steps.

    The training loop calls, in order: ``on_train_begin(info)``; per step ``out = self(batch)`` and
    ``loss, parts = self.loss(batch, out, progress)`` where progress ∈ [0, 1] is the fraction of training done;
    after training ``fit_post_hoc(val)`` with validation outputs only; at prediction ``predict(batch)`` returns
    logits [B, K_out] after any post-hoc correction. Subclasses declare ``config_class`` (a ``FrameworkConfig``);
    built as ``Cls(backbone, spec, config)`` or ``Cls(backbone, spec, **options)``.
    """

    config_class: ClassVar[type[FrameworkConfig]] = FrameworkConfig

    def __init__(self, backbone: Backbone, spec: DataSpec, config: FrameworkConfig | None = None, **options: Any):
        super().__init__()
        self.backbone = backbone
        self.spec = spec
        self.cfg = _configured(self, config, options)

    def config(self) -> dict[str, Any]:
        """The full config (defaults included), as config.json records it."""
        return asdict(self.cfg)

    def on_train_begin(self, info: dict[str, Any]) -> None:
        """info: n_train, train_patterns (long [N_train]), train_labels (float [N_train, K]), train_label_mask
        (bool [N_train, K]), pos_weight (float [K]; n_neg / n_pos of each binary label on train, 1 for
        multiclass labels), device. ``batch["index"]`` of a training batch indexes these N_train rows."""

    def forward(self, batch: Batch) -> dict[str, Tensor]:  # pragma: no cover - interface
        """Returns at least ``{"logits": [B, C]}`` with C = ``spec.n_outputs`` columns in ``spec.labels`` order."""
        raise NotImplementedError

    def loss(self, batch: Batch, out: dict[str, Tensor], progress: float) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError  # pragma: no cover - interface

    @torch.no_grad()
    def predict(self, batch: Batch) -> Tensor:
        return self(batch)["logits"]

    def fit_post_hoc(self, val: dict[str, Tensor]) -> None:
        """val: logits, labels, label_mask, pattern (validation split only)."""

    def extra_state(self) -> dict[str, Any]:
        """JSON-serialisable state saved beside the weights (e.g. a fitted rectifier)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass


BACKBONES: Registry[type[Backbone]] = Registry("backbone")
FRAMEWORKS: Registry[type[Framework]] = Registry("framework", default="erm")  # the reference every method beats
