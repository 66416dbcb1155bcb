"""The shift benchmark: do the debiasing frameworks keep their accuracy when the confounder's effect flips?

    python benchmarks/shift.py --out shift_out                 # or: medmodal benchmark shift --out shift_out
    python benchmarks/shift.py --out shift_out --subjects 1500 --seeds 0 1 --backbone late_fusion

Pipeline, every stage through the library functions a user would call:

1. ``simulate("mimic_iv", …, environment="train")`` and ``environment="shifted"`` (docs/simulator.md: the
   confounder C's effects on outcomes and on ordering flip sign; the latent health state U's effects stay);
2. ``build_cohort`` (readmission_30d by default) and ``featurize_all`` for both. Without pretrained encoders
   offline, notes and images are embedded by the tiny *randomly initialised* BERT / timm models of
   ``featurize.tiny`` (pass --text-model / --image-model to use real ones);
3. for every backbone × framework × seed: ``train`` on the train environment, read its in-distribution (ID)
   test metrics, ``evaluate`` the run on the shifted cohort and read that cohort's **test** split (OOD).

Choices are made only on the shifted environment's **validation** split: where a framework has several
candidate option sets (``CANDIDATES``), each is trained with the first seed and the one with the best shifted-val
AUPRC of the primary label is kept for all seeds. erm has a single candidate. Nothing is ever chosen on a test
split. Everything lands in OUT: results.csv (every run, candidates included), summary.json, benchmark.md (the
tables), shift.png (the figure); the simulated data, cohorts, feature store and run directories are kept in
OUT/work so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from medmodal.common import MedmodalError, atomic_file, console, write_json

PRIMARY_FIRST = True  # the task's first label is the one selection and the headline table use

# Option sets tried per framework, selected on the shifted environment's validation split (first seed only).
CANDIDATES: dict[str, list[dict[str, Any]]] = {
    "erm": [{}],
    "dfd": [{}, {"mi_weight": 0.3}, {"mi_weight": 0.03}],  # λ of the CLUB penalty around the default 0.1
    "cdmm": [{}, {"mi_weight": 0.3}, {"mi_weight": 0.03}],
    "mmnar": [{}, {"aux_weight": 1.0}],  # λ of the auxiliary losses at the start of fine-tuning (default 0.5)
}


@dataclass(frozen=True)
class ShiftConfig:
    subjects: int = 3000  # per environment; ~0.94 samples per subject for readmission_30d
    sim_seed: int = 7  # the shifted environment uses sim_seed + 1 (distinct subjects)
    seeds: tuple[int, ...] = (0, 1, 2)
    backbones: tuple[str, ...] = ()  # () = every registered backbone
    frameworks: tuple[str, ...] = ("erm", "dfd", "cdmm", "mmnar")
    task: str = "readmission_30d"
    epochs: int = 15
    batch_size: int = 128
    lr: float = 1e-3
    hidden: int = 64
    patience: int = 5
    image_size: int = 32
    text_model: str | None = None  # None = tiny random BERT (offline)
    image_model: str | None = None  # None = tiny random timm convnext (offline)
    select: bool = True  # try CANDIDATES and choose on the shifted env's val split
    threads: int = 1  # torch CPU threads per run (the benchmark machine is shared)
    candidates: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: CANDIDATES)

    def __post_init__(self):
        if self.subjects < 200:
            raise MedmodalError(f"--subjects must be >= 200 for stable splits, got {self.subjects}")
        if not self.seeds:
            raise MedmodalError("need at least one seed")
        unknown = [f for f in self.frameworks if f not in self.candidates]
        if unknown:
            known = ", ".join(self.candidates)
            raise MedmodalError(f"no candidate options for framework '{unknown[0]}' (known: {known})")


# ---------------------------------------------------------------------------------------------------- data


@contextlib.contextmanager
def _quiet():
    """Training prints per-epoch lines and tables; the benchmark prints one line per run instead."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def prepare_data(work: Path, cfg: ShiftConfig) -> dict[str, dict[str, Path]]:
    """Simulate, build and featurize both environments (skipping what an earlier call finished)."""
    from medmodal.cohort import build_cohort
    from medmodal.featurize import featurize_all
    from medmodal.featurize.tiny import TINY_BERT_VOCAB, make_tiny_bert, make_tiny_timm
    from medmodal.simulate import simulate

    models = work / "encoders"
    text_model, image_model, image_weights = cfg.text_model, cfg.image_model or "test_convnext", None
    if text_model is None:
        vocab = TINY_BERT_VOCAB
        if not (models / "tiny_bert" / "config.json").is_file():
            make_tiny_bert(models / "tiny_bert", vocab)
        text_model = str(models / "tiny_bert")
    if cfg.image_model is None:
        image_weights = models / "tiny_timm.safetensors"
        if not image_weights.is_file():
            make_tiny_timm(image_weights)
    envs = {}
    for env, seed in (("train", cfg.sim_seed), ("shifted", cfg.sim_seed + 1)):
        raw, cohort = work / env / "raw", work / env / "cohort"
        t0 = time.time()
        if not (raw / "simulation.json").is_file():
            simulate(
                "mimic_iv",
                raw,
                subjects=cfg.subjects,
                seed=seed,
                environment=env,
                image_size=cfg.image_size,
                overwrite=True,
            )
        if not (cohort / "manifest.json").is_file():
            build_cohort("mimic_iv", raw, cfg.task, cohort)
        with _quiet():
            featurize_all(
                cohort,
                work / "store",
                text_model=text_model,
                image_model=image_model,
                image_weights=image_weights,
                device="cpu",
                max_length=128,
                stride=32,
            )
        console.print(f"[bold]{env}[/bold] environment ready ({time.time() - t0:.0f}s): {cohort}")
        envs[env] = {"raw": raw, "cohort": cohort}
    return envs


