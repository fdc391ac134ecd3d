"""Op rules: how each traced op labels its outputs and couples its inputs.

A rule is ``rule(ctx, args, kwargs, out)``; ``ctx`` is the tracer (``dims``, ``set_dims``, ``unify``,
``block``, ``role``). Rules live in a registry an instance can extend, so a user's custom op stays
local to their prune: ``rules = default_rules(); rules.register("my_op", my_rule)``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from edgeprune.graph.rules import contract, elementwise, indexing, layers, reduce, shape

Rule = Callable[[Any, tuple, dict, Any], None]


class RuleRegistry:
    """Op name -> rule, with aten's ``pointwise`` tag as the fallback for elementwise ops."""

    def __init__(self, rules: dict[str, Rule] | None = None) -> None:
        self._rules: dict[str, Rule] = dict(rules or {})
        self._pointwise_cache: dict[str, bool] = {}

    def register(self, name: str, rule: Rule) -> None:
        self._rules[name] = rule

    def copy(self) -> RuleRegistry:
        return RuleRegistry(self._rules)

    def lookup(self, name: str, func: Callable | None = None) -> Rule | None:
        rule = self._rules.get(name)
        if rule is None and self._is_pointwise(name):
            return elementwise.elementwise
        return rule

    def _is_pointwise(self, name: str) -> bool:
        if name not in self._pointwise_cache:
            op = getattr(torch.ops.aten, name, None)
            tagged = False
            if op is not None:
                try:
                    tagged = any(torch.Tag.pointwise in getattr(op, o).tags for o in op.overloads())
                except (AttributeError, RuntimeError):
                    tagged = False
            self._pointwise_cache[name] = tagged
        return self._pointwise_cache[name]


def default_rules() -> RuleRegistry:
    """A fresh registry holding every built-in rule."""
    table: dict[str, Rule] = {}
    for module in (layers, elementwise, shape, indexing, reduce, contract):
        table.update(module.RULES)
    return RuleRegistry(table)
