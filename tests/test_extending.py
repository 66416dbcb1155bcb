"""The promise of README and docs/: a new task, featurizer, backbone or framework is one new definition, with no
existing file edited, and the command line offers it end to end. Each is written inside this test (a task YAML
+ SQL in a temporary folder, three small classes below), registered, and run through the CLI: simulate -> cohort
build -> featurize -> train -> evaluate, with the new options typed, listed and checked like the built-in ones."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

from medmodal.cli import build_app
from medmodal.cohort.base import TASKS
from medmodal.cohort.tasks import load_task
from medmodal.featurize.base import FEATURIZERS, Featurizer, ModalityFeatures
from medmodal.models.base import (
    BACKBONES,
    FRAMEWORKS,
    Backbone,
    BackboneConfig,
    BackboneOutput,
    Framework,
    FrameworkConfig,
)
from medmodal.models.encoders import build_encoders, encode_modalities
from medmodal.models.frameworks.label_losses import masked_mean, per_sample_ce
from medmodal.options import option, validate

# ---------------------------------------------------------------------------------------------------- a task
TASK_YAML = """\
name: long_icu_stay_24h
description: >
  One sample per subject: the first ICU stay, observed from 6 h before ICU admission until 24 h after it;
  label: the stay lasts longer than long_hours.
sources: [mimic_iv]
index_event: The subject's first ICU stay (earliest intime; ties by stay_id), chosen before exclusions.
prediction_time: intime + 24 h
observation_window: "[intime - 6 h, intime + 24 h]"
params:
  horizon_hours: 24
  lookback_hours: 6
  long_hours: 72
labels:
  - name: long_icu_stay
    definition: outtime > intime + long_hours
inclusion:
  - step: adult
    description: age at intime >= 18
  - step: in_icu_at_h
    description: still in the ICU at prediction time (outtime >= intime + 24 h)
modalities:
  structured: demographics + labs and vitals charted in the window
  timeseries: hourly means of the same labs and vitals in the window
  radiology_note: radiology reports of the subject with charttime in the window