# ---------------------------------------------------------------------------------------------------- runs


def _value(m: Any) -> float | None:
    return m.get("value") if isinstance(m, dict) else m


def _split_metrics(metrics: dict[str, Any], split: str) -> dict[str, float | None]:
    out = {}
    for task, per_split in metrics["tasks"].items():
        overall = per_split.get(split, {}).get("overall", {})
        out[f"{task}.auroc"] = _value(overall.get("auroc"))
        out[f"{task}.auprc"] = _value(overall.get("auprc"))
    return out


def run_one(
    envs,
    work: Path,
    cfg: ShiftConfig,
    backbone: str,
    framework: str,
    options: dict[str, Any],
    seed: int,
    tag: str,
    primary: str,
) -> dict[str, Any]:
    """Train on the train environment, evaluate on the shifted one; resumes from a finished run directory."""
    from medmodal.models.evaluate import evaluate
    from medmodal.models.train import train

    run = work / "runs" / f"{backbone}__{framework}__{tag}__seed{seed}"
    ood = run / "eval_shifted"
    t0 = time.time()
    if not (ood / "metrics.json").is_file():
        torch.set_num_threads(cfg.threads)
        with _quiet():
            train(
                envs["train"]["cohort"],
                work / "store",
                run,
                backbone=backbone,
                framework=framework,
                framework_args=options,
                backbone_args={"hidden": cfg.hidden},
                epochs=cfg.epochs,
                batch_size=cfg.batch_size,
                lr=cfg.lr,
                seed=seed,
                device="cpu",
                n_boot=0,
                progress=False,
                patience=cfg.patience,
                overwrite=True,
            )
            evaluate(run, envs["shifted"]["cohort"], work / "store", out=ood, n_boot=0, device="cpu")
    m_id = json.loads((run / "metrics.json").read_text())
    m_ood = json.loads((ood / "metrics.json").read_text())
    row: dict[str, Any] = {
        "backbone": backbone,
        "framework": framework,
        "options": json.dumps(options, sort_keys=True),
        "tag": tag,
        "seed": seed,
        "run_dir": str(run),
        "best_epoch": m_id["training"]["best_epoch"],
        "train_seconds": m_id["training"]["seconds"],
    }
    for prefix, metrics, split in (("id_test", m_id, "test"), ("ood_val", m_ood, "val"), ("ood_test", m_ood, "test")):
        row.update({f"{prefix}.{k}": v for k, v in _split_metrics(metrics, split).items()})
    console.print(
        f"{backbone:>16} {framework:>5} {tag:>4} seed {seed}: {primary} ID AUROC "
        f"{row[f'id_test.{primary}.auroc']:.3f} / OOD AUROC {row[f'ood_test.{primary}.auroc']:.3f}, "
        f"OOD AUPRC {row[f'ood_test.{primary}.auprc']:.3f} ({time.time() - t0:.0f}s)"
    )
    return row


