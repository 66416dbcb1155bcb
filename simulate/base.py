"""The simulator registry and the run configuration every simulated source receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from medmodal.common import Registry
from medmodal.simulate.scm import Environment, Strengths, World


@dataclass(frozen=True)
class SimConfig:
    subjects: int
    seed: int
    environment: Environment
    strengths: Strengths
    images: bool = True  # write CXR pixel files (metadata, labels and reports are written either way)
    image_size: int = 256  # square film edge in pixels
    release: str = ""  # the release layout to write (a simulator's `releases`, first = default); "" if it has none
    density: str = ""  # the row density to write (a simulator's `densities`, first = default); "" if it has one

    @property
    def world(self) -> World:
        return World(self.strengths, self.environment)


class Simulator(Protocol):
    def __call__(self, out: Path, cfg: SimConfig, progress: Callable[[int], None]) -> dict[str, int]:
        """Write the source's raw files and truth.parquet under ``out``; return row counts per file."""


SIMULATORS: Registry[Simulator] = Registry("simulated source")
