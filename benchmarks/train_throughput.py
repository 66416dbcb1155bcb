"""Benchmark: training samples/s and the share of step time spent waiting for data, per backbone, same run.

    python benchmarks/train_throughput.py [--n 2000] [--epochs 3] [--batch-size 256] [--device auto] [--threads N]

Each backbone trains (erm) on the learnable toy cohort (models/toy.py: structured, timeseries, note and image
vectors) with the same budget; ``medmodal train`` measures its own loops (metrics.json ``training.throughput``):
samples/s over the training loops (validation excluded) and the data wait, the share of their wall time spent
gathering batches while the device idles (each step ends in a host sync). Target: data wait < 10% of step time.
Under torchrun the figures are the global samples/s (every rank's rows) measured on rank 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from medmodal.models.base import BACKBONES
from medmodal.models.toy import write_toy_cohort
from medmodal.models.train import train


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="toy cohort samples")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--backbones", default=",".join(BACKBONES.names()))
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="medmodal-bench-train-"))
    write_toy_cohort(tmp / "cohort", tmp / "store", n=args.n, seed=0)
    rows = []
    for backbone in args.backbones.split(","):
        run = train(
            tmp / "cohort",
            tmp / "store",
            tmp / backbone,
            backbone=backbone,
            epochs=args.epochs,
            patience=args.epochs,
            batch_size=args.batch_size,
            n_boot=0,
            device=args.device,
            progress=False,
            backbone_config={"hidden": args.hidden},
        )
        m = json.loads((run / "metrics.json").read_text())["training"]
        rows.append((backbone, m["device"], m["throughput"]))
    load = f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores" if hasattr(os, "getloadavg") else ""
    print(f"\nTraining throughput - toy cohort of {args.n}, {args.epochs} epochs, batch {args.batch_size}, "
          f"hidden {args.hidden}; torch threads {torch.get_num_threads()}{load}\n")  # fmt: skip
    print("| backbone | device | samples/s | data wait (share of step time) | target < 10% |")
    print("|---|---|---:|---:|---|")
    for backbone, dev, t in rows:
        ok = "met" if t["data_wait_fraction"] < 0.10 else "NOT met"
        print(f"| {backbone} | {dev} | {t['samples_per_second']:,.0f} | {t['data_wait_fraction']:.1%} | {ok} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
