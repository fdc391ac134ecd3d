"""Run seeds through the generator and the oracle, and attribute corruptions to known defects.

A corruption is *known* when it comes from a defect that has an ``xfail(strict=True)`` regression
test (tests/test_fuzz_regressions.py) owned by other work: the seed is re-checked with that
construct replaced by its equivalent (SDPA's ``enable_gqa`` by an explicit ``repeat_kv``), and
counts as known only if the replacement then passes. Anything else stays a corruption.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from tests.fuzz import oracle
from tests.fuzz.generator import build


@dataclass(frozen=True)
class KnownDefect:
    name: str
    test: str  # the xfail(strict=True) regression test that pins it
    applies: Callable[[nn.Module], bool]
    without: Callable[[nn.Module], nn.Module]  # an equivalent model that avoids the construct


def _uses_native_gqa(model: nn.Module) -> bool:
    return any(getattr(m, "native_gqa", False) for m in model.modules())


def _with_repeat_kv(model: nn.Module) -> nn.Module:
    model = copy.deepcopy(model)
    for m in model.modules():
        if getattr(m, "native_gqa", False):
            m.native_gqa = False
    return model


# Known defects, each pinned by an xfail(strict=True) regression test. The one the fuzzer found first
# (SDPA enable_gqa: query and key/value heads uncoupled) is fixed by the grouped-query coupling; its
# test now passes and stays as a regression test, and the helpers above stay for the next one.
KNOWN: list[KnownDefect] = []


def run_seed(seed: int, *, onnx: bool = True, exporter: str = "torchscript") -> tuple[oracle.Outcome, str]:
    """Generate the model of ``seed`` and classify it.

    Returns:
        The oracle's outcome (``status`` ``"known"`` when a known defect explains a corruption;
        ``detail`` then starts with the defect's name) and the model's description.
    """
    generated = build(seed)
    outcome = oracle.check(generated.model, generated.inputs, seed, onnx=onnx, exporter=exporter)
    if outcome.status == "corrupt":
        for defect in KNOWN:
            if defect.applies(generated.model):
                again = oracle.check(defect.without(generated.model), generated.inputs, seed, onnx=onnx,
                                     exporter=exporter)
                if again.status != "corrupt":
                    outcome.status, outcome.detail = "known", f"{defect.name} ({defect.test}): {outcome.detail}"
                    break
    return outcome, generated.description
