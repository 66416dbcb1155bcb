"""Train any registered framework around any registered backbone on a cohort's cached features.

One function, ``train``, used by ``medmodal train`` and by benchmarks. What it does, in order:

1. load the cohort's tensors once (``models/data.py``), on the GPU when they fit (else pinned host memory);
2. build ``FRAMEWORKS[framework](BACKBONES[backbone](spec))`` and call ``on_train_begin`` with the training
   split's patterns, labels, label mask and ``pos_weight`` (class imbalance: n_neg / n_pos per binary label);
3. AdamW (no weight decay on biases / norms), linear warm-up then cosine decay, gradient clipping, bf16 autocast
   on CUDA; each step is one ``tensor[rows]`` gather and ``loss(batch, out, progress)``;
4. after every epoch, validation AUPRC (mean over tasks; macro over classes) decides early stopping — AUPRC and
   not AUROC because the outcomes are rare and the papers report both but select on AUPRC;
5. restore the best epoch, ``fit_post_hoc`` on **validation** outputs only, predict every split, score, and
   write the run directory atomically (docs/contracts.md §4).

Scale-out: under ``torchrun --nproc_per_node K`` the same call runs DistributedDataParallel (NCCL on GPUs, gloo on
the CPU). The global batch stays ``batch_size`` (each rank takes ceil(batch_size / K) rows of a shared, seeded
permutation, padded like DistributedSampler), so the schedule and the number of steps match a single process;
rank 0 decides early stopping and writes the run directory.

Determinism: the seed fixes initialisation, the per-epoch permutations (a generator seeded with (seed, epoch)) and
dropout; on the CPU two runs with the same inputs and seed give identical weights and predictions.
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import random
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

import medmodal
from medmodal.common import MedmodalError, console, write_json
from medmodal.devices import autocast, resolve_device
from medmodal.distributed import DistEnv
from medmodal.models.base import BACKBONES, FRAMEWORKS, Framework
from medmodal.models.checkpoint import CONFIG, build_model, save_weights, spec_to_json
from medmodal.models.data import CohortData, feature_fingerprints, fits_on_device, load_cohort, pos_weight
from medmodal.models.evaluate import (
    predict_all,
    predict_logits,
    prediction_frame,
    print_summary,
    score,
    warn_missing_metrics,
)
from medmodal.models.frameworks.label_losses import label_columns, masked_mean, output_probs, per_sample_ce
from medmodal.models.metrics import point_metrics
from medmodal.options import config_for, make_config, option, validate
from medmodal.outputs import atomic_dir, check_output


@dataclass(frozen=True)
class TrainConfig:
    """How ``train`` trains: every option of ``medmodal train`` (and ``--train-arg``) is a field here."""

    epochs: int = option(30, "upper bound on epochs; early stopping usually ends sooner", minimum=1)
    batch_size: int = option(256, "global batch size (split across torchrun ranks)", minimum=1)
    lr: float = option(1e-3, "AdamW learning rate after warm-up", above=0)
    weight_decay: float = option(0.01, "AdamW weight decay; none on biases and norm weights", minimum=0)
    warmup_frac: float = option(
        0.05, "share of the steps warming up linearly from 0, then cosine decay to 0", minimum=0, maximum=0.99
    )
    grad_clip: float = option(1.0, "gradient clipping: max global L2 norm", above=0)
    patience: int = option(5, "epochs without a better validation AUPRC before stopping", minimum=1)
    class_weighting: Literal["pos_weight", "none"] = option(
        "pos_weight", "pos_weight: n_neg / n_pos per binary label from the train split (raises recall, inflates risks)"
    )
    amp: bool = option(True, "bf16 autocast on CUDA (fp16 + GradScaler without bf16); no-op on the CPU")
    eval_batch_size: int = option(1024, "batch size of validation and prediction", minimum=1)
    n_boot: int = option(1000, "bootstrap resamples for the test intervals", minimum=0)
    observed_indicators: bool = option(True, "give the model the observed masks of structured/timeseries inputs")
    seed: int = option(0, "seeds initialisation, the epoch permutations and dropout", minimum=0)
    device: str = option("auto", "auto | cpu | cuda | cuda:N")
    # same seed + same threads = same bytes (see train's docstring)
    threads: int | None = option(None, "torch CPU threads for this run (none: all cores)", minimum=1)

    def __post_init__(self):
        validate(self)


def train_config(values: dict[str, Any] | None = None, *, spelled: dict[str, str] | None = None) -> TrainConfig:
    """A TrainConfig from field values, every error one line naming the option (``--lr: must be > 0``)."""
    spelled = spelled or {k: "--" + k.replace("_", "-") for k in values or {}}
    return make_config(TrainConfig, values, what="training", spelled=spelled)


class _TrainStep(nn.Module):
    """forward = model forward + framework loss, so DistributedDataParallel sees every parameter use."""

    def __init__(self, model: Framework):
        super().__init__()
        self.model = model

    def forward(self, batch, progress: float):
        out = self.model(batch)
        return self.model.loss(batch, out, progress)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _schedule(total: int, warmup: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return factor


def _shard(n: int, seed: int, epoch: int, env: DistEnv) -> torch.Tensor:
    """This rank's share of a seeded permutation of range(n), padded to a multiple of the world size."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    if env.world > 1:
        pad = (-n) % env.world
        perm = torch.cat([perm, perm[:pad]])[env.rank :: env.world]
    return perm


