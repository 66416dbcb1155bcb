"""Chest X-ray embeddings with a timm backbone, from JPG/PNG or DICOM files, cached by file content.

The model is ``timm.create_model(name, pretrained=False, num_classes=0)`` (the pooled pre-logits features), with
weights loaded from ``--weights`` (safetensors preferred; a ``.pth``/``.bin`` is read with
``torch.load(weights_only=True)``, never as a pickle) or from the timm checkpoint in the local Hugging Face
cache. The eval transform is the model's own ``resolve_data_config`` / ``create_transform``. A DataLoader with
worker processes reads, hashes and decodes files (featurize/decode.py) in parallel with the forward passes; a
file that cannot be read or decoded is skipped with its reason and never stops the run.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import torch

from medmodal.common import MedmodalError, sha256_file
from medmodal.devices import autocast, resolve_device, resolve_precision
from medmodal.distributed import DistEnv, broadcast, gather, share
from medmodal.featurize.base import (
    FEATURIZERS,
    POOLINGS,
    EncodedBatch,
    Featurizer,
    ModalityFeatures,
    assemble_items,
    embed_items,
    progress_bar,
    skip_empty_modalities,
)
from medmodal.featurize.cache import FileHashMemo, item_key
from medmodal.featurize.decode import DECODE_VERSION, ImageDecodeError, decode_image
from medmodal.options import option, validate

IMAGE_ENCODER_CODE = "image-v1"  # fingerprinted: bump when the loading / pooling code changes


@dataclass(frozen=True)
class ImageConfig:
    # densenet121: the CheXNet backbone; any timm name works
    model: str = option("densenet121", "timm model name")
    weights: str | None = option(
        None, "weights file, .safetensors preferred (none: the timm weights in the local HF cache)"
    )
    pooling: str = option("mean", "images per sample: a pooling policy (mean | latest)")
    # larger CPU batches fall out of cache
    batch_size: int | None = option(None, "images per forward pass (none: 32 on CUDA, 8 on CPU)", minimum=1)
    num_workers: int | None = option(
        None, "DataLoader workers reading and decoding files (none: min(8, CPUs))", minimum=0
    )
    device: str = option("auto", "auto | cpu | cuda[:N]", shared=True)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = option(
        "auto", "auto (bf16/fp16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16", shared=True
    )
    shard_size: int = option(1024, "vectors per cache shard file", minimum=1)
    hash_threads: int = option(8, "threads reading and hashing files for the cache lookup (I/O bound)", minimum=1)
    # without it, a file's remembered sha256 is reused while its size and mtime are unchanged
    rehash: bool = option(False, "re-read every file even if its size and mtime are unchanged")

    def __post_init__(self) -> None:
        validate(self)
        POOLINGS.get(self.pooling)

    @property
    def workers(self) -> int:
        """``num_workers``, else min(8, CPUs) - shared out among the ranks torchrun started on this node."""
        if self.num_workers is not None:
            return self.num_workers
        return min(8, max(1, (os.cpu_count() or 1) // DistEnv.from_env().local_world))


# ---------------------------------------------------------------------------------------------------- loading
def resolve_image_weights(model: str, weights: str | None) -> Path:
    if weights:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise MedmodalError("image weights file not found", path=p)
        return p.resolve()
    import timm

    cfg = timm.models.get_pretrained_cfg(model)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if repo:
        # a plain lookup in the cache folders: unlike hf_hub_download(local_files_only=True), which some hub
        # releases still let reach the network, it cannot open a connection (docs/reliability.md, "Offline")
        from huggingface_hub import try_to_load_from_cache

        for fname in ("model.safetensors", "pytorch_model.bin"):
            try:
                hit = try_to_load_from_cache(repo, fname)
            except Exception:
                continue
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit)
    hint = f"`hf download {repo}` on a networked machine and copy ~/.cache/huggingface here, or " if repo else ""
    raise MedmodalError(
        f"no local weights for timm model '{model}' (medmodal never downloads): run {hint}pass --weights "
        f"/path/to/{model}.safetensors"
    )


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # SafetensorError on a truncated / foreign file, OSError on an unreadable one
            raise MedmodalError(f"not a readable safetensors file ({type(err).__name__})", path=path) from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise MedmodalError(
            f"not a weights-only state dict ({type(err).__name__}); convert it to safetensors", path=path
        ) from None
    for wrapper in ("state_dict", "model", "state_dict_ema"):
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
            break
    return {k.removeprefix("module."): v for k, v in sd.items()}


def build_timm_model(name: str, weights_path: Path) -> torch.nn.Module:
    import timm

    try:
        model = timm.create_model(name, pretrained=False, num_classes=0)
    except RuntimeError as err:
        raise MedmodalError(f"unknown timm model '{name}' ({err})") from None
    own = model.state_dict()
    sd = load_state_dict_file(weights_path)
    kept = {k: v for k, v in sd.items() if k in own}  # drops the classifier of a checkpoint with a head
    missing = [k for k in own if k not in kept]
    wrong = [k for k, v in kept.items() if tuple(v.shape) != tuple(own[k].shape)]
    if missing or wrong:
        bad = (missing or wrong)[0]
        raise MedmodalError(
            f"weights do not fit timm model '{name}': {len(missing)} missing, {len(wrong)} mis-shaped tensors "
            f"(first: {bad})",
            path=weights_path,
        )
    model.load_state_dict(kept, strict=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------------- data
NOT_REGULAR = "not a regular file"
OUTSIDE_ROOT = "path outside the image root"


def safe_image_path(path: str | None, cohort_dir: Path, root: Path | None) -> tuple[str | None, str | None]:
    """(the real path to read, None) or (None, skip reason) for one images.parquet path.

    With an image root (the builder records the CXR folder in the manifest) every path - relative ones taken
    from the root - must resolve, symlinks included, inside it; a dicom_id of ``../../x`` or a link out of the
    tree is skipped. A hand-made cohort without a root may use absolute paths; its relative paths are taken from
    the cohort folder and must stay inside it. Only the containment is decided here; ``_stat`` refuses what is
    not a regular file (a path to /dev/zero or a FIFO would otherwise block or never end)."""
    if not path:
        return None, "no path"
    base = root if root is not None else cohort_dir
    given = Path(path)
    real = Path(os.path.realpath(given if given.is_absolute() else base / given))
    limit = root if root is not None else (None if given.is_absolute() else cohort_dir)
    if limit is not None and not real.is_relative_to(os.path.realpath(limit)):
        return None, OUTSIDE_ROOT
    return str(real), None


class NotRegularFile(OSError):
    pass


def _open_regular(path: str) -> int:
    """A read-only descriptor of a regular file. O_NONBLOCK: opening a FIFO must not wait for a writer; the
    fstat then refuses it, a device or a folder, so a swapped path can never hang or stream forever."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularFile(NOT_REGULAR)
    return fd


