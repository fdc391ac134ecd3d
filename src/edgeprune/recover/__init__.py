"""Recovery after pruning: least-squares reconstruction, fine-tuning with optional distillation, and pruning
inside a training loop."""
from edgeprune.recover.batchnorm import recalibrate_bn
from edgeprune.recover.distill import Distill, distill_loss, kd_loss
from edgeprune.recover.finetune import Finetune, FinetuneLog, finetune
from edgeprune.recover.gradual import GradualPruner
from edgeprune.recover.reconstruct import Reconstruct, ReconstructLog, reconstruct

__all__ = ["Distill", "Finetune", "FinetuneLog", "GradualPruner", "Reconstruct", "ReconstructLog", "distill_loss",
           "finetune", "kd_loss", "recalibrate_bn", "reconstruct"]
