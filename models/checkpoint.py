"""Rebuild a model from config.json and move its weights through safetensors — never pickle.

A run directory (docs/contracts.md §4) holds everything needed to rebuild the exact model without the training
code's arguments: backbone and framework names with their resolved configs, the DataSpec (modality dims, label
kinds), the input normalisation (``normalization.safetensors``) and framework state from ``extra_state()``
(``framework_state.json``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from medmodal.common import MedmodalError, write_json
from medmodal.models.base import BACKBONES, FRAMEWORKS, DataSpec, Framework, LabelSpec, ModalitySpec
from medmodal.models.data import Normalizer
from medmodal.options import config_for

CONFIG, WEIGHTS, NORMALIZATION, FRAMEWORK_STATE = (
    "config.json",
    "model.safetensors",
    "normalization.safetensors",
    "framework_state.json",
)


def spec_to_json(spec: DataSpec) -> dict[str, Any]:
    return {
        "modalities": [asdict(m) for m in spec.modalities],
        "labels": [asdict(lab) | {"classes": list(lab.classes)} for lab in spec.labels],
    }


def spec_from_json(d: dict[str, Any]) -> DataSpec:
    return DataSpec(
        tuple(ModalitySpec(**m) for m in d["modalities"]),
        tuple(LabelSpec(**(lab | {"classes": tuple(lab.get("classes", ()))})) for lab in d["labels"]),
    )


def build_model(
    spec: DataSpec,
    backbone: str,
    framework: str,
    backbone_config: Any = None,
    framework_config: Any = None,
) -> tuple[Framework, dict[str, Any], dict[str, Any]]:
    """Instantiate framework(backbone(spec)); returns it with both resolved configs (as config.json records them).

    Each config is the entry's config object or a mapping of its fields (None: its defaults); a wrong field is
    one line naming the option, the field and what it expects, not a TypeError from deep inside.
    """
    bb_cfg = config_for(BACKBONES, backbone, backbone_config, flag="--backbone-arg")
    fw_cfg = config_for(FRAMEWORKS, framework, framework_config, flag="--framework-arg")
    try:
        bb = BACKBONES.get(backbone)(spec, bb_cfg)
    except ValueError as err:  # a config that does not fit the data (e.g. more modalities than it supports)
        raise MedmodalError(f"backbone '{backbone}': {err}", field="--backbone-arg") from None
    try:
        fw = FRAMEWORKS.get(framework)(bb, spec, fw_cfg)
    except ValueError as err:
        raise MedmodalError(f"framework '{framework}': {err}", field="--framework-arg") from None
    return fw, asdict(bb_cfg), asdict(fw_cfg)


def save_weights(run_dir: Path, model: Framework, normalizer: Normalizer) -> None:
    save_model(model, str(run_dir / WEIGHTS))  # handles tied weights; refuses nothing we cannot reload
    save_file(normalizer.state(), str(run_dir / NORMALIZATION))
    write_json(run_dir / FRAMEWORK_STATE, model.extra_state())


def read_config(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise MedmodalError("not a run directory (config.json missing)", path=run_dir)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise MedmodalError(f"unreadable JSON ({err.msg} at line {err.lineno})", path=path) from None


def load_run_model(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Framework, dict, Normalizer]:
    """(model in eval mode with weights and framework state restored, config, normalizer)."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    try:
        spec = spec_from_json(cfg["data"]["spec"])
        model, _, _ = build_model(
            spec,
            cfg["backbone"]["name"],
            cfg["framework"]["name"],
            cfg["backbone"]["config"],
            cfg["framework"]["config"],
        )
    except KeyError as err:
        raise MedmodalError("incomplete config", path=run_dir / CONFIG, field=str(err.args[0])) from None
    for name in (WEIGHTS, NORMALIZATION):
        if not (run_dir / name).is_file():
            raise MedmodalError("missing", path=run_dir / name)
    try:
        missing, unexpected = load_model(model, str(run_dir / WEIGHTS), strict=False)
    except Exception as err:
        raise MedmodalError(f"unreadable weights ({type(err).__name__})", path=run_dir / WEIGHTS) from None
    if missing or unexpected:
        raise MedmodalError(
            f"weights do not match the model (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})",
            path=run_dir / WEIGHTS,
        )
    state_path = run_dir / FRAMEWORK_STATE
    if state_path.is_file():
        model.load_extra_state(json.loads(state_path.read_text()))
    normalizer = Normalizer.from_state(load_file(str(run_dir / NORMALIZATION)))
    return model.to(device).eval(), cfg, normalizer