def oracle(envs, task_labels: dict[str, str]) -> dict[str, dict[str, float]]:
    """AUROC / AUPRC on each environment's test split of the true causal risk (U only) and of the true outcome
    probability (U and C): what recovering U exactly, or the whole environment's mechanism, would give."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    out = {}
    for env, paths in envs.items():
        cohort = pl.read_parquet(paths["cohort"] / "cohort.parquet").filter(pl.col("split") == "test")
        truth = pl.read_parquet(paths["raw"] / "truth.parquet")
        key = next(k for k in ("stay_id", "hadm_id") if k in cohort.columns and cohort[k].null_count() == 0)
        truth = truth.filter(pl.col(key).is_not_null()).unique(key, keep="first")
        for label, stem in task_labels.items():
            j = cohort.select(key, label).drop_nulls().join(truth, on=key)
            y = j[label].to_numpy()
            for what, col in (("causal_risk", f"risk_{stem}"), ("true_prob", f"prob_{stem}")):
                if col in j.columns:
                    out.setdefault(env, {})[f"{label}.{what}.auroc"] = float(roc_auc_score(y, j[col]))
                    out[env][f"{label}.{what}.auprc"] = float(average_precision_score(y, j[col]))
    return out


# ---------------------------------------------------------------------------------------------------- tables


def summarise(rows: list[dict[str, Any]], labels: list[str]) -> list[dict[str, Any]]:
    """mean ± sd per backbone × framework over the selected option set's seeds, with the ID→OOD drop."""
    df = pl.DataFrame(rows).filter(pl.col("selected"))
    out = []
    for (bb, fw), g in df.group_by(["backbone", "framework"], maintain_order=True):
        cell: dict[str, Any] = {"backbone": bb, "framework": fw, "options": g["options"][0], "n_seeds": g.height}
        for label in labels:
            for metric in ("auroc", "auprc"):
                id_v = g[f"id_test.{label}.{metric}"].to_numpy().astype(float)
                ood_v = g[f"ood_test.{label}.{metric}"].to_numpy().astype(float)
                for name, v in (("id", id_v), ("ood", ood_v), ("drop", id_v - ood_v)):
                    cell[f"{label}.{metric}.{name}.mean"] = float(np.mean(v))
                    cell[f"{label}.{metric}.{name}.sd"] = float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")
        out.append(cell)
    return out


def _pm(cell: dict[str, Any], key: str) -> str:
    m, s = cell[f"{key}.mean"], cell[f"{key}.sd"]
    return f"{m:.3f}" if math.isnan(s) else f"{m:.3f} ± {s:.3f}"


