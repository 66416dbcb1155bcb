"""medmodal: leakage-safe multimodal clinical cohorts, cached embeddings and causal-debiasing models."""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# Offline by construction (docs/reliability.md, "Offline"): this runs before any module of the package, hence
# before huggingface_hub, transformers or timm is imported through it, and those read these variables once at
# import. Forced, not defaulted: medmodal never downloads, whatever the shell says. A hub already imported by the
# caller has read its constants; they are switched too. Model lookups use cache-folder reads only on top of this.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    _os.environ[_var] = "1"
if "huggingface_hub" in _sys.modules:
    _constants = _sys.modules.get("huggingface_hub.constants")
    if _constants is not None:
        _constants.HF_HUB_OFFLINE = True
        _constants.HF_HUB_DISABLE_TELEMETRY = True
