"""What a strategy spent: forward and backward passes (batches), evaluations, seconds per phase."""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch.nn as nn


@dataclass
class Meter:
    """Counts the work of one prune; ``as_dict()`` goes into ``PruneResult.stats["cost"]``.

    ``forward``/``backward`` count batches through the model being pruned (data collection,
    evaluations, fine-tuning); ``teacher_forward`` counts batches through the distillation
    teacher; ``evaluations`` counts calls of the user's ``evaluate``; ``cost_evaluations`` counts
    plans priced on the meta device.
    """

    forward: int = 0
    backward: int = 0
    teacher_forward: int = 0
    evaluations: int = 0
    cost_evaluations: int = 0
    finetune_steps: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the time spent inside the block to ``seconds[name]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def evaluate(self, evaluate: Callable[[nn.Module], float], model: nn.Module) -> float:
        """Call the user's ``evaluate(model)``, counting it and the forward passes of ``model`` it made."""
        calls = [0]
        handle = model.register_forward_pre_hook(lambda m, a: calls.__setitem__(0, calls[0] + 1))
        try:
            with self.phase("evaluate"):
                score = float(evaluate(model))
        finally:
            handle.remove()
        self.evaluations += 1
        self.forward += calls[0]
        return score

    def as_dict(self) -> dict:
        return {"forward": self.forward, "backward": self.backward, "teacher_forward": self.teacher_forward,
                "evaluations": self.evaluations, "cost_evaluations": self.cost_evaluations,
                "finetune_steps": self.finetune_steps,
                "seconds_by_phase": {k: round(v, 3) for k, v in self.seconds.items()}}
