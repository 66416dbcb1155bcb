"""Shared test fixtures: where the vendored and the shared real data live."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
MIMIC_DEMO = REPO / "data" / "mimic-iv-demo-2.2"
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def mimic_demo() -> Path:
    """The vendored MIMIC-IV demo v2.2 (ODbL), part of every clone."""
    return MIMIC_DEMO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the clone: present for developers and CI, absent in a user's clone."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs ../shared/data beside the clone (not found at {SHARED_DATA}); a user's clone has none")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """Two cores are shared by every test process; more torch threads only spin against each other.
    Module-scoped so that a module's trained fixtures run under it too; the previous count is restored."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> tuple[Path, Path]:
    """(cohort_dir, store) of the learnable toy cohort (600 samples, seed 0), written once and only read."""
    from medmodal.models.toy import write_toy_cohort

    root = tmp_path_factory.mktemp("toy")
    write_toy_cohort(root / "cohort", root / "store", n=600, seed=0)
    return root / "cohort", root / "store"
