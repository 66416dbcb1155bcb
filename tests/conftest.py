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
