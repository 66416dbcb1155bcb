"""medmodal: leakage-safe multimodal clinical cohorts, cached embeddings and causal-debiasing models."""

__version__ = "0.1.0"
