"""The shift benchmark: trained in one hospital, does a debiasing framework beat erm where the confounder's
mechanism changes -- under a protocol that gives erm the same chances?

    medmodal benchmark shift --out shift_out                  # the full protocol (resumable; docs/benchmark.md)
    medmodal benchmark shift --out shift_quick --quick        # every code path in a few minutes
    python benchmarks/shift.py --out shift_out --jobs 2       # the same, from a clone

Protocol (docs/benchmark.md has the reasoning):

1. **Worlds.** Each world is one simulator seed: a ``train`` environment and the four mechanisms of
   docs/simulator.md (``shifted``, ``outcome_shift``, ``order_shift``, ``decoupled``), each simulated, built
   (``build_cohort``) and featurized (``featurize_all``, tiny random encoders offline) on its own. ``worlds``
   reporting worlds at the default confounder strength, and the same world seeds again at every other
   ``c_outcome`` of the sweep.
2. **Selection** (``select_seed``, on a separate selection world ``select_world``; neither is a reporting seed or
   world): every method gets the same budget, ``len(candidates()[m])`` = 3 option sets (each framework's
   ``search_space``), each trained once; the one with the best AUPRC of the primary label on the **training
   environment's validation split** is kept. erm and the baselines are selected the same way.
   ``--target-selection`` additionally selects on the selection world's ``shifted`` validation split
   (target-domain labels) and reports that choice apart, labelled as such.
3. **Reporting.** The selected option set of every method, with ``seeds`` model seeds on every reporting world,
   plus each framework's ablations (``ABLATIONS`` trained; ``PREDICT_ABLATIONS`` re-predicted from the same
   weights). Every run is scored in distribution (the train environment's test split) and on *every* sample of
   each mechanism's cohort (nothing ever selects on those worlds' shifted data).
4. **Intervals.** ``shift_report.paired_bootstrap``: each method's OOD AUROC / AUPRC minus erm's on the same
   samples, averaged over worlds and seeds, with a 95 % interval from a two-level bootstrap (worlds, then
   samples within each world; the same resample for both methods).

Baselines beside erm: ``logreg`` (scikit-learn logistic regression on structured.parquet's features plus the
``has_*`` flags; see ``shift_report.logreg_cell``) and ``groupdro`` (GroupDRO over missingness pattern × label).
Resumable: every cell (one environment's data, or one trained run with its predictions) writes its result
atomically under OUT/work and is skipped when present. Cells run in ``jobs`` worker processes, one torch thread
each. OUT gets summary.json, results.csv (one row per strength × scoring set × method × variant × metric),
benchmark.md (the tables), shift.png (the figure).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from medmodal.common import MedmodalError, atomic_file, console, write_json

MECHANISMS = ("shifted", "outcome_shift", "order_shift", "decoupled")
NEURAL = ("erm", "groupdro", "dfd", "cdmm", "mmnar")
METHODS = ("erm", "logreg", "groupdro", "dfd", "cdmm", "mmnar")

# logreg is a baseline of this benchmark, not a registered framework: scikit-learn's inverse regularisation C
LOGREG_CANDIDATES: tuple[dict[str, Any], ...] = ({"C": 1.0}, {"C": 0.1}, {"C": 0.01})


def candidates(methods: tuple[str, ...] = METHODS) -> dict[str, list[dict[str, Any]]]:
    """The hyper-parameter budget: the option sets each framework's config declares (``search_space``; the same
    number for every method, erm and the baselines included). A ``"train"`` entry holds TrainConfig fields, the
    rest are framework options."""
    from medmodal.models.base import FRAMEWORKS

    out = {}
    for m in methods:
        space = LOGREG_CANDIDATES if m == "logreg" else FRAMEWORKS.get(m).config_class.search_space
        out[m] = [dict(opts) for opts in space]
    return out


# Each framework's parts, switched off one at a time on top of the selected option set (trained again) ...
ABLATIONS: dict[str, dict[str, dict[str, Any]]] = {
    "dfd": {
        "no_mi": {"mi_weight": 0.0},
        "uniform_weights": {"reweight": False},
        "coupled": {"biased_input": "coupled"},
    },
    "cdmm": {"backdoor_only": {"mi_weight": 0.0, "reweight": False}},
    "mmnar": {"no_reconstruction": {"rec_weight": 0.0}, "no_pattern_loss": {"pattern_weight": 0.0}},
}
# ... or, where the part acts at prediction only, re-predicted from the same trained weights.
PREDICT_ABLATIONS: dict[str, dict[str, dict[str, Any]]] = {
    "cdmm": {"no_adjustment": {"adjustment": "none"}, "nwgm": {"adjustment": "nwgm"}},
    "mmnar": {"no_rectifier": {"rectify": False}},
}


@dataclass(frozen=True)
class ShiftConfig:
    subjects: int = 2000  # per environment (~1,900 readmission_30d samples)
    worlds: tuple[int, ...] = (1, 2, 3, 4, 5)  # simulator seeds of the reporting worlds
    seeds: tuple[int, ...] = (0, 1, 2)  # model seeds of the reporting runs
    select_world: int = 1000  # simulator seed of the selection world (not a reporting world)
    select_seed: int = 100  # model seed of the selection runs (not a reporting seed)
    c_outcome: tuple[float, ...] = (0.9, 0.5, 1.3)  # confounder strength sweep; the first is the default world
    mechanisms: tuple[str, ...] = MECHANISMS
    methods: tuple[str, ...] = METHODS
    backbone: str = "late_fusion"
    ablations: bool = True
    target_selection: bool = False  # also select on target-domain (shifted) labels, reported apart
    task: str = "readmission_30d"
    epochs: int = 15
    batch_size: int = 128
    lr: float = 1e-3
    hidden: int = 64
    patience: int = 5
    image_size: int = 32
    n_boot: int = 1000
    jobs: int = 1  # worker processes (one torch thread each)
    candidates: dict[str, list[dict[str, Any]]] = field(default_factory=candidates)

    def __post_init__(self):
        if self.subjects < 200:
            raise MedmodalError(f"--subjects must be >= 200 for stable splits, got {self.subjects}")
        if not self.seeds or not self.worlds or not self.c_outcome:
            raise MedmodalError("need at least one seed, one world and one c_outcome")
        if self.select_seed in self.seeds or self.select_world in self.worlds:
            raise MedmodalError("the selection seed and world must not be reporting ones")
        unknown = [m for m in self.methods if m not in self.candidates]
        if unknown or "erm" not in self.methods:
            raise MedmodalError(f"methods must include erm and be among {', '.join(self.candidates)}")
        bad = [m for m in self.mechanisms if m not in MECHANISMS]
        if bad:
            raise MedmodalError(f"unknown mechanism '{bad[0]}' (known: {', '.join(MECHANISMS)})")
        if self.jobs < 1:
            raise MedmodalError(f"--jobs must be >= 1, got {self.jobs}")


QUICK = ShiftConfig(
    subjects=300,
    worlds=(1, 2),
    seeds=(0,),
    c_outcome=(0.9, 1.3),
    mechanisms=("shifted", "outcome_shift"),
    epochs=2,
    hidden=16,
    image_size=32,
    n_boot=50,
    target_selection=True,
)


# ---------------------------------------------------------------------------------------------------- cells


@contextlib.contextmanager
def _quiet():
    """Training prints per-epoch lines and tables; the benchmark prints one line per cell instead."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def env_dir(work: Path, c: float, world: int, env: str) -> Path:
    return work / "data" / f"c{c:g}" / f"world{world}" / env


