"""Fusion backbones; importing this package registers each one in ``BACKBONES`` (one file + one line each)."""
from . import attention_fusion  # noqa: F401
from . import late_fusion  # noqa: F401
from . import muse  # noqa: F401
