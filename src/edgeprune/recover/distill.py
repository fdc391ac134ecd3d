"""Knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015).

The student matches the teacher's softened distribution: ``KL(softmax(t/T) || softmax(s/T)) * T^2``
(the ``T^2`` keeps the soft term's gradients on the scale of the hard term's as ``T`` changes),
mixed with the usual cross-entropy on the labels: ``alpha * soft + (1 - alpha) * hard``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Distill:
    """Distillation from the unpruned model during fine-tuning.

    Attributes:
        temperature: ``T``; higher shows more of the teacher's ranking of wrong classes.
        alpha: weight of the soft (teacher) term; ``1 - alpha`` weighs the labels.
    """

    temperature: float = 4.0
    alpha: float = 0.7

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(softmax(t/T) || softmax(s/T)) * T^2``, averaged over the batch.

    Args:
        student_logits: (B, C).
        teacher_logits: (B, C); no gradient flows into them.
        temperature: ``T`` > 0.

    Returns:
        A scalar.

    Example:
        >>> s = torch.tensor([[1.0, 0.0]]); t = torch.tensor([[0.0, 1.0]])
        >>> round(float(kd_loss(s, t, 1.0)), 4)   # KL([.269,.731] || [.731,.269])
        0.4621
    """
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / t, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * (t * t)


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                 config: Distill) -> torch.Tensor:
    """``alpha * kd_loss + (1 - alpha) * cross_entropy(student, targets)``."""
    soft = kd_loss(student_logits, teacher_logits, config.temperature)
    if config.alpha >= 1.0:
        return soft
    return config.alpha * soft + (1.0 - config.alpha) * F.cross_entropy(student_logits, targets)
