"""Debiasing frameworks, found by name in ``models.base.FRAMEWORKS``; one import line each."""
from . import erm  # noqa: F401  (issue 5)
from . import cdmm  # noqa: F401  (issue 6)
from . import dfd  # noqa: F401  (issue 6)
from . import mmnar  # noqa: F401  (issue 6)
