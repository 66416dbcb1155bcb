"""The structural causal model every simulated source shares (equations and reasoning: docs/simulator.md).

Two exogenous variables drive a simulated world:

- ``U`` -- latent health state of a subject at an encounter (standard normal scale, higher = sicker). It is the
  **causal** signal: it moves labs, vitals, note findings and X-ray findings, and every outcome.
- ``C`` -- a binary confounder, the care site / unit practice a subject is treated under. It is independent of U.
  It leaves **marks** (analyser offsets, which temperature item is charted, note phrasing, an image corner marker,
  insurance mix) and it decides part of which modalities get ordered. In the ``train`` environment it also moves
  the outcomes; that C path is what flips in the ``shifted`` environment while U's path stays.

Every outcome and ordering decision is a logistic equation::

    logit P(Y = 1 | U, C, e)        = a_Y + s_U * U + sign_Y(e) * s_C * (2C - 1)
    logit P(modality m ordered | U, C, e) = b_m + s_Ur * w_m * U + sign_R(e) * s_Cr * (2C - 1)

with environment signs ``sign_Y, sign_R`` = (+1, +1) in ``train``, (-1, -1) in ``shifted`` and (0, 0) in
``decoupled``. The **causal risk** of an outcome is the same equation with the C term removed.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from medmodal.common import MedmodalError


@dataclass(frozen=True)
class Strengths:
    """Effect sizes of the causal model (log-odds unless stated). Defaults are why a plain model loses AUROC.

    With these defaults the C path is about as strong as the U path in ``train`` while U is seen only through
    noisy measurements and C through crisp marks, so a model trained there leans on C; flipping C's sign in
    ``shifted`` costs it clearly measurable AUROC (docs/simulator.md has the numbers) while the causal risk's
    AUROC is unchanged.
    """

    u_outcome: float = 1.2  # s_U: log-odds per SD of U on every outcome (the causal path, same in every env)
    c_outcome: float = 0.9  # s_C: log-odds of the C path on outcomes in train; sign flips in 'shifted'
    u_order: float = 0.8  # s_Ur: log-odds per SD of U on ordering a modality (MNAR through U)
    c_order: float = 1.0  # s_Cr: log-odds of C on ordering a modality (MNAR through C; flips in 'shifted')
    c_marks: float = 1.0  # scale of C's marks: lab offsets, note phrasing share, image marker contrast
    u_signal: float = 1.0  # scale of U in measurements; below 1 makes U harder to read from labs and vitals
    p_c: float = 0.5  # P(C = 1)
    rho: float = 0.6  # correlation of U between two encounters of one subject

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not np.isfinite(v):
                raise MedmodalError(f"strength '{f.name}' must be a finite number, got {v}")
        if not 0.0 < self.p_c < 1.0:
            raise MedmodalError(f"strength 'p_c' must lie in (0, 1), got {self.p_c}")
        if not 0.0 <= self.rho < 1.0:
            raise MedmodalError(f"strength 'rho' must lie in [0, 1), got {self.rho}")
        if self.u_signal < 0 or self.c_marks < 0:
            raise MedmodalError("strengths 'u_signal' and 'c_marks' must be >= 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> Strengths:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise MedmodalError(f"unknown strength '{unknown[0]}' (known: {', '.join(sorted(known))})")
        parsed = {}
        for k, v in values.items():
            try:
                parsed[k] = float(v)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise MedmodalError(f"strength '{k}' must be a number, got {v!r}") from None
        return cls(**parsed)


@dataclass(frozen=True)
class Environment:
    """A mechanism variant: which way C pushes outcomes and ordering. U's effects never change."""

    name: str
    index: int  # offsets the id ranges and the random streams so two environments never share a subject
    outcome_sign: float  # sign_Y(e)
    order_sign: float  # sign_R(e)
    description: str


# A 2 x 2 of flips plus the decoupled world. Note what each does to the *missingness -> outcome* association
# that runs through C (its sign is outcome_sign * order_sign): 'shifted' flips both C relations, so C's marks
# mislead but the C-borne association between missingness and outcome keeps its sign; 'outcome_shift' and
# 'order_shift' flip one relation each, which also flips that association.
ENVIRONMENTS: dict[str, Environment] = {
    e.name: e
    for e in (
        Environment("train", 0, +1.0, +1.0, "C raises outcome risk and ordering (the training hospital)"),
        Environment("shifted", 1, -1.0, -1.0, "C->outcome and C->ordering both flipped; U->outcome unchanged"),
        Environment("outcome_shift", 2, -1.0, +1.0, "only C->outcome flipped (so missingness->outcome via C flips)"),
        Environment("order_shift", 3, +1.0, -1.0, "only C->ordering flipped (so missingness->outcome via C flips)"),
        Environment("decoupled", 4, 0.0, 0.0, "C has no effect on outcome or ordering; its marks remain"),
    )
}


def get_environment(name: str) -> Environment:
    try:
        return ENVIRONMENTS[name]
    except KeyError:
        raise MedmodalError(f"unknown environment '{name}' (known: {', '.join(ENVIRONMENTS)})") from None


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class World:
    """Strengths + environment: evaluates the structural equations on arrays of U and C."""

    strengths: Strengths
    environment: Environment

    def outcome(self, intercept: float, u: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P(Y=1 | U, C, e), causal risk P(Y=1 | U) with the C path cut) for one outcome."""
        s = self.strengths
        causal = intercept + s.u_outcome * u
        spurious = self.environment.outcome_sign * s.c_outcome * (2.0 * c - 1.0)
        return sigmoid(causal + spurious), sigmoid(causal)

    def propensity(self, intercept: float, u: np.ndarray, c: np.ndarray, u_weight: float = 1.0) -> np.ndarray:
        """P(a modality is ordered | U, C, e): missing not at random through both U and C."""
        s = self.strengths
        logit = intercept + s.u_order * u_weight * u + self.environment.order_sign * s.c_order * (2.0 * c - 1.0)
        return sigmoid(logit)

    def encounter_u(self, rng: np.random.Generator, frailty: np.ndarray, shift: np.ndarray | float = 0.0):
        """U at an encounter: subject frailty shared with weight rho, fresh noise, plus a known shift (age)."""
        rho = self.strengths.rho
        return rho * frailty + np.sqrt(1.0 - rho**2) * rng.standard_normal(np.shape(frailty)) + shift


def stream(seed: int, *keys: object) -> np.random.Generator:
    """An independent, reproducible random stream named by ``keys`` (strings hashed with CRC32, not hash())."""
    words = [int(seed) & 0xFFFFFFFF]
    for k in keys:
        words.append(zlib.crc32(k.encode()) if isinstance(k, str) else int(k) & 0xFFFFFFFF)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(words)))
