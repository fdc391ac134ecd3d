"""Surgery: apply plans. :func:`apply_plan` is the one applier for every plan kind; structured slicing
lives in ``structured``, residual blocks in ``blocks``, sparsity masks in ``masks``."""
from edgeprune.surgery.apply import apply_plan, as_plan
from edgeprune.surgery.structured import named_tensors

__all__ = ["apply_plan", "as_plan", "named_tensors"]
