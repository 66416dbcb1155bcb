"""Dataset sources, one module each; importing a module registers it in ``medmodal.cohort.base.SOURCES``.

Adding a source = one module here (a ``Source`` subclass with ``@SOURCES.register``) + one folder
``sql/<source>/`` + one import line below.
"""

from medmodal.cohort.sources import (
    adni,  # noqa: F401
    eicu,  # noqa: F401
    mimic_iv,  # noqa: F401
)
