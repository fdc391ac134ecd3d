"""Recovery after pruning: fine-tuning with optional distillation, and pruning inside a training loop."""
from edgeprune.recover.batchnorm import recalibrate_bn
from edgeprune.recover.distill import Distill, distill_loss, kd_loss
from edgeprune.recover.finetune import Finetune, FinetuneLog, finetune
from edgeprune.recover.gradual import GradualPruner

__all__ = ["Distill", "Finetune", "FinetuneLog", "GradualPruner", "distill_loss", "finetune", "kd_loss", "recalibrate_bn"]
