"""The whole chain on simulated MIMIC-IV: simulate -> cohort build -> featurize (tiny random encoders) -> train
each backbone. Slow (~1 min on 2 cores, most of it simulating), so excluded from `make test`."""

from __future__ import annotations

import json

import pytest
import torch

import medmodal.models.backbones  # noqa: F401
from medmodal.cohort import build_cohort
from medmodal.featurize import ImageConfig, TextConfig, featurize_all, tiny
from medmodal.models.base import BACKBONES
from medmodal.models.train import train
from medmodal.simulate import simulate


@pytest.fixture(scope="module")
def featurized(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pipeline")
    raw = simulate("mimic_iv", root / "raw", subjects=1200, seed=21, image_size=32)
    cohort = build_cohort("mimic_iv", raw, "readmission_30d", root / "cohort", threads=1)
    bert = tiny.make_tiny_bert(root / "bert")
    timm_weights = tiny.make_tiny_timm(root / "timm" / "test_convnext.safetensors", name="test_convnext")
    featurize_all(
        cohort,
        root / "store",
        configs=[
            TextConfig(model=str(bert), device="cpu", max_length=128, stride=32),
            ImageConfig(model="test_convnext", weights=str(timm_weights), device="cpu", num_workers=0),
        ],
    )
    yield cohort, root / "store", root
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_simulated_mimic_end_to_end(featurized, backbone):
    cohort, store, root = featurized
    run = train(
        cohort,
        store,
        root / f"run_{backbone}",
        backbone=backbone,
        epochs=15,
        batch_size=64,
        lr=3e-3,
        n_boot=200,
        seed=0,
        progress=False,
        backbone_config={"hidden": 32},
    )
    m = json.loads((run / "metrics.json").read_text())
    spec = json.loads((run / "config.json").read_text())["data"]["spec"]
    # every modality the simulator writes reached the model, and the multitask cohort trained both labels
    assert [x["name"] for x in spec["modalities"]] == [
        "structured",
        "timeseries",
        "discharge_note",
        "radiology_note",
        "cxr",
    ]
    test = m["tasks"]["readmission_30d"]["test"]["overall"]
    assert test["auroc"]["value"] > 0.65, test  # the SCM's readmission signal; chance is 0.5
    assert m["tasks"]["icu_admission_90d"]["test"]["overall"]["auroc"]["value"] > 0.6
