"""What a device could do: its dense bf16 peak (a datasheet table, or a matmul measured in the same run) and the
arithmetic of a BERT-style encoder forward pass, so the featurize benchmarks can print "fraction of peak".

The table holds NVIDIA's datasheet figures for dense tensor-core bf16 (the 2:4-sparsity figures the datasheets
print beside them are halved away: a transformer's weights are dense). The measured peak is the best of a few
large square matmuls in the precision the encoder runs in; on the CPU, where encoders run fp32, it is fp32.
"""

from __future__ import annotations

import time

import torch

# dense bf16 tensor-core FLOP/s by a substring of torch.cuda.get_device_name(); the first match wins, so the
# more specific names come first
PEAK_BF16 = (
    ("H200 NVL", 835e12),
    ("H200", 989e12),  # SXM
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10", 125e12),
)


def table_peak(device: torch.device) -> tuple[str, float | None]:
    """(device name, datasheet dense bf16 FLOP/s or None when the device is not in the table or not CUDA)."""
    if device.type != "cuda":
        return "CPU", None
    name = torch.cuda.get_device_name(device)
    for key, flops in PEAK_BF16:
        if key in name:
            return name, flops
    return name, None


def measured_peak(device: torch.device, dtype: torch.dtype, *, n: int | None = None, repeats: int = 10) -> float:
    """Best FLOP/s of ``repeats`` (n x n) @ (n x n) products in ``dtype`` on ``device`` (2 n^3 FLOPs each).

    On the CPU per CPU-second of this process (``time.process_time``): on a shared machine wall time would also
    measure the other jobs; compare it with an achieved rate per CPU-second."""
    n = n or (8192 if device.type == "cuda" else 1024)
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for i in range(repeats + 1):
        _sync(device)
        t = clock()
        a @ b
        _sync(device)
        if i:  # the first product pays for kernel selection and the allocator
            best = min(best, clock() - t)
    return 2 * n**3 / max(best, 1e-9)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def encoder_flops(model: torch.nn.Module, lengths: list[int]) -> float:
    """Forward FLOPs of a BERT-style encoder over windows of ``lengths`` tokens: 2 FLOPs per weight per token in
    the layers' linear maps, plus the attention products (Q K^T and A V: 2 x 2 L^2 d per layer per window).
    Embedding look-ups, softmax and norms are left out (well under 1% at d >= 384)."""
    cfg = model.config
    layers, d = int(cfg.num_hidden_layers), int(cfg.hidden_size)
    body = getattr(model, "encoder", model)  # the pooler runs once per window, not per token
    linear = sum(m.weight.numel() for m in body.modules() if isinstance(m, torch.nn.Linear))
    tokens = sum(lengths)
    return 2.0 * linear * tokens + 4.0 * layers * d * sum(L * L for L in lengths)


def peak_rows(device: torch.device, precision: str, achieved: float) -> list[tuple[str, str, str]]:
    """(reference, FLOP/s, achieved fraction) rows: the datasheet peak (CUDA) and a peak measured now. On the CPU
    ``achieved`` must be per CPU-second, like the measured peak."""
    rows = []
    name, table = table_peak(device)
    if table is not None:
        rows.append((f"{name} datasheet dense bf16", f"{table / 1e12:.0f} T", f"{achieved / table:.1%}"))
    elif device.type == "cuda":
        rows.append((f"{name}: not in the datasheet table", "", ""))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    peak = measured_peak(device, dtype)
    per = "per CPU-second, " if device.type == "cpu" else ""
    what = f"measured {str(dtype).removeprefix('torch.')} matmul peak ({device.type}, {per}this run)"
    rows.append((what, _t(peak), f"{achieved / peak:.1%}"))
    return rows


def _t(flops: float) -> str:
    return f"{flops / 1e12:.2f} T" if flops >= 1e11 else f"{flops / 1e9:.1f} G"