def markdown_tables(summary: list[dict[str, Any]], labels: list[str], orc: dict[str, dict[str, float]]) -> str:
    lines = []
    for label in labels:
        lines += [
            f"### {label}",
            "",
            "| backbone | framework | ID AUROC | OOD AUROC | drop AUROC | ID AUPRC | OOD AUPRC | drop AUPRC | "
            "OOD AUPRC vs erm |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        erm = {c["backbone"]: c for c in summary if c["framework"] == "erm"}
        for c in summary:
            base = erm.get(c["backbone"])
            delta = (
                ""
                if base is None or c["framework"] == "erm"
                else (f"{c[f'{label}.auprc.ood.mean'] - base[f'{label}.auprc.ood.mean']:+.3f}")
            )
            lines.append(
                f"| {c['backbone']} | {c['framework']} | {_pm(c, f'{label}.auroc.id')} "
                f"| {_pm(c, f'{label}.auroc.ood')} "
                f"| {_pm(c, f'{label}.auroc.drop')} | {_pm(c, f'{label}.auprc.id')} | {_pm(c, f'{label}.auprc.ood')} "
                f"| {_pm(c, f'{label}.auprc.drop')} | {delta} |"
            )
        refs = []
        for env, name in (("train", "ID"), ("shifted", "OOD")):
            o = orc.get(env, {})
            if f"{label}.causal_risk.auroc" in o:
                refs.append(
                    f"{name}: causal risk AUROC {o[f'{label}.causal_risk.auroc']:.3f} / AUPRC "
                    f"{o[f'{label}.causal_risk.auprc']:.3f}, true probability AUROC "
                    f"{o[f'{label}.true_prob.auroc']:.3f} / AUPRC {o[f'{label}.true_prob.auprc']:.3f}"
                )
        if refs:
            lines += ["", "Oracles on the same test splits (from truth.parquet) — " + "; ".join(refs) + "."]
        lines.append("")
    return "\n".join(lines)


def plot(summary: list[dict[str, Any]], label: str, path: Path) -> None:
    from medmodal.report.figures import BarPanel, grouped_bars

    backbones = list(dict.fromkeys(c["backbone"] for c in summary))
    frameworks = list(dict.fromkeys(c["framework"] for c in summary))
    cell = {(c["backbone"], c["framework"]): c for c in summary}

    def grid(key: str) -> np.ndarray:  # (framework, backbone)
        return np.array([[cell[(b, f)][key] if (b, f) in cell else np.nan for b in backbones] for f in frameworks])

    panels = [
        BarPanel(title, unit, grid(f"{key}.mean"), grid(f"{key}.sd"), zero_line="drop" in key)
        for key, title, unit in (
            (f"{label}.auroc.ood", "OOD AUROC (shifted test)", "AUROC (0–1), mean ± sd over seeds"),
            (f"{label}.auprc.ood", "OOD AUPRC (shifted test)", "AUPRC (0–1), mean ± sd over seeds"),
            (f"{label}.auroc.drop", "ID → OOD AUROC drop", "AUROC drop (ID − OOD, 0–1)"),
        )
    ]
    png = grouped_bars(
        backbones, frameworks, panels, f"{label}: trained on the train environment, mean ± sd over seeds"
    )
    with atomic_file(path) as fh:
        fh.write(png)


# ---------------------------------------------------------------------------------------------------- driver


def run_benchmark(out: str | Path, cfg: ShiftConfig = ShiftConfig()) -> Path:
    """Run the whole benchmark into ``out`` (resumable) and return ``out``."""
    import medmodal.models.backbones
    import medmodal.models.frameworks  # noqa: F401 - fills FRAMEWORKS
    from medmodal.models.base import BACKBONES, FRAMEWORKS

    out = Path(out).absolute()
    work = out / "work"
    backbones = cfg.backbones or tuple(BACKBONES.names())
    for b in backbones:
        BACKBONES.get(b)
    for f in cfg.frameworks:
        FRAMEWORKS.get(f)
    t_start = time.time()
    envs = prepare_data(work, cfg)
    manifest = json.loads((envs["train"]["cohort"] / "manifest.json").read_text())
    labels = [lab["name"] for lab in manifest["labels"]]
    primary = labels[0]
    rows: list[dict[str, Any]] = []
    for bb in backbones:
        for fw in cfg.frameworks:
            cands = cfg.candidates[fw] if cfg.select else cfg.candidates[fw][:1]
            first = [
                run_one(envs, work, cfg, bb, fw, opts, cfg.seeds[0], f"c{i}", primary) for i, opts in enumerate(cands)
            ]
            # the choice: best AUPRC of the primary label on the shifted environment's *validation* split
            best = int(np.nanargmax([r[f"ood_val.{primary}.auprc"] for r in first]))
            for i, r in enumerate(first):
                rows.append({**r, "selected": i == best})
            for seed in cfg.seeds[1:]:
                row = run_one(envs, work, cfg, bb, fw, cands[best], seed, f"c{best}", primary)
                rows.append({**row, "selected": True})
    stems = {"readmission_30d": "readmission_30d", "icu_admission_90d": "icu_admission_90d"}
    orc = oracle(envs, {lab: stems[lab] for lab in labels if lab in stems})
    summary = summarise(rows, labels)
    pl.DataFrame(rows).write_csv(out / "results.csv")
    write_json(
        out / "summary.json",
        {
            "config": asdict(cfg) | {"backbones": list(backbones)},
            "labels": labels,
            "cells": summary,
            "oracle": orc,
            "seconds": round(time.time() - t_start, 1),
        },
    )
    plot(summary, primary, out / "shift.png")
    n = {
        env: pl.read_parquet(p["cohort"] / "cohort.parquet").group_by("split").len().sort("split").rows()
        for env, p in envs.items()
    }
    header = (
        f"Shift benchmark: task {cfg.task}, {cfg.subjects} simulated subjects per environment "
        f"(samples per split: {n}), seeds {list(cfg.seeds)}, {cfg.epochs} epochs, hidden {cfg.hidden}; "
        f"{time.time() - t_start:.0f}s in all.\n"
    )
    with atomic_file(out / "benchmark.md", "w") as fh:
        fh.write(header + "\n" + markdown_tables(summary, labels, orc))
    console.print(f"wrote {out / 'benchmark.md'}, {out / 'shift.png'}, {out / 'results.csv'}")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--subjects", type=int, default=ShiftConfig.subjects)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(ShiftConfig.seeds))
    ap.add_argument("--backbone", action="append", default=[], help="repeat for several (default: all)")
    ap.add_argument("--framework", action="append", default=[], help="repeat for several (default: all four)")
    ap.add_argument("--epochs", type=int, default=ShiftConfig.epochs)
    ap.add_argument("--no-select", action="store_true", help="defaults only: skip the shifted-val selection")
    ap.add_argument("--text-model", default=None)
    ap.add_argument("--image-model", default=None)
    args = ap.parse_args(argv)
    cfg = ShiftConfig(
        subjects=args.subjects,
        seeds=tuple(args.seeds),
        backbones=tuple(args.backbone),
        frameworks=tuple(args.framework) or ShiftConfig.frameworks,
        epochs=args.epochs,
        select=not args.no_select,
        text_model=args.text_model,
        image_model=args.image_model,
    )
    run_benchmark(args.out, cfg)


if __name__ == "__main__":
    main()