def _encoders(work: Path) -> tuple[str, Path]:
    from medmodal.featurize.tiny import TINY_BERT_VOCAB, make_tiny_bert, make_tiny_timm

    models = work / "encoders"
    if not (models / "tiny_bert" / "config.json").is_file():
        make_tiny_bert(models / "tiny_bert", TINY_BERT_VOCAB)
    if not (models / "tiny_timm.safetensors").is_file():
        make_tiny_timm(models / "tiny_timm.safetensors")
    return str(models / "tiny_bert"), models / "tiny_timm.safetensors"


def data_cell(work: Path, cfg: ShiftConfig, c: float, world: int, env: str) -> str:
    """Simulate, build, featurize one environment of one world; write labels.npz (the scoring truth)."""
    import torch

    from medmodal.cohort import build_cohort
    from medmodal.featurize import ImageConfig, TextConfig, featurize_all
    from medmodal.models.data import load_cohort
    from medmodal.simulate import simulate

    d = env_dir(work, c, world, env)
    if (d / "labels.npz").is_file():
        return f"{d} (done)"
    torch.set_num_threads(1)
    text_model, image_weights = _encoders(work)
    # environments of one world get distinct seeds, so no subject is in two of them (ids differ by environment
    # too); the c_outcome sweep reuses the world seeds, so its worlds pair with the default ones
    offset = {"train": 0, **{m: i + 1 for i, m in enumerate(MECHANISMS)}}[env]
    with _quiet():
        if not (d / "raw" / "simulation.json").is_file():
            simulate(
                "mimic_iv",
                d / "raw",
                subjects=cfg.subjects,
                seed=world * 10 + offset,
                environment=env,
                image_size=cfg.image_size,
                overwrite=True,
                c_outcome=c,
            )
        if not (d / "cohort" / "manifest.json").is_file():
            build_cohort("mimic_iv", d / "raw", cfg.task, d / "cohort", threads=1)
        featurize_all(
            d / "cohort",
            d / "store",
            configs=[
                TextConfig(model=text_model, device="cpu", max_length=128, stride=32),
                ImageConfig(model="test_convnext", weights=str(image_weights), device="cpu", num_workers=0),
            ],
        )
        data = load_cohort(d / "cohort", d / "store")
    with atomic_file(d / "labels.npz") as fh:
        np.savez(
            fh,
            sample_ids=np.array(data.sample_ids),
            split=data.split,
            labels=data.labels.numpy(),
            label_mask=data.label_mask.numpy(),
            names=np.array([lab.name for lab in data.spec.labels]),
        )
    return str(d)