def nonfinite_loss_message(model: Framework, framework: str, loss, parts: dict, batch, epoch: int, step: int) -> str:
    """Name the source of a non-finite training loss: the framework's loss terms that are not finite, else the
    parameters an earlier update already broke, else the inputs. Only a diverged update is a learning-rate
    problem; a term that is NaN on fresh parameters is a bug or a degenerate batch, and the message says which."""
    n = len(batch["index"])
    where = f"{framework} loss became {float(loss)} at epoch {epoch + 1} step {step + 1} (batch of {n})"
    broken = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if broken:
        return f"{where}: parameter {broken[0]} is no longer finite, the previous update diverged; lower --lr"
    bad = [k for k, v in parts.items() if not math.isfinite(float(v))]
    if bad:
        return f"{where}: non-finite term(s) {', '.join(bad)} on finite parameters"
    inputs = [m for m, x in batch["x"].items() if x.is_floating_point() and not bool(torch.isfinite(x).all())]
    if inputs:
        return f"{where}: non-finite input of modality {inputs[0]}"
    return f"{where}: every logged term is finite, so the non-finite value is in an unlogged term of '{framework}'"


def validation_scores(model: Framework, data: CohortData, rows: torch.Tensor, cfg: TrainConfig, device) -> dict:
    """Raw validation logits, unweighted CE, and AUROC / AUPRC averaged over tasks (None when undefined)."""
    logits = predict_logits(model, data, rows, batch_size=cfg.eval_batch_size, device=device, amp=cfg.amp, raw=True)
    y, lm = data.labels[rows].cpu(), data.label_mask[rows].cpu()
    val_loss = float(masked_mean(per_sample_ce(logits, y, lm, data.spec.labels), lm)) if len(rows) else float("nan")
    probs = output_probs(logits, data.spec.labels).numpy()
    aurocs, auprcs = [], []
    for k, (lab, sl) in enumerate(zip(data.spec.labels, label_columns(data.spec.labels))):
        sel = lm[:, k].numpy()
        p = probs[sel, sl][:, 0] if lab.kind == "binary" else probs[sel, sl]
        pm = point_metrics(y[sel, k].numpy().astype(int), p) if sel.sum() else {"auroc": None, "auprc": None}
        aurocs.append(pm["auroc"])
        auprcs.append(pm["auprc"])

    def mean(v):
        v = [x for x in v if x is not None]
        return float(np.mean(v)) if v else None

    return {"logits": logits, "val_loss": val_loss, "val_auroc": mean(aurocs), "val_auprc": mean(auprcs)}


def warn_unusable_splits(data: CohortData) -> list[str]:
    """Say, before training, which split of which task has no labelled samples or one class only: its metrics
    will be null (metrics.json records why), and a one-class validation split selects on its loss instead."""
    lines = []
    for k, lab in enumerate(data.spec.labels):
        for split in ("train", "val", "test"):
            rows = data.split == split
            lm = data.label_mask[:, k].cpu().numpy() & rows
            y = data.labels[:, k].cpu().numpy()[lm]
            if len(y) == 0:
                lines.append(f"{lab.name}: no labelled {split} samples")
            elif len(np.unique(y)) < 2:
                lines.append(f"{lab.name}: the {split} split has one class only ({len(y)} samples, all {int(y[0])})")
    for line in lines:
        console.print(f"[yellow]warning:[/yellow] {line}; its metrics will be missing", soft_wrap=True)
    return lines


