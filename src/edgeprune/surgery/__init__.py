"""Surgery: apply plans. Structured slicing here; sparsity masks in ``edgeprune.surgery.masks``."""
from edgeprune.surgery.structured import apply_plan, named_tensors

__all__ = ["apply_plan", "named_tensors"]