def _train_options(method: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    opts = dict(options)
    return opts.pop("train", {}), opts


def _predict(model, cfg_json: dict, normalizer, cohort: Path, store: Path) -> np.ndarray:
    """Probabilities (N, C) of one cohort, normalised with the *training* statistics as ``evaluate`` does."""
    from medmodal.models.data import load_cohort
    from medmodal.models.evaluate import predict_all
    from medmodal.models.frameworks.label_losses import output_probs

    data = load_cohort(
        cohort, store, normalizer=normalizer, expect=model.spec, indicators=cfg_json["data"]["indicators"]
    )
    logits = predict_all(model, data, batch_size=1024, device="cpu", amp=False)
    return output_probs(logits, model.spec.labels).numpy().astype(np.float32)


def run_cell(
    work: Path, cfg: ShiftConfig, c: float, world: int, method: str, variant: str, options: dict, seed: int
) -> str:
    """Train ``method`` with ``options`` on one world's train environment, predict every environment of that
    world (and the prediction-time ablations); write OUT/work/cells/...npz. Returns a one-line summary."""
    out = work / "cells" / f"c{c:g}" / f"world{world}" / f"{method}__{variant}__seed{seed}.npz"
    if out.is_file():
        return f"{out.name} (done)"
    t0 = time.time()
    if method == "logreg":
        from medmodal.benchmarks.shift_report import logreg_cell

        preds = logreg_cell(work, cfg, c, world, options)
        _save_cell(out, preds, {"seconds": time.time() - t0})
        return f"c{c:g} world{world} {method}/{variant}: {time.time() - t0:.0f}s"

    import torch

    from medmodal.models.checkpoint import load_run_model
    from medmodal.models.train import train

    torch.set_num_threads(1)
    train_env = env_dir(work, c, world, "train")
    run = work / "runs" / f"c{c:g}" / f"world{world}" / f"{method}__{variant}__seed{seed}"
    train_args, fw_args = _train_options(method, options)
    with _quiet():
        train(
            train_env / "cohort",
            train_env / "store",
            run,
            backbone=cfg.backbone,
            framework=method,
            framework_config=fw_args,
            backbone_config={"hidden": cfg.hidden},
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            seed=seed,
            device="cpu",
            n_boot=0,
            progress=False,
            patience=cfg.patience,
            overwrite=True,
            **train_args,
        )
        model, cfg_json, normalizer = load_run_model(run, "cpu")
        envs = ["train", *(cfg.mechanisms if world != cfg.select_world else ("shifted",))]
        preds: dict[str, np.ndarray] = {}
        predict_ablations = PREDICT_ABLATIONS.get(method, {}) if variant == "selected" else {}
        for env in envs:
            d = env_dir(work, c, world, env)
            preds[env] = _predict(model, cfg_json, normalizer, d / "cohort", d / "store")
            for name, change in predict_ablations.items():
                saved = model.cfg
                model.cfg = dataclasses.replace(saved, **change)
                preds[f"{env}@{name}"] = _predict(model, cfg_json, normalizer, d / "cohort", d / "store")
                model.cfg = saved
    metrics = json.loads((run / "metrics.json").read_text())
    _save_cell(out, preds, {"seconds": time.time() - t0, "best_epoch": metrics["training"]["best_epoch"]})
    return f"c{c:g} world{world} {method}/{variant} seed {seed}: {time.time() - t0:.0f}s"


def _save_cell(out: Path, preds: dict[str, np.ndarray], info: dict) -> None:
    with atomic_file(out) as fh:
        np.savez(fh, __info__=np.array(json.dumps(info)), **preds)


def load_cell(work: Path, c: float, world: int, method: str, variant: str, seed: int) -> dict[str, np.ndarray]:
    path = work / "cells" / f"c{c:g}" / f"world{world}" / f"{method}__{variant}__seed{seed}.npz"
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k != "__info__"}


