"""Which device and which autocast precision: one rule for featurize (encoders) and models (training, scoring).

``auto`` picks CUDA when torch sees a GPU, else the CPU; precision ``auto`` is bf16 on a CUDA device that supports
it (no loss scaling needed), fp16 on other CUDA devices and fp32 on the CPU, where autocast would only slow the
small models down.
"""

from __future__ import annotations

import os

import torch

from medmodal.common import MedmodalError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else the CPU. Under torchrun a bare ``cuda`` (or ``auto``) means the
    worker's own GPU, ``cuda:LOCAL_RANK``, so the ranks of one node never share a device."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise MedmodalError(f"unknown device '{device}' (use auto, cpu, cuda or cuda:N)", field="--device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MedmodalError(
            f"device '{device}' requested but CUDA is not available (use --device cpu or auto)", field="--device"
        )
    if dev.type == "cuda" and dev.index is None and "LOCAL_RANK" in os.environ:
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]) % max(1, torch.cuda.device_count()))
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` = bf16 on a CUDA device that supports it, else fp16 on CUDA, fp32 on the CPU."""
    if precision not in PRECISIONS:
        raise MedmodalError(f"unknown precision '{precision}' (use {', '.join(PRECISIONS)})", field="--precision")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast(device: torch.device, precision: str = "auto"):
    """The autocast context of ``precision`` (resolved for ``device``); fp32 disables autocast."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