def read_regular(path: str) -> bytes:
    with os.fdopen(_open_regular(path), "rb") as fh:
        return fh.read()


def read_and_hash(path: str) -> tuple[str | None, str | None]:
    """(sha256 of the file, None) or (None, skip reason)."""
    try:
        h = hashlib.sha256()
        with os.fdopen(_open_regular(path), "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
        return h.hexdigest(), None
    except FileNotFoundError:
        return None, "file not found"
    except NotRegularFile:
        return None, NOT_REGULAR
    except OSError as err:
        return None, f"unreadable file ({type(err).__name__})"


class ImageFiles(torch.utils.data.Dataset):
    """Items at ``positions``: read bytes once, hash them (the cache key of what is actually embedded), decode."""

    def __init__(self, paths: list[str], positions: list[int], transform: Callable):
        self.paths, self.positions, self.transform = paths, positions, transform

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None, str | None]:
        pos = self.positions[i]
        path = self.paths[pos]
        try:
            data = read_regular(path)
        except FileNotFoundError:
            return pos, None, None, "file not found"
        except NotRegularFile:
            return pos, None, None, NOT_REGULAR
        except OSError as err:
            return pos, None, None, f"unreadable file ({type(err).__name__})"
        sha = hashlib.sha256(data).hexdigest()
        try:
            x = self.transform(decode_image(path, data))  # (3, H, W)
        except ImageDecodeError as err:
            return pos, None, sha, err.reason
        except Exception as err:  # a decoder bug on one odd file must not end a million-image run
            return pos, None, sha, f"image decoding failed ({type(err).__name__})"
        return pos, x, sha, None