def load_labels(work: Path, c: float, world: int, env: str) -> dict[str, np.ndarray]:
    with np.load(env_dir(work, c, world, env) / "labels.npz") as z:
        return {k: z[k] for k in z.files}


# ---------------------------------------------------------------------------------------------------- driver


def _run_all(jobs: list[tuple], n_workers: int, what: str) -> None:
    """Run (fn, *args) jobs, in worker processes when n_workers > 1; prints one line per finished job."""
    if not jobs:
        return
    console.print(f"[bold]{what}[/bold]: {len(jobs)} cell(s)")
    if n_workers == 1:
        for fn, *args in jobs:
            console.print("  " + fn(*args))
        return
    # spawn: a forked child would inherit the parent's torch thread pool state
    with ProcessPoolExecutor(n_workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(fn, *args) for fn, *args in jobs]
        for f in futures:
            console.print("  " + f.result())


def _cell_done(work: Path, c: float, world: int, method: str, variant: str, seed: int) -> bool:
    return (work / "cells" / f"c{c:g}" / f"world{world}" / f"{method}__{variant}__seed{seed}.npz").is_file()


def select(work: Path, cfg: ShiftConfig, primary_col: int) -> dict[str, Any]:
    """Train every candidate on the selection world; choose per method by the train environment's validation
    AUPRC (default) and by the shifted environment's validation AUPRC (target-domain option)."""
    from medmodal.benchmarks.shift_report import auprc

    c0, w = cfg.c_outcome[0], cfg.select_world
    lab_train, lab_shift = load_labels(work, c0, w, "train"), load_labels(work, c0, w, "shifted")
    out: dict[str, Any] = {}
    for method in cfg.methods:
        rows = []
        for i, opts in enumerate(cfg.candidates[method]):
            cell = load_cell(work, c0, w, method, f"c{i}", cfg.select_seed)
            score = {}
            for key, lab, env in (("train_val", lab_train, "train"), ("target_val", lab_shift, "shifted")):
                val = (lab["split"] == "val") & lab["label_mask"][:, 0]
                score[key] = auprc(lab["labels"][val, 0], cell[env][val, primary_col])
            rows.append({"candidate": i, "options": opts, **score})
        best = max(rows, key=lambda r: r["train_val"])
        target = max(rows, key=lambda r: r["target_val"])
        out[method] = {"candidates": rows, "selected": best["candidate"], "target_selected": target["candidate"]}
    return out


