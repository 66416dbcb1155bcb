"""A synthetic world that writes raw files in the real PhysioNet / ADNI layouts from a known causal model.

``simulate(source, out, subjects=N, seed=S, environment="train")`` writes, for ``mimic_iv``, hosp/ icu/ note/ cxr/
as MIMIC-IV v2.2 (or, with ``release="3.1"``, v3.1) + MIMIC-IV-Note + MIMIC-CXR-JPG lay them out; for ``eicu``
the eICU-CRD tables; for ``adni`` ADNIMERGE.csv. Beside them ``truth.parquet`` holds what no real dataset has:
the latent health state U, the confounder C, each outcome's causal risk and each modality's ordering propensity.
The causal model, its defaults and why they are what they are: docs/simulator.md.
"""

from __future__ import annotations

from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import medmodal
from medmodal.common import MedmodalError, console, write_json
from medmodal.outputs import atomic_dir, check_output

# one import line per simulated source (each registers itself in SIMULATORS)
from medmodal.simulate import (
    adni,  # noqa: F401
    eicu,  # noqa: F401
    mimic_iv,  # noqa: F401
)
from medmodal.simulate.base import SIMULATORS, SimConfig
from medmodal.simulate.scm import ENVIRONMENTS, Strengths, get_environment

MAX_SUBJECTS = 1_000_000  # the id ranges of one environment hold a million subjects

__all__ = ["ENVIRONMENTS", "SIMULATORS", "SimConfig", "Strengths", "simulate"]


def simulate(
    source: str,
    out: str | Path,
    *,
    subjects: int,
    seed: int,
    environment: str = "train",
    images: bool = True,
    image_size: int = 256,
    overwrite: bool = False,
    release: str | None = None,
    density: str | None = None,
    **strengths: float,
) -> Path:
    """Write a simulated ``source`` under ``out`` (atomically) and return ``out``.

    ``strengths`` override fields of :class:`~medmodal.simulate.scm.Strengths` (e.g. ``c_outcome=0``).
    ``release`` picks the release layout of a source that has several (mimic_iv: "2.2", the default, or "3.1").
    ``density`` picks how many rows of items no task reads are written (mimic_iv: "tasks", the default: none;
    "release": MIMIC-IV v3.1's rows per ICU stay and per admission, and its share of admissions with an ICU stay).
    """
    fn = SIMULATORS.get(source)
    releases = tuple(getattr(fn, "releases", ()))
    if release is not None and release not in releases:
        known = ", ".join(releases) or "none (it writes one layout)"
        raise MedmodalError(f"--release for {source} must be one of: {known}; got '{release}'")
    densities = tuple(getattr(fn, "densities", ()))
    if density is not None and density not in densities:
        known = ", ".join(densities) or "none (it writes one density)"
        raise MedmodalError(f"--density for {source} must be one of: {known}; got '{density}'")
    if not 1 <= int(subjects) <= MAX_SUBJECTS:
        raise MedmodalError(f"--subjects must be between 1 and {MAX_SUBJECTS}, got {subjects}")
    if int(seed) < 0:
        raise MedmodalError(f"--seed must be >= 0, got {seed}")
    if not 32 <= int(image_size) <= 2048:
        raise MedmodalError(f"--image-size must be between 32 and 2048, got {image_size}")
    out = check_output(out, "simulation", overwrite=overwrite)  # before any work: a refusal comes at once
    cfg = SimConfig(
        subjects=int(subjects),
        seed=int(seed),
        environment=get_environment(environment),
        strengths=Strengths.from_mapping(strengths),
        images=bool(images),
        image_size=int(image_size),
        release=release or (releases[0] if releases else ""),
        density=density or (densities[0] if densities else ""),
    )
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    progress_bar = Progress(*columns, console=console, transient=True)
    with atomic_dir(out, kind="simulation", overwrite=overwrite) as tmp, progress_bar as progress:
        task = progress.add_task(f"simulate {source} ({environment})", total=cfg.subjects)
        rows = fn(tmp, cfg, lambda n: progress.advance(task, n))
        write_json(
            tmp / "simulation.json",
            {
                "source": source,
                "environment": environment,
                "environment_description": cfg.environment.description,
                "subjects": cfg.subjects,
                "seed": cfg.seed,
                "strengths": cfg.strengths.__dict__,
                "images": cfg.images,
                "image_size": cfg.image_size,
                "release": cfg.release or None,
                "density": cfg.density or None,
                "medmodal_version": medmodal.__version__,
                "row_counts": rows,
                "note": "synthetic data from medmodal's structural causal model; truth.parquet is the ground truth "
                "and must never be read by a cohort builder",
            },
        )
    return out
