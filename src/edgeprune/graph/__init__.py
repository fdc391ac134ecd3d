"""Tracing and grouping: which tensor slices of a model must be pruned together."""
from edgeprune.graph.analysis import Analysis, analyze
from edgeprune.graph.groups import Group, build_groups
from edgeprune.graph.rules import RuleRegistry, default_rules
from edgeprune.graph.trace import TraceResult, trace

__all__ = ["Analysis", "Group", "analyze", "RuleRegistry", "TraceResult", "build_groups", "default_rules", "trace"]