def run_benchmark(out: str | Path, cfg: ShiftConfig = ShiftConfig()) -> Path:
    """Run (or resume) the whole protocol into ``out``; returns ``out``."""
    import medmodal.models.backbones
    import medmodal.models.frameworks  # noqa: F401 - fill the registries
    from medmodal.benchmarks import shift_report
    from medmodal.models.base import BACKBONES, FRAMEWORKS

    BACKBONES.get(cfg.backbone)
    for m in cfg.methods:
        if m != "logreg":
            FRAMEWORKS.get(m)
    out = Path(out).absolute()
    work = out / "work"
    t_start = time.time()
    c0 = cfg.c_outcome[0]

    data_jobs = [(data_cell, work, cfg, c0, cfg.select_world, env) for env in ("train", "shifted")]
    for c in cfg.c_outcome:
        for w in cfg.worlds:
            data_jobs += [(data_cell, work, cfg, c, w, env) for env in ("train", *cfg.mechanisms)]
    todo = [j for j in data_jobs if not (env_dir(work, *j[3:]) / "labels.npz").is_file()]
    _run_all(todo, cfg.jobs, "environments (simulate → build → featurize)")
    names = list(load_labels(work, c0, cfg.select_world, "train")["names"])
    primary_col = 0  # binary labels: one probability column each, in label order

    sel_jobs = [
        (run_cell, work, cfg, c0, cfg.select_world, m, f"c{i}", opts, cfg.select_seed)
        for m in cfg.methods
        for i, opts in enumerate(cfg.candidates[m])
    ]
    sel_todo = [j for j in sel_jobs if not _cell_done(work, j[3], j[4], j[5], j[6], j[8])]
    _run_all(sel_todo, cfg.jobs, f"selection (world {cfg.select_world}, seed {cfg.select_seed})")
    selection = select(work, cfg, primary_col)

    report_jobs = []
    for c in cfg.c_outcome:
        for m in cfg.methods:
            chosen = cfg.candidates[m][selection[m]["selected"]]
            variants = {"selected": chosen}
            if cfg.ablations and c == c0:
                variants |= {name: _merge(chosen, change) for name, change in ABLATIONS.get(m, {}).items()}
            if cfg.target_selection and c == c0 and selection[m]["target_selected"] != selection[m]["selected"]:
                variants["target_selected"] = cfg.candidates[m][selection[m]["target_selected"]]
            seeds = cfg.seeds[:1] if m == "logreg" else cfg.seeds  # logistic regression has no seed
            for w in cfg.worlds:
                for variant, opts in variants.items():
                    for s in seeds:
                        report_jobs.append((run_cell, work, cfg, c, w, m, variant, opts, s))
    rep_todo = [j for j in report_jobs if not _cell_done(work, j[3], j[4], j[5], j[6], j[8])]
    _run_all(rep_todo, cfg.jobs, "reporting runs")

    summary = shift_report.summarise(work, cfg, selection, names)
    summary["seconds_this_call"] = round(time.time() - t_start, 1)
    summary["config"] = asdict(cfg)
    write_json(out / "summary.json", summary)
    shift_report.results_table(summary).write_csv(out / "results.csv")
    with atomic_file(out / "benchmark.md", "w") as fh:
        fh.write(shift_report.markdown(summary))
    shift_report.plot(summary, out / "shift.png")
    console.print(f"wrote {out / 'benchmark.md'}, {out / 'summary.json'}, {out / 'shift.png'}")
    return out


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    return {**base, **change}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="the small profile (every code path, a few minutes)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--target-selection", action="store_true")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else ShiftConfig()
    cfg = dataclasses.replace(cfg, jobs=args.jobs, target_selection=args.target_selection or cfg.target_selection)
    run_benchmark(args.out, cfg)


if __name__ == "__main__":
    main()
