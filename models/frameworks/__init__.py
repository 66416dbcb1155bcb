"""Debiasing frameworks, found by name in ``models.base.FRAMEWORKS``; one import line each."""

from . import (
    cdmm,  # noqa: F401
    dfd,  # noqa: F401
    erm,  # noqa: F401
    groupdro,  # noqa: F401
    mmnar,  # noqa: F401
)
