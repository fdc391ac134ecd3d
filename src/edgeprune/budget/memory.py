"""Cost models of a microcontroller budget: the TFLite Micro arena (``ram=``) and flash (``flash=``).

Both price a model by the prediction of :mod:`edgeprune.targets.sram` (one trace, no conversion), at
the precision the budget deploys. The verdict on a prune is the deployed file itself: its bytes
and the arena TFLM reports for it (``edgeprune.runtimes.tflm``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn as nn


@dataclass(frozen=True)
class SramCost:
    """The predicted TFLM arena in bytes (``edgeprune.targets.sram.predict_arena``)."""

    precision: str = "float32"
    name: str = "ram"
    on_meta: bool = True

    def cost(self, model: nn.Module, example_inputs: Any) -> float:
        from edgeprune.targets.sram import predict_arena

        return float(predict_arena(model, example_inputs, self.precision).total)


@dataclass(frozen=True)
class FlashCost:
    """The predicted ``.tflite`` bytes plus ``runtime_flash``, the stated allowance for the runtime's code."""

    precision: str = "float32"
    runtime_flash: float = 0.0
    name: str = "flash"
    on_meta: bool = True

    def cost(self, model: nn.Module, example_inputs: Any) -> float:
        from edgeprune.targets.sram import predict_arena

        return float(predict_arena(model, example_inputs, self.precision).flash) + self.runtime_flash
