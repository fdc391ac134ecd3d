"""The architecture fuzzer on a small budget: 30 generated models through the oracle.

Every seed must be pruned correctly or refused with an edgeprune error; a corruption fails the
test with the seed and what broke (reproduce with ``tests.fuzz.campaign.run_seed(seed)``). A
corruption from a defect pinned by an ``xfail(strict=True)`` regression test owned by other work
(``tests.fuzz.campaign.KNOWN``) is listed, not failed: its own test fails when it is fixed.
``benchmarks/fuzz.py --seeds 1000`` runs the large budget.
"""
from __future__ import annotations

import torch

from tests.fuzz.campaign import run_seed
from tests.fuzz.generator import CELLS, build

SEEDS = range(30)


def test_generated_models_prune_correctly_or_are_refused_by_name():
    torch.set_num_threads(1)
    outcomes = [run_seed(seed)[0] for seed in SEEDS]
    corrupt = [f"seed {o.seed}: {o.detail}" for o in outcomes if o.status == "corrupt"]
    assert not corrupt, "\n".join(corrupt)
    correct = [o for o in outcomes if o.status == "correct"]
    assert len(correct) >= 24  # the budget really exercises the engine, not only its refusals
    assert sum(o.dead_removed for o in correct) > 0 and sum(o.live_removed for o in correct) > 0


def test_the_budget_covers_every_construct():
    kinds = {k for seed in SEEDS for k in build(seed).kinds}
    assert kinds == set(CELLS)
    models = [build(seed).model for seed in SEEDS]
    assert {m.outputs for m in models} == {"one", "tuple", "dict"} and any(m.z_dim for m in models)
    attention = [m for model in models for m in model.modules() if hasattr(m, "num_key_value_heads")]
    assert any(a.num_key_value_heads < a.num_heads for a in attention)  # grouped-query
    assert any(a.num_key_value_heads == a.num_heads for a in attention)


def test_same_seed_same_model():
    a, b = build(7), build(7)
    assert a.description == b.description
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