"""

TASK_SQL = """\
-- candidates (task long_icu_stay_24h, a test's own task): each subject's first ICU stay, observed for H hours.
CREATE OR REPLACE TABLE candidates AS
WITH ranked AS (
    SELECT s.*, row_number() OVER (PARTITION BY s.subject_id ORDER BY s.intime, s.stay_id) AS stay_rank
    FROM icustays AS s
),
first_stay AS (
    SELECT s.*, s.intime + to_hours(CAST({{ horizon_hours }} AS BIGINT)) AS horizon_time
    FROM ranked AS s
    WHERE stay_rank = 1
)
SELECT
    CAST(s.stay_id AS VARCHAR) AS sample_id,
    s.subject_id,
    s.hadm_id,
    s.stay_id,
    s.intime AS index_time,
    s.horizon_time AS prediction_time,
    s.intime - to_hours(CAST({{ lookback_hours }} AS BIGINT)) AS window_start_time,
    CAST(s.outtime > s.intime + to_hours(CAST({{ long_hours }} AS BIGINT)) AS TINYINT) AS long_icu_stay,
    d.gender,
    d.race_group,
    d.insurance,
    age_group(age_at(d.anchor_age, d.anchor_year, s.intime)) AS age_group,
    CAST(age_at(d.anchor_age, d.anchor_year, s.intime) AS DOUBLE) AS age,
    d.admission_type,
    coalesce(age_at(d.anchor_age, d.anchor_year, s.intime) >= 18, false) AS incl_adult,
    coalesce(s.outtime >= s.horizon_time, false) AS incl_in_icu_at_h,
    CAST(NULL AS BIGINT) AS _note_hadm_id,
    s.horizon_time AS _note_end_time
FROM first_stay AS s
LEFT JOIN admission_demographics AS d ON d.hadm_id = s.hadm_id;
"""


# ---------------------------------------------------------------------------------------------------- a featurizer
@dataclass(frozen=True)
class NoteStatsConfig:
    scale: float = option(1000.0, "characters per unit of the length feature", above=0)

    def __post_init__(self) -> None:
        validate(self)


class NoteStats(Featurizer):
    """Notes without a model: per sample, the mean note length (in ``scale`` characters) and the note count."""

    kind = "text"
    config_class = NoteStatsConfig

    def run(self, cohort, modalities: list[str], store, cfg: NoteStatsConfig) -> dict[str, ModalityFeatures]:
        notes = cohort.table("notes", ["note_type", "text"])
        out = {}
        for m in modalities:
            part = notes.filter(notes["note_type"] == m.removesuffix("_note"))
            rows = part["row"].to_numpy()
            lengths = np.array([len(t or "") for t in part["text"].to_list()], dtype=np.float64) / cfg.scale
            count = np.bincount(rows, minlength=cohort.n).astype(np.float64)
            mean_len = np.bincount(rows, weights=lengths, minlength=cohort.n) / np.maximum(count, 1)
            mask = cohort.has[m] & (count > 0)
            x = np.where(mask[:, None], np.stack([mean_len, count], axis=1), 0.0).astype(np.float32)
            manifest = {"kind": "text", "encoder": {"name": "note_stats", "scale": cfg.scale}, "pooling": "mean"}
            out[m] = ModalityFeatures(x=torch.from_numpy(x), mask=torch.from_numpy(mask), manifest=manifest)
        return out


# ---------------------------------------------------------------------------------------------------- a backbone
@dataclass(frozen=True)
class MaxPoolConfig(BackboneConfig):
    dropout: float = option(0.0, "dropout of the modality encoders", minimum=0, below=1)


class MaxPool(Backbone):
    """Element-wise max over the observed modality embeddings (all missing: zeros)."""

    config_class = MaxPoolConfig

    def __init__(self, spec, config: MaxPoolConfig | None = None, **options: Any):
        super().__init__(spec, config, **options)
        self.encoders = build_encoders(spec, self.hidden, self.cfg.dropout)

    def encode(self, batch) -> Tensor:
        return encode_modalities(self.encoders, batch, self.spec)  # (B, M, H)

    def fuse(self, embeddings: Tensor, mask: Tensor) -> BackboneOutput:
        tokens = torch.where(mask[..., None], embeddings, torch.zeros((), dtype=embeddings.dtype))
        pooled = torch.where(mask[..., None], embeddings, torch.full((), -torch.inf, dtype=embeddings.dtype)).amax(1)
        return BackboneOutput(tokens=tokens, fused=torch.where(mask.any(1, keepdim=True), pooled, 0.0))  # (B, H)


# ---------------------------------------------------------------------------------------------------- a framework
@dataclass(frozen=True)
class HeadOnlyConfig(FrameworkConfig):
    head_hidden: int = option(0, "hidden units of the prediction head (0: linear)", minimum=0)

    search_space: ClassVar[tuple[dict[str, Any], ...]] = ({}, {"head_hidden": 16}, {"head_hidden": 64})


class HeadOnly(Framework):
    """Cross-entropy on a head over the fused vector, nothing else (the backbone's own loss is ignored)."""

    config_class = HeadOnlyConfig

    def __init__(self, backbone, spec, config: HeadOnlyConfig | None = None, **options: Any):
        super().__init__(backbone, spec, config, **options)
        h, k = backbone.hidden, self.cfg.head_hidden
        layers = [nn.Linear(h, k), nn.GELU(), nn.Linear(k, spec.n_outputs)] if k else [nn.Linear(h, spec.n_outputs)]
        self.head = nn.Sequential(*layers)

    def forward(self, batch) -> dict[str, Tensor]:
        return {"logits": self.head(self.backbone(batch).fused)}  # (B, C)

    def loss(self, batch, out, progress: float) -> tuple[Tensor, dict[str, float]]:
        ce = per_sample_ce(out["logits"].float(), batch["labels"], batch["label_mask"], self.spec.labels)
        loss = masked_mean(ce, batch["label_mask"])
        return loss, {"task": float(loss.detach())}


# ---------------------------------------------------------------------------------------------------- the test
@pytest.fixture
def registered(tmp_path):
    """Register the four new entries for one test; the registries are as before afterwards."""
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "long_icu_stay_24h.yaml").write_text(TASK_YAML)
    (tmp_path / "task" / "long_icu_stay_24h.sql").write_text(TASK_SQL)
    task = load_task(tmp_path / "task" / "long_icu_stay_24h.yaml", sql_path=tmp_path / "task" / "long_icu_stay_24h.sql")
    entries = [
        (TASKS, "long_icu_stay_24h", task),
        (FEATURIZERS, "note_stats", NoteStats),
        (BACKBONES, "max_pool", MaxPool),
        (FRAMEWORKS, "head_only", HeadOnly),
    ]
    for registry, name, obj in entries:
        registry.register(name)(obj)
    yield
    for registry, name, _ in entries:
        registry.unregister(name)


def _run(app, *argv: str) -> str:
    res = CliRunner().invoke(app, [str(a) for a in argv])
    assert res.exit_code == 0, res.output
    return res.output


def test_a_new_task_featurizer_backbone_and_framework_run_through_the_cli(registered, tmp_path):
    app = build_app()  # the command line as derived from the registries now
    listing = _run(app, "list")
    assert all(n in listing for n in ("long_icu_stay_24h", "note_stats", "max_pool", "head_only"))
    assert "long_hours" in _run(app, "list", "tasks", "long_icu_stay_24h")
    assert "--scale" in _run(app, "featurize", "text", "--help")

    raw, cohort, store, run = (tmp_path / d for d in ("raw", "cohort", "store", "run"))
    _run(app, "simulate", "mimic_iv", "--out", raw, "--subjects", 200, "--seed", 5, "--no-images")
    _run(app, "cohort", "build", "mimic_iv", "--raw", raw, "--task", "long_icu_stay_24h", "--out", cohort)
    manifest = json.loads((cohort / "manifest.json").read_text())
    assert [lab["name"] for lab in manifest["labels"]] == ["long_icu_stay"]
    assert manifest["sql_params"]["long_hours"] == 72

    _run(app, "featurize", "structured", cohort, "--store", store)
    _run(app, "featurize", "text", cohort, "--store", store, "--featurizer", "note_stats", "--scale", 500)
    slot = next((store / "cohorts").iterdir())
    note = json.loads((slot / "radiology_note.json").read_text())
    assert note["featurizer"] == "note_stats" and note["encoder"] == {"name": "note_stats", "scale": 500.0}

    bad = CliRunner().invoke(
        app,
        ["featurize", "text", str(cohort), "--store", str(store), "--featurizer", "note_stats", "--max-length", "64"],
    )  # transformers' option, not note_stats'
    assert bad.exit_code == 1 and "--max-length is not an option of note_stats" in bad.output
    bad = CliRunner().invoke(
        app,
        [
            "train",
            str(cohort),
            "--store",
            str(store),
            "--out",
            str(run),
            "--backbone",
            "max_pool",
            "--framework",
            "head_only",
            "--framework-arg",
            "head_hidden=wide",
        ],
    )
    assert bad.exit_code == 1 and "head_hidden: expected int >= 0, got 'wide'" in bad.output

    train = ["train", cohort, "--store", store, "--out", run, "--backbone", "max_pool", "--framework", "head_only"]
    _run(app, *train, "--backbone-arg", "hidden=8", "--framework-arg", "head_hidden=4", "--epochs", 2, "--n-boot", 0)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["backbone"] == {"name": "max_pool", "config": {"hidden": 8, "dropout": 0.0}}
    assert cfg["framework"] == {"name": "head_only", "config": {"head_hidden": 4}}
    assert "radiology_note" in [m["name"] for m in cfg["data"]["spec"]["modalities"]]
    _run(app, "evaluate", run, "--n-boot", 0)
    metrics = json.loads(next((run / "eval").glob("*/metrics.json")).read_text())
    assert "long_icu_stay" in metrics["tasks"]