class _Throughput:
    """Samples per second of the training loops (validation excluded) and the share of their wall time spent
    assembling batches: the data wait. Each step ends in a host sync (the loss is read as a float), so the GPU
    is idle while the next batch is gathered and the share is what a faster loader could win back."""

    def __init__(self) -> None:
        self.data_seconds = 0.0
        self.loop_seconds = 0.0
        self.samples = 0

    def add_epoch(self, seconds: float, samples: int) -> None:
        self.loop_seconds += seconds
        self.samples += samples

    def summary(self) -> dict[str, float]:
        loop = max(self.loop_seconds, 1e-9)
        return {
            "samples_per_second": round(self.samples / loop, 1),
            "data_wait_fraction": round(self.data_seconds / loop, 4),
            "train_loop_seconds": round(self.loop_seconds, 3),
        }

    def line(self, dev, world: int) -> str:
        t = self.summary()
        ranks = f" over {world} ranks" if world > 1 else ""
        return (
            f"throughput: {t['samples_per_second']:.0f} samples/s on {dev}{ranks}; waiting for data "
            f"{100 * t['data_wait_fraction']:.1f}% of step time (target < 10%)"
        )


def _broadcast(values: list[float], env: DistEnv, device) -> list[float]:
    if env.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return t.tolist()


def train(
    cohort_dir: str | Path,
    store: str | Path,
    out: str | Path,
    *,
    backbone: str,
    framework: str | None = None,
    tasks: list[str] | None = None,
    modalities: list[str] | None = None,
    backbone_config: Any = None,
    framework_config: Any = None,
    config: TrainConfig | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **options: Any,
) -> Path:
    """Train, select the best validation epoch, score and write RUN_DIR (``out``); returns ``out``.

    ``backbone`` / ``framework`` (default ``FRAMEWORKS.default``) are registry names; ``backbone_config`` /
    ``framework_config`` their config objects or mappings of config fields (None: defaults). ``config`` is the
    TrainConfig; ``options`` change its fields (``epochs=5, lr=3e-3, seed=1``). ``threads``: torch's CPU threads
    for this call. The same inputs and seed give the same bytes only at the same thread count: reductions inside
    kernels (LayerNorm's backward, for one) split their sums by thread, and a model that amplifies last-bit
    differences (muse's τ = 0.07 contrast) ends at another epoch (docs/reliability.md). The count used is
    recorded in config.json.
    """
    out, cohort_dir, store = Path(out).absolute(), Path(cohort_dir).absolute(), Path(store).absolute()
    framework = framework or FRAMEWORKS.default
    cfg = train_config(options) if config is None else train_config({**asdict(config), **options}, spelled={})
    env = DistEnv.from_env()
    inputs = {"the cohort": cohort_dir, "--store": store}
    if env.main:  # fail before loading any data; only rank 0 writes
        check_output(out, "run", overwrite=overwrite, inputs=inputs)
    # every name and option is checked before any data is loaded
    bb_cfg = config_for(BACKBONES, backbone, backbone_config, flag="--backbone-arg")
    fw_cfg = config_for(FRAMEWORKS, framework, framework_config, flag="--framework-arg")
    dev = resolve_device(cfg.device)
    if env.world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(dev)
    own_group = env.world > 1 and not dist.is_initialized()
    if own_group:
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    threads_before = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(
            cohort_dir,
            store,
            out,
            backbone,
            framework,
            tasks,
            modalities,
            cfg,
            dev,
            env,
            bb_cfg,
            fw_cfg,
            progress and env.main,
            overwrite,
        )
    finally:
        torch.set_num_threads(threads_before)
        if own_group:
            dist.destroy_process_group()


