"""Offline HTML reports (one self-contained page per cohort, run or benchmark folder) and every figure medmodal
draws (``medmodal.report.figures``).

This package sits above cohort/ and models/ and below cli.py: its pages read those stages' output folders, while
``figures`` imports no other stage, so models/ and benchmarks/ can draw with it. Importing the package itself is
cheap (nothing below is imported until used), so that ``import medmodal.report.figures`` pulls in matplotlib only.
"""

from __future__ import annotations

from typing import Any


def write_report(*args: Any, **kwargs: Any):
    """See medmodal.report.build.write_report."""
    from medmodal.report.build import write_report as _write

    return _write(*args, **kwargs)


def detect_kind(path) -> str:
    """See medmodal.report.build.detect_kind."""
    from medmodal.report.build import detect_kind as _detect

    return _detect(path)
