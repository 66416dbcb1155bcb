"""Fusion backbones; importing this package registers each one in ``BACKBONES`` (one file + one line each)."""

from . import (
    attention_fusion,  # noqa: F401
    late_fusion,  # noqa: F401
    muse,  # noqa: F401
)