def _train(
    cohort_dir,
    store,
    out,
    backbone,
    framework,
    tasks,
    modalities,
    cfg: TrainConfig,
    dev,
    env,
    bb_cfg,
    fw_cfg,
    show_progress,
    overwrite,
) -> Path:
    t_start = time.time()
    seed = cfg.seed
    seed_everything(seed)
    data = load_cohort(
        cohort_dir, store, tasks=tasks, modalities=modalities, observed_indicators=cfg.observed_indicators
    )
    train_rows, val_rows = data.rows("train"), data.rows("val")
    if not bool(data.label_mask[val_rows].any()):
        raise MedmodalError(
            "no labelled validation samples (split == 'val'); early stopping needs them",
            path=cohort_dir / "cohort.parquet",
            field="split",
        )
    if env.main:
        warn_unusable_splits(data)
    if fits_on_device(data, dev):
        data.to(dev)
        train_rows, val_rows = train_rows.to(dev), val_rows.to(dev)
    elif dev.type == "cuda":
        data.pin()
    spec = data.spec
    model, bb_json, fw_json = build_model(spec, backbone, framework, bb_cfg, fw_cfg)
    model.to(dev)
    y_tr, lm_tr = data.labels[train_rows], data.label_mask[train_rows]
    pw = (
        pos_weight(y_tr.cpu(), lm_tr.cpu(), spec)
        if cfg.class_weighting == "pos_weight"
        else torch.ones(len(spec.labels))
    )
    model.on_train_begin(
        {
            "n_train": len(train_rows),
            "train_patterns": data.pattern[train_rows].to(dev),
            "train_labels": y_tr.to(dev),
            "train_label_mask": lm_tr.to(dev),
            "pos_weight": pw.to(dev),
            "device": dev,
        }
    )
    step_module: nn.Module = _TrainStep(model)
    if env.world > 1:
        # find_unused_parameters unless the framework promises every parameter gets a gradient every step (a
        # framework may leave a head idle in some phase); broadcast_buffers off: per-sample framework state (loss
        # EMAs) lives on each rank
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch renames broadcast_buffers; same semantics
            step_module = nn.parallel.DistributedDataParallel(
                step_module,
                device_ids=[dev.index] if dev.type == "cuda" else None,
                broadcast_buffers=False,
                find_unused_parameters=getattr(model, "ddp_find_unused_parameters", True),
            )
    if env.world > 1:
        # the ranks built the same model from the same seed; from here each draws its own dropout masks (its rows
        # are other samples: one shared mask pattern would correlate the halves of every global batch). Every
        # draw of the frameworks and backbones is per sample, so no rank's control flow depends on it.
        torch.manual_seed(seed * 100_003 + 1 + env.rank)
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    rank_bs = math.ceil(cfg.batch_size / env.world)
    n_rank = math.ceil(len(train_rows) / env.world)
    steps = max(1, math.ceil(n_rank / rank_bs))
    total = cfg.epochs * steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(total, max(1, round(cfg.warmup_frac * total))))
    use_scaler = dev.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    history: list[dict[str, Any]] = []
    best_score, best_epoch, best_state = -math.inf, -1, None
    prog = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not show_progress,
    )
    if env.main:
        console.print(
            f"training {framework}/{backbone} on {len(train_rows)} samples "
            f"({', '.join(spec.modality_names)}; tasks {', '.join(l.name for l in spec.labels)}) "
            f"on {dev}{f' x{env.world} ranks' if env.world > 1 else ''}"
        )
    global_step = 0
    clock = _Throughput()
    with prog:
        ep_task = prog.add_task("epochs", total=cfg.epochs)
        for epoch in range(cfg.epochs):
            model.train()
            t0 = time.time()
            perm = _shard(len(train_rows), seed, epoch, env).to(train_rows.device)
            b_task = prog.add_task(f"epoch {epoch + 1}", total=steps)
            losses, parts_sum = [], {}
            t_loop = time.perf_counter()
            for s in range(steps):
                t_data = time.perf_counter()
                idx = perm[s * rank_bs : (s + 1) * rank_bs]  # every rank has the same number of steps
                batch = data.batch(train_rows[idx], idx, dev)
                clock.data_seconds += time.perf_counter() - t_data
                with autocast(dev, "auto" if cfg.amp else "fp32"):
                    loss, parts = step_module(batch, global_step / total)
                if not torch.isfinite(loss):
                    raise MedmodalError(nonfinite_loss_message(model, framework, loss, parts, batch, epoch, s))
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                sched.step()
                global_step += 1
                losses.append(float(loss.detach()))
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + float(v)
                prog.advance(b_task)
            clock.add_epoch(time.perf_counter() - t_loop, len(perm) * env.world)
            prog.remove_task(b_task)
            val = validation_scores(model, data, val_rows, cfg, dev)
            score_now = val["val_auprc"] if val["val_auprc"] is not None else -val["val_loss"]
            (score_now,) = _broadcast([score_now], env, dev)
            improved = score_now > best_score
            row = {
                "epoch": epoch + 1,
                "train_loss": float(np.mean(losses)),
                "val_loss": val["val_loss"],
                "val_auroc": val["val_auroc"],
                "val_auprc": val["val_auprc"],
                "lr": opt.param_groups[0]["lr"],
                "seconds": round(time.time() - t0, 3),
                **{k: v / steps for k, v in parts_sum.items()},
            }
            history.append(row)
            if improved:
                best_score, best_epoch = score_now, epoch + 1
                best_state = copy.deepcopy(model.state_dict())
            if env.main:
                fmt = lambda v: "  n/a" if v is None else f"{v:.3f}"  # noqa: E731
                console.print(
                    f"epoch {epoch + 1:3d}/{cfg.epochs}  loss {row['train_loss']:.4f}  "
                    f"val CE {row['val_loss']:.4f}  AUROC {fmt(row['val_auroc'])}  "
                    f"AUPRC {fmt(row['val_auprc'])}  {row['seconds']:.1f}s{'  *' if improved else ''}"
                )
            prog.advance(ep_task)
            if epoch + 1 - best_epoch >= cfg.patience:
                if env.main and epoch + 1 < cfg.epochs:
                    console.print(f"early stop: no better validation AUPRC for {cfg.patience} epochs")
                break

    model.load_state_dict(best_state)
    val = validation_scores(model, data, val_rows, cfg, dev)  # raw logits of the selected epoch
    model.fit_post_hoc(
        {
            "logits": val["logits"].to(dev),
            "labels": data.labels[val_rows].to(dev),
            "label_mask": data.label_mask[val_rows].to(dev),
            "pattern": data.pattern[val_rows].to(dev),
        }
    )
    if not env.main:
        return out

    from medmodal.report.figures import training_curves  # matplotlib only once there is something to draw

    logits = predict_all(model, data, batch_size=cfg.eval_batch_size, device=dev, amp=cfg.amp)
    frame = prediction_frame(data, logits)
    metrics = score(frame, data, n_boot=cfg.n_boot, seed=seed)
    metrics["training"] = {
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "selection": "val AUPRC (mean over tasks)",
        "seconds": round(time.time() - t_start, 2),
        "device": str(dev),
        "world_size": env.world,
        "history": history,
        "throughput": clock.summary(),
    }
    config = {
        "medmodal_version": medmodal.__version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "backbone": {"name": backbone, "config": bb_json},
        "framework": {"name": framework, "config": fw_json},
        "data": {
            "spec": spec_to_json(spec),
            "indicators": data.indicators,
            "store": str(store),
            "cohort": {
                "dir": str(cohort_dir),
                "cohort_id": data.cohort_id,
                "source": data.manifest.get("source"),
                "task": data.manifest.get("task"),
            },
            "feature_fingerprints": feature_fingerprints(data.feature_manifests),
            "pos_weight": pw.tolist(),
            "n": {s: int((data.split == s).sum()) for s in ("train", "val", "test")},
        },
        "train": asdict(cfg),
        "seed": seed,
        "device": str(dev),
        "world_size": env.world,
        "torch_threads": torch.get_num_threads(),  # a determinism input on the CPU (see train's docstring)
    }
    warn_missing_metrics(metrics)
    inputs = {"the cohort": cohort_dir, "--store": store}
    with atomic_dir(out, kind="run", overwrite=overwrite, inputs=inputs) as tmp:
        save_weights(tmp, model.cpu(), data.normalizer)
        write_json(tmp / CONFIG, config)
        frame.write_parquet(tmp / "predictions.parquet")
        write_json(tmp / "metrics.json", metrics)
        (tmp / "training_curve.png").write_bytes(training_curves(history, best_epoch))
    model.to(dev)
    console.print(clock.line(dev, env.world))
    print_summary(metrics, "test", title=f"{framework}/{backbone}: test metrics (best epoch {best_epoch})")
    return out