def collate_images(batch: list[tuple]) -> dict[str, Any]:
    good = [b for b in batch if b[1] is not None]
    return {
        "positions": [b[0] for b in good],
        "x": torch.stack([b[1] for b in good]) if good else None,  # (B, 3, H, W)
        "sha": [b[2] for b in good],
        "skipped": [(b[0], b[3]) for b in batch if b[1] is None],
    }


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # the workers decode; the main process owns the cores for the model


class ImageEncoder:
    def __init__(self, cfg: ImageConfig):
        import timm

        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        weights = resolve_image_weights(cfg.model, cfg.weights)
        self.model = build_timm_model(cfg.model, weights)
        self.data_config = timm.data.resolve_data_config({}, model=self.model)
        self.transform = timm.data.create_transform(**self.data_config, is_training=False)
        self.model.to(self.device)
        if self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        self.dim = int(self.model.num_features)
        self.batch_size = cfg.batch_size or (32 if self.device.type == "cuda" else 8)
        self.description: dict[str, Any] = {
            "kind": "image",
            "model": cfg.model,
            "weights_sha256": sha256_file(weights),
            "preprocessing": {
                "decode": DECODE_VERSION,
                "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in self.data_config.items()},
            },
            "precision": self.precision,
            "encoder_code": IMAGE_ENCODER_CODE,
        }
        self.item_ids: list[str] = []
        self.paths: list[str] = []

    def bind(self, item_ids: list[str], paths: list[str]) -> ImageEncoder:
        self.item_ids, self.paths = item_ids, paths
        return self

    def forward(self, x: torch.Tensor) -> np.ndarray:
        cuda = self.device.type == "cuda"
        x = x.to(self.device, non_blocking=cuda)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(self.device, self.precision):
            feats = self.model(x)  # (B, D)
        return feats.float().cpu().numpy()

    def encode(self, positions: list[int], advance: Callable[[int], None]) -> Iterator[EncodedBatch]:
        if not positions:
            return
        workers = self.cfg.workers
        loader = torch.utils.data.DataLoader(
            ImageFiles(self.paths, positions, self.transform),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=workers,
            collate_fn=collate_images,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers > 0 else None,
            worker_init_fn=_worker_init if workers > 0 else None,
        )
        for batch in loader:
            vecs = self.forward(batch["x"]) if batch["x"] is not None else np.zeros((0, self.dim), np.float32)
            keys = [item_key(self.item_ids[p], sha) for p, sha in zip(batch["positions"], batch["sha"])]
            advance(len(batch["positions"]) + len(batch["skipped"]))
            yield EncodedBatch(positions=batch["positions"], vectors=vecs, keys=keys, skipped=batch["skipped"])


def _stat(path: str) -> tuple[int, int] | str:
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return NOT_REGULAR
        return st.st_size, st.st_mtime_ns
    except FileNotFoundError:
        return "file not found"
    except OSError as err:
        return f"unreadable file ({type(err).__name__})"


