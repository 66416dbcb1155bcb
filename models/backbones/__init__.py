"""Fusion backbones; importing this package registers each one in ``BACKBONES`` (one file + one line each)."""
from . import attention_fusion, late_fusion, muse  # noqa: F401
