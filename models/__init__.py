"""Encoders, fusion backbones, debiasing frameworks, the training loop, metrics.

Importing this package fills ``BACKBONES`` and ``FRAMEWORKS`` (models/base.py): every backbone and framework
module is imported here, so any ``import medmodal.models...`` finds them all by name.
"""

from medmodal.models import backbones, frameworks  # noqa: F401  (fill the registries)