def hash_files(
    label: str, paths: list[str], threads: int, memo: FileHashMemo | None
) -> list[tuple[str | None, str | None]]:
    """(sha256, None) or (None, skip reason) per path, for the cache lookup.

    Files are stat'ed; those the memo knows with the same size and mtime are not read; the rest are read and
    hashed by a thread pool (hashlib releases the GIL) and remembered.
    """
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        stats = list(pool.map(_stat, paths, chunksize=256))
    ok = [i for i, s in enumerate(stats) if not isinstance(s, str)]
    out: list[tuple[str | None, str | None]] = [(None, s) if isinstance(s, str) else (None, None) for s in stats]
    table = pl.DataFrame(
        {"path": [paths[i] for i in ok], "size": [stats[i][0] for i in ok], "mtime_ns": [stats[i][1] for i in ok]},
        schema={"path": pl.Utf8, "size": pl.Int64, "mtime_ns": pl.Int64},
    )
    env = DistEnv.from_env()
    known = memo.lookup(table) if memo is not None and env.main else [None] * len(ok)
    # under torchrun rank 0's memo decides which files are unknown (another rank's memo could already hold a file a
    # fast rank just hashed); each rank reads and hashes its block of them, and all ranks get every result
    known = broadcast(known, env)
    todo = [j for j, sha in enumerate(known) if sha is None]
    for j, sha in enumerate(known):
        if sha is not None:
            out[ok[j]] = (sha, None)
    mine = share(todo, env)
    new_rows, done = [], []
    with progress_bar(disable=not env.main) as bar, ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        task = bar.add_task(f"{label} hashing", total=len(mine))
        for j, res in zip(mine, pool.map(read_and_hash, [paths[ok[j]] for j in mine], chunksize=64)):
            done.append(res)
            if res[0] is not None:
                new_rows.append((paths[ok[j]], stats[ok[j]][0], stats[ok[j]][1], res[0]))
            bar.advance(task, 1)
    if memo is not None:  # each rank remembers its own files; compaction only when no other rank adds beside it
        memo.add(pl.DataFrame(new_rows, schema=FileHashMemo.SCHEMA, orient="row"), compact=env.world == 1)
    for r, results in enumerate(gather(done, env)):
        for j, res in zip(share(todo, DistEnv(rank=r, world=env.world)), results):
            out[ok[j]] = res
    return out


# ---------------------------------------------------------------------------------------------------- featurizer
@FEATURIZERS.register("timm")
class ImageFeaturizer(Featurizer):
    """Images (JPG/PNG/DICOM): a timm model's pooled features per image, pooled per sample."""

    kind = "image"
    config_class = ImageConfig
    default = True
    distributed = True  # under torchrun the files to hash and the images to embed are split across the ranks

    def run(self, cohort, modalities: list[str], store: str | Path, cfg: ImageConfig) -> dict[str, ModalityFeatures]:
        if not modalities:
            return {}
        images = cohort.items("image")
        parts = {}
        for m in modalities:
            # one image table feeds every image modality; a sample without the modality is never embedded
            part = images.filter(pl.Series(cohort.has[m][images["row"].to_numpy()]))
            part = part.with_columns(pl.col("dicom_id").cast(pl.Utf8), pl.col("path").cast(pl.Utf8))
            parts[m] = part.sort(["row", "study_time", "dicom_id"], nulls_last=False)
        parts = skip_empty_modalities(parts, "images")
        if not parts:
            return {}
        encoder = ImageEncoder(cfg)
        results = {}
        for m, part in parts.items():
            if part["dicom_id"].null_count():
                raise MedmodalError("null dicom_id", path=cohort.dir / "images.parquet", field="dicom_id")
            item_ids = part["dicom_id"].to_list()
            checked = [safe_image_path(p, cohort.dir, cohort.image_root) for p in part["path"].to_list()]
            paths = [p or "" for p, _ in checked]
            ok = [i for i, (p, _) in enumerate(checked) if p is not None]
            hashed: list[tuple[str | None, str | None]] = [(None, why) for _, why in checked]
            memo = None if cfg.rehash else FileHashMemo(store)
            for i, res in zip(ok, hash_files(m, [paths[i] for i in ok], cfg.hash_threads, memo)):
                hashed[i] = res
            keys = [None if sha is None else item_key(i, sha) for i, (sha, _) in zip(item_ids, hashed)]
            reasons = [why for _, why in hashed]
            emb = embed_items(
                m, item_ids, keys, reasons, encoder.bind(item_ids, paths), store, shard_size=cfg.shard_size
            )
            extra = {
                "preprocessing": encoder.description["preprocessing"],
                "dtype_compute": encoder.precision,
                "config": asdict(cfg),
            }
            results[m] = assemble_items(m, "image", cohort, part["row"].to_numpy(), item_ids, emb, cfg.pooling, extra)
        return results
